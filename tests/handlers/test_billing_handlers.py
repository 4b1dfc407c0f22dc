"""Billing on one partition: ledgers, settlement timer, order status, all in memory.

The order center is the real one (its tables in memory) and the sinks the
real registry over a catalog without sinks, so every result also goes to
the live topic as it would in a worker.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tables.billing
import tables.order_center
from agents.billing import Billing, BillingTopics, due_key
from agents.order_center import OrderCenter
from app.domain.attribution import Attribution, Mode, Type
from app.domain.model import DAY_MS, Channel
from app.domain.pools import DEFAULT_POLICY, Policy
from app.domain.rates import Activity, Level
from app.domain.schedule import Schedule
from app.engine.memory import MemoryTables
from app.records.outputs import encode_attribution
from app.sinks.fanout import SinkRegistry
from tests.handlers.contexts import new_context

T = 1_699_999_200_000  # an hour boundary, so times fall before or after a firing on purpose
MINUTE, HOUR = 60_000, 3_600_000
COMPLETED = T + 30 * MINUTE
ORDERS_BY_ORDER, ATTRIBUTIONS = "orders-by-order", "attributions"
COMMISSIONS, SETTLEMENTS, LIVE = "commissions", "settlements", "live"
GENERIC = Activity("act-generic", "s1", Level.SHOP_GENERIC, 1000, start_ms=T - DAY_MS)
# The promoter is paid three days after the order ends, the platforms one day after.
KUAISHOU = Channel("kuaishou", settle_days=1, settle_days_by_participant={"promoter": 3})
ATTRIBUTION = encode_attribution(Attribution(
    order_id="o1", ts_ms=T + 1000, attributed_ms=T + 3000, buyer_id="u1", shop_id="s1",
    type=Type.CPS, mode=Mode.LAST_CLICK, reason=None, click_id="c1", channel_id="kuaishou",
    promoter_id="p1", group_leader_id=None, base_id=None, delayed=False))
# 10 % of 129.00: 10 % of the pool to Youzan, 5 % to the channel, the rest to the promoter.
FROZEN = {b"youzan": 129, b"kuaishou": 64, b"p1": 1097}
REFUND = {"refund_id": "r1", "item_id": "i1", "amount": 2900}
CANCELLED_REFUND = {"refund_id": "r2", "item_id": "i1", "amount": 1000}


class Catalog:
    """The configuration billing reads: its pricing, and the sinks (none configured)."""

    def __init__(self, channels: tuple[Channel, ...] = (KUAISHOU,)) -> None:
        self.channels = {channel.channel_id: channel for channel in channels}
        self.sinks: dict = {}
        self.records_read = 0

    def activities(self, shop_id: str) -> list[Activity]:
        return [GENERIC] if shop_id == GENERIC.shop_id else []

    def policy(self, channel_id: str | None) -> Policy:
        return DEFAULT_POLICY

    def channel(self, channel_id: str) -> Channel:
        return self.channels.get(channel_id) or Channel.unconfigured(channel_id)


class Books:
    """Billing and its order center on one partition, at a clock the test moves."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        catalog = catalog or Catalog()
        self.ctx = new_context(now_ms=T)
        self.tables = tables.billing.define(MemoryTables())
        self.sinks = SinkRegistry(catalog, "cps.", LIVE)
        self.billing = Billing(
            topics=BillingTopics(commissions=COMMISSIONS, settlements=SETTLEMENTS),
            tables=self.tables, pricing=catalog, sinks=self.sinks,
            order_center=OrderCenter(tables=tables.order_center.define(MemoryTables()),
                                     by_promoter_topic="orders-by-promoter"),
            schedule=Schedule("0 * * * *"))

    def order(self, value: bytes) -> None:
        self.ctx.deliver(self.billing.on_rekeyed_order, ORDERS_BY_ORDER,
                         orjson.loads(value)["order_id"].encode(), value)

    def attribution(self, value: bytes = ATTRIBUTION) -> None:
        self.ctx.deliver(self.billing.on_attribution, ATTRIBUTIONS,
                         orjson.loads(value)["order_id"].encode(), value)

    def timer_at(self, now_ms: int) -> None:
        self.ctx.now_ms = now_ms
        self.ctx.run(self.billing.settle_due_payees)

    def commissions(self, cause: str) -> Counter:
        """Commission deltas per participant, of one cause (paid, refund:<id>)."""
        deltas: Counter = Counter()
        for sent in self.ctx.sent_to(COMMISSIONS):
            commission = orjson.loads(sent.value)
            assert sent.key == commission["order_id"].encode()
            if commission["cause"] == cause:
                deltas[commission["participant"]] += commission["delta"]
        return deltas

    def settlements(self, state: str) -> dict[bytes, int]:
        """Amounts per settlements key (the account id), of one state."""
        amounts: Counter = Counter()
        for sent in self.ctx.sent_to(SETTLEMENTS):
            settlement = orjson.loads(sent.value)
            if settlement["state"] == state:
                amounts[sent.key] += settlement["amount"]
        return dict(amounts)

    def statuses(self, topic: str = LIVE) -> list[str]:
        return [record["event"]["status"] for sent in self.ctx.sent_to(topic)
                if (record := orjson.loads(sent.value))["stream"] == "order_status"]

    def due_keys(self) -> list[bytes]:
        return [key for key, _empty in self.tables.due_payees.scan(self.ctx.partition)]


