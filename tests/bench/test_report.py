"""The benchmark report: ratios against the targets, and its section in BENCHMARKS.md."""

from __future__ import annotations

from app.bench.report import END, START, as_json, markdown, ratios, write_section
from app.bench.runner import Result


def _result(name: str, events_per_s: float, error: str | None = None) -> Result:
    return Result(name, f"{name} title", 1000, 100, seconds=1.0, events_per_s=events_per_s,
                  error=error)


def test_ratios_of_the_engine_to_each_other_implementation():
    results = [_result("raw", 10_000), _result("peer", 4_000), _result("naive", 1_000),
               _result("engine", 5_000)]
    assert ratios(results) == {"d/a": 0.5, "d/b": 1.25, "d/c": 5.0}
    failed = [_result("raw", 10_000), _result("engine", 5_000, error="exited with 1")]
    assert ratios(failed) == {"d/a": None, "d/b": None, "d/c": None}


def test_markdown_names_every_row_and_verdict():
    engine = _result("engine", 4_000)
    engine.delays_ms = {"p50": 40, "p99": 120, "max": 300, "orders": 900, "waited": 90,
                        "missing": 0, "cpu_us_per_event": 750, "machine_busy_percent": 97}
    further = {"live_rate": 2_000, "state": {"buyers": 1_000_000, "seconds": 200.5, "lag": 0,
                                              "dead_letters": 0, "alive": True,
                                              "peak_rss_mb": 1100}}
    run = as_json([_result("raw", 10_000), engine], further, "cps bench --quick",
                  {"events": 1000})
    text = markdown(run)
    assert "cps bench --quick" in text and "raw title" in text and "engine title" in text
    assert "d/a: 0.400 (target >= 0.5: missed)" in text
    assert "d/b: not measured" in text
    assert "| 40 / 120 / 300 |" in text and "target p99 < 250 ms: met" in text
    assert "fed live at 2,000 events/s" in text
    assert "750 CPU µs/event, machine 97 % busy while fed" in text
    assert "1,000,000 distinct buyers" in text
    assert "peak RSS 1,100 MiB (target < 1,024: missed)" in text
    assert "(half the engine's drain rate)" in text and "side by side" not in text


def test_a_smoke_run_says_its_numbers_are_not_comparable():
    raw = _result("raw", 20_000)
    raw.note = "done within 0.5 s: events/s is a lower bound"
    further = {"live_rate": 200, "live_rate_set": True, "side_by_side": True}
    text = markdown(as_json([raw, _result("engine", 3_000)], further, "cps bench --quick",
                            {"events": 1000}))
    assert "ran side by side, sharing the machine, so these numbers are not comparable" in text
    assert "| done within 0.5 s: events/s is a lower bound |" in text
    assert "fed live at 200 events/s (as set for the run)" in text


def test_the_results_section_is_replaced_and_the_text_around_it_kept(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_section(path, "first\n")
    path.write_text("# Benchmarks\n\nintro\n\n" + path.read_text() + "\n## Analysis\n")
    write_section(path, "second\n")
    text = path.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert "second" in text and "first" not in text
    assert text.startswith("# Benchmarks\n\nintro") and text.rstrip().endswith("## Analysis")


def test_the_plan_phase_reports_its_conversions_and_whether_each_came_once():
    plan = {"members": 5000, "load_seconds": 3.0, "actions": 5000, "requests": 5000,
            "seconds": 4.2, "actions_per_s": 1190, "decided_seconds": 4.1, "peak_rss_mb": 300,
            "conversions": {"orders": 300, "attributed": 300, "converted": 300, "missing": 0,
                            "duplicates": 0, "unexpected": 0, "exactly_once": True,
                            "p50": 180, "p99": 2100, "max": 2400, "readable_p50": 230,
                            "readable_p99": 2200, "readable_max": 2500}}
    text = markdown(as_json([_result("engine", 4_000)], {"plan": plan}, "cps bench",
                            {"events": 1000}))
    assert ("p50 / p99 / max 180 / 2100 / 2400 ms (target p99 < 2,000 ms: missed), until "
            "that record could be read 230 / 2200 / 2500 ms; 300 converted, every one exactly "
            "once") in text
    plan["conversions"].update(missing=2, duplicates=1, exactly_once=False, p99=900)
    text = markdown(as_json([_result("engine", 4_000)], {"plan": plan}, "cps bench",
                            {"events": 1000}))
    assert "(target p99 < 2,000 ms: met)" in text
    assert "not exactly once: 2 missing, 1 repeated, 0 for other orders" in text
