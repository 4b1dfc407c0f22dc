"""Direct delivery: fetched messages go straight to the engine, not through Faust's streams.

Limit worked around: Faust hands every fetched message to its conductor,
which wraps it in an event, queues it on each subscribed channel and wakes
the agent's stream, which yields it back to the agent: several tasks and
futures per message, about half of the worker's CPU in `cps bench` (see
BENCHMARKS.md). The engine's handlers are synchronous, so the consumer's
fetch loop (`Consumer._drain_messages`, replaced here) calls them itself.
Agents still declare the topics the engine reads, which is what makes Faust
subscribe to them; a topic without an engine handler, and every topic of an
app without an engine, keeps Faust's usual path. Offsets, the generation
check and flow control stay as Faust keeps them: `getmany` stops yielding
when a rebalance begins, and the engine drops what was fetched for an older
generation.

Between two fetched batches, when everything the consumer handed out has
been handled, the loop tells the engine's catch-up barriers how far the
consumer has read the partitions they wait on (fetch_state.py, catchup.py).

Upstream: a design limit of Faust's stream model, no upstream issue found.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING, Consumer, Fetcher

from app.engine.faust.attached import attach_state, attached
from app.engine.faust.fetch_state import consumed_positions, fetched_ends
from app.engine.faust.patching import Patch, PrivateAttribute

YIELD_EVERY = 200  # messages between two turns of the event loop (commits, HTTP)

_faust_drain = Consumer._drain_messages


def deliver_to(engine: Any) -> None:
    """Make the consumer of `engine.app` hand the engine's topics to `engine` directly."""
    attach_state(engine.app).engine = engine


def engine_of(app: Any) -> Any:
    """The engine whose handlers `app`'s consumer feeds (None for an app without one)."""
    state = attached(app)
    return state.engine if state is not None else None


async def _drain(self: Consumer, fetcher: Any) -> None:
    engine = engine_of(self.app)
    if engine is None:
        await _faust_drain(self, fetcher)
        return
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


PATCHES = (Patch(Consumer, "_drain_messages", _drain),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (Consumer, "_drain_messages"),
    (Consumer, "_stopped"),
    (Consumer, "_read_offset"),
    (Fetcher, "_stopped"),
)
