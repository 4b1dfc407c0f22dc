"""The worker's long-lived parts, created once: engine, catalog, signer, click spool."""

from __future__ import annotations

from app.catalog import Catalog
from app.clicks import ClickService
from app.domain.tokens import Signer
from app.engine.direct import deliver_to
from app.engine.processor import Engine
from app.main import app, settings, topics
from app.monitor import Monitor
from app.sinks.dispatcher import SinkDispatcher
from app.sinks.fanout import SinkRegistry
from app.sinks.subscriptions import Subscriptions
from app.spool import ClickSpool, SpoolForwarder
from app.topology import Topology

topology = Topology(settings.partitions)

engine = Engine(
    app,
    bootstrap=settings.broker,
    topology=topology,
    deadletter_topic=topics.deadletter,
    commit_linger_ms=settings.commit_linger_ms,
    commit_max_events=settings.commit_max_events,
)
deliver_to(engine)

catalog = Catalog(bootstrap=settings.broker, topics=topics)

signer = Signer(settings.link_secret, previous=settings.link_secrets_previous)

spool = ClickSpool(settings.data_dir / "spool")
forwarder = SpoolForwarder(spool, bootstrap=settings.broker, clicks_topic=topics.clicks,
                           positions_topic=topics.spool_progress, app_id=settings.app_id)
click_service = ClickService(signer, spool, dedupe_ms=settings.click_dedupe_ms,
                             tracking_ttl_ms=settings.click_retention_ms)

sink_registry = SinkRegistry(catalog, settings.topic_prefix, topics.live)
dispatcher = SinkDispatcher(sink_registry, bootstrap=settings.broker, app_id=settings.app_id,
                            partitions=settings.partitions, replication=settings.replication,
                            deadletter_topic=topics.sinks_deadletter)

subscriptions = Subscriptions(bootstrap=settings.broker, topic=topics.live,
                              partitions=lambda: topology.partitions(topics.live),
                              limit=settings.max_subscribers)

monitor = Monitor(
    app, settings, registry=sink_registry, consumed_topics=lambda: sorted(engine.handlers),
    output_topics=[topics.attributions, topics.commissions, topics.settlements,
                   topics.deadletter, topics.sinks_deadletter],
    partitions=topology.partitions,
    sink_stats=lambda: {sink_id: {k: v for k, v in values.items()
                                  if k in ("sent", "retried", "dead_lettered", "rate_per_s")}
                        for sink_id, values in dispatcher.stats().items()},
    dead_letters=lambda: engine.dead_letter_reasons,
)

engine.gate(lambda: catalog.ready)
# Results are fanned out only to sinks whose queue topics exist; wait until they do.
engine.gate(lambda: dispatcher.synced.is_set())

ROCKSDB_OPTIONS = {
    "block_cache_size": settings.rocksdb_cache_mb * 1024 * 1024,
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
}


@app.task
async def start_services() -> None:
    """Start the engine and the catalog once the app runs (after the first recovery)."""
    await app.add_runtime_dependency(catalog)
    await app.add_runtime_dependency(engine)
    await app.add_runtime_dependency(forwarder)
    await catalog.wait_ready()
    await app.add_runtime_dependency(dispatcher)
    await app.add_runtime_dependency(monitor)
