"""An order's money: commissions, refunds, settlement, and their invariants."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.ledger import (
    Attributed,
    Ledger,
    Source,
    Step,
    record_attribution,
    record_order_event,
    settle_due,
)
from app.domain.model import DAY_MS, Channel, OrderEvent, OrderLine, Refund
from app.domain.pools import DEFAULT_POLICY, Policy, Share
from app.domain.rates import Activity, Level

T = 1_700_000_000_000
SOURCE = Source("cps.orders", 0, 0, b"o1", b"{}")


class Pricing:
    def __init__(self, activities=(), policies=None, channels=None):
        self._activities = list(activities)
        self._policies = policies or {}
        self._channels = channels or {}

    def activities(self, shop_id):
        return [a for a in self._activities if a.shop_id == shop_id]

    def policy(self, channel_id):
        return self._policies.get(channel_id) or self._policies.get("default") or DEFAULT_POLICY

    def channel(self, channel_id):
        return self._channels.get(channel_id) or Channel.unconfigured(channel_id)


GENERIC = Activity("act-generic", "s1", Level.SHOP_GENERIC, 1000, start_ms=T - DAY_MS)
LEADER = Activity("act-leader", "s1", Level.GROUP_LEADER, 1500, start_ms=T - DAY_MS,
                  group_leader_id="g1", group_leader_rate_bp=300)
KUAISHOU = Channel("kuaishou", settle_days_by_participant={"promoter": 7},
                   self_operated_rate_bp={"beauty": 500, "*": 200})
PRICING = Pricing([GENERIC, LEADER], channels={"kuaishou": KUAISHOU})


def event(kind: str, ts: int, *, items=None, refund=None, **extra) -> OrderEvent:
    lines = tuple(OrderLine(item, cat, 1, amount) for item, cat, amount in (items or []))
    return OrderEvent(order_id="o1", event=kind, ts_ms=ts, buyer_id="u1", shop_id="s1",
                      items=lines, refund=Refund(*refund) if refund else None, **extra)


LINES = [("i1", "beauty", 12900), ("i2", "food", 999)]


def cps(channel="kuaishou", group_leader=None, promoter="p1") -> Attributed:
    return Attributed("cps", channel, promoter, group_leader, None, "u1")


def fold(steps, ledger=None, pricing=PRICING):
    """Apply a list of facts; return the final ledger and all published events."""
    ledger = ledger or Ledger("o1")
    commissions, settlements, rejected = [], [], []
    for fact in steps:
        if isinstance(fact, Attributed):
            step = record_attribution(ledger, fact, pricing)
        elif isinstance(fact, int):
            step = settle_due(ledger, fact)
        else:
            step = record_order_event(ledger, fact, pricing, SOURCE)
        assert isinstance(step, Step)
        ledger = step.ledger
        commissions += step.commissions
        settlements += step.settlements
        rejected += step.rejected
    return ledger, commissions, settlements, rejected


def totals(commissions) -> Counter:
    out: Counter = Counter()
    for c in commissions:
        out[(c.item_id, c.pool, c.participant)] += c.delta
    return +out


def per_account(settlements) -> Counter:
    out: Counter = Counter()
    for s in settlements:
        if s.state != "settled":
            out[s.account_id] += s.amount
    return out


def test_paid_cps_order_commissions_and_frozen_settlements():
    _, commissions, settlements, _ = fold([event("created", T, items=LINES), cps(),
                                           event("paid", T + 5, items=LINES)])
    assert totals(commissions) == {
        ("i1", "product", "youzan_platform"): 129, ("i1", "product", "channel_platform"): 64,
        ("i1", "product", "promoter"): 1097,
        ("i2", "product", "youzan_platform"): 9, ("i2", "product", "channel_platform"): 4,
        ("i2", "product", "promoter"): 86,
    }
    first = commissions[0]
    assert (first.order_id, first.rate_bp, first.activity_id, first.level, first.cause,
            first.ts_ms) == ("o1", 1000, "act-generic", "shop_generic", "paid", T + 5)
    assert all(c.delta == c.total for c in commissions)
    assert {(s.participant, s.account_id, s.state, s.amount) for s in settlements} == {
        ("youzan_platform", "youzan", "frozen", 138),
        ("channel_platform", "kuaishou", "frozen", 68), ("promoter", "p1", "frozen", 1183)}
    assert all(s.due_ms is None for s in settlements)  # not completed yet
    assert len({c.event_id for c in commissions}) == len(commissions)


def test_a_share_that_stays_zero_publishes_nothing():
    _, commissions, settlements, _ = fold([cps(), event("paid", T, items=LINES)])
    assert not any(c.participant == "fans" for c in commissions)
    assert not any(s.participant == "fans" for s in settlements)


def test_group_leader_pool():
    _, commissions, _, _ = fold([cps(group_leader="g1"), event("paid", T, items=[LINES[0]])])
    assert totals(commissions) == {
        ("i1", "product", "youzan_platform"): 193, ("i1", "product", "channel_platform"): 96,
        ("i1", "product", "promoter"): 1646,                       # 15 % group_leader level
        ("i1", "group_leader", "youzan_platform"): 38, ("i1", "group_leader", "group_leader"): 349,
    }
    leader = [c for c in commissions if c.pool == "group_leader"]
    assert {c.account_id for c in leader} == {"youzan", "g1"}
    assert all((c.rate_bp, c.activity_id, c.level) == (300, "act-leader", "group_leader")
               for c in leader)


def test_self_operated_single_channel_pool():
    attributed = Attributed("self_operated", "kuaishou", None, None, None, "u1")
    _, commissions, settlements, _ = fold([attributed, event("paid", T, items=LINES)])
    assert totals(commissions) == {("i1", "channel", "channel_platform"): 645,
                                   ("i2", "channel", "channel_platform"): 19}
    assert {c.account_id for c in commissions} == {"kuaishou"}
    assert [(s.participant, s.amount) for s in settlements] == [("channel_platform", 664)]


def test_none_attribution_has_no_commission():
    none = Attributed("none", None, None, None, None, "u1")
    _, commissions, settlements, _ = fold([none, event("paid", T, items=LINES), event(
        "completed", T + 1), T + 100 * DAY_MS])
    assert commissions == [] and settlements == []


def test_split_policy_of_the_attributed_channel():
    policy = Policy((Share("promoter", 9000), Share("youzan_platform", rest=True)),
                    DEFAULT_POLICY.group_leader)
    pricing = Pricing([GENERIC], policies={"kuaishou": policy})
    _, commissions, _, _ = fold([cps(), event("paid", T, items=[LINES[0]])], pricing=pricing)
    assert totals(commissions) == {("i1", "product", "promoter"): 1161,
                                   ("i1", "product", "youzan_platform"): 129}


def test_partial_refund_emits_negative_deltas_and_adjusted():
    _, commissions, settlements, _ = fold([
        cps(), event("paid", T, items=LINES),
        event("refunded", T + 10, refund=("r1", "i1", 5000))])
    refund = [c for c in commissions if c.cause == "refund:r1"]
    assert {(c.participant, c.delta, c.total) for c in refund} == {
        ("youzan_platform", -50, 79), ("channel_platform", -25, 39), ("promoter", -425, 672)}
    assert all(c.ts_ms == T + 10 for c in refund)
    assert {(s.state, s.participant, s.amount) for s in settlements if s.cause == "refund:r1"} == {
        ("adjusted", "youzan_platform", -50), ("adjusted", "channel_platform", -25),
        ("adjusted", "promoter", -425)}


def test_duplicates_change_nothing():
    facts = [event("created", T, items=LINES), cps(), event("paid", T, items=LINES),
             event("refunded", T + 10, refund=("r1", "i1", 100)), event("completed", T + 20)]
    ledger, _commissions, _settlements, _ = fold(facts)
    again, more_c, more_s, _ = fold(facts, ledger=ledger)
    assert (more_c, more_s) == ([], [])
    assert again == ledger


def test_refund_above_what_remains_is_rejected():
    _, commissions, _, rejected = fold([
        cps(), event("paid", T, items=LINES), event("refunded", T + 1, refund=("r1", "i2", 600)),
        event("refunded", T + 2, refund=("r2", "i2", 400)),
        event("refunded", T + 3, refund=("r3", "i9", 1))])
    assert [reason.split(":")[0] for _source, reason in rejected] == ["refund.amount",
                                                                      "refund.item_id"]
    assert "400 is more than the 399" in rejected[0][1]
    assert rejected[0][0] == SOURCE
    assert not any(c.cause in ("refund:r2", "refund:r3") for c in commissions)


def test_refund_before_payment_and_attribution_is_applied_in_order():
    in_order = fold([cps(), event("paid", T, items=LINES),
                     event("refunded", T + 10, refund=("r1", "i1", 5000))])
    out_of_order = fold([event("refunded", T + 10, refund=("r1", "i1", 5000)),
                         event("paid", T, items=LINES), cps()])
    assert [(c.event_id, c.delta) for c in in_order[1]] == [(c.event_id, c.delta)
                                                           for c in out_of_order[1]]
    assert [(s.event_id, s.amount) for s in in_order[2]] == [(s.event_id, s.amount)
                                                            for s in out_of_order[2]]


def test_settlement_due_times_per_participant_and_settling():
    ledger, _, _frozen, _ = fold([cps(), event("paid", T, items=LINES), event("completed", T + 1)])
    dues = {p.participant: p.due_ms for p in ledger.payees.values()}
    assert dues == {"promoter": T + 1 + 7 * DAY_MS, "youzan_platform": T + 1 + 15 * DAY_MS,
                    "channel_platform": T + 1 + 15 * DAY_MS}
    ledger, _, settled, _ = fold([T + 1 + 7 * DAY_MS - 1], ledger=ledger)
    assert settled == []
    ledger, _, settled, _ = fold([T + 1 + 7 * DAY_MS], ledger=ledger)
    assert [(s.participant, s.state, s.amount, s.ts_ms) for s in settled] == [
        ("promoter", "settled", 1183, T + 1 + 7 * DAY_MS)]
    ledger, _, settled, _ = fold([T + 1 + 15 * DAY_MS], ledger=ledger)
    assert {(s.participant, s.amount) for s in settled} == {("youzan_platform", 138),
                                                            ("channel_platform", 68)}
    assert fold([T + 100 * DAY_MS], ledger=ledger)[2] == []


def test_unconfigured_channel_settles_after_15_days():
    ledger, *_ = fold([cps(channel="elsewhere"), event("paid", T, items=LINES),
                       event("completed", T)])
    assert {p.due_ms for p in ledger.payees.values()} == {T + 15 * DAY_MS}


def test_open_refund_holds_settlement_until_it_ends():
    due = T + 15 * DAY_MS + 1
    ledger, *_ = fold([cps(), event("paid", T, items=LINES), event("completed", T + 1),
                       event("refund_started", T + 2, refund=("r1", "i1", 0))])
    assert fold([due], ledger=ledger)[2] == []
    ledger, _, settlements, _ = fold([event("refund_cancelled", T + 3, refund=("r1", "i1", 0)),
                                      due], ledger=ledger)
    assert {s.state for s in settlements} == {"settled"} and len(settlements) == 3


def test_refund_after_settlement_is_a_clawback():
    ledger, *_ = fold([cps(), event("paid", T, items=LINES), event("completed", T),
                       T + 20 * DAY_MS])
    _, _, settlements, _ = fold([event("refunded", T + 21 * DAY_MS,
                                       refund=("r1", "i1", 12900))], ledger=ledger)
    assert {(s.participant, s.state, s.amount) for s in settlements} == {
        ("youzan_platform", "clawback", -129), ("channel_platform", "clawback", -64),
        ("promoter", "clawback", -1097)}


def test_closed_before_payment_settles_nothing_and_after_full_refund_settles_zero():
    _, commissions, settlements, _ = fold([cps(), event("created", T, items=LINES),
                                           event("closed", T + 1), T + 30 * DAY_MS])
    assert commissions == [] and settlements == []
    ledger, _, _, _ = fold([cps(), event("paid", T, items=[LINES[1]]),
                            event("refunded", T + 1, refund=("r1", "i2", 999)),
                            event("closed", T + 2)])
    _, _, settled, _ = fold([T + 2 + 15 * DAY_MS], ledger=ledger)
    assert {(s.state, s.amount) for s in settled} == {("settled", 0)}
    assert len(settled) == 3


# -- properties ------------------------------------------------------------------------


amounts = st.integers(1, 100_000)
refund_plans = st.lists(st.tuples(st.sampled_from(["i1", "i2"]), st.integers(1, 50_000)),
                        max_size=6)


def _refund_events(plan, line_amounts):
    left = dict(line_amounts)
    out = []
    for index, (item, amount) in enumerate(plan):
        amount = min(amount, left[item])
        if amount <= 0:
            continue
        left[item] -= amount
        out.append(event("refunded", T + 10 + index, refund=(f"r{index}", item, amount)))
    return out


@settings(max_examples=200, deadline=None)
@given(amounts, amounts, refund_plans, st.randoms(use_true_random=False), st.booleans())
def test_refunds_in_any_order_and_split_equal_one_refund_of_the_sum(a1, a2, plan, rnd, leader):
    lines = [("i1", "beauty", a1), ("i2", "food", a2)]
    refunds = _refund_events(plan, {"i1": a1, "i2": a2})
    shuffled = refunds[:]
    rnd.shuffle(shuffled)
    base = [cps(group_leader="g1" if leader else None), event("paid", T, items=lines)]
    _, c1, s1, r1 = fold(base + refunds)
    _, c2, s2, r2 = fold(base + shuffled)
    summed: Counter = Counter()
    for refund in refunds:
        summed[refund.refund.item_id] += refund.refund.amount
    single = [event("refunded", T + 99, refund=(f"sum-{item}", item, amount))
              for item, amount in summed.items()]
    _, c3, s3, _ = fold(base + single)
    assert r1 == r2 == []
    assert totals(c1) == totals(c2) == totals(c3)
    assert per_account(s1) == per_account(s2) == per_account(s3)
    net = {item: amount - summed[item] for item, _category, amount in lines}
    assert totals(c1) == expected_totals(lines, net, "leader" if leader else "cps")


@settings(max_examples=200, deadline=None)
@given(amounts, amounts, refund_plans, st.integers(0, 12), st.booleans())
def test_replaying_any_prefix_changes_nothing(a1, a2, plan, cut, late_attribution):
    lines = [("i1", "beauty", a1), ("i2", "food", a2)]
    facts = [event("created", T, items=lines), cps(), event("paid", T, items=lines),
             *_refund_events(plan, {"i1": a1, "i2": a2}), event("completed", T + 50)]
    if late_attribution:
        facts.append(facts.pop(1))
    facts_and_tick = [*facts, T + 40 * DAY_MS]  # the settlement check runs after the events
    ledger, commissions, settlements, _ = fold(facts_and_tick)
    replayed, more_c, more_s, _ = fold(facts[:cut], ledger=ledger)
    assert (more_c, more_s) == ([], [])
    assert replayed.totals == ledger.totals
    # frozen + adjustments + clawbacks per account equal the commissions per account
    by_account: Counter = Counter()
    for commission in commissions:
        by_account[commission.account_id] += commission.delta
    assert +per_account(settlements) == +by_account


# -- any arrival of an order's events: the result of the ordered, de-duplicated one --------
#
# The expected amounts are worked out here from SPEC 6 and 7 by plain arithmetic, for the
# activities of PRICING: 10 % on every line (act-generic), 15 % and a 3 % group-leader pool
# when the click's group leader is g1 (act-leader), and Kuaishou's self-operated rates.

ACCOUNTS = {"promoter": "p1", "youzan_platform": "youzan", "channel_platform": "kuaishou",
            "group_leader": "g1", "fans": "u1"}
ATTRIBUTIONS = {"cps": cps(), "leader": cps(group_leader="g1"),
                "self_operated": Attributed("self_operated", "kuaishou", None, None, None, "u1"),
                "none": Attributed("none", None, None, None, None, "u1")}


def expected_totals(lines, net: dict[str, int], kind: str) -> Counter:
    """Each (line, pool, participant)'s amount on the lines' net amounts."""
    out: Counter = Counter()
    for item, category, _amount in lines:
        amount = net[item]
        if kind == "self_operated":
            out[(item, "channel", "channel_platform")] += amount * (
                500 if category == "beauty" else 200) // 10_000
            continue
        if kind == "none":
            continue
        pool = amount * (1500 if kind == "leader" else 1000) // 10_000
        youzan, channel = pool * 1000 // 10_000, pool * 500 // 10_000
        out[(item, "product", "youzan_platform")] += youzan
        out[(item, "product", "channel_platform")] += channel
        out[(item, "product", "promoter")] += pool - youzan - channel
        if kind == "leader":
            leader_pool = amount * 300 // 10_000
            leader_youzan = leader_pool * 1000 // 10_000
            out[(item, "group_leader", "youzan_platform")] += leader_youzan
            out[(item, "group_leader", "group_leader")] += leader_pool - leader_youzan
    return +out


def by_participant(amounts: Counter) -> Counter:
    out: Counter = Counter()
    for (_item, _pool, participant), amount in amounts.items():
        out[participant] += amount
    return out


REFUND_FATES = ("refunded", "cancelled", "open", "refunded_unannounced", "rejected")


@st.composite
def order_lives(draw):
    """An order's events in their true order, and what SPEC 6-7 make of them."""
    lines = [(f"i{n}", draw(st.sampled_from(["beauty", "food"])), draw(st.integers(1, 60_000)))
             for n in range(draw(st.integers(1, 3)))]
    kind = draw(st.sampled_from(sorted(ATTRIBUTIONS)))
    paid = draw(st.booleans()) or kind == "cps"
    left = {item: amount for item, _category, amount in lines}
    events, applied, still_open = [event("created", T, items=lines)], Counter(), False
    if paid:
        events.append(event("paid", T + 1, items=lines))
        for n in range(draw(st.integers(0, 4))):
            item, _category, amount = draw(st.sampled_from(lines))
            fate = draw(st.sampled_from(REFUND_FATES))
            refund_id, ts = f"r{n}", T + 100 + 10 * n
            if fate == "rejected":  # more than the line: refused whatever came before
                refund = (refund_id, item, amount + draw(st.integers(1, 100)))
            else:
                refund = (refund_id, item, draw(st.integers(0, left[item])))
            if fate != "refunded_unannounced":
                events.append(event("refund_started", ts, refund=refund))
            if fate in ("refunded", "refunded_unannounced", "rejected"):
                events.append(event("refunded", ts + 1, refund=refund))
            if fate == "cancelled":
                events.append(event("refund_cancelled", ts + 1, refund=refund))
            if fate in ("refunded", "refunded_unannounced") and refund[2] > 0:
                left[item] -= refund[2]
                applied[item] += refund[2]
            still_open |= fate in ("open", "rejected")
    ending = draw(st.sampled_from(["completed", "closed", None]))
    if ending is not None:
        events.append(event(ending, T + 1_000))
    return lines, kind, paid, events, applied, still_open, ending


