"""Fetched messages go straight to the engine instead of through Faust's streams.

Faust hands every fetched message to its conductor, which wraps it in an
event, queues it on each subscribed channel and wakes the agent's stream,
which yields it back to the agent: several tasks and futures per message,
about half of the worker's CPU in `cps bench` (see BENCHMARKS.md). The
engine's handlers are synchronous, so the consumer's fetch loop can call
them itself. Agents still declare the topics the engine reads, which is
what makes Faust subscribe to them; a topic without an engine handler keeps
Faust's usual path. Offsets, the generation check and flow control stay as
Faust keeps them: `getmany` stops yielding when a rebalance begins, and the
engine drops what was fetched for an older generation.

Between two fetched batches, when everything the consumer handed out has
been handled, the loop tells the engine's catch-up barriers how far the
consumer has read the partitions they wait on; and the barriers read the
end offsets the consumer's fetches reported (see catchup.py).
"""

from __future__ import annotations

import asyncio
import weakref
from functools import partial
from typing import Any

from aiokafka import TopicPartition
from faust.transport.consumer import CONSUMER_FETCHING, Consumer

YIELD_EVERY = 200  # messages between two turns of the event loop (commits, HTTP)


# Each app's engine; the consumer class is patched once for every app of the process.
_ENGINES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def deliver_to(engine: Any) -> None:
    """Make the consumer of `engine.app` hand the engine's topics to `engine` directly."""
    _ENGINES[engine.app] = engine
    if Consumer._drain_messages is not _drain:
        Consumer._drain_messages = _drain


async def _drain(self: Consumer, fetcher: Any) -> None:
    engine = _ENGINES[self.app]
    handled = engine.handlers
    barriers = engine.barriers
    barriers.read_fetched_ends = partial(fetched_ends, self)
    getmany = self.getmany
    callback = self.callback
    consumer_stopped = self._stopped.is_set
    fetcher_stopped = fetcher._stopped.is_set
    read_offset = self._read_offset
    since_yield = 0
    try:
        while not (consumer_stopped() or fetcher_stopped()):
            self.diag.set_flag(CONSUMER_FETCHING)
            await self.sleep(0)
            if self.should_stop:
                continue
            async for tp, message in getmany(timeout=1.0):
                offset = message.offset
                seen = read_offset[tp]
                if seen is not None and offset < seen:
                    continue  # fetched again after a seek: already handled
                if message.topic in handled:
                    if not engine.may_deliver:
                        await engine.relieve()
                    if engine.deliver(message):
                        await engine.relieve()
                    since_yield += 1
                    if since_yield >= YIELD_EVERY:
                        since_yield = 0
                        await asyncio.sleep(0)
                else:
                    await self.wait_first(callback(message), self.suspend_flow.wait())
                read_offset[tp] = offset
            if barriers.watching and self.flow_active:
                barriers.note_positions(consumed_positions(self, barriers.watched()))
            self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


def consumed_positions(consumer: Consumer, partitions: list[tuple[str, int]]
                       ) -> dict[tuple[str, int], int]:
    """aiokafka's position in each assigned partition: the offset after the last record it
    handed out, and after any transaction marker or aborted record it skipped there.

    Asked between two `getmany` calls, when it stands still and every record
    before it has been handled. aiokafka's public `position()` is a coroutine
    of the consumer thread's event loop that returns this same value; reading
    it here costs no hop to that thread (aiokafka is pinned below 0.15 for it).
    """
    assignment = _assignment(consumer)
    if assignment is None:
        return {}
    positions = {}
    for topic, partition in partitions:
        state = assignment.state_value(TopicPartition(topic, partition))
        if state is not None and state.has_valid_position:
            positions[(topic, partition)] = state.position
    return positions


def fetched_ends(consumer: Consumer, source: tuple[str, int], inputs: list[tuple[str, int]]
                 ) -> dict[tuple[str, int], int] | None:
    """The end offset (last stable offset) of each of `inputs` as the fetch response that
    brought the records of `source` being handled, or a later one, reported it; None when an
    input's last report is older (it was not in that fetch) or missing.

    aiokafka notes, per partition and response, the ends and then the
    response's time in ms; `source`'s time is that of its last response, the
    one that brought the records being handled or a later one. The time is
    read before the end, so an end is never older than its time.
    """
    assignment = _assignment(consumer)
    if assignment is None:
        return None
    source_state = assignment.state_value(TopicPartition(*source))
    since = source_state.timestamp if source_state is not None else None
    if since is None:
        return None
    ends = {}
    for topic, partition in inputs:
        state = assignment.state_value(TopicPartition(topic, partition))
        if state is None:
            return None
        fetched_at = state.timestamp
        end = state.lso
        if fetched_at is None or fetched_at < since or end is None:
            return None
        ends[(topic, partition)] = end
    return ends


def _assignment(consumer: Consumer) -> Any:
    subscription = consumer._thread._consumer._subscription.subscription
    return subscription.assignment if subscription is not None else None
