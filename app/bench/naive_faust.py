"""The benchmark's naive Faust version: the attribution as a plain faust-streaming app.

Deliberately written the way the Faust documentation teaches, without this
project's engine: `async for` agents, two RocksDB-backed Tables, `group_by`
through a repartition topic, Faust's default settings (at-least-once,
default commit interval). The rules themselves come from `AttributionStep`,
so the benchmark measures how plain Faust moves events and state.
Runs until SIGTERM or SIGINT, then prints what it processed to stderr (the
command line: app/bench/contract.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import faust

from app.bench.contract import arguments, load_configuration
from app.bench.step import AttributionStep
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Role, TopicSpec
from app.kafka.topology import ensure_topics
from app.records.fields import InvalidEvent


def now_ms() -> int:
    return int(time.time() * 1000)


def repartition_topic(group: str) -> str:
    return f"{group}-orders-by-buyer-repartition"


def build(args: argparse.Namespace, counts: Counter) -> faust.App:
    step = AttributionStep(load_configuration(args.config))
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=args.state_dir,
        topic_partitions=args.partitions,
        web_enabled=False,
        autodiscover=False,
    )
    clicks = app.topic(f"{args.prefix}clicks", key_serializer="raw", value_serializer="raw")
    orders = app.topic(f"{args.prefix}orders", key_serializer="raw", value_serializer="raw")
    # group_by's own topic name (`<module>.attribute_orders-<input>-by-buyer-repartition`)
    # is the same for every app id, so runs with another group over the same inputs would
    # read each other's re-keyed orders; the app id in the name keeps it ours.
    orders_by_buyer = app.topic(
        repartition_topic(args.group), partitions=args.partitions,
        internal=True, key_serializer="raw", value_serializer="raw")
    output = app.topic(args.output, partitions=args.partitions,
                       key_serializer="raw", value_serializer="raw")
    # Values are JSON (the app's default serializer). Both tables are partitioned by buyer:
    # Faust writes a change to the partition of the event being processed, and every event
    # of an order is re-keyed to the same buyer.
    histories = app.Table("histories", partitions=args.partitions)
    attributed = app.Table("attributed", partitions=args.partitions)

    @app.task
    async def declare_output() -> None:
        # Faust creates only the topics it consumes; without this the broker would
        # auto-create the output with its default partition count on the first send.
        await output.maybe_declare()

    @app.agent(clicks)
    async def record_clicks(stream: faust.StreamT) -> None:
        async for key, value in stream.items():
            buyer = key.decode(errors="replace") if key else ""
            try:
                buyer_id, history = step.add_click(
                    histories.get(buyer) if buyer else None, value, now_ms())
            except InvalidEvent:
                counts["invalid"] += 1
                continue
            if buyer_id != buyer:
                # The history lives in the key's partition: a click keyed otherwise
                # would be read back by no order of its buyer.
                counts["invalid"] += 1
                continue
            counts["clicks"] += 1
            if history is not None:
                histories[buyer] = history

    def buyer_of(value: bytes) -> str:
        try:
            return step.order_keys(value)[1]
        except InvalidEvent:
            # Re-keyed under "" and counted where it is consumed: a key function that raises
            # makes Faust log a traceback per event, and a `filter` before `group_by` runs
            # after the repartition anyway (Faust moves it to the re-keyed stream).
            return ""

    @app.agent(orders)
    async def attribute_orders(stream: faust.StreamT) -> None:
        # Faust insists on a name for a key function even when given the topic.
        by_buyer = stream.group_by(buyer_of, name="by-buyer", topic=orders_by_buyer)
        async for value in by_buyer:
            try:
                order_id, buyer = step.order_keys(value)
            except InvalidEvent:
                counts["invalid"] += 1
                continue
            counts["orders"] += 1
            if attributed.get(order_id):
                continue  # only an order's first event attributes it
            try:
                _, attribution = step.attribute(histories.get(buyer), value, now_ms())
            except InvalidEvent:
                counts["invalid"] += 1
                continue
            attributed[order_id] = True
            await output.send(key=order_id.encode(), value=attribution)
            counts["attributions"] += 1

    return app


def create_internal_topics(app: faust.App, args: argparse.Namespace) -> None:
    """Create the tables' changelogs and the repartition topic before Faust starts.

    Faust creates them itself at start-up, moments before its consumer joins
    the group. When the join's metadata still shows a new topic without
    partitions, Faust keeps that count until the next metadata refresh (five
    minutes), and every table write meanwhile fails with PartitionsMismatch
    ("has 0 partitions"): about one run in three of `cps bench --quick`.
    """
    internal = [TopicSpec(table.changelog_topic.get_topic_name(), Role.CHANGELOG)
                for table in app.tables.values()]
    internal.append(TopicSpec(repartition_topic(args.group), Role.INTERNAL))
    asyncio.run(ensure_topics(KafkaConnection(args.bootstrap), internal,
                              partitions=args.partitions, replication=1))


def main() -> None:
    args = arguments("The CPS attribution as a plain Faust app.")
    counts: Counter = Counter()
    app = build(args, counts)
    create_internal_topics(app, args)
    try:
        # The Worker stops the app cleanly on SIGTERM/SIGINT, then raises SystemExit.
        faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    finally:
        print("naive_faust: " + " ".join(f"{name}={counts[name]}" for name in
                                          ("clicks", "orders", "attributions", "invalid")),
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
