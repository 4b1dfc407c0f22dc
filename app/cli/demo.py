"""`cps demo`: a live-stream-like stream of clicks and orders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

import click
import orjson

from app.config.settings import Settings
from app.kafka.connection import KafkaConnection
from app.services.demo import DemoStream
from app.services.feeding import Feeder


@click.command("demo")
@click.option("--rate", default=200, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Events per second.")
@click.option("--events", default=0, type=click.IntRange(0), help="Start no new clicks or "
              "orders after this many events, finish the orders in flight, then stop "
              "(0: run until Ctrl-C).")
@click.option("--buyers", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--run", "run_id", default=None, metavar="TEXT",
              help="Put TEXT in every click and order id. The engine drops ids it has "
              "seen, so by default each run takes a fresh one (the time, base 36); "
              "`--run ''` repeats a seed's ids exactly.")
@click.pass_obj
def command(settings: Settings, rate: int, events: int, buyers: int, seed: int,
            run_id: str | None) -> None:
    """Feed configuration, then clicks and order lives (with refunds and some garbage).

    It follows the engine's plan actions too: some buyers granted a coupon order soon
    after, most of them using it, so the coupon plan shows uses and conversions."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(settings, rate=rate, events=events, buyers=buyers, seed=seed,
                             run_id=run_id))


def fresh_run_id() -> str:
    """The current second in base 36 and a dash: short, and new for every run."""
    digits, n = "", int(time.time())
    while n:
        n, rest = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
    return digits + "-"


async def run_demo(settings: Settings, *, rate: int, events: int, buyers: int, seed: int,
                   run_id: str | None = None,
                   report=lambda line: print(line, file=sys.stderr, flush=True)) -> None:
    stream = DemoStream(seed, buyers=buyers, run=fresh_run_id() if run_id is None else run_id)
    tick_s = 0.1
    # Grants are followed from before the plans are sent: none of theirs goes unseen.
    async with Feeder(settings) as feeder, Grants(settings, stream) as grants:
        now_ms = int(time.time() * 1000)
        for topic, key, value in (*stream.configuration(now_ms), *stream.members(),
                                  *stream.operators()):
            await feeder.send(topic, key, orjson.dumps(value))
        await feeder.flush()  # every profile in Kafka before a plan selects from them
        for topic, key, value in stream.plans(now_ms):
            await feeder.send(topic, key, orjson.dumps(value))
        await feeder.flush()
        report(f"demo: configuration, {buyers} member profiles, operators and 3 plans sent; "
               f"streaming about {rate} events/s ({buyers} buyers), Ctrl-C stops")
        await asyncio.sleep(1.0)  # let every worker see the configuration first
        sent, next_report, carry = 0, time.monotonic() + 5, 0.0
        while not events or sent < events:
            started = time.monotonic()
            carry += rate * tick_s
            batch = int(carry)
            carry -= batch
            if events:
                batch = min(batch, events - sent)
            for topic, key, value in stream.next_events(int(time.time() * 1000), batch):
                await feeder.send(topic, key, value)
            sent += batch
            if time.monotonic() >= next_report:
                counts = stream.counts
                report(f"demo: sent {sent} events ({counts['clicks']} clicks, "
                       f"{counts['orders']} orders started, {counts['coupon_orders']} of "
                       "them by buyers granted a coupon)")
                next_report += 5
            await asyncio.sleep(max(0.0, tick_s - (time.monotonic() - started)))
        await grants.stop()  # no new orders, those after a coupon neither
        if stream.in_flight:
            report(f"demo: finishing {stream.in_flight} steps of orders in flight")
        while stream.in_flight:
            for topic, key, value in stream.due_events(int(time.time() * 1000)):
                await feeder.send(topic, key, value)
                sent += 1
            await asyncio.sleep(tick_s)
        await feeder.flush()
        report(f"demo: done, {sent} events sent")


class Grants:
    """The plan actions the engine commits to cps.plan_actions from now on, each told to
    the demo stream as it comes (`DemoStream.granted`)."""

    def __init__(self, settings: Settings, stream: DemoStream) -> None:
        self.stream = stream
        # Without a group, every partition of the topic is this consumer's.
        self.consumer = KafkaConnection.from_settings(settings).consumer(
            settings.topic_prefix + "plan_actions", group_id=None,
            isolation_level="read_committed", enable_auto_commit=False)
        self._following: asyncio.Task | None = None

    async def __aenter__(self) -> Grants:
        """Read from the topic's end as it is now (the topic exists: `Feeder` made it)."""
        await self.consumer.start()
        # On topics `Feeder` has just created, aiokafka logs as errors the leader elections
        # it waits out while seeking; they are no failure here.
        fetcher_log = logging.getLogger("aiokafka.consumer.fetcher")
        level = fetcher_log.level
        fetcher_log.setLevel(logging.CRITICAL)
        try:
            await self.consumer.seek_to_end()
        except BaseException:
            await self.consumer.stop()
            raise
        finally:
            fetcher_log.setLevel(level)
        self._following = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=500)
            now_ms = int(time.time() * 1000)
            for messages in batches.values():
                for message in messages:
                    self.stream.granted(orjson.loads(message.value), now_ms)

    async def stop(self) -> None:
        """Stop following; again, it does nothing."""
        following, self._following = self._following, None
        if following is not None:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        await self.consumer.stop()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
