"""A buyer's click history: ordered by event time, de-duplicated, pruned.

The history is a list of compact rows (see `ROW_FIELDS`) so that a table can
store it as one JSON array and the hot path never builds objects for clicks
it does not choose. Rows are sorted by (ts_ms, click_id), oldest first, so
"latest" (greatest ts_ms, then greatest click_id) is a scan from the end.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from app.domain.model import Click

# Row layout; the indexes below name the positions.
ROW_FIELDS = ("ts_ms", "click_id", "shop_id", "channel_id", "promoter_id", "item_id",
              "activity_id", "group_leader_id", "base_id")
TS, CLICK_ID, SHOP, CHANNEL, PROMOTER = 0, 1, 2, 3, 4

Row = list  # [ts_ms, click_id, shop_id, channel_id, promoter_id, item_id, activity_id, gl, base]


def to_row(click: Click) -> Row:
    return [click.ts_ms, click.click_id, click.shop_id, click.channel_id, click.promoter_id,
            click.item_id, click.activity_id, click.group_leader_id, click.base_id]


def from_row(buyer_id: str, row: Sequence) -> Click:
    return Click(click_id=row[CLICK_ID], ts_ms=row[TS], buyer_id=buyer_id, shop_id=row[SHOP],
                 channel_id=row[CHANNEL], promoter_id=row[PROMOTER], item_id=row[5],
                 activity_id=row[6], group_leader_id=row[7], base_id=row[8])


def _order_key(row: Sequence) -> tuple[int, str]:
    return row[TS], row[CLICK_ID]


def add_click(history: list[Row], row: Row, *, now_ms: int, retention_ms: int,
              cap: int) -> list[Row] | None:
    """The history with `row` added and pruned, or None when the click is a duplicate.

    A click seen before (same click_id) changes nothing. Pruning keeps at most
    `cap` rows and drops rows older than `retention_ms` before `now_ms` (event
    time against the wall clock), but always keeps the newest row, so a click
    re-sent after it was pruned is pruned again and still changes nothing.
    """
    click_id = row[CLICK_ID]
    if any(existing[CLICK_ID] == click_id for existing in history):
        return None
    updated = list(history)
    bisect.insort(updated, row, key=_order_key)
    return prune(updated, now_ms=now_ms, retention_ms=retention_ms, cap=cap)


def prune(history: list[Row], *, now_ms: int, retention_ms: int, cap: int) -> list[Row]:
    cutoff = now_ms - retention_ms
    start, size = 0, len(history)
    while size - start > 1 and (size - start > cap or history[start][TS] < cutoff):
        start += 1
    return history[start:] if start else history


def latest_at_shop(history: Sequence[Row], shop_id: str, t_ms: int) -> Row | None:
    """The buyer's latest click at `shop_id` with ts_ms <= t_ms."""
    for row in reversed(history):
        if row[TS] <= t_ms and row[SHOP] == shop_id:
            return row
    return None


def latest_site_wide(history: Sequence[Row], shop_id: str, t_ms: int,
                     is_site_wide: Callable[[str], bool]) -> Row | None:
    """The buyer's latest click at another shop whose channel is site-wide, ts_ms <= t_ms."""
    for row in reversed(history):
        if row[TS] <= t_ms and row[SHOP] != shop_id and is_site_wide(row[CHANNEL]):
            return row
    return None
