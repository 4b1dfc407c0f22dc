"""What `cps bench` writes: a JSON record of the run and the BENCHMARKS.md section."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from app.bench.runner import Result, is_engine
from app.broker.local import KAFKA_VERSION

# The engine's events/s over each other implementation's: the targets.
TARGETS = {"d/a": ("raw", 0.5), "d/b": ("peer", 1.0), "d/c": ("naive", 3.0)}
DELAY_P99_TARGET_MS = 250
RSS_TARGET_MB = 1024
PLAN_TARGET_S = 300
CONVERTED_P99_TARGET_MS = 2000


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": memory,
            "os": f"{platform.system()} {platform.release()}"}


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "kafka broker": KAFKA_VERSION}
    for package in ("faust-streaming", "aiokafka", "rocksdict", "orjson", "quixstreams",
                    "confluent-kafka"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def ratios(results: list[Result]) -> dict[str, float | None]:
    """The issue's ratios, from the engine's first run (its first worker count)."""
    by_name = {r.name: r for r in results if r.error is None and r.events_per_s}
    engine = next((r for r in results if is_engine(r.name)), None)
    engine = engine if engine is not None and engine.name in by_name else None
    return {ratio: (engine.events_per_s / by_name[name].events_per_s
                    if engine and name in by_name else None)
            for ratio, (name, _target) in TARGETS.items()}


def as_json(results: list[Result], further: dict, command: str, shape: dict) -> dict:
    return {"command": command, "machine": machine(), "versions": versions(),
            "workload": shape, "results": [asdict(r) for r in results],
            "ratios": ratios(results), **further}


def markdown(run: dict) -> str:
    lines = [f"Command: `{run['command']}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in run["machine"].items()), "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()), "",
             "Workload: " + ", ".join(f"{k} {v}" for k, v in run["workload"].items()), "",
             "| implementation | events/s | CPU µs/event | delay p50 / p99 / max (ms) "
             "| peak RSS MiB | note |",
             "|---|---:|---:|---|---:|---|"]
    for r in run["results"]:
        delays = r["delays_ms"]
        delay = (" / ".join(str(delays.get(q, "-")) for q in ("p50", "p99", "max"))
                 if delays else "not measured")
        note = r["error"] or r.get("note") or ""
        lines.append(f"| {r['title']} | {r['events_per_s']:,.0f} | {r['cpu_us_per_event']:,.0f}"
                     f" | {delay} | {r['peak_rss_mb']:,.0f} | {note} |")
    lines.append("")
    if run.get("side_by_side"):
        lines.append("- a smoke run: the implementations ran side by side, sharing the machine, "
                     "so these numbers are not comparable")
    for name, value in run["ratios"].items():
        target = TARGETS[name][1]
        verdict = ("not measured" if value is None else
                   f"{value:.3f} (target >= {target}: {'met' if value >= target else 'missed'})")
        lines.append(f"- {name}: {verdict}")
    lines += _live_lines(run) + _state_lines(run.get("state")) + _plan_lines(run.get("plan"))
    return "\n".join(lines) + "\n"


def _live_lines(run: dict) -> list[str]:
    if "live_rate" not in run:
        return ["- delays: no live phase"]
    how = "as set for the run" if run.get("live_rate_set") else "half the engine's drain rate"
    lines = [f"- delays: each fed live at {run['live_rate']:,} events/s ({how}), from an "
             "order's `ts_ms` to its committed attribution; orders that waited for a late "
             "click (grace period) are not in the percentiles:"]
    for r in run["results"]:
        d = r["delays_ms"]
        if d.get("error"):
            lines.append(f"  - {r['name']}: {d['error']}")
            continue
        verdict = ""
        if is_engine(r["name"]) and d.get("p99") is not None:
            verdict = (f", target p99 < {DELAY_P99_TARGET_MS} ms: "
                       f"{'met' if d['p99'] < DELAY_P99_TARGET_MS else 'missed'}")
        lines.append(f"  - {r['name']}: {d.get('orders', 0):,} orders, {d.get('waited', 0):,} "
                     f"waited, {d.get('missing', 0):,} not attributed within 30 s{verdict}"
                     + _live_cpu(d))
    return lines


def _live_cpu(delays: dict) -> str:
    parts = []
    if delays.get("cpu_us_per_event") is not None:
        parts.append(f"{delays['cpu_us_per_event']:,} CPU µs/event")
    if delays.get("machine_busy_percent") is not None:
        parts.append(f"machine {delays['machine_busy_percent']} % busy while fed")
    return "; " + ", ".join(parts) if parts else ""


def _state_lines(state: dict | None) -> list[str]:
    if not state:
        return ["- memory: no state phase"]
    if state.get("error"):
        return [f"- memory: {state['buyers']:,} buyers: {state['error']}"]
    rss = state["peak_rss_mb"]
    return [f"- memory and burst: the engine drained one click each of {state['buyers']:,} "
            f"distinct buyers, written at once, in {state['seconds']:,} s including start-up; "
            f"lag then {state['lag']}, dead letters {state['dead_letters']}, worker "
            f"{'running' if state['alive'] else 'gone'}; peak RSS {rss:,} MiB (target < "
            f"{RSS_TARGET_MB:,}: {'met' if rss < RSS_TARGET_MB else 'missed'})"]



def _plan_lines(plan: dict | None) -> list[str]:
    if not plan:
        return ["- operation plan: no plan phase"]
    if plan.get("error"):
        return [f"- operation plan: {plan['members']:,} members: {plan['error']}"]
    rss = plan["peak_rss_mb"]
    return [f"- operation plan: a `now` plan over {plan['members']:,} members (loaded in "
            f"{plan['load_seconds']:,} s) gave {plan['actions']:,} distinct actions "
            f"({plan['requests']:,} requests) at a local webhook in {plan['seconds']:,} s "
            f"from writing the plan to the last one (target < {PLAN_TARGET_S} s: "
            f"{'met' if plan['seconds'] < PLAN_TARGET_S else 'missed'}), "
            f"{plan['actions_per_s']:,} actions/s; every action decided and emitted in "
            f"{plan.get('decided_seconds', '?')} s; peak RSS {rss:,} MiB (target < "
            f"{RSS_TARGET_MB:,}: {'met' if rss < RSS_TARGET_MB else 'missed'})",
            *_conversion_lines(plan.get("conversions"))]


def _conversion_lines(conversions: dict | None) -> list[str]:
    if not conversions:
        return []
    c = conversions
    verdict = ("" if c["p99"] is None else f" (target p99 < {CONVERTED_P99_TARGET_MS:,} ms: "
               f"{'met' if c['p99'] < CONVERTED_P99_TARGET_MS else 'missed'})")
    once = ("every one exactly once" if c["exactly_once"] else
            f"not exactly once: {c['missing']:,} missing, {c['duplicates']:,} repeated, "
            f"{c['unexpected']:,} for other orders")
    return [f"- conversions: then {c['orders']:,} of its members paid an order each at the "
            f"demo's order rate; from an order's attribution to its `converted` record "
            f"(broker timestamps) p50 / p99 / max {c['p50']} / {c['p99']} / {c['max']} ms"
            f"{verdict}, until that record could be read {c['readable_p50']} / "
            f"{c['readable_p99']} / {c['readable_max']} ms; {c['converted']:,} converted, "
            f"{once}"]


START, END = "<!-- cps bench: start -->", "<!-- cps bench: end -->"


def write_section(path: Path, text: str) -> None:
    """Put `text` between the markers in `path`, keeping what is written around them."""
    section = f"{START}\n{text}{END}\n"
    if not path.exists():
        path.write_text(section)
        return
    current = path.read_text()
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        path.write_text(before + section + ("\n" + after if after else ""))
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + section)
