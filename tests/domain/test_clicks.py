"""Click history: order, de-duplication, retention and cap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.clicks import (
    CLICK_ID,
    TS,
    add_click,
    from_row,
    latest_at_shop,
    latest_site_wide,
    to_row,
)
from app.domain.model import DAY_MS, Click

NOW = 1_700_000_000_000
RETENTION = 30 * DAY_MS


def row(click_id: str, ts_ms: int, shop_id: str = "s1", channel_id: str = "ch") -> list:
    return to_row(Click(click_id=click_id, ts_ms=ts_ms, buyer_id="u1", shop_id=shop_id,
                        channel_id=channel_id, promoter_id="p1"))


def build(rows, *, cap=100, now=NOW, retention=RETENTION):
    history: list = []
    for r in rows:
        updated = add_click(history, r, now_ms=now, retention_ms=retention, cap=cap)
        if updated is not None:
            history = updated
    return history


def test_rows_round_trip_to_clicks():
    click = Click(click_id="c", ts_ms=5, buyer_id="u", shop_id="s", channel_id="ch",
                  promoter_id="p", item_id="i", activity_id="a", group_leader_id="g", base_id="b")
    assert from_row("u", to_row(click)) == click


def test_history_is_sorted_by_time_then_click_id_whatever_the_arrival_order():
    history = build([row("b", NOW - 1), row("c", NOW - 9), row("a", NOW - 1)])
    assert [r[CLICK_ID] for r in history] == ["c", "a", "b"]


def test_duplicate_click_changes_nothing():
    history = build([row("a", NOW - 1)])
    assert add_click(history, row("a", NOW - 1), now_ms=NOW, retention_ms=RETENTION,
                     cap=100) is None
    assert add_click(history, row("a", NOW - 99), now_ms=NOW, retention_ms=RETENTION,
                     cap=100) is None


def test_cap_keeps_the_newest():
    history = build([row(f"c{i:03}", NOW - 1000 + i) for i in range(10)], cap=3)
    assert [r[CLICK_ID] for r in history] == ["c007", "c008", "c009"]


def test_retention_drops_old_clicks_but_keeps_the_newest():
    history = build([row("old", NOW - RETENTION - 10), row("older", NOW - RETENTION - 20)])
    assert [r[CLICK_ID] for r in history] == ["old"]
    history = build([row("old", NOW - RETENTION - 10), row("new", NOW - 5)])
    assert [r[CLICK_ID] for r in history] == ["new"]


def test_a_pruned_click_sent_again_is_pruned_again():
    history = build([row(f"c{i}", NOW - 100 + i) for i in range(5)], cap=3)
    assert add_click(history, row("c0", NOW - 100), now_ms=NOW, retention_ms=RETENTION,
                     cap=3) == history


def test_latest_queries_respect_t_and_shop():
    history = build([row("a", 10), row("b", 20, shop_id="s2", channel_id="wide"),
                     row("c", 30), row("d", 40, shop_id="s2", channel_id="ch")],
                    now=100, retention=1000)
    assert latest_at_shop(history, "s1", 35)[CLICK_ID] == "c"
    assert latest_at_shop(history, "s1", 29)[CLICK_ID] == "a"
    assert latest_at_shop(history, "s1", 9) is None
    assert latest_site_wide(history, "s1", 100, lambda ch: ch == "wide")[CLICK_ID] == "b"
    assert latest_site_wide(history, "s1", 19, lambda ch: ch == "wide") is None


clicks_strategy = st.lists(
    st.tuples(st.integers(0, 30), st.integers(NOW - 40 * DAY_MS, NOW + DAY_MS)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(clicks_strategy, st.integers(1, 12), st.randoms(use_true_random=False))
def test_history_depends_on_the_set_of_clicks_not_on_their_order(specs, cap, rnd):
    # One click id always carries the same time (a duplicate is the same click).
    by_id = {f"c{cid}": ts for cid, ts in specs}
    rows = [row(cid, by_id[cid]) for cid, _ in ((f"c{c}", t) for c, t in specs)]
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    expected = build(rows, cap=cap)
    assert build(shuffled, cap=cap) == expected
    # and it is exactly: newest `cap` clicks inside the retention, at least the newest one
    unique = sorted({(r[TS], r[CLICK_ID]) for r in rows})
    kept = [k for k in unique if k[0] >= NOW - RETENTION][-cap:] or unique[-1:]
    assert [(r[TS], r[CLICK_ID]) for r in expected] == kept