@pytest.fixture
def paid_and_attributed(order_event) -> Books:
    books = Books()
    books.order(order_event("created", T + 1000))
    books.order(order_event("paid", T + 2000))
    books.attribution()
    return books


@pytest.fixture
def settled(paid_and_attributed, order_event) -> Books:
    books = paid_and_attributed
    books.order(order_event("completed", COMPLETED))
    books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)
    return books


@pytest.mark.parametrize("attribution_first", [False, True])
def test_a_paid_attributed_order_earns_commissions_frozen_per_account(order_event,
                                                                     attribution_first):
    books = Books()
    books.order(order_event("created", T + 1000))
    if attribution_first:
        books.attribution()
    books.order(order_event("paid", T + 2000))
    if not attribution_first:
        books.attribution()

    assert books.commissions("paid") == {"youzan_platform": 129, "channel_platform": 64,
                                         "promoter": 1097}
    assert books.settlements("frozen") == FROZEN
    assert books.due_keys() == []  # due only once the order ends
    assert books.ctx.dead_letters == []


def test_each_payee_due_is_indexed_by_its_due_time(paid_and_attributed, order_event):
    books = paid_and_attributed

    books.order(order_event("completed", COMPLETED))

    assert books.due_keys() == [
        due_key(COMPLETED + DAY_MS, "o1", "channel_platform"),
        due_key(COMPLETED + DAY_MS, "o1", "youzan_platform"),
        due_key(COMPLETED + 3 * DAY_MS, "o1", "promoter")]


def test_due_payees_are_settled_once_at_the_first_firing_after_their_due_time(
        paid_and_attributed, order_event):
    books = paid_and_attributed
    books.order(order_event("completed", COMPLETED))
    firing_before_due = T + DAY_MS

    books.timer_at(firing_before_due + MINUTE)
    books.timer_at(COMPLETED + DAY_MS + MINUTE)  # due by now, but this firing has run
    assert books.settlements("settled") == {}

    books.timer_at(firing_before_due + HOUR + MINUTE)
    assert books.settlements("settled") == {b"youzan": 129, b"kuaishou": 64}
    assert books.due_keys() == [due_key(COMPLETED + 3 * DAY_MS, "o1", "promoter")]
    assert "settled" not in books.statuses()  # the promoter is still to be paid

    published = len(books.ctx.sent)
    books.timer_at(firing_before_due + HOUR + 2 * MINUTE)
    books.timer_at(firing_before_due + 2 * HOUR + MINUTE)
    assert len(books.ctx.sent) == published

    books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)
    assert books.settlements("settled") == FROZEN
    assert books.due_keys() == []
    assert books.statuses().count("settled") == 1


