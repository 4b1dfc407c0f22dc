"""What the engine measures about itself, sampled per worker, for the views and alerts.

- Lag: every engine consumer group's committed offset against each
  partition's end (last stable offset), read from the broker, not guessed.
- Throughput: events in and out per second per topic, from the ends' growth.
- Delays: attribution delay (attributed_ms - ts_ms) and click-to-attribution
  delay, recorded by this worker as it attributes. Orders that waited on
  purpose (for a late click or their `created`: `delayed: true`) and orders
  older than CPS_BACKFILL_MS (backfill) are counted apart, so the figures say
  whether the engine keeps up, not how long the grace period is.
- Sinks' queue depth (their groups' lag), recovery progress, dead letters by
  reason, and the alerts evaluated from all of these.

Each worker keeps the last hour in memory; `snapshot()` is what it shares
with the others so the views merge all workers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from mode import Service

from app.config.settings import Settings
from app.domain.alerts import AlertState, Transition, observe
from app.domain.metrics import Histogram, Series, WindowedHistogram
from app.kafka.connection import KafkaConnection, started
from app.sinks.fanout import SinkRegistry, queue_record

logger = logging.getLogger(__name__)

MINUTE_MS = 60_000


class Monitor(Service):
    def __init__(self, app, settings: Settings, connection: KafkaConnection, *,
                 registry: SinkRegistry, consumed_topics: Callable[[], list[str]],
                 output_topics: list[str], partitions: Callable[[str], int],
                 sink_stats: Callable[[], dict], dead_letters: Callable[[], Counter],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.connection = connection
        self.registry = registry
        self.consumed_topics = consumed_topics
        self.output_topics = output_topics
        self.partitions = partitions
        self.sink_stats = sink_stats
        self.dead_letters = dead_letters
        interval_ms = settings.monitor_interval_s * 1000
        self.delay = WindowedHistogram(interval_ms)
        self.click_delay = WindowedHistogram(interval_ms)
        self.backfilled = 0
        self.waited = 0
        self.lag_rows: list[dict[str, Any]] = []
        self.lag_series: dict[str, Series] = {}      # topic, or "sink <id>" -> total lag
        self.rate_series: dict[str, Series] = {}     # topic -> records/s
        self.dead_letter_series = Series()
        self.delay_series = {q: Series() for q in ("p50", "p90", "p99")}
        self.alerts: dict[str, AlertState] = {}
        self.transitions: list[dict[str, Any]] = []
        self.sampled_ms: int | None = None
        self._ends: dict[str, int] = {}
        self._dead_letters_seen = 0
        self._producer: AIOKafkaProducer | None = None

    # -- recording (hot path) ----------------------------------------------------

    def record_attribution(self, ts_ms: int, attributed_ms: int, click_ts_ms: int | None,
                           delayed: bool) -> None:
        delay = attributed_ms - ts_ms
        if delay > self.settings.backfill_ms:
            self.backfilled += 1
            return
        if delayed:
            self.waited += 1
            return
        self.delay.record(attributed_ms, delay)
        if click_ts_ms is not None:
            self.click_delay.record(attributed_ms, attributed_ms - click_ts_ms)

    # -- sampling ------------------------------------------------------------------

    @Service.task
    async def _sample_loop(self) -> None:
        interval = self.settings.monitor_interval_s
        while not self.should_stop:
            try:
                await self.sample()
            except Exception as exc:
                logger.warning("monitor: sampling failed: %r", exc)
            await self.sleep(interval)

    async def sample(self) -> None:
        now = int(time.time() * 1000)
        groups = {self.app.conf.id: self.consumed_topics()}
        sink_labels = {}
        for queued in self.registry.sinks():
            group = f"{self.app.conf.id}-sink-{queued.sink.sink_id}"
            groups[group] = [queued.topic]
            sink_labels[group] = f"sink {queued.sink.sink_id}"
        topics = sorted({t for ts in groups.values() for t in ts} | set(self.output_topics))
        ends = await self._end_offsets(topics)
        committed = await self._committed(list(groups))
        rows = []
        for group, group_topics in groups.items():
            for topic in group_topics:
                for partition in range(self.partitions(topic)):
                    end = ends.get((topic, partition))
                    if end is None:
                        continue
                    done = committed.get(group, {}).get((topic, partition))
                    rows.append({"group": group, "topic": topic, "partition": partition,
                                 "committed": done, "end": end,
                                 "lag": max(0, end - (done or 0))})
        self.lag_rows = rows
        for (group, topic), lag in _sum_by(rows, ("group", "topic"), "lag").items():
            label = sink_labels.get(group, topic)
            self.lag_series.setdefault(label, Series()).add(now, lag)
        self._rates(now, ends)
        window = self.delay.over(now - MINUTE_MS).summary()
        for q, series in self.delay_series.items():
            if window[q] is not None:
                series.add(now, window[q])
        total_dead = sum(self.dead_letters().values())
        self.dead_letter_series.add(now, total_dead)
        self.sampled_ms = now
        await self._evaluate(now, rows, window, total_dead)

    def _rates(self, now: int, ends: dict[tuple[str, int], int]) -> None:
        per_topic: Counter[str] = Counter()
        for (topic, _partition), end in ends.items():
            per_topic[topic] += end
        if self.sampled_ms is not None and self._ends:
            elapsed = max(0.001, (now - self.sampled_ms) / 1000)
            for topic, total in per_topic.items():
                if topic in self._ends:
                    self.rate_series.setdefault(topic, Series()).add(
                        now, max(0, total - self._ends[topic]) / elapsed)
        self._ends = dict(per_topic)

    async def _end_offsets(self, topics: list[str]) -> dict[tuple[str, int], int]:
        consumer = self.connection.consumer(group_id=None, isolation_level="read_committed",
                                            enable_auto_commit=False)
        async with started(consumer):
            tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions(t))]
            ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def _committed(self, groups: list[str]) -> dict[str, dict[tuple[str, int], int]]:
        async with started(self.connection.admin()) as admin:
            found = {}
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group)
                found[group] = {(tp.topic, tp.partition): meta.offset
                                for tp, meta in offsets.items() if meta.offset >= 0}
            return found

    # -- alerts --------------------------------------------------------------------

    async def _evaluate(self, now: int, rows: list[dict], window: dict, total_dead: int) -> None:
        s = self.settings
        engine_lag = sum(r["lag"] for r in rows if r["group"] == self.app.conf.id)
        dead_per_min = self._per_minute(self.dead_letter_series, now)
        checks = [
            ("consumer_lag", f"engine consumer lag above {s.alert_lag} for {s.alert_lag_for_s}s",
             engine_lag, s.alert_lag, s.alert_lag_for_s),
            ("attribution_delay_p99",
             f"attribution delay p99 above {s.alert_delay_p99_ms} ms for {s.alert_delay_for_s}s",
             window["p99"] or 0, s.alert_delay_p99_ms, s.alert_delay_for_s),
            ("dead_letters", f"more than {s.alert_dead_letters_per_min} dead letters per minute",
             dead_per_min, s.alert_dead_letters_per_min, 0),
        ]
        for sink_id, stats in self.sink_stats().items():
            checks.append((f"sink_dead_letters:{sink_id}",
                           f"sink {sink_id} gave up on events (dead letters)",
                           stats.get("dead_lettered", 0), 0, 0))
        transitions: list[Transition] = []
        for name, description, value, threshold, for_s in checks:
            state = self.alerts.get(name) or AlertState(name, description)
            if name.startswith("sink_dead_letters:"):
                holds = value > (state.value or 0)  # new dead letters since the last sample
            else:
                holds = value > threshold
            state, transition = observe(state, holds=holds, value=value, threshold=threshold,
                                        for_ms=for_s * 1000, now_ms=now)
            self.alerts[name] = state
            if transition is not None:
                transitions.append(transition)
        for transition in transitions:
            event = _alert_event(transition)
            self.transitions = [*self.transitions[-199:], event]
            logger.warning("alert %s %s: %s (value %s)", transition.alert.name, transition.kind,
                           transition.alert.description, transition.alert.value)
            if self.app.is_leader():
                await self._notify(transition.event_id, event)

    def _per_minute(self, series: Series, now: int) -> int:
        recent = series.since(now - MINUTE_MS)
        if len(recent) < 2:
            return 0
        (t0, v0), (t1, v1) = recent[0], recent[-1]
        return (v1 - v0) * MINUTE_MS // max(1, t1 - t0)

    async def _notify(self, event_id: str, event: dict[str, Any]) -> None:
        """Queue an alert for every sink subscribed to the alerts stream (leader only)."""
        wanting = self.registry.wanting("alerts", {})
        if not wanting:
            return
        if self._producer is None:
            producer = self.connection.producer(acks="all", enable_idempotence=True)
            await producer.start()
            self._producer = producer
        record = queue_record("alerts", event_id, event, int(time.time() * 1000))
        for queued in wanting:
            await self._producer.send_and_wait(queued.topic, record, key=b"alerts")

    async def on_stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    # -- what the views show ---------------------------------------------------

    def snapshot(self, since_ms: int) -> dict[str, Any]:
        """This worker's figures, in a form the views merge across workers."""
        recovery = self.app.tables.recovery
        return {
            "worker": str(self.app.conf.canonical_url),
            "sampled_ms": self.sampled_ms,
            "engine_group": self.app.conf.id,
            "lag": self.lag_rows,
            "lag_series": {k: s.since(since_ms) for k, s in self.lag_series.items()},
            "rate_series": {k: s.since(since_ms) for k, s in self.rate_series.items()},
            "delay_windows": _windows(self.delay, since_ms),
            "click_delay_windows": _windows(self.click_delay, since_ms),
            "backfilled": self.backfilled,
            "waited": self.waited,
            "dead_letters": dict(self.dead_letters()),
            "sinks": self.sink_stats(),
            "alerts": [_alert_dict(a) for a in self.alerts.values()],
            "transitions": self.transitions[-50:],
            "recovery": {"in_recovery": bool(recovery.in_recovery),
                         "remaining": int(recovery.active_remaining_total())
                         if recovery.in_recovery else 0,
                         "completed": recovery.completed.is_set()},
            "assignment": sorted({tp.partition for tp in self.app.assignor.assigned_actives()}),
        }


