"""`GET /metrics`: Prometheus text format (prometheus_client), read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.main import app
from app.services import (
    catalog,
    click_service,
    dispatcher,
    engine,
    forwarder,
    spool,
    subscriptions,
)


class EngineCollector(Collector):
    """The worker's own counters, read when scraped (nothing is counted twice on the hot path)."""

    def collect(self) -> Iterator:
        yield CounterMetricFamily("cps_events_processed_total",
                                  "Input events handled by this worker's engine",
                                  value=engine.events_processed)
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
                                value=spool.depth)
        yield CounterMetricFamily("cps_click_spool_forwarded_total",
                                  "Spooled clicks this worker moved into Kafka",
                                  value=forwarder.forwarded)
        yield GaugeMetricFamily("cps_catalog_records", "Configuration records read",
                                value=catalog.records_read)
        yield GaugeMetricFamily("cps_subscribers", "Live subscribers connected to this worker",
                                value=subscriptions.active)
        yield CounterMetricFamily("cps_subscribers_cut_off_total",
                                  "Live subscribers dropped for not reading",
                                  value=subscriptions.cut_off)
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
                                            "Current delivery rate limit of a sink",
                                            labels=["sink"]),
        }
        for sink_id, values in dispatcher.stats().items():
            for name, family in families.items():
                if name in values:
                    family.add_metric([sink_id], values[name])
        yield from families.values()


registry = CollectorRegistry()
registry.register(EngineCollector())


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.text(generate_latest(registry).decode(),
                         content_type="text/plain; version=0.0.4")
