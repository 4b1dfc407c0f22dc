"""The limit: the same attribution as a bare aiokafka loop, for `cps bench` to measure against.

What a hand-written consumer would do with no framework at all: fetch
batches from every partition, decode with orjson (through the same
decoders), keep the click histories in one rocksdict database written with
a WriteBatch per batch, send one changelog record per key it changed (as a
table would) and the attributions, then commit the batch's offsets. One
process owns every partition, so orders need no re-keying hop; no
transactions. Whatever the engine does beyond this is its price.
(The command line: app/bench/contract.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rocksdict import Rdict, WriteBatch

from app.bench.contract import arguments, load_configuration
from app.bench.step import AttributionStep
from app.kafka.connection import PRODUCER_BATCH_BYTES
from app.kafka.topology import track_topics
from app.records.fields import InvalidEvent

BATCH = 5000


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    step = AttributionStep(load_configuration(args.config))
    clicks_topic, orders_topic = f"{args.prefix}clicks", f"{args.prefix}orders"
    changelog = f"{args.output}-changelog"
    db = Rdict(str(Path(args.state_dir) / "state"))
    consumer = AIOKafkaConsumer(
        clicks_topic, orders_topic, bootstrap_servers=args.bootstrap, group_id=args.group,
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=BATCH)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5,
                                max_batch_size=PRODUCER_BATCH_BYTES)
    await consumer.start()
    await producer.start()
    await track_topics(producer, (args.output, changelog))
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batches:
                continue
            now_ms = int(time.time() * 1000)
            histories: dict[bytes, list] = {}
            attributed: set[bytes] = set()
            batch = WriteBatch()
            sends = []
            for messages in batches.values():
                for message in messages:
                    try:
                        if message.topic == clicks_topic:
                            _click(step, db, histories, message.key, message.value, now_ms)
                        else:
                            decided = _order(step, db, histories, attributed, message.value,
                                             now_ms)
                            if decided is not None:
                                sends.append((args.output, *decided))
                    except InvalidEvent:
                        continue
            for key, history in histories.items():
                value = orjson.dumps(history)
                batch.put(key, value)
                sends.append((changelog, key, value))
            for key in attributed:
                batch.put(key, b"1")
                sends.append((changelog, key, b"1"))
            db.write(batch)
            futures = [await producer.send(topic, value, key=key) for topic, key, value in sends]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        db.close()


def _history(db: Rdict, histories: dict[bytes, list], key: bytes) -> list | None:
    history = histories.get(key)
    if history is None:
        raw = db.get(key)
        history = orjson.loads(raw) if raw is not None else None
    return history


def _click(step: AttributionStep, db: Rdict, histories: dict[bytes, list], key: bytes,
           value: bytes, now_ms: int) -> None:
    # Clicks are keyed by buyer (SPEC 3), so the key finds the history before decoding.
    _buyer, updated = step.add_click(_history(db, histories, key), value, now_ms)
    if updated is not None:
        histories[key] = updated


def _order(step: AttributionStep, db: Rdict, histories: dict[bytes, list],
           attributed: set[bytes], value: bytes, now_ms: int) -> tuple[bytes, bytes] | None:
    """(key, attribution) for an order's first event; None for the events after it."""
    order_id, buyer_id = step.order_keys(value)
    marker = f"attributed:{order_id}".encode()
    if marker in attributed or db.get(marker) is not None:
        return None
    order_id, record = step.attribute(_history(db, histories, buyer_id.encode()), value, now_ms)
    attributed.add(marker)
    return order_id.encode(), record


def main() -> None:
    args = arguments("The raw aiokafka loop of `cps bench` (the limit).")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.run_until_complete(run(args, stop))


if __name__ == "__main__":
    main()
