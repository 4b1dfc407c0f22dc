"""Building one engine from its settings: every part made here, nothing at import.

`build(settings)` makes the Faust app, the engine and the worker's services,
defines the tables (tables/), registers the pipelines (agents/) and the web
views (app/web/), and returns them all as `Services`. `cps worker` runs the
result; a test may build two engines in one process.

Nothing below imports this module: each `register` (and `create`) names the
parts it takes as keyword parameters, and `build` hands them over by name
from `Services` (app/config/wiring.py); only the links between pipelines
(one's handlers called by another) are given here by hand.

Adding a pipeline: its handlers in `agents/<name>.py` with a `register(*,
engine, topics, ...)` that calls `engine.pipeline(...)` with the topics it
sends to and its tables; its tables in `tables/<name>.py` with a
`define(engine)`, kept as a field of `Services`; both called from `build`
below; topics in `app/kafka/topics.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import faust

import tables.allocation
import tables.attribution
import tables.balances
import tables.billing
import tables.operations
import tables.order_center
from agents import (
    allocation,
    attribution,
    balances,
    billing,
    configuration,
    order_center,
    orders,
    plans,
)
from app.config.settings import Settings
from app.config.wiring import Injector
from app.domain.tokens import Signer
from app.engine.faust import adapter, delivery, table_access
from app.engine.faust.app import create_app
from app.engine.processor import Engine
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Topics
from app.kafka.topology import Topology
from app.services.catalog import Catalog
from app.services.clicks import ClickService
from app.services.monitor import Monitor
from app.services.plan_progress import OperatorLoads, PlanProgress
from app.services.spool import ClickSpool, SpoolPublisher
from app.sinks.dispatcher import SinkDispatcher
from app.sinks.fanout import SinkRegistry
from app.sinks.plan_actions import PlanActionGate
from app.sinks.subscriptions import Subscriptions
from app.web import accounts as accounts_view
from app.web import admin as admin_api
from app.web import clicks as click_redirect
from app.web import demo as demo_page
from app.web import guard
from app.web import health as health_views
from app.web import metrics as metrics_view
from app.web import monitoring as monitoring_views
from app.web import operators as operator_views
from app.web import orders as order_center_views
from app.web import plans as plan_views
from app.web import sinks as sinks_view
from app.web import subscribe as subscribe_view

# The guard first: it sees every request before the view.
WEB_VIEWS = (guard, health_views, accounts_view, click_redirect, admin_api, order_center_views,
             demo_page, metrics_view, sinks_view, subscribe_view, monitoring_views, plan_views,
             operator_views)


@dataclass(frozen=True, slots=True)
class Services:
    """The long-lived parts of one engine; pipelines and web views name those they take."""

    settings: Settings
    connection: KafkaConnection
    topics: Topics
    app: faust.App
    topology: Topology
    engine: Engine
    catalog: Catalog
    signer: Signer
    spool: ClickSpool
    spool_publisher: SpoolPublisher
    click_service: ClickService
    sink_registry: SinkRegistry
    dispatcher: SinkDispatcher
    subscriptions: Subscriptions
    monitor: Monitor
    plan_progress: PlanProgress
    operator_loads: OperatorLoads
    # The tables, by pipeline.
    attribution_tables: tables.attribution.AttributionTables
    billing_tables: tables.billing.BillingTables
    balance_tables: tables.balances.BalanceTables
    order_center_tables: tables.order_center.OrderCenterTables
    operation_tables: tables.operations.OperationTables
    allocation_tables: tables.allocation.AllocationTables


def build(settings: Settings) -> Services:
    """The whole engine of one worker, ready for `faust.Worker`."""
    services = _services(settings)
    wire = Injector({field.name: getattr(services, field.name) for field in fields(services)})
    operations = wire(plans.create)
    # Attribution first: its first topic (cps.clicks) anchors the engine's partitions.
    attributor = wire(attribution.register, observers=[operations])
    center = wire(order_center.register)
    biller = wire(billing.register, order_center=center)
    wire(orders.register, attribute=attributor.on_order_event, book=biller.book)
    wire(balances.register)
    wire(configuration.register)
    wire(plans.register, operations=operations)
    wire(allocation.register, allocator=wire(allocation.create))
    for view in WEB_VIEWS:
        wire(view.register)
    _start_services_with_the_app(services)
    return services


def _services(settings: Settings) -> Services:
    connection = KafkaConnection.from_settings(settings)
    topics = Topics(settings.topic_prefix)
    app = create_app(settings, connection)
    adapter.install()
    adapted = adapter.attach(app, fetch_max_wait_ms=settings.fetch_max_wait_ms,
                             rocksdb_memory_bytes=settings.rocksdb_memory_mb * 1024 * 1024)
    topology = Topology(settings.partitions)
    engine = Engine(
        app, connection=connection, topology=topology, partitions=settings.partitions,
        deadletter_topic=topics.deadletter, commit_linger_ms=settings.commit_linger_ms,
        commit_max_events=settings.commit_max_events,
        commit_max_records=settings.commit_max_records,
        rocksdb_options={"write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2,
                         **adapted.rocksdb_memory.table_options()})
    delivery.deliver_to(engine)
    attribution_tables = tables.attribution.define(engine)
    billing_tables = tables.billing.define(engine)
    balance_tables = tables.balances.define(engine)
    order_center_tables = tables.order_center.define(engine)
    operation_tables = tables.operations.define(engine)
    allocation_tables = tables.allocation.define(engine)
    catalog = Catalog(connection, topics=topics)
    signer = Signer(settings.link_secret, previous=settings.link_secrets_previous)
    spool = ClickSpool(settings.data_dir / "spool")
    spool_publisher = SpoolPublisher(spool, connection, clicks_topic=topics.clicks,
                               positions_topic=topics.spool_progress, app_id=settings.app_id)
    click_service = ClickService(signer, spool, dedupe_ms=settings.click_dedupe_ms,
                                 tracking_ttl_ms=settings.click_retention_ms)
    # Plan actions are written once each to their own topic (in the engine's transaction),
    # so live subscribers read them there instead of from a copy on the live topic.
    own_topics = {"plan_actions": topics.plan_actions}
    sink_registry = SinkRegistry(catalog, settings.topic_prefix, topics.live,
                                 frozenset(own_topics))
    dispatcher = SinkDispatcher(sink_registry, connection, app_id=settings.app_id,
                                partitions=settings.partitions,
                                replication=settings.replication,
                                deadletter_topic=topics.sinks_deadletter,
                                plan_actions=PlanActionGate(catalog, topics.operation_records))
    subscriptions = Subscriptions(connection, topic=topics.live,
                                  partitions=topology.partitions,
                                  limit=settings.max_subscribers, own_topics=own_topics)
    monitor = Monitor(
        app, settings, connection, registry=sink_registry,
        consumed_topics=lambda: sorted(engine.handlers),
        output_topics=[topics.attributions, topics.commissions, topics.settlements,
                       topics.deadletter, topics.sinks_deadletter, topics.plan_actions,
                       topics.operation_records],
        partitions=topology.partitions,
        sink_stats=lambda: {sink_id: {k: v for k, v in values.items()
                                      if k in ("sent", "retried", "dead_lettered", "rate_per_s")}
                            for sink_id, values in dispatcher.stats().items()},
        dead_letters=lambda: engine.dead_letter_reasons,
    )
    engine.gate(lambda: catalog.ready)
    # Results are fanned out only to sinks whose queue topics exist; wait until they do.
    engine.gate(lambda: dispatcher.synced.is_set())
    return Services(settings=settings, connection=connection, topics=topics, app=app,
                    topology=topology, engine=engine, catalog=catalog, signer=signer,
                    spool=spool, spool_publisher=spool_publisher, click_service=click_service,
                    sink_registry=sink_registry, dispatcher=dispatcher,
                    subscriptions=subscriptions, monitor=monitor,
                    plan_progress=PlanProgress(
                        connection, lambda: operation_tables.plan_progress.changelog_topic),
                    operator_loads=OperatorLoads(
                        connection, lambda: allocation_tables.operator_loads.changelog_topic),
                    attribution_tables=attribution_tables, billing_tables=billing_tables,
                    balance_tables=balance_tables, order_center_tables=order_center_tables,
                    operation_tables=operation_tables, allocation_tables=allocation_tables)


def _start_services_with_the_app(services: Services) -> None:
    app = services.app

    async def start_services() -> Any:
        """Start the engine and the catalog once the app runs (after the first recovery)."""
        await table_access.route_tables(app, [table.changelog_topic
                                              for table in services.engine.tables])
        await app.add_runtime_dependency(services.catalog)
        await app.add_runtime_dependency(services.engine)
        await app.add_runtime_dependency(services.spool_publisher)
        await services.catalog.wait_ready()
        await app.add_runtime_dependency(services.dispatcher)
        await app.add_runtime_dependency(services.monitor)
        await app.add_runtime_dependency(services.plan_progress)
        await app.add_runtime_dependency(services.operator_loads)

    app.task(start_services)
