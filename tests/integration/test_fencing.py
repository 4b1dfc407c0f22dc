"""A worker fenced while it still owns its partitions ends, and restarted loses nothing.

Another producer taking a slot's transactional id (docs/exactly-once.md,
"Known limits") makes the worker's next commit fail for good. Faust's crash
alone would leave the process running with its partitions and no progress;
the worker must exit with status 75 so its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from conftest import slot_ids, take_over

from app.cli.worker import EXIT_RESTART


def attributed(records: list[dict]) -> Counter:
    return Counter(r["value"]["order_id"] for r in records if r["value"])


def test_a_fenced_worker_exits_to_be_restarted_and_loses_nothing(kafka, make_worker, events):
    click, order = events.click, events.order
    worker = make_worker().start()
    now = int(time.time() * 1000)
    kafka.produce("clicks", [(b, click(f"c-{b}", b, now - 60_000)) for b in ("b1", "b2")])
    kafka.produce("orders", [("o1", order("o1", "b1", now))])
    kafka.read("attributions", until=lambda records: "o1" in attributed(records))

    asyncio.run(take_over(kafka.connection, slot_ids(worker.logs[-1].read_text(errors="replace"))))
    kafka.produce("orders", [("o2", order("o2", "b2", now))])
    started = time.monotonic()
    status = worker.process.wait(timeout=90)
    assert status == EXIT_RESTART, worker.tail()
    assert "stopping to restart from committed state" in worker.tail(200)
    print(f"exited {time.monotonic() - started:.1f} s after the fencing order was written")

    worker.start()
    records = kafka.read("attributions", until=lambda records: "o2" in attributed(records),
                         settle=3.0)
    assert attributed(records) == {"o1": 1, "o2": 1}
