"""Slot-aligned assignments: each worker's share of the partitions in contiguous ranges.

Limit worked around: Faust's copartitioned assignor spreads partitions round
robin (two workers get 0, 2, 4, 6 and 1, 3, 5, 7), so no worker owns a whole
slot larger than one partition and every partition would commit alone. The
leader's assignor (`partition_assignor.CopartitionedAssignor`, replaced
here) lays each worker's share out as contiguous ranges instead, so workers
commit in whole slots (slots.py). Only without standby replicas: Faust
places standbys against its own layout of the actives.

Faust exposes no version of its current assignment either; the engine keeps
its per-partition answers until `current_assignment` is another object.

Upstream: a design limit of Faust's assignor, no upstream issue found.
"""

from __future__ import annotations

from typing import Any

from faust.assignor import partition_assignor
from faust.assignor.copartitioned_assignor import CopartitionedAssignor
from faust.assignor.partition_assignor import PartitionAssignor

from app.engine.faust.patching import Patch, PrivateAttribute
from app.engine.slots import aligned_assignment


class SlotAlignedAssignor(CopartitionedAssignor):
    """Faust's assignment of a copartitioned group, each client's share made contiguous."""

    def get_assignment(self) -> Any:
        previous = {client: set(assignment.actives)
                    for client, assignment in self._client_assignments.items()}
        assignments = super().get_assignment()
        if self.replicas:
            return assignments
        counts = {client: len(assignment.actives) for client, assignment in assignments.items()}
        for client, actives in aligned_assignment(counts, previous,
                                                  self.num_partitions).items():
            assignments[client].actives = actives
        return assignments


def current_assignment(assignor: Any) -> Any:
    """The assignment `assignor` holds now (None if it holds none): a new object at each
    assignment, so that answers derived from it can be kept until it changes."""
    return getattr(assignor, "_assignment", None)


PATCHES = (Patch(partition_assignor, "CopartitionedAssignor", SlotAlignedAssignor),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (partition_assignor, "CopartitionedAssignor"),
    (CopartitionedAssignor, "_client_assignments"),
    (PartitionAssignor, "_assignment"),
)