def arrivals(draw, facts):
    """The facts in any order, any of them delivered again, anywhere later."""
    shuffled = draw(st.permutations(facts))
    for _again in range(draw(st.integers(0, len(facts)))):
        fact = draw(st.sampled_from(facts))
        at = draw(st.integers(0, len(shuffled)))
        shuffled = [*shuffled[:at], fact, *shuffled[at:]]
    return shuffled


def replayed_totals(commissions) -> Counter:
    """The totals, checking on the way that each event's `total` is the sum of the deltas
    of its (line, pool, participant) so far."""
    running: Counter = Counter()
    for commission in commissions:
        key = (commission.item_id, commission.pool, commission.participant)
        running[key] += commission.delta
        assert commission.total == running[key]
    return +running


def payee_sums(settlements) -> tuple[Counter, dict[tuple[str, str], int]]:
    """Frozen + adjusted + clawbacks per (participant, account), and what was settled."""
    moved: Counter = Counter()
    settled: dict[tuple[str, str], int] = {}
    for settlement in settlements:
        key = (settlement.participant, settlement.account_id)
        if settlement.state == "settled":
            assert key not in settled  # settled once
            settled[key] = settlement.amount
        else:
            moved[key] += settlement.amount
    return moved, settled


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_arrival_of_an_orders_events_gives_the_ordered_results(data):
    lines, kind, paid, events, applied, still_open, ending = data.draw(order_lives())
    facts = [*events[:1], ATTRIBUTIONS[kind], *events[1:]]
    far_future = T + 100 * DAY_MS
    ordered = fold([*facts, far_future])
    delivered = fold([*arrivals(data.draw, facts), far_future])

    net = {item: amount - applied[item] for item, _category, amount in lines}
    expected = expected_totals(lines, net, kind) if paid else Counter()
    for ledger, commissions, settlements, rejected in (ordered, delivered):
        assert replayed_totals(commissions) == expected
        assert +Counter(ledger.totals) == expected
        moved, settled = payee_sums(settlements)
        owed = by_participant(expected)
        assert +moved == +Counter({(participant, ACCOUNTS[participant]): amount
                                   for participant, amount in owed.items()})
        full = {item: amount for item, _category, amount in lines}
        ever_owed = by_participant(expected_totals(lines, full, kind)) if paid else Counter()
        settles = ending is not None and not still_open
        assert settled == ({(participant, ACCOUNTS[participant]): owed[participant]
                            for participant in +ever_owed} if settles else {})
        assert {source_reason.split(":")[0] for _source, source_reason in rejected} <= {
            "refund.amount"}
    # the same outputs, only in another order and with nothing published twice
    assert sorted(ordered[0].totals.items()) == sorted(delivered[0].totals.items())
    assert ordered[0].open_refunds == delivered[0].open_refunds
