"""SPEC section 5, rule by rule and edge by edge."""

from __future__ import annotations

import pytest

from app.domain.attribution import Mode, Reason, Type, conclude, decide
from app.domain.clicks import to_row
from app.domain.model import DAY_MS, Channel, Click, OrderFacts, Shop

T = 1_700_000_000_000
WINDOW = 7 * DAY_MS

CHANNELS = {
    "ch": Channel("ch"),
    "wide": Channel("wide", site_wide=True),
    "selfok": Channel("selfok", self_purchase=True),
    "short": Channel("short", attribution_window_ms=DAY_MS),
    "wide-selfok": Channel("wide-selfok", site_wide=True, self_purchase=True),
}


def channel_of(channel_id: str) -> Channel:
    return CHANNELS.get(channel_id) or Channel.unconfigured(channel_id)


def shop(**overrides) -> Shop:
    values = {"shop_id": "s1", "cps_joined_ms": T - 30 * DAY_MS, "cps_exited_ms": None,
              "authorized_channels": frozenset({"douyin"})}
    values.update(overrides)
    return Shop(**values)


def click(click_id: str, ts_ms: int, *, shop_id: str = "s1", channel_id: str = "ch",
          promoter_id: str = "p1", buyer_id: str = "u1", **extra) -> Click:
    return Click(click_id=click_id, ts_ms=ts_ms, buyer_id=buyer_id, shop_id=shop_id,
                 channel_id=channel_id, promoter_id=promoter_id, **extra)


def order(**overrides) -> OrderFacts:
    values = {"order_id": "o1", "event": "created", "ts_ms": T, "buyer_id": "u1",
              "shop_id": "s1", "fanstype": None}
    values.update(overrides)
    return OrderFacts(**values)


def history(*clicks: Click) -> list:
    return sorted((to_row(c) for c in clicks), key=lambda row: (row[0], row[1]))


def run(clicks=(), *, the_shop=None, tracked=None, **order_fields):
    return decide(order(**order_fields), history(*clicks),
                  shop() if the_shop is None else the_shop, channel_of, tracked)


# -- shop CPS attribute ------------------------------------------------------

@pytest.mark.parametrize(("joined", "exited", "is_cps"), [
    (T - DAY_MS, None, True),
    (T, None, True),                                   # joined exactly at T
    (T + 1, None, False),                              # joins after the order
    (None, None, False),                               # never joined
    (T - 30 * DAY_MS, T - 15 * DAY_MS + 1, True),      # exited, still inside 15 days
    (T - 30 * DAY_MS, T - 15 * DAY_MS, False),         # day 15 after exit: gone
    (T - 30 * DAY_MS, T - 20 * DAY_MS, False),
    (T - 10 * DAY_MS, T - 20 * DAY_MS, True),          # exit before the re-join: past membership
    (T - 30 * DAY_MS, T + DAY_MS, True),               # exits in the future
])
def test_shop_cps_attribute_with_the_15_day_exit_rule(joined, exited, is_cps):
    decision = run([click("c1", T - 1000)],
                   the_shop=shop(cps_joined_ms=joined, cps_exited_ms=exited))
    if is_cps:
        assert (decision.type, decision.mode) == (Type.CPS, Mode.LAST_CLICK)
    else:
        assert (decision.type, decision.reason) == (Type.NONE, Reason.SHOP_NOT_CPS)


def test_unknown_shop_is_not_cps():
    decision = decide(order(), history(click("c1", T - 1)), None, channel_of)
    assert (decision.type, decision.reason) == (Type.NONE, Reason.SHOP_NOT_CPS)
    assert not decision.awaits_click


# -- last click and its window ------------------------------------------------

@pytest.mark.parametrize(("click_ts", "expected"), [
    (T, (Type.CPS, Mode.LAST_CLICK, None)),                    # click at T counts
    (T - WINDOW, (Type.CPS, Mode.LAST_CLICK, None)),           # window edge is inside
    (T - WINDOW - 1, (Type.NONE, None, Reason.WINDOW_EXPIRED)),
    (T + 1, (Type.NONE, None, Reason.NO_CLICK)),               # after T: does not count
])
def test_last_click_window_edges(click_ts, expected):
    decision = run([click("c1", click_ts)])
    assert (decision.type, decision.mode, decision.reason) == expected


