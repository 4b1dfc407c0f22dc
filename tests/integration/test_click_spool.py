"""Clicks while Kafka is down: redirected at once, spooled, delivered once when it is back."""

from __future__ import annotations

import shutil
import time

from app.broker.local import LocalBroker
from app.config.settings import Settings


def test_clicks_during_a_broker_outage_are_delivered_once(make_worker, kafka, prefix):
    # A broker of its own: this test stops it.
    home = Settings.from_env().kafka_home
    broker = LocalBroker(home, 0, report=lambda _line: None,
                         run_dir=home / f"broker-test-{prefix.rstrip('.')}")
    bootstrap = broker.start().bootstrap  # a restart keeps the port and the data
    worker = make_worker(broker=bootstrap)
    try:
        worker.start()
        status, link = worker.admin("POST", "/admin/links", {
            "channel_id": "ch", "promoter_id": "p1", "shop_id": "s1", "item_id": "i1",
            "url": "https://shop.example.com/i1"})
        assert status == 201
        assert worker.request("GET", link["link"] + "?uid=before")[0] == 302

        broker.stop()
        started = time.monotonic()
        status, headers, _ = worker.request("GET", link["link"] + "?uid=during")
        assert status == 302 and "cps_t=" in headers["Location"]
        assert time.monotonic() - started < 2.0
        time.sleep(3)
        assert worker.process.poll() is None

        assert broker.start().bootstrap == bootstrap
        records = type(kafka)(bootstrap, prefix).read("clicks", timeout=120, settle=5.0,
                             until=lambda rs: {r["key"] for r in rs} >= {"before", "during"})
        assert sorted(r["key"] for r in records) == ["before", "during"], worker.tail()
        assert len({r["value"]["click_id"] for r in records}) == 2
    finally:
        worker.stop()
        broker.stop()
        shutil.rmtree(broker.run_dir, ignore_errors=True)
