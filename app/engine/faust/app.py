"""The Faust application of one engine, made from its settings and Kafka connection, and
the worker that runs it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faust

from app.config.settings import Settings
from app.kafka.connection import PRODUCER_BATCH_BYTES, KafkaConnection

logger = logging.getLogger(__name__)


def create_app(settings: Settings, connection: KafkaConnection) -> faust.App:
    return faust.App(
        settings.app_id,
        broker=connection.faust_urls(),
        broker_credentials=connection.faust_credentials(),
        store="rocksdb://",
        datadir=str(settings.data_dir / "state"),
        autodiscover=False,
        # The engine drives the per-partition transactions itself (app/engine);
        # this mode makes Faust read committed data only and fence the previous
        # owner of a partition before its tables recover.
        processing_guarantee="exactly_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        # `cps worker` creates every topic up front in one request (leader_topic below
        # included); Faust would ask for each table's changelog one by one, twice,
        # about half a second per table at every start.
        topic_allow_declare=False,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        # A killed worker's partitions move to the others after this long.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        producer_acks=-1,
        producer_linger=0.002,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_metrics_enabled=False,
    )


def leader_topic(settings: Settings) -> str:
    """The topic Faust's assignor elects a leader with (one partition; see app.services.monitor)."""
    return f"{settings.app_id}-__assignor-__leader"


class Worker(faust.Worker):
    """A Faust worker that logs `warnings` as soon as its log is set up, at the top of it:
    the log is what operators read."""

    def __init__(self, app: faust.App, *, warnings: Sequence[str] = (), **options: Any) -> None:
        super().__init__(app, **options)
        self.start_warnings = tuple(warnings)

    async def on_execute(self) -> None:
        await super().on_execute()
        for warning in self.start_warnings:
            logger.warning("%s", warning)
