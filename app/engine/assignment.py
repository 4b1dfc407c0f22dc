"""Which partitions this worker owns and the slot each commits in (`Assignment`), as
Faust's assignor last assigned them."""

from __future__ import annotations

from typing import Any

from app.engine.faust.slot_assignment import current_assignment
from app.engine.registration import Registry
from app.engine.slots import Slot, commit_slots


class Assignment:
    """The anchor topic's partitions assigned to this worker, and their commit slots."""

    def __init__(self, app: Any, registry: Registry, partitions: int) -> None:
        self.app = app
        self.registry = registry
        self.partitions = partitions
        self._cached: tuple[Any, set[int], dict[int, Slot]] | None = None

    def owned(self) -> set[int]:
        return self._current()[1]

    def owned_share(self) -> float:
        """This worker's part of the partitions (0 to 1), e.g. for its share of a rate."""
        return len(self.owned()) / self.partitions

    def slot_of(self, partition: int) -> Slot:
        """The slot `partition` commits in (itself alone once it is not assigned here)."""
        return self._current()[2].get(partition) or (partition, partition + 1)

    def _current(self) -> tuple[Any, set[int], dict[int, Slot]]:
        # Asked per partition and tick: Faust builds the whole assignment (every topic's
        # partitions) for each question, so the answer is kept until it assigns anew.
        assignor = self.app.assignor
        assignment = current_assignment(assignor)
        cached = self._cached
        if cached is not None and assignment is not None and cached[0] is assignment:
            return cached
        anchor = self.registry.anchor_topic
        partitions = {tp.partition for tp in assignor.assigned_actives() if tp.topic == anchor}
        self._cached = (assignment, partitions, commit_slots(partitions, self.partitions))
        return self._cached
