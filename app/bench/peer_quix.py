"""The peer: the same attribution written with Quix Streams, for `cps bench` to compare with.

This is what a Quix user would write for the job, using the library's own
building blocks and defaults rather than anything hand-tuned:

- clicks arrive keyed by buyer, so they go straight to the state;
- orders arrive keyed by order id, so `group_by` re-keys them by buyer
  through Quix's repartition topic;
- `concat` merges the clicks with the re-keyed orders into one dataframe,
  so a single `stateful=True` apply sees both in one state store (a stateful
  step on each branch would get a store of its own and never see the other);
- the state per buyer is the click history plus one "attributed" marker
  per order, so only an order's first event produces an attribution;
- undecodable events are skipped through `on_processing_error`;
- commits, changelog topics and the at-least-once guarantee are Quix's.

The rules themselves come from `AttributionStep`, as in every benchmarked
implementation, so the benchmark compares how events and state move.
(The command line: app/bench/contract.py.)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter

import orjson
from quixstreams import Application, State, message_context
from quixstreams.models import Row, TopicConfig

from app.bench.contract import arguments, load_configuration
from app.bench.step import AttributionStep
from app.records.fields import InvalidEvent

logger = logging.getLogger("app.bench.peer_quix")

HISTORY = "history"      # state key of the buyer's click history
ATTRIBUTED = "order:"    # state key prefix of an order's "attributed" marker


def build(args: argparse.Namespace, step: AttributionStep, counts: Counter) -> Application:
    def skip_invalid(exc: Exception, row: Row | None, _logger: logging.Logger) -> bool:
        # Suppressing the error makes Quix drop the message and carry on; anything
        # else is a real failure and stops the app, as Quix does by default.
        if isinstance(exc, InvalidEvent):
            counts["invalid"] += 1
            return True
        return False

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        on_processing_error=skip_invalid,
    )
    # Values stay raw bytes: AttributionStep decodes and validates them itself.
    # Keys stay bytes (Quix's default) on both sides of the merge, so a buyer's clicks
    # and re-keyed orders share one state prefix and one partition (murmur2 of the
    # same bytes, as the producers of the input topics use).
    clicks_topic = app.topic(f"{args.prefix}clicks", value_deserializer="bytes")
    orders_topic = app.topic(f"{args.prefix}orders", value_deserializer="bytes")
    output_topic = app.topic(
        args.output, key_serializer="bytes", value_serializer="bytes",
        config=TopicConfig(num_partitions=args.partitions, replication_factor=1))

    orders = app.dataframe(orders_topic).group_by(
        lambda value: step.order_keys(value)[1].encode(), name="buyer_id",
        key_serializer="bytes", key_deserializer="bytes",
        value_serializer="bytes", value_deserializer="bytes")

    def attribute(value: bytes, key: bytes, _timestamp: int, _headers: object,
                  state: State) -> bytes | None:
        now_ms = int(time.time() * 1000)
        if message_context().topic == clicks_topic.name:
            buyer_id, history = step.add_click(state.get(HISTORY), value, now_ms)
            if buyer_id.encode() != key:
                # The state here is the key's: keeping it would file the click under
                # another buyer, where that buyer's orders never look.
                counts["mis-keyed clicks"] += 1
                return None
            if history is not None:          # None: a duplicate click changes nothing
                state.set(HISTORY, history)
            counts["clicks"] += 1
            return None
        counts["order events"] += 1
        order_id, _buyer = step.order_keys(value)
        marker = ATTRIBUTED + order_id
        if state.exists(marker):
            return None
        order_id, attribution = step.attribute(state.get(HISTORY), value, now_ms)
        state.set(marker, True)
        counts["attributions"] += 1
        return attribution

    def order_id_of(attribution: bytes) -> bytes:
        # to_topic can only derive the new key from the value, so read it back from there.
        return orjson.loads(attribution)["order_id"].encode()

    sdf = app.dataframe(clicks_topic).concat(orders)
    sdf = sdf.apply(attribute, stateful=True, metadata=True)
    sdf = sdf.filter(lambda attribution: attribution is not None)
    sdf.to_topic(output_topic, key=order_id_of)
    return app


def main() -> None:
    args = arguments("The CPS attribution as a Quix Streams app.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    step = AttributionStep(load_configuration(args.config))
    counts: Counter = Counter()
    app = build(args, step, counts)
    app.run()  # returns after SIGTERM or SIGINT, once Quix has committed and closed
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    logger.info("peer_quix stopped: %s", summary or "no new events")


if __name__ == "__main__":
    main()
