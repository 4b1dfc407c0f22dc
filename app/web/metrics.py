"""`GET /metrics`: Prometheus text format (prometheus_client), read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from app.domain.metrics import BOUNDS_MS, Histogram

if TYPE_CHECKING:
    import faust

    from app.engine.processor import Engine
    from app.services.catalog import Catalog
    from app.services.clicks import ClickService
    from app.services.monitor import Monitor
    from app.services.spool import ClickSpool, SpoolPublisher
    from app.sinks.dispatcher import SinkDispatcher
    from app.sinks.subscriptions import Subscriptions


# eq=False: the registry keeps collectors by identity.
@dataclass(frozen=True, slots=True, eq=False)
class EngineCollector(Collector):
    """The worker's own counters, read when scraped (nothing is counted twice on the hot path)."""

    app: faust.App
    engine: Engine
    catalog: Catalog
    click_service: ClickService
    spool: ClickSpool
    spool_publisher: SpoolPublisher
    dispatcher: SinkDispatcher
    subscriptions: Subscriptions
    monitor: Monitor

    def collect(self) -> Iterator:
        engine, click_service, dispatcher = self.engine, self.click_service, self.dispatcher
        yield CounterMetricFamily("cps_events_processed_total",
                                  "Input events handled by this worker's engine",
                                  value=engine.events_processed)
        yield GaugeMetricFamily("cps_commit_records_max",
                                "Most records (outputs and changelog) one transaction of this "
                                "worker held since it started", value=engine.largest_commit)
        yield CounterMetricFamily("cps_commit_records_total",
                                  "Records (outputs and changelog) this worker committed",
                                  value=engine.records_committed)
        yield _histogram("cps_commit_ms", engine.commit_times,
                         "From a transaction's start to its commit, retries included (its "
                         "count is this worker's transactions)")
        yield CounterMetricFamily("cps_dead_letters_total",
                                  "Messages this worker sent to the dead-letter topic",
                                  value=engine.dead_letters)
        clicks = CounterMetricFamily("cps_clicks_total", "Promotion link clicks by outcome",
                                     labels=["outcome"])
        clicks.add_metric(["recorded"], click_service.recorded)
        clicks.add_metric(["repeated"], click_service.repeated)
        clicks.add_metric(["rejected"], click_service.rejected)
        yield clicks
        yield GaugeMetricFamily("cps_click_spool_depth",
                                "Clicks spooled on this worker and not yet in Kafka",
                                value=self.spool.depth)
        yield CounterMetricFamily("cps_click_spool_forwarded_total",
                                  "Spooled clicks this worker moved into Kafka",
                                  value=self.spool_publisher.forwarded)
        yield GaugeMetricFamily("cps_catalog_records", "Configuration records read",
                                value=self.catalog.records_read)
        yield GaugeMetricFamily("cps_subscribers", "Live subscribers connected to this worker",
                                value=self.subscriptions.active)
        yield CounterMetricFamily("cps_subscribers_cut_off_total",
                                  "Live subscribers dropped for not reading",
                                  value=self.subscriptions.cut_off)
        families = {
            "depth": GaugeMetricFamily("cps_sink_queue_depth",
                                       "Queued events of a sink not delivered yet",
                                       labels=["sink"]),
            "sent": CounterMetricFamily("cps_sink_sent_total", "Events delivered to a sink",
                                        labels=["sink"]),
            "retried": CounterMetricFamily("cps_sink_retried_total",
                                           "Delivery attempts that failed and were retried",
                                           labels=["sink"]),
            "dead_lettered": CounterMetricFamily("cps_sink_dead_lettered_total",
                                                 "Events given up after the last retry",
                                                 labels=["sink"]),
            "rate_per_s": GaugeMetricFamily("cps_sink_rate_per_second",
                                            "Current delivery rate limit of a sink (this "
                                            "worker's share; 0 while held or paused)",
                                            labels=["sink"]),
            "configured_rate_per_s": GaugeMetricFamily(
                "cps_sink_configured_rate_per_second", "A sink's configured rate (all workers)",
                labels=["sink"]),
        }
        reasons = GaugeMetricFamily(
            "cps_sink_rate_reduced", "1 while a sink's rate is below its configured one, by "
            "reason (retry_after, backoff, paused)", labels=["sink", "reason"])
        for sink_id, values in dispatcher.stats().items():
            for name, family in families.items():
                if name in values:
                    family.add_metric([sink_id], values[name])
            if values.get("rate_reason"):
                reasons.add_metric([sink_id, values["rate_reason"]], 1)
        yield from families.values()
        yield reasons
        yield CounterMetricFamily("cps_catch_up_requests_total",
                                  "End-offset requests of the catch-up barriers (one per "
                                  "batch of orders that asked)", value=engine.barriers.requests)
        yield CounterMetricFamily("cps_catch_up_from_fetches_total",
                                  "Catch-up asks answered by the end offsets a fetch reported",
                                  value=engine.barriers.from_fetches)
        yield _histogram("cps_catch_up_wait_ms", engine.barriers.waits,
                         "From an order's ask until every click already in Kafka was read")
        yield _histogram("cps_orders_handled_wait_ms", engine.topic_barriers.waits,
                         "From a buyer's ask (a plan's outcome to settle) until every "
                         "partition of cps.orders was handled as far as it reached")
        yield from _monitoring(self.app, self.monitor, engine)


