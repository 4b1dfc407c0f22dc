"""An account's balance: settlement events move money between frozen, settled, clawed back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.balances import Balance, apply_settlement, is_new


@pytest.mark.parametrize(("state", "amount", "after"), [
    ("frozen", 500, Balance(1500, 200, -30)),
    ("adjusted", -100, Balance(900, 200, -30)),
    ("settled", 400, Balance(600, 600, -30)),
    ("clawback", -50, Balance(1000, 200, -80)),
])
def test_each_state_moves_money_where_it_says(state, amount, after):
    assert apply_settlement(Balance(1000, 200, -30), state, amount) == after


@pytest.mark.parametrize(("seq", "last_applied", "new"), [
    (1, None, True), (2, 1, True), (1, 1, False), (1, 2, False), (5, 3, True),
])
def test_only_a_later_seq_is_new(seq, last_applied, new):
    assert is_new(seq, last_applied) is new


events = st.lists(st.tuples(st.sampled_from(["frozen", "adjusted", "settled", "clawback"]),
                            st.integers(-10**9, 10**9)), max_size=30)


@given(events)
def test_commissions_are_what_was_frozen_adjusted_and_clawed_back(history):
    balance = Balance()
    for state, amount in history:
        before = balance
        balance = apply_settlement(balance, state, amount)
        if state == "settled":
            assert balance == Balance(before.frozen - amount, before.settled + amount,
                                      before.clawed_back)
            assert balance.commissions == before.commissions
    assert balance.commissions == sum(amount for state, amount in history if state != "settled")