def test_window_comes_from_the_clicks_channel():
    assert run([click("c1", T - 2 * DAY_MS, channel_id="short")]).reason == Reason.WINDOW_EXPIRED
    assert run([click("c1", T - DAY_MS, channel_id="short")]).type == Type.CPS


def test_unconfigured_channel_has_a_7_day_window():
    assert run([click("c1", T - WINDOW, channel_id="unknown")]).type == Type.CPS
    assert run([click("c1", T - WINDOW - 1, channel_id="unknown")]).reason == Reason.WINDOW_EXPIRED


def test_latest_click_by_time_then_by_click_id():
    decision = run([click("c-a", T - 10, promoter_id="pa"), click("c-c", T - 20, promoter_id="pc"),
                    click("c-b", T - 10, promoter_id="pb")])
    assert (decision.click.click_id, decision.click.promoter_id) == ("c-b", "pb")


def test_latest_click_is_by_event_time_not_arrival():
    # a newer click after T never counts, an older one behind it still does
    decision = run([click("late", T + 5), click("c1", T - 5)])
    assert decision.click.click_id == "c1"


def test_only_clicks_at_the_orders_shop_count_for_last_click():
    decision = run([click("c1", T - 5, shop_id="s2")])
    assert (decision.type, decision.reason) == (Type.NONE, Reason.NO_CLICK)


def test_cps_result_carries_the_click_fields():
    decision = run([click("c1", T - 5, promoter_id="p9", group_leader_id="g1", base_id="b1",
                          activity_id="a1", item_id="i1")])
    result = conclude(order(), decision, attributed_ms=T + 7, delayed=False)
    assert (result.click_id, result.channel_id, result.promoter_id, result.group_leader_id,
            result.base_id) == ("c1", "ch", "p9", "g1", "b1")
    assert (result.ts_ms, result.attributed_ms, result.delayed) == (T, T + 7, False)
    assert (result.click_ts_ms, result.activity_id, result.item_id) == (T - 5, "a1", "i1")


# -- tracking token ------------------------------------------------------------

def test_tracking_token_wins_over_a_later_last_click():
    tracked = click("tracked", T - 100, promoter_id="pt", buyer_id="anonymous")
    decision = run([click("c1", T - 5, promoter_id="p1")], tracked=tracked)
    assert (decision.mode, decision.click.click_id, decision.click.promoter_id) == (
        Mode.TRACKING, "tracked", "pt")


@pytest.mark.parametrize("tracked", [
    click("t", T - 100, shop_id="s2"),          # another shop's click
    click("t", T + 1),                          # after T
    click("t", T - WINDOW - 1),                 # outside its window
])
def test_tracking_token_that_does_not_fit_falls_back_to_last_click(tracked):
    decision = run([click("c1", T - 5)], tracked=tracked)
    assert (decision.mode, decision.click.click_id) == (Mode.LAST_CLICK, "c1")


def test_tracking_token_applies_without_any_click_of_the_buyer():
    decision = run([], tracked=click("t", T - 100, buyer_id="cookie-123"))
    assert (decision.type, decision.mode) == (Type.CPS, Mode.TRACKING)


# -- site-wide -------------------------------------------------------------------

def test_site_wide_click_at_another_shop():
    decision = run([click("c1", T - 5, shop_id="s2", channel_id="wide")])
    assert (decision.type, decision.mode, decision.channel_id) == (Type.CPS, Mode.SITE_WIDE, "wide")


def test_click_at_another_shop_without_site_wide_does_not_count():
    assert run([click("c1", T - 5, shop_id="s2", channel_id="ch")]).reason == Reason.NO_CLICK


def test_last_click_at_the_shop_beats_a_newer_site_wide_click():
    decision = run([click("c1", T - 50), click("c2", T - 5, shop_id="s2", channel_id="wide")])
    assert (decision.mode, decision.click.click_id) == (Mode.LAST_CLICK, "c1")


def test_expired_shop_click_falls_through_to_site_wide():
    decision = run([click("c1", T - WINDOW - 1), click("c2", T - 5, shop_id="s2",
                                                       channel_id="wide")])
    assert (decision.mode, decision.click.click_id) == (Mode.SITE_WIDE, "c2")


def test_latest_site_wide_click_skips_newer_clicks_of_other_channels():
    decision = run([click("c1", T - 50, shop_id="s2", channel_id="wide"),
                    click("c2", T - 5, shop_id="s3", channel_id="ch")])
    assert decision.click.click_id == "c1"


