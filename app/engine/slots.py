"""Which input partitions commit together: fixed, aligned blocks of partitions ("slots").

One Kafka transaction costs about five round trips and a marker per
partition it wrote, whatever it holds, so a worker commits the partitions it
owns in as few transactions as it safely can. Safety comes from fencing:
aiokafka has no KIP-447, so a transaction's offsets are not checked against
the consumer group's generation, and the next owner of a partition must
fence every transactional id that an earlier owner could have committed
that partition's offsets with (docs/exactly-once.md). That is only possible
if a transactional id always stands for the same partitions.

So the slots are fixed: the aligned power-of-two blocks of the partition
range, from each single partition up to one block of them all (with 8
partitions: 8 singles, 4 pairs, 2 fours, 1 eight). A worker commits each
partition it owns in the largest slot it owns wholly, and on every
assignment fences every slot that holds one of its partitions.
"""

from __future__ import annotations

from collections.abc import Iterable

Slot = tuple[int, int]  # partitions first .. end - 1


def slots_holding(partition: int, partitions: int) -> list[Slot]:
    """Every slot that holds `partition`, smallest first (the last holds them all)."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")
    slots: list[Slot] = []
    size = 1
    while True:
        first = partition // size * size
        slot = (first, min(first + size, partitions))
        if not slots or slots[-1] != slot:
            slots.append(slot)
        if size >= partitions:
            return slots
        size *= 2


def commit_slots(owned: Iterable[int], partitions: int) -> dict[int, Slot]:
    """For each owned partition, the largest slot holding it whose partitions are all owned."""
    owned = set(owned)
    chosen: dict[int, Slot] = {}
    for partition in owned:
        for slot in slots_holding(partition, partitions):
            if not owned.issuperset(range(*slot)):
                break  # a larger slot holds this one's partitions too
            chosen[partition] = slot
    return chosen


def fenced_slots(owned: Iterable[int], partitions: int) -> set[Slot]:
    """Every slot that holds an owned partition: the transactional ids a new owner fences."""
    return {slot for partition in set(owned) for slot in slots_holding(partition, partitions)}


def aligned_assignment(counts: dict[str, int], previous: dict[str, set[int]],
                       partitions: int) -> dict[str, set[int]]:
    """Give each client `counts[client]` partitions as contiguous ranges, so whole slots.

    The ranges are laid out largest count first, so with counts that divide the
    partitions evenly into powers of two (8 over 2 or 4 workers) every client gets
    one slot. Among clients of the same count, each range goes to the one that
    already owns most of it, so a rebalance moves few partitions.
    """
    if sum(counts.values()) != partitions:
        raise ValueError(f"counts {counts} do not add up to {partitions} partitions")
    order = sorted(counts, key=lambda client: (-counts[client], client))
    ranges: list[tuple[int, range]] = []
    first = 0
    for client in order:
        ranges.append((counts[client], range(first, first + counts[client])))
        first += counts[client]
    unplaced = set(counts)
    assigned: dict[str, set[int]] = {}
    while ranges:
        # The pair of a range and a client of its count that keeps most in place first
        # (ties: the earlier range, then the client named first).
        _kept, index, best = max(
            ((len(previous.get(client, set()) & set(span)), index, client)
             for index, (count, span) in enumerate(ranges)
             for client in sorted(unplaced) if counts[client] == count),
            key=lambda pair: pair[0])
        assigned[best] = set(ranges.pop(index)[1])
        unplaced.discard(best)
    return assigned