def test_each_new_order_event_publishes_its_status_once(order_event):
    books = Books()

    for value in [order_event("created", T + 1000), order_event("paid", T + 2000),
                  order_event("paid", T + 2000), order_event("completed", COMPLETED),
                  order_event("created", T + 1000)]:
        books.order(value)

    assert books.statuses() == ["created", "paid", "completed"]
    assert {sent.key for sent in books.ctx.sent_to(LIVE)} == {b"o1"}


def test_a_refund_adjusts_commissions_and_frozen_money(paid_and_attributed, order_event):
    books = paid_and_attributed

    books.order(order_event("refunded", T + HOUR, refund=REFUND))

    # 10 % of the 100.00 left: 10.00 of it, 0.50 and 8.50.
    assert books.commissions("refund:r1") == {"youzan_platform": -29, "channel_platform": -14,
                                              "promoter": -247}
    assert books.settlements("adjusted") == {b"youzan": -29, b"kuaishou": -14, b"p1": -247}
    assert books.statuses()[-1] == "refunded"


def test_a_refund_after_settlement_claws_back(settled, order_event):
    books = settled

    books.order(order_event("refunded", COMPLETED + 5 * DAY_MS, refund=REFUND))

    assert books.settlements("clawback") == {b"youzan": -29, b"kuaishou": -14, b"p1": -247}
    assert books.due_keys() == []
    assert books.statuses().count("settled") == 1


def test_an_impossible_refund_is_dead_lettered_and_changes_nothing(paid_and_attributed,
                                                                   order_event):
    books = paid_and_attributed
    published = len(books.ctx.sent_to(COMMISSIONS)) + len(books.ctx.sent_to(SETTLEMENTS))

    books.order(order_event("refunded", T + HOUR,
                            refund={**REFUND, "item_id": "i9"}))

    assert books.ctx.dead_letters == ["refund.item_id: the order has no line 'i9'"]
    assert len(books.ctx.sent_to(COMMISSIONS)) + len(books.ctx.sent_to(SETTLEMENTS)) == published


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_event_delivered_again_later_publishes_nothing_more(order_event, data):
    life = [("order", order_event("created", T + 1000)), ("attribution", ATTRIBUTION),
            ("order", order_event("paid", T + 2000)),
            ("order", order_event("refund_started", T + HOUR, refund=REFUND)),
            ("order", order_event("refunded", T + HOUR + 1, refund=REFUND)),
            ("order", order_event("refund_started", T + 2 * HOUR, refund=CANCELLED_REFUND)),
            ("order", order_event("refund_cancelled", T + 3 * HOUR, refund=CANCELLED_REFUND)),
            ("order", order_event("completed", COMPLETED))]
    with_repeats = list(life)
    for _repeat in range(data.draw(st.integers(1, 2 * len(life)))):
        first = data.draw(st.integers(0, len(life) - 1))
        original = with_repeats.index(life[first])
        at = data.draw(st.integers(original + 1, len(with_repeats)))
        with_repeats.insert(at, life[first])
    once, again = Books(), Books()

    for books, deliveries in ((once, life), (again, with_repeats)):
        for kind, value in deliveries:
            getattr(books, kind)(value)
        books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)

    assert again.ctx.sent == once.ctx.sent
    assert once.settlements("settled") == {b"youzan": 100, b"kuaishou": 50, b"p1": 850}
    assert again.ctx.dead_letters == once.ctx.dead_letters == []


def test_a_channels_webhook_queue_gets_its_attributed_orders_status(order_event):
    hooked = Channel("kuaishou", settle_days=1, webhook_url="https://hooks.example/kuaishou")
    books = Books(Catalog(channels=(hooked,)))
    queue = books.sinks.topic("channel-kuaishou")
    books.sinks.ready_topics.add(queue)

    books.order(order_event("created", T + 1000))  # whose channel is not known yet
    books.attribution()
    books.order(order_event("paid", T + 2000))

    assert books.statuses(queue) == ["paid"]
    assert books.statuses() == ["created", "paid"]


def attribution_of(order_id: str) -> bytes:
    return orjson.dumps({**orjson.loads(ATTRIBUTION), "order_id": order_id})


STARTED, CANCELLED = ("refund_started", T + HOUR), ("refund_cancelled", T + 2 * HOUR)