@pytest.mark.parametrize("clicks", [
    [click("c1", T - WINDOW - 1, shop_id="s2", channel_id="wide")],
    [click("c1", T - WINDOW - 1), click("c2", T - WINDOW - 1, shop_id="s2", channel_id="wide")],
])
def test_expired_site_wide_click_is_window_expired(clicks):
    assert run(clicks).reason == Reason.WINDOW_EXPIRED


# -- self-purchase --------------------------------------------------------------------

@pytest.mark.parametrize(("channel_id", "shop_id", "expected"), [
    ("ch", "s1", (Type.NONE, None, Reason.SELF_PURCHASE_NOT_ALLOWED)),
    ("selfok", "s1", (Type.CPS, Mode.SELF_PURCHASE, None)),
    ("wide", "s2", (Type.NONE, None, Reason.SELF_PURCHASE_NOT_ALLOWED)),
    ("wide-selfok", "s2", (Type.CPS, Mode.SELF_PURCHASE, None)),
])
def test_self_purchase(channel_id, shop_id, expected):
    decision = run([click("c1", T - 5, promoter_id="u1", channel_id=channel_id, shop_id=shop_id)])
    assert (decision.type, decision.mode, decision.reason) == expected


def test_self_purchase_does_not_search_older_clicks():
    decision = run([click("old", T - 50, promoter_id="p1"),
                    click("mine", T - 5, promoter_id="u1")])
    assert decision.reason == Reason.SELF_PURCHASE_NOT_ALLOWED


def test_self_purchase_through_a_tracking_token():
    decision = run([], tracked=click("t", T - 5, promoter_id="u1"))
    assert decision.reason == Reason.SELF_PURCHASE_NOT_ALLOWED


# -- self-operated and none ------------------------------------------------------------

def test_self_operated_through_an_authorized_fanstype():
    decision = run([], fanstype="douyin")
    assert (decision.type, decision.mode, decision.channel_id, decision.click) == (
        Type.SELF_OPERATED, Mode.FANSTYPE, "douyin", None)
    result = conclude(order(fanstype="douyin"), decision, attributed_ms=T, delayed=False)
    assert (result.click_id, result.promoter_id, result.reason) == (None, None, None)


def test_cps_comes_before_self_operated():
    assert run([click("c1", T - 5)], fanstype="douyin").type == Type.CPS


def test_self_operated_needs_no_cps_attribute():
    decision = run([], the_shop=shop(cps_joined_ms=None), fanstype="douyin")
    assert decision.type == Type.SELF_OPERATED
    assert not decision.awaits_click


@pytest.mark.parametrize(("clicks", "the_shop", "fanstype", "reason"), [
    ([], None, "kuaishou", Reason.CHANNEL_NOT_AUTHORIZED),
    ([click("c1", T - WINDOW - 1)], None, "kuaishou", Reason.CHANNEL_NOT_AUTHORIZED),
    ([], shop(cps_joined_ms=None), None, Reason.SHOP_NOT_CPS),
    ([], None, None, Reason.NO_CLICK),
    ([click("c1", T - WINDOW - 1)], None, None, Reason.WINDOW_EXPIRED),
    ([click("c1", T - 5, promoter_id="u1")], None, None, Reason.SELF_PURCHASE_NOT_ALLOWED),
])
def test_none_reasons(clicks, the_shop, fanstype, reason):
    decision = run(clicks, the_shop=the_shop, fanstype=fanstype)
    assert (decision.type, decision.mode, decision.reason) == (Type.NONE, None, reason)
    result = conclude(order(), decision, attributed_ms=T, delayed=True)
    assert (result.click_id, result.channel_id, result.promoter_id) == (None, None, None)


@pytest.mark.parametrize(("clicks", "fanstype", "waits"), [
    ([], None, True),                                          # no_click: a click may come
    ([click("c1", T - WINDOW - 1)], None, True),               # a newer click may come
    ([click("c1", T - 5, promoter_id="u1")], None, True),      # another promoter may come
    ([], "douyin", True),                                      # CPS still beats self-operated
    ([click("c1", T - 5)], None, False),                       # CPS decided
])
def test_which_decisions_a_late_click_could_change(clicks, fanstype, waits):
    assert run(clicks, fanstype=fanstype).awaits_click is waits
