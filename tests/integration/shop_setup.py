"""A shop in CPS for the HTTP tests: channel `ch` (a day's window) and a 10 % activity."""

from __future__ import annotations

import time

from app.domain.model import DAY_MS


def cps_shop(worker) -> None:
    """Shop `s1` in CPS since yesterday, channel `ch`, activity `a1` at 10 %; waits until
    the workers' catalogs have them."""
    now = int(time.time() * 1000)
    assert worker.admin("PUT", "/admin/shops/s1", {"cps_joined_ms": now - DAY_MS,
                                                   "authorized_channels": []})[0] == 200
    assert worker.admin("PUT", "/admin/channels/ch", {"attribution_window_ms": DAY_MS})[0] == 200
    assert worker.admin("PUT", "/admin/activities/a1", {
        "shop_id": "s1", "level": "shop_generic", "rate_bp": 1000, "start_ms": 0})[0] == 200
    time.sleep(1.5)
