"""Incremental fetch sessions (Kafka's KIP-227): a fetch names only what changed.

Without a session every fetch names every partition the consumer reads from
that broker, with its offset, and every answer lists every one of them, even
with nothing new. A worker reads a few hundred partitions (inputs, internal
topics, the configuration topics every worker reads whole) and, live, fetches
about 40 times a second, each list encoded and parsed in pure Python: 3-10 %
of a live worker's CPU, depending on the rate (BENCHMARKS.md, issue 17).
aiokafka has no sessions; the Java consumer has had them since Kafka 1.1.

With a session the broker remembers the partitions and their fetch offsets.
A full fetch (epoch 0) names them all and opens the session; each later,
incremental fetch (the next epoch) names only the partitions added or whose
offset moved, and the partitions to forget; the answer lists only the
partitions with records, a new high watermark or log start, or an error. A
partition left out of an answer has nothing new at the offset the session
holds for it. Which means the session must always hold the consumer's own
offsets: a partition the consumer does not fetch this time (its fetched
records are not yet handed out, or it is paused) is forgotten, and named
again, with its new offset, when it is fetched again.

Anything unexpected (an error answer, a fetch without an answer, a broker
that answers without sessions) falls back to a full fetch, which closes the
session the broker may still hold and opens a new one.

No Kafka client here; faust/fetch_sessions.py fits it into aiokafka's fetcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

INITIAL_EPOCH = 0       # a full fetch: (re)opens a session
NO_SESSION = 0
MAX_EPOCH = 2**31 - 1  # an int32; the epoch after it is 1
FETCH_SESSION_ID_NOT_FOUND = 70  # Kafka's error code: the broker no longer has the session

Partition = tuple[str, int]
# What a fetch asks of a partition: (fetch offset, max bytes).
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class SessionFetch:
    """One fetch of a session: what it names and what its answer covers."""

    session_id: int
    epoch: int
    send: Mapping[Partition, Position]  # the partitions the request names
    forget: tuple[Partition, ...]      # the partitions the session drops
    covers: Mapping[Partition, Position]  # every partition the answer speaks for

    @property
    def full(self) -> bool:
        return self.epoch == INITIAL_EPOCH


class FetchSession:
    """A consumer's fetch session with one broker; one fetch at a time."""

    __slots__ = ("_epoch", "_id", "_partitions")

    def __init__(self) -> None:
        self._id = NO_SESSION
        self._epoch = INITIAL_EPOCH
        self._partitions: dict[Partition, Position] = {}

    def fetch(self, wanted: Mapping[Partition, Position]) -> SessionFetch:
        """The next fetch, for exactly the partitions in `wanted` at their positions."""
        if self._epoch == INITIAL_EPOCH:
            send: Mapping[Partition, Position] = dict(wanted)
            forget: tuple[Partition, ...] = ()
        else:
            send = {partition: position for partition, position in wanted.items()
                    if self._partitions.get(partition) != position}
            forget = tuple(partition for partition in self._partitions if partition not in wanted)
        self._partitions = dict(wanted)
        return SessionFetch(self._id, self._epoch, send, forget, self._partitions)

    def answered(self, error_code: int, session_id: int) -> None:
        """Note the answer to the last fetch: its top-level error and session id."""
        if error_code == FETCH_SESSION_ID_NOT_FOUND:
            self._id, self._epoch = NO_SESSION, INITIAL_EPOCH
        elif error_code:
            self.reset()
        elif self._epoch == INITIAL_EPOCH:
            # A broker out of session slots answers a full fetch without one: fetch in full.
            self._id = session_id
            self._epoch = 1 if session_id != NO_SESSION else INITIAL_EPOCH
        else:
            self._epoch = self._epoch + 1 if self._epoch < MAX_EPOCH else 1

    def reset(self) -> None:
        """Fetch in full next: the last fetch's fate is unknown, or sessions are not spoken.
        The full fetch names the old session, which closes it on the broker."""
        self._epoch = INITIAL_EPOCH
