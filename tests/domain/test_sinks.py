"""Sink rules: matching, the token bucket, backoff, Retry-After, the adaptive rate."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.model import Channel
from app.domain.sinks import (
    FLOOR_SHARE,
    RECOVERY_S,
    AdaptiveRate,
    DeliveryProgress,
    Sink,
    backoff_s,
    matches,
    retry_after_s,
    shown_url,
)


@pytest.mark.parametrize(("filters", "stream", "facts", "wanted"), [
    ({}, "commissions", {}, True),
    ({}, "gossip", {}, False),
    ({"channel_id": "k"}, "commissions", {"channel_id": "k", "shop_id": "s"}, True),
    ({"channel_id": "k"}, "commissions", {"channel_id": "d"}, False),
    ({"channel_id": "k", "type": "cps"}, "attributions", {"channel_id": "k", "type": "none"},
     False),
    ({"promoter_id": "p"}, "settlements", {}, False),
])
def test_matching(filters, stream, facts, wanted):
    assert matches(frozenset({"commissions", "attributions", "settlements"}), filters, stream,
                   facts) is wanted


def test_backoff_has_full_jitter_under_a_cap():
    rnd = random.Random(1)
    waits = [backoff_s(attempt, base_ms=100, max_ms=1000, rnd=rnd) for attempt in range(20)]
    assert all(0 <= w <= 1.0 for w in waits)
    assert max(waits[:2]) <= 0.2 and max(waits) > 0.5


def test_retry_after():
    assert retry_after_s("3", 0) == 3
    assert retry_after_s("Thu, 01 Jan 1970 00:00:10 GMT", 4) == 6
    assert retry_after_s("soon", 0) is None and retry_after_s(None, 0) is None


def test_a_retry_after_holds_every_send_exactly_as_asked_then_the_rate_goes_on():
    rate = AdaptiveRate(20.0)
    rate.pushed_back(100.0, 1.0)
    assert rate.held_for(100.0) == 1.0 and rate.held_for(101.0) == 0.0
    assert rate.reason(100.5) == "retry_after" and rate.reason(101.0) is None
    assert rate.rate(101.0) == 20.0
    rate.pushed_back(100.4, 2.0)  # a later answer asking longer extends the hold
    assert rate.held_for(100.4) == 2.0


def test_a_push_back_without_retry_after_halves_the_rate_once_per_hold():
    rate = AdaptiveRate(20.0)
    rate.pushed_back(100.0, None)
    assert rate.rate(100.0) == 10.0 and rate.reason(101.0) == "backoff"
    rate.pushed_back(100.4, None)  # a request already on its way: no second halving
    assert rate.rate(100.4) > 10.0 - 1e-9 and rate.held_for(100.4) == 1.0


def test_without_retry_after_the_hold_is_one_second():
    rate = AdaptiveRate(20.0)
    rate.pushed_back(0.0, None)
    assert rate.held_for(0.0) == 1.0


@given(st.lists(st.tuples(st.floats(0, 30), st.one_of(st.none(), st.floats(0, 3))),
                min_size=1, max_size=40))
def test_back_at_the_configured_rate_within_the_recovery_time_of_the_last_push_back(pushes):
    rate = AdaptiveRate(20.0)
    now = 0.0
    for gap, retry_after in pushes:
        now += gap
        rate.pushed_back(now, retry_after)
        assert 20.0 * FLOOR_SHARE <= rate.rate(now) <= 20.0
    assert rate.rate(now + RECOVERY_S) == 20.0
    assert RECOVERY_S <= 10.0
    assert rate.reason(max(now + RECOVERY_S, rate.hold_until)) is None


def test_the_rate_climbs_steadily_between_push_back_and_recovery():
    rate = AdaptiveRate(20.0)
    rate.pushed_back(0.0, None)
    seen = [rate.rate(t / 10) for t in range(0, int(RECOVERY_S * 10) + 1)]
    assert seen == sorted(seen) and seen[0] == 10.0 and seen[-1] == 20.0


def test_an_operators_new_rate_is_the_ceiling_at_once():
    rate = AdaptiveRate(20.0)
    rate.pushed_back(0.0, None)
    rate.configure(80.0)
    assert rate.rate(0.1) == 80.0 and rate.reason(1.0) is None  # the 1 s hold still held
    rate.configure(5.0)
    assert rate.rate(0.2) == 5.0


def test_the_committable_offset_is_the_oldest_undelivered_record():
    progress = DeliveryProgress()
    assert progress.committable() is None
    for offset in (10, 11, 12, 13):
        progress.fetched(offset)
    progress.delivered(12)
    progress.delivered(11)
    assert progress.committable() == 10 and progress.undelivered == 2
    progress.delivered(10)
    assert progress.committable() == 13
    progress.delivered(13)
    assert progress.committable() == 14 and progress.undelivered == 0


@given(st.permutations(range(20)))
def test_nothing_undelivered_is_ever_below_the_committable_offset(order_of_delivery):
    progress = DeliveryProgress()
    for offset in range(20):
        progress.fetched(offset)
    delivered = set()
    for offset in order_of_delivery:
        progress.delivered(offset)
        delivered.add(offset)
        assert set(range(progress.committable())) <= delivered
    assert progress.committable() == 20


@pytest.mark.parametrize(("url", "shown"), [
    ("http://hooks.example.com", "http://hooks.example.com:80"),
    ("https://Hooks.Example.com/in?access_token=tok", "https://hooks.example.com:443"),
    ("https://user:pass@hooks.example.com:8443/p/tok#frag", "https://hooks.example.com:8443"),
    ("http://user@127.0.0.1:9000/hook", "http://127.0.0.1:9000"),
    ("HTTP://h", "http://h:80"),
    ("http://[::1]:8080/a?b=c", "http://[::1]:8080"),
    ("https://u:p@[2001:db8::7]/x", "https://[2001:db8::7]:443"),
    ("http://u:p@h:99999/x", "http://h"),    # a port no client reaches: none shown
    ("http://u:secret@h:port/x", "http://h"),
    ("http://[::1/x?token=t", "(not a URL)"),
])
def test_a_url_is_shown_as_scheme_host_and_port_only(url, shown):
    assert shown_url(url) == shown


@given(user=st.text("abcdefghij0123456789-._~", min_size=1, max_size=12),
       password=st.text("abcdefghij0123456789-._~!$&'()*+,;=", min_size=1, max_size=12),
       path=st.text("abcdefghij0123456789-._~/", max_size=12),
       query=st.text("abcdefghij0123456789-._~=&", max_size=12),
       port=st.one_of(st.none(), st.integers(1, 65535)))
def test_user_password_path_and_query_are_never_shown(user, password, path, query, port):
    written_port = "" if port is None else f":{port}"
    url = f"https://{user}:{password}@hooks.example.com{written_port}/{path}?{query}"
    assert shown_url(url) == f"https://hooks.example.com:{443 if port is None else port}"


def test_a_sinks_and_a_channels_repr_hold_neither_url_nor_secret():
    # A repr reaches log lines and tracebacks.
    url = "https://u:pw-mark@hooks.example.com/path-mark?token=q-mark"
    shown = [repr(Sink("hook", "webhook", frozenset({"commissions"}), url=url,
                       secret="secret-mark")), repr(Channel("k", webhook_url=url))]
    assert not [text for text in shown if "mark" in text]
