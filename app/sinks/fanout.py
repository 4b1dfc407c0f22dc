"""Fan-out: every published result also goes to the queue of every sink that wants it.

Each sink has its own queue topic (`<prefix>sink.<sink_id>`, keyed by order
id, so one order's events stay in order), written in the same transaction
as the result itself; a dead sink therefore builds a backlog in Kafka, not
in memory, and loses nothing. Channels with a `webhook_url` get an implicit
sink of their orders' status changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import mmh3
import orjson

from app.domain.model import Channel
from app.domain.sinks import Sink, matches
from app.engine.handler_context import HandlerContext

_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class SinkCatalog(Protocol):
    """What fan-out reads of the configuration catalog (app/services/catalog.py)."""

    sinks: dict[str, Sink]
    channels: dict[str, Channel]
    records_read: int


@dataclass(frozen=True, slots=True)
class QueuedSink:
    sink: Sink
    topic: str


class SinkRegistry:
    """The sinks of this engine (configured and implicit), and which queues exist."""

    def __init__(self, catalog: SinkCatalog, prefix: str, live_topic: str,
                 own_topic_streams: frozenset[str] = frozenset()) -> None:
        self.catalog = catalog
        self.prefix = prefix
        self.live_topic = live_topic
        # Streams live subscribers read from their own output topic: not copied to live.
        self.own_topic_streams = own_topic_streams
        self.ready_topics: set[str] = set()
        self._derived = _Derived(-1, [], {}, {})

    def topic(self, sink_id: str) -> str:
        return queue_topic(self.prefix, sink_id)

    @property
    def fan_out_topics(self) -> tuple[str, ...]:
        """Where `fan_out` sends: the live topic and every sink's queue (as a pattern)."""
        return self.live_topic, queue_topic(self.prefix, "*")

    def sinks(self) -> list[QueuedSink]:
        """Every sink, configured first, then one per channel with a webhook_url."""
        return self._current().sinks

    def wanting(self, stream: str, facts: Mapping[str, object]) -> list[QueuedSink]:
        return [queued for queued, filters in self._current().by_stream.get(stream, ())
                if queued.topic in self.ready_topics and queued.sink.enabled
                and matches(queued.sink.streams, filters, stream, facts)]

    def queue_of(self, sink_id: str) -> QueuedSink | None:
        """The sink `sink_id` once its queue exists (it delivers when enabled)."""
        queued = self._current().by_id.get(sink_id)
        return queued if queued is not None and queued.topic in self.ready_topics else None

    def sink(self, sink_id: str) -> Sink | None:
        """The sink `sink_id` as configured now (None: there is none)."""
        queued = self._current().by_id.get(sink_id)
        return None if queued is None else queued.sink

    def configured(self, sink_id: str) -> bool:
        return sink_id in self._current().by_id

    def _current(self) -> _Derived:
        # Asked for every published result: derived once per catalog change, not per event.
        version = self.catalog.records_read
        if self._derived.version != version:
            sinks = self._derive()
            by_stream: dict[str, list[tuple[QueuedSink, dict[str, str]]]] = {}
            for queued in sinks:
                for stream in queued.sink.streams:
                    by_stream.setdefault(stream, []).append((queued, dict(queued.sink.filters)))
            by_id: dict[str, QueuedSink] = {}
            for queued in sinks:
                by_id.setdefault(queued.sink.sink_id, queued)  # a configured one comes first
            self._derived = _Derived(version, sinks, by_stream, by_id)
        return self._derived

    def _derive(self) -> list[QueuedSink]:
        found = [QueuedSink(sink, self.topic(sink.sink_id))
                 for sink in self.catalog.sinks.values()]
        for channel in self.catalog.channels.values():
            if channel.webhook_url:
                sink_id = "channel-" + _topic_safe(channel.channel_id)
                found.append(QueuedSink(Sink(
                    sink_id=sink_id, kind="webhook", url=channel.webhook_url,
                    streams=frozenset({"order_status"}),
                    filters=(("channel_id", channel.channel_id),)), self.topic(sink_id)))
        return found


@dataclass(frozen=True, slots=True)
class _Derived:
    version: int
    sinks: list[QueuedSink]
    by_stream: dict[str, list[tuple[QueuedSink, dict[str, str]]]]
    by_id: dict[str, QueuedSink]


def queue_topic(prefix: str, sink_id: str) -> str:
    """The Kafka topic that queues a sink's deliveries."""
    return f"{prefix}sink.{sink_id}"


def sink_dead_letter(sink_id: str, key: bytes | None, record: Mapping[str, object],
                     error: str, *, attempts: int, first_attempt_ms: int, ts_ms: int) -> bytes:
    """A `cps.sinks.deadletter` record: a queued `record` the sink could not deliver, with
    what `cps sinks replay` and `cps plans retry` need to queue it again."""
    return orjson.dumps({
        "sink_id": sink_id, "event_id": record.get("event_id"), "stream": record.get("stream"),
        "key": key.decode() if key is not None else None, "record": record, "error": error,
        "attempts": attempts, "first_attempt_ms": first_attempt_ms, "ts_ms": ts_ms})


def queued_event(stream: str, event_id: str, event: object, ts_ms: int) -> dict[str, object]:
    """What a sink queue holds and a webhook receives: the event (a mapping or a dataclass,
    as orjson writes them) and how to recognise it."""
    return {"stream": stream, "event_id": event_id, "ts_ms": ts_ms, "event": event}


def queue_record(stream: str, event_id: str, event: object, ts_ms: int) -> bytes:
    """`queued_event`, encoded."""
    return orjson.dumps(queued_event(stream, event_id, event, ts_ms))


def fan_out(ctx: HandlerContext, registry: SinkRegistry, stream: str, key_id: str, event_id: str,
            event: object, facts: Mapping[str, object], *,
            to: str | None = None) -> bool:
    """Queue one published result for every sink that wants it and for live subscribers
    (unless they read its stream's own topic),
    keyed by `key_id` (an order id; a buyer id for plan streams), and for the sink `to`
    names (a plan's own sink) whatever it subscribes to. False when `to` is no sink here.

    Runs inside ctx's transaction, so a result reaches its queues exactly when it is
    published.
    """
    key = key_id.encode()
    if stream not in registry.own_topic_streams:
        ctx.send(registry.live_topic, key, orjson.dumps({
            "stream": stream, "event_id": event_id, "ts_ms": ctx.now_ms, "event": event,
            "facts": facts}))
    wanting = registry.wanting(stream, facts)
    named = None if to is None else registry.queue_of(to)
    if named is not None and named not in wanting:
        wanting.append(named)
    if wanting:
        record = queue_record(stream, event_id, event, ctx.now_ms)
        for queued in wanting:
            ctx.send(queued.topic, key, record)
    return to is None or named is not None


def _topic_safe(text: str) -> str:
    return text if _TOPIC_SAFE.match(text) else format(mmh3.hash128(text.encode(),
                                                                     signed=False), "032x")