def _monitoring(app: faust.App, monitor: Monitor, engine: Engine) -> Iterator:
    """Lag, delays, dead letters by reason, recovery and alerts (app.services.monitor)."""
    lag = GaugeMetricFamily("cps_consumer_lag", "Records between the committed offset and the "
                            "end of a partition", labels=["group", "topic", "partition"])
    committed = GaugeMetricFamily("cps_consumer_committed_offset", "Committed offset",
                                  labels=["group", "topic", "partition"])
    end = GaugeMetricFamily("cps_topic_end_offset", "Last stable offset of a partition",
                            labels=["topic", "partition"])
    ends_seen = set()
    for row in monitor.lag_rows:
        labels = [row["group"], row["topic"], str(row["partition"])]
        lag.add_metric(labels, row["lag"])
        if row["committed"] is not None:
            committed.add_metric(labels, row["committed"])
        if (row["topic"], row["partition"]) not in ends_seen:
            ends_seen.add((row["topic"], row["partition"]))
            end.add_metric([row["topic"], str(row["partition"])], row["end"])
    yield from (lag, committed, end)
    rates = GaugeMetricFamily("cps_topic_records_per_second",
                              "Records appended per second, last sample", labels=["topic"])
    for topic, series in monitor.rate_series.items():
        if series.last() is not None:
            rates.add_metric([topic], series.last())
    yield rates
    for name, windows, help_text in (
            ("cps_attribution_delay_ms", monitor.delay,
             "attributed_ms - ts_ms of orders decided without waiting, last hour"),
            ("cps_click_to_attribution_delay_ms", monitor.click_delay,
             "attributed_ms - click ts_ms, last hour")):
        yield _histogram(name, windows.over(0), help_text)
    reasons = CounterMetricFamily("cps_dead_letters_by_reason_total",
                                  "Dead letters by the field or cause at fault", labels=["reason"])
    for reason, count in engine.dead_letter_reasons.items():
        reasons.add_metric([reason], count)
    yield reasons
    recovery = app.tables.recovery
    yield GaugeMetricFamily("cps_table_recovery_remaining",
                            "Changelog records left to restore before processing resumes",
                            value=recovery.active_remaining_total() if recovery.in_recovery else 0)
    alerts = GaugeMetricFamily("cps_alert_firing", "1 while an alert fires", labels=["alert"])
    for name, state in monitor.alerts.items():
        alerts.add_metric([name], 1 if state.state == "firing" else 0)
    yield alerts


def _histogram(name: str, histogram: Histogram, help_text: str) -> HistogramMetricFamily:
    buckets, running = [], 0
    for bound, count in zip(BOUNDS_MS, histogram.counts, strict=False):
        running += count
        buckets.append((str(bound), running))
    buckets.append(("+Inf", histogram.total))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=histogram.sum_ms)


def register(*, app: faust.App, engine: Engine, catalog: Catalog, click_service: ClickService,
             spool: ClickSpool, spool_publisher: SpoolPublisher, dispatcher: SinkDispatcher,
             subscriptions: Subscriptions, monitor: Monitor) -> None:
    """Serve `/metrics` from this engine's own registry (two engines never mix figures)."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(
        app=app, engine=engine, catalog=catalog, click_service=click_service, spool=spool,
        spool_publisher=spool_publisher, dispatcher=dispatcher, subscriptions=subscriptions,
        monitor=monitor))

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.text(generate_latest(registry).decode(),
                             content_type="text/plain; version=0.0.4")
