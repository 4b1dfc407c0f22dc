"""Fetch sessions: aiokafka's fetches sent as incremental fetch sessions (fetch_session.py).

Limit worked around: aiokafka has no incremental fetch sessions (Kafka's
KIP-227): it names every partition it reads from a broker in every fetch,
and parses an answer listing them all, about 40 times a second while live
(`CPS_FETCH_MAX_WAIT_MS`). `SessionFetcher` replaces the fetcher aiokafka's
consumer module builds (`aiokafka.consumer.consumer.Fetcher`), for every
consumer the process starts after `adapter.install()`: each fetch names only
what changed and the answer lists only partitions with something new. For a
partition an answer leaves out it notes, as aiokafka does for one listed
with nothing new, that it was fetched then: its ends are those of its last
report (what fetch_state.py reads).

Upstream: no aiokafka issue found; the same work for kafka-python, whose
protocol code aiokafka's descends from, is dpkp/kafka-python#2508.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.consumer import consumer as aiokafka_consumer_module
from aiokafka.consumer.fetcher import Fetcher as AIOKafkaFetcher
from aiokafka.protocol.fetch import FetchRequest

from app.engine.faust.patching import Patch, PrivateAttribute
from app.engine.fetch_session import FetchSession


class SessionFetchRequest(FetchRequest):
    """aiokafka's fetch request, sent as the next fetch of a session.

    It names only `fetch.send`; its `topics`, which aiokafka reads an answer
    against (the offset each partition was fetched at), are every partition the
    session covers, since an answer may list any of them.
    """

    def __init__(self, fetcher: AIOKafkaFetcher, session: FetchSession,
                 wanted: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.session = session
        self.fetch = session.fetch(wanted)
        self.answer: Any = None
        super().__init__(fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes,
                         fetcher._fetch_max_bytes, fetcher._isolation_level,
                         _by_topic(self.fetch.send), rack_id=fetcher._client_rack or "")

    @property
    def topics(self) -> list[tuple[str, list[tuple[int, int, int]]]]:
        return _by_topic(self.fetch.covers)

    def build(self, request_struct_class: Any) -> Any:
        struct = super().build(request_struct_class)
        if request_struct_class.API_VERSION >= 7:
            struct.session_id = self.fetch.session_id
            struct.session_epoch = self.fetch.epoch
            forget: dict[str, list[int]] = {}
            for topic, partition in self.fetch.forget:
                forget.setdefault(topic, []).append(partition)
            struct.forgotten_topics_data = list(forget.items())
        return struct

    def answered(self, answer: Any) -> None:
        self.answer = answer
        if answer.API_VERSION >= 7:
            self.session.answered(answer.error_code, answer.session_id)
        else:
            self.session.reset()  # a broker without sessions: every fetch in full

    def unchanged(self) -> list[tuple[TopicPartition, int]]:
        """The covered partitions the answer left out, with the offset each was fetched at:
        nothing new there (no record, the same ends) as of the answer."""
        answer = self.answer
        if answer is None or answer.API_VERSION < 7 or answer.error_code:
            return []
        listed = {(topic, partition)
                  for topic, partitions in answer.topics for partition, *_ in partitions}
        return [(TopicPartition(topic, partition), offset)
                for (topic, partition), (offset, _) in self.fetch.covers.items()
                if (topic, partition) not in listed]


def _by_topic(positions: Any) -> list[tuple[str, list[tuple[int, int, int]]]]:
    topics: dict[str, list[tuple[int, int, int]]] = {}
    for (topic, partition), (offset, max_bytes) in positions.items():
        topics.setdefault(topic, []).append((partition, offset, max_bytes))
    return list(topics.items())


class _SessionClient:
    """The consumer's client as a `SessionFetcher` uses it: a session fetch's answer, or its
    failure, is noted in the session before aiokafka reads the answer (even one it then
    drops because the assignment changed: the broker has moved to the next epoch)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        try:
            answer = await self._client.send(node_id, request, **kwargs)
        except BaseException:
            request.session.reset()
            raise
        request.answered(answer)
        return answer


class SessionFetcher(AIOKafkaFetcher):
    """aiokafka's fetcher, its fetches from each broker in one session (fetch_session.py)."""

    def __init__(self, client: Any, subscriptions: Any, **options: Any) -> None:
        self._sessions: dict[int, FetchSession] = {}
        super().__init__(_SessionClient(client), subscriptions, **options)

    def _get_actions_per_node(self, assignment: Any) -> Any:
        requests, *others = super()._get_actions_per_node(assignment)
        return ([(node_id, self._session_request(node_id, request))
                 for node_id, request in requests], *others)

    def _session_request(self, node_id: int, request: FetchRequest) -> SessionFetchRequest:
        wanted = {(topic, partition): (offset, max_bytes)
                  for topic, partitions in request.topics
                  for partition, offset, max_bytes in partitions}
        return SessionFetchRequest(self, self._sessions.setdefault(node_id, FetchSession()),
                                   wanted)

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        fetched = await super()._proc_fetch_request(assignment, node_id, request)
        if isinstance(request, SessionFetchRequest) and assignment.active:
            # As aiokafka notes a partition listed with nothing new: fetched now, the same ends.
            now_ms = int(1000 * time.time())
            for tp, offset in request.unchanged():
                state = assignment.state_value(tp)
                if state is not None and state.has_valid_position and state.position == offset:
                    state.timestamp = now_ms
        return fetched


PATCHES = (Patch(aiokafka_consumer_module, "Fetcher", SessionFetcher),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (aiokafka_consumer_module, "Fetcher"),
    (AIOKafkaFetcher, "_get_actions_per_node"),
    (AIOKafkaFetcher, "_proc_fetch_request"),
    (AIOKafkaFetcher, "_client"),
    (AIOKafkaFetcher, "_fetch_max_wait_ms"),
    (AIOKafkaFetcher, "_fetch_min_bytes"),
    (AIOKafkaFetcher, "_fetch_max_bytes"),
    (AIOKafkaFetcher, "_isolation_level"),
    (AIOKafkaFetcher, "_client_rack"),
)
