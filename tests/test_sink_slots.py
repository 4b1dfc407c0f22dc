"""`Slots`: at most `limit` deliveries at once, first come first served, a changing limit,
cancelled waiters never losing a slot."""

from __future__ import annotations

import asyncio

from app.sinks.delivery import Slots


def test_never_more_than_the_limit_and_everyone_gets_a_turn():
    async def main() -> tuple[int, list[int]]:
        slots, limit = Slots(), [2]
        running, peak, order = 0, 0, []

        async def deliver(n: int) -> None:
            nonlocal running, peak
            async with slots.one(lambda: limit[0]):
                running += 1
                peak = max(peak, running)
                order.append(n)
                await asyncio.sleep(0.001)
                running -= 1

        await asyncio.gather(*(deliver(n) for n in range(50)))
        return peak, order

    peak, order = asyncio.run(main())
    assert peak == 2 and order == list(range(50))


def test_a_raised_limit_lets_more_in_at_once():
    async def main() -> int:
        slots, limit = Slots(), [1]
        running, peak = 0, 0
        release = asyncio.Event()

        async def deliver() -> None:
            nonlocal running, peak
            async with slots.one(lambda: limit[0]):
                running += 1
                peak = max(peak, running)
                await release.wait()
                running -= 1

        tasks = [asyncio.ensure_future(deliver()) for _ in range(5)]
        await asyncio.sleep(0.01)
        limit[0] = 4
        release.set()  # the one holder leaves; the freed slot wakes a chain of four
        await asyncio.sleep(0)
        release.clear()
        await asyncio.sleep(0.01)
        seen = peak
        release.set()
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(main()) == 4


def test_cancelled_waiters_do_not_keep_a_slot():
    async def main() -> bool:
        slots = Slots()
        hold = asyncio.Event()

        async def holder() -> None:
            async with slots.one(lambda: 1):
                await hold.wait()

        first = asyncio.ensure_future(holder())
        await asyncio.sleep(0)
        waiters = [asyncio.ensure_future(holder()) for _ in range(3)]
        await asyncio.sleep(0)
        for waiter in waiters[:2]:
            waiter.cancel()
        hold.set()
        await asyncio.wait_for(asyncio.gather(first, waiters[2]), 1)
        return slots.held == 0

    assert asyncio.run(main())
