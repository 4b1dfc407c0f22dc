"""Incremental fetch sessions: what each fetch names, and how answers move the session."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.engine.fetch_session import (
    FETCH_SESSION_ID_NOT_FOUND,
    INITIAL_EPOCH,
    MAX_EPOCH,
    NO_SESSION,
    FetchSession,
)

INVALID_FETCH_SESSION_EPOCH = 71
MAX_BYTES = 1 << 20


def at(**offsets: int) -> dict[tuple[str, int], tuple[int, int]]:
    """{"a0": 5} -> {("a", 0): (5, MAX_BYTES)}"""
    return {(name[0], int(name[1:])): (offset, MAX_BYTES) for name, offset in offsets.items()}


def opened(session_id: int = 7, **offsets: int) -> FetchSession:
    session = FetchSession()
    session.fetch(at(**offsets))
    session.answered(0, session_id)
    return session


def test_the_first_fetch_names_everything_and_opens_a_session():
    session = FetchSession()
    fetch = session.fetch(at(a0=5, a1=9))
    assert (fetch.session_id, fetch.epoch, fetch.full) == (NO_SESSION, INITIAL_EPOCH, True)
    assert fetch.send == at(a0=5, a1=9) and fetch.forget == ()
    session.answered(0, 42)
    fetch = session.fetch(at(a0=5, a1=9))
    assert (fetch.session_id, fetch.epoch, fetch.full) == (42, 1, False)


def test_an_incremental_fetch_names_only_what_moved_and_forgets_what_is_not_fetched():
    session = opened(a0=5, a1=9, b0=0)
    fetch = session.fetch(at(a0=8, b0=0, b1=3))
    assert fetch.send == at(a0=8, b1=3)
    assert fetch.forget == (("a", 1),)
    assert fetch.covers == at(a0=8, b0=0, b1=3)


def test_nothing_moved_names_nothing_and_the_epoch_still_advances():
    session = opened(a0=5)
    for epoch in (1, 2, 3):
        fetch = session.fetch(at(a0=5))
        assert (fetch.epoch, dict(fetch.send), fetch.forget) == (epoch, {}, ())
        session.answered(0, 7)


def test_a_partition_forgotten_and_fetched_again_is_named_again():
    session = opened(a0=5, a1=9)
    session.fetch(at(a0=5))  # a1's records are not handed out yet
    session.answered(0, 7)
    assert session.fetch(at(a0=5, a1=12)).send == at(a1=12)


def test_a_new_max_bytes_is_a_change():
    session = opened(a0=5)
    assert session.fetch({("a", 0): (5, 10)}).send == {("a", 0): (5, 10)}


def test_a_lost_session_starts_over_without_its_id():
    session = opened(a0=5)
    session.fetch(at(a0=5))
    session.answered(FETCH_SESSION_ID_NOT_FOUND, 0)
    fetch = session.fetch(at(a0=6))
    assert (fetch.session_id, fetch.epoch, fetch.send) == (NO_SESSION, INITIAL_EPOCH, at(a0=6))


def test_any_other_error_or_a_fetch_without_answer_closes_the_session_with_a_full_fetch():
    for fail in (lambda s: s.answered(INVALID_FETCH_SESSION_EPOCH, 7), FetchSession.reset):
        session = opened(a0=5, a1=9)
        session.fetch(at(a0=6))
        fail(session)
        fetch = session.fetch(at(a0=6, a1=9))
        # Epoch 0 with the old id: the broker closes that session and opens a new one.
        assert (fetch.session_id, fetch.epoch, fetch.full) == (7, INITIAL_EPOCH, True)
        assert fetch.send == at(a0=6, a1=9) and fetch.forget == ()


def test_a_broker_without_a_free_session_slot_is_fetched_in_full():
    session = FetchSession()
    for _ in range(3):
        fetch = session.fetch(at(a0=5, a1=9))
        assert fetch.full and fetch.send == at(a0=5, a1=9)
        session.answered(0, NO_SESSION)


def test_the_epoch_after_the_largest_is_one():
    session = opened(a0=5)
    session._epoch = MAX_EPOCH
    session.fetch(at(a0=5))
    session.answered(0, 7)
    assert session.fetch(at(a0=5)).epoch == 1


wanted_maps = st.dictionaries(
    st.tuples(st.sampled_from("abc"), st.integers(0, 3)),
    st.tuples(st.integers(0, 4), st.just(MAX_BYTES)), max_size=12)
outcomes = st.sampled_from(["ok", "ok", "ok", "lost", "epoch", "no answer", "no slot"])


@given(st.lists(st.tuples(wanted_maps, outcomes), min_size=1, max_size=30))
def test_the_broker_always_holds_exactly_what_the_last_fetch_wanted(steps):
    """A model broker applies each fetch it answers; after every answered fetch its
    session holds exactly the partitions and positions the consumer wanted."""
    session = FetchSession()
    broker: dict[int, dict] = {}  # session id -> partitions
    next_id = 100
    for wanted, outcome in steps:
        fetch = session.fetch(wanted)
        if outcome == "no answer":
            session.reset()
            continue
        if fetch.full:
            broker.pop(fetch.session_id, None)
            if outcome == "no slot":
                session.answered(0, NO_SESSION)
                continue
            next_id += 1
            broker[next_id] = dict(fetch.send)
            session.answered(0, next_id)
            held = broker[next_id]
        else:
            if outcome == "lost" or fetch.session_id not in broker:
                broker.pop(fetch.session_id, None)
                session.answered(FETCH_SESSION_ID_NOT_FOUND, 0)
                continue
            if outcome == "epoch":
                session.answered(INVALID_FETCH_SESSION_EPOCH, fetch.session_id)
                continue
            held = broker[fetch.session_id]
            for partition in fetch.forget:
                del held[partition]
            held.update(fetch.send)
            session.answered(0, fetch.session_id)
        assert held == wanted