@pytest.mark.parametrize("arrivals", [
    [STARTED, CANCELLED, STARTED],             # the start delivered again after the end
    [CANCELLED, STARTED],                      # the end before the start
    [CANCELLED, STARTED, CANCELLED, STARTED],  # both, twice, interleaved
], ids=["start-again", "end-first", "interleaved"])
def test_a_cancelled_refund_never_reopens(paid_and_attributed, order_event, arrivals):
    books = paid_and_attributed
    books.order(order_event("completed", COMPLETED))
    for kind, ts_ms in arrivals:
        books.order(order_event(kind, ts_ms, refund=REFUND))

    books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)

    # Nothing was refunded: everything frozen at payment settles.
    assert books.settlements("settled") == FROZEN
    assert books.due_keys() == []


def test_a_finished_refund_never_reopens(paid_and_attributed, order_event):
    books = paid_and_attributed
    books.order(order_event("completed", COMPLETED))
    for kind in ("refund_started", "refunded", "refund_started", "refunded"):
        books.order(order_event(kind, T + HOUR, refund=REFUND))

    books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)

    # 10 % of the 100.00 left after the refund of 29.00: 10.00, 0.50 and 8.50.
    assert books.settlements("settled") == {b"youzan": 100, b"kuaishou": 50, b"p1": 850}


def test_an_open_refund_holds_its_order_until_it_ends(paid_and_attributed, order_event):
    books = paid_and_attributed
    books.order(order_event("completed", COMPLETED))
    books.order(order_event("refund_started", T + HOUR, refund=REFUND))

    books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)
    assert books.settlements("settled") == {} and books.due_keys() == []

    books.order(order_event("refund_cancelled", COMPLETED + 4 * DAY_MS, refund=REFUND))
    books.timer_at(COMPLETED + 4 * DAY_MS + HOUR)
    assert books.settlements("settled") == FROZEN


def test_payees_due_later_settle_however_many_blocked_ones_are_due_before_them(order_event):
    books = Books()
    blocked = 700  # three payees each: more than one settlement run reads
    for n in range(blocked):
        order_id = f"blocked-{n:04d}"
        for kind, ts_ms in (("paid", T + 2000), ("completed", COMPLETED),
                            ("refund_started", COMPLETED + HOUR)):
            books.order(order_event(kind, ts_ms, order_id=order_id,
                                    refund={**REFUND, "refund_id": f"r-{n}"}))
        books.attribution(attribution_of(order_id))
    free = "free"
    books.order(order_event("paid", T + 2000, order_id=free))
    books.attribution(attribution_of(free))
    books.order(order_event("completed", COMPLETED + 3 * DAY_MS, order_id=free))

    books.timer_at(COMPLETED + 6 * DAY_MS + HOUR)  # every payee of every order is due

    settled = [orjson.loads(sent.value) for sent in books.ctx.sent_to(SETTLEMENTS)]
    settled = [s for s in settled if s["state"] == "settled"]
    assert {(s["order_id"], s["account_id"], s["amount"]) for s in settled} == {
        (free, "youzan", 129), (free, "kuaishou", 64), (free, "p1", 1097)}
    assert books.ctx.dead_letters == []


def test_an_index_row_of_a_blocked_payee_leaves_the_index_once_read(paid_and_attributed,
                                                                      order_event):
    """Rows written before blocked payees were kept out of the index are read once, not at
    every run, and the payee is indexed again when its refund ends."""
    books = paid_and_attributed
    books.order(order_event("completed", COMPLETED))
    books.order(order_event("refund_started", T + HOUR, refund=REFUND))
    stale = due_key(COMPLETED + DAY_MS, "o1", "youzan_platform")
    books.ctx.put(books.tables.due_payees, stale, b"")

    books.timer_at(COMPLETED + 3 * DAY_MS + HOUR)
    assert books.due_keys() == [] and books.settlements("settled") == {}

    books.order(order_event("refund_cancelled", T + 2 * HOUR, refund=REFUND))
    assert len(books.due_keys()) == 3
    books.timer_at(COMPLETED + 3 * DAY_MS + 2 * HOUR)
    assert books.settlements("settled") == FROZEN