def _windows(histograms: WindowedHistogram, since_ms: int) -> list[list]:
    return [[start, histogram.counts] for start, histogram in histograms.windows
            if start + histograms.interval_ms > since_ms]


def _sum_by(rows: list[dict], keys: tuple[str, ...], field: str) -> dict[tuple, int]:
    totals: dict[tuple, int] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        totals[key] = totals.get(key, 0) + row[field]
    return totals


def _alert_dict(alert: AlertState) -> dict[str, Any]:
    return {"name": alert.name, "description": alert.description, "state": alert.state,
            "since_ms": alert.since_ms, "fired_ms": alert.fired_ms,
            "resolved_ms": alert.resolved_ms, "value": alert.value,
            "threshold": alert.threshold}


def _alert_event(transition: Transition) -> dict[str, Any]:
    return {**_alert_dict(transition.alert), "transition": transition.kind,
            "event_id": transition.event_id}


async def fetch_peer(session, url: str, since_ms: int) -> dict[str, Any] | None:
    """Another worker's snapshot, or None when it does not answer in time."""
    try:
        async with session.get(f"{url}/monitor/local?since_ms={since_ms}",
                               timeout=2) as response:
            if response.status == 200:
                return orjson.loads(await response.read())
    except (TimeoutError, OSError, ValueError):
        return None
    return None


