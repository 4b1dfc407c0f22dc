"""Slots: fixed aligned blocks of partitions, committed together when owned wholly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.slots import aligned_assignment, commit_slots, fenced_slots, slots_holding


def test_the_slots_of_a_partition_double_up_to_all_partitions():
    assert slots_holding(5, 8) == [(5, 6), (4, 6), (4, 8), (0, 8)]
    assert slots_holding(0, 1) == [(0, 1)]
    # Not a power of two: the last blocks are cut at the end, and a block cut to the
    # same partitions as the one before is not repeated.
    assert slots_holding(4, 5) == [(4, 5), (0, 5)]
    assert slots_holding(5, 6) == [(5, 6), (4, 6), (0, 6)]


def test_a_partition_outside_the_range_is_refused():
    with pytest.raises(ValueError):
        slots_holding(8, 8)


def test_one_worker_commits_every_partition_in_one_slot_and_two_halves_in_two():
    assert set(commit_slots(range(8), 8).values()) == {(0, 8)}
    assert commit_slots({4, 5, 6, 7}, 8) == dict.fromkeys((4, 5, 6, 7), (4, 8))
    assert commit_slots({0, 2, 4, 6}, 8) == {p: (p, p + 1) for p in (0, 2, 4, 6)}
    assert commit_slots({0, 1, 3}, 8) == {0: (0, 2), 1: (0, 2), 3: (3, 4)}


partition_sets = st.integers(1, 40).flatmap(
    lambda partitions: st.tuples(st.just(partitions),
                                 st.sets(st.integers(0, partitions - 1))))


@given(partition_sets)
def test_each_owned_partition_commits_in_the_largest_wholly_owned_slot(case):
    partitions, owned = case
    chosen = commit_slots(owned, partitions)
    assert set(chosen) == owned
    for partition, slot in chosen.items():
        assert owned.issuperset(range(*slot)) and partition in range(*slot)
        size = slot[1] - slot[0]
        larger = [s for s in slots_holding(partition, partitions) if s[1] - s[0] > size]
        assert all(not owned.issuperset(range(*s)) for s in larger)
        assert all(chosen[p] == slot for p in range(*slot))  # a slot commits as one


@given(partition_sets, partition_sets)
def test_a_new_owner_fences_every_slot_an_earlier_owner_could_commit_its_partitions_in(
        before, after):
    partitions, earlier = before
    later = {p for p in after[1] if p < partitions}
    used_earlier = set(commit_slots(earlier, partitions).values())
    fenced = fenced_slots(later, partitions)
    for slot in used_earlier:
        if later & set(range(*slot)):
            assert slot in fenced


def test_shares_are_laid_out_as_contiguous_ranges_that_are_whole_slots():
    assert aligned_assignment({"a": 4, "b": 4}, {}, 8) == {"a": {0, 1, 2, 3}, "b": {4, 5, 6, 7}}
    assert aligned_assignment({"a": 2, "b": 2, "c": 2, "d": 2}, {}, 8) == {
        "a": {0, 1}, "b": {2, 3}, "c": {4, 5}, "d": {6, 7}}
    uneven = aligned_assignment({"a": 2, "b": 3, "c": 3}, {}, 8)
    assert uneven == {"b": {0, 1, 2}, "c": {3, 4, 5}, "a": {6, 7}}


def test_a_range_goes_to_the_client_that_owns_most_of_it():
    # A second worker joins a worker that had them all: the first keeps its half.
    assert aligned_assignment({"new": 4, "old": 4}, {"old": set(range(8))}, 8) == {
        "old": {0, 1, 2, 3}, "new": {4, 5, 6, 7}}
    kept = aligned_assignment({"new": 4, "old": 4}, {"old": {0, 2, 4, 5, 6, 7}}, 8)
    assert kept["old"] == {4, 5, 6, 7}


def test_counts_that_do_not_cover_the_partitions_are_refused():
    with pytest.raises(ValueError):
        aligned_assignment({"a": 3}, {}, 8)


@given(st.integers(1, 32).flatmap(lambda partitions: st.tuples(
    st.just(partitions), st.lists(st.integers(0, partitions), min_size=1, max_size=6))))
def test_every_partition_goes_to_exactly_one_client_with_its_count(case):
    partitions, cuts = case
    bounds = sorted({0, partitions, *cuts})
    counts = {f"c{i}": hi - lo for i, (lo, hi) in enumerate(itertools.pairwise(bounds))}
    assigned = aligned_assignment(counts, {}, partitions)
    assert {client: len(owned) for client, owned in assigned.items()} == counts
    assert sorted(p for owned in assigned.values() for p in owned) == list(range(partitions))
    for owned in assigned.values():
        assert not owned or owned == set(range(min(owned), max(owned) + 1))