_SEVERITY = {"ok": 0, "pending": 1, "firing": 2}


def merge_snapshots(snapshots: list[dict[str, Any]], now_ms: int) -> dict[str, Any]:
    """One view of all workers: cluster-wide figures from the freshest, the rest combined."""
    snapshots = [s for s in snapshots if s]
    freshest = max(snapshots, key=lambda s: s.get("sampled_ms") or 0)
    windows: dict[str, dict[int, Histogram]] = {"delay": {}, "click_delay": {}}
    dead_letters: Counter[str] = Counter()
    sinks: dict[str, dict[str, float]] = {}
    alerts: dict[str, dict] = {}
    transitions: dict[str, dict] = {}
    for snapshot in snapshots:
        for kind, merged in windows.items():
            for start, counts in snapshot[f"{kind}_windows"]:
                merged[start] = merged.get(start, Histogram()).merge(Histogram(counts))
        dead_letters.update(snapshot["dead_letters"])
        for sink_id, stats in snapshot["sinks"].items():
            total = sinks.setdefault(sink_id, {"sent": 0, "retried": 0, "dead_lettered": 0,
                                               "rate_per_s": 0.0})
            for key in total:
                total[key] += stats.get(key, 0) or 0
        for alert in snapshot["alerts"]:
            current = alerts.get(alert["name"])
            if current is None or _SEVERITY[alert["state"]] > _SEVERITY[current["state"]]:
                alerts[alert["name"]] = alert
        for transition in snapshot["transitions"]:
            transitions[transition["event_id"]] = transition
    for sink_id, total in sinks.items():
        total["depth"] = sum(row["lag"] for row in freshest["lag"]
                             if row["group"].endswith(f"-sink-{sink_id}"))

    def series(kind: str) -> dict[str, list]:
        out: dict[str, list] = {"p50": [], "p90": [], "p99": []}
        for start, histogram in sorted(windows[kind].items()):
            summary = histogram.summary()
            for q in out:
                if summary[q] is not None:
                    out[q].append([start, summary[q]])
        return out

    def last_minute(kind: str) -> dict[str, Any]:
        merged = Histogram()
        for start, histogram in windows[kind].items():
            if start >= now_ms - MINUTE_MS:
                merged = merged.merge(histogram)
        return merged.summary()

    return {
        "ts_ms": now_ms,
        "workers": [{"worker": s["worker"], "sampled_ms": s["sampled_ms"],
                     "assignment": s["assignment"], "recovery": s["recovery"]}
                    for s in snapshots],
        "lag": freshest["lag"],
        "engine_lag": sum(row["lag"] for row in freshest["lag"]
                          if row["group"] == freshest["engine_group"]),
        "lag_series": freshest["lag_series"],
        "rate_series": freshest["rate_series"],
        "delay_series": series("delay"),
        "click_delay_series": series("click_delay"),
        "delay_last_minute": last_minute("delay"),
        "click_delay_last_minute": last_minute("click_delay"),
        "backfilled": sum(s["backfilled"] for s in snapshots),
        "waited": sum(s["waited"] for s in snapshots),
        "dead_letters": dict(dead_letters),
        "sinks": sinks,
        "alerts": sorted(alerts.values(), key=lambda a: (-_SEVERITY[a["state"]], a["name"])),
        "transitions": sorted(transitions.values(),
                              key=lambda t: t.get("resolved_ms") or t.get("fired_ms") or 0),
    }
