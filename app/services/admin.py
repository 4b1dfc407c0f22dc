"""The admin API's rules: who may call it, which bodies it accepts, what it writes.

Configuration changes are records on the compacted configuration topics
(key = id, null = delete); every worker's catalog follows them, so a change
reaches all workers within moments. Bodies are the SPEC's objects, checked
by the same decoders the engine uses, so what the API accepts the engine
accepts, and a refusal names the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from app.domain.allocation import Operator
from app.domain.links import LinkError, link_payload, promotion_from_request
from app.domain.plans import ACTIVE, PAUSED, STOPPED, Plan, never_fires
from app.domain.sinks import shown_url
from app.domain.tokens import LINK, PROMOTER, Signer
from app.kafka.connection import KafkaConnection, records_to_end, started
from app.kafka.topics import Topics
from app.records.configuration import (
    decode_activity,
    decode_channel,
    decode_operator,
    decode_policy,
    decode_shop,
    decode_sink,
)
from app.records.fields import MAX_ID_CHARS, InvalidEvent, required_id
from app.records.operations import decode_plan, split_key

MAX_TTL_S = 366 * 86_400  # of a promotion link and of a promoter token
DEFAULT_PROMOTER_TOKEN_TTL_S = 30 * 86_400
# A list's PUT or DELETE reads all of cps.lists first: about 140,000 records a second on a
# busy 2-core machine (300,000 in 2.1 s), so this bounds the topic at a few million records.
LIST_READ_TIMEOUT_S = 30.0


class AdminError(Exception):
    """A refused admin request: HTTP status, message and, when known, the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"error": str(self), **({"field": self.field} if self.field else {})}


SECRET_SET = "(set)"  # what an answer shows for a secret that was given


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of configuration: its topic, the body's id field, its validator, and the
    fields an answer must not echo (SPEC 8): URLs, shown as scheme, host and port only,
    and secrets, shown as `SECRET_SET`."""

    topic: str
    id_field: str | None
    decode: Callable[[bytes | None, bytes | None], Any]
    urls: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()

    def shown(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The entry as the admin API answers with it."""
        shown = dict(entry)
        for name in self.urls:
            if isinstance(shown.get(name), str):
                shown[name] = shown_url(shown[name])
        for name in self.secrets:
            if shown.get(name) is not None:
                shown[name] = SECRET_SET
        return shown


def kinds(topics: Topics) -> dict[str, Kind]:
    return {
        "shops": Kind(topics.shops, "shop_id", decode_shop),
        "channels": Kind(topics.channels, "channel_id", decode_channel, urls=("webhook_url",)),
        "activities": Kind(topics.activities, "activity_id", decode_activity),
        "policy": Kind(topics.policy, None, decode_policy),
        "sinks": Kind(topics.sinks, "sink_id", decode_sink, urls=("url",),
                      secrets=("secret",)),
        "plans": Kind(topics.plans, "plan_id", decode_plan),
        "operators": Kind(topics.operators, "operator_id", decode_operator),
    }


def issue_promoter_token(signer: Signer, body: Mapping[str, Any], *,
                         now_ms: int) -> dict[str, Any]:
    """A promoter's read-only token (`POST /admin/promoter-tokens`, `cps promoter-token`):
    it reads that promoter's orders, account and subscription until it expires."""
    try:
        promoter_id = required_id(body, "promoter_id")
    except InvalidEvent as exc:
        raise AdminError(400, str(exc), "promoter_id") from None
    expires_ms = now_ms + _ttl_s(body, DEFAULT_PROMOTER_TOKEN_TTL_S) * 1000
    return {"promoter_id": promoter_id, "expires_ms": expires_ms,
            "token": signer.sign(PROMOTER, {"p": promoter_id, "x": expires_ms})}


def _ttl_s(body: Mapping[str, Any], default: int) -> int:
    """The body's `ttl_s` (else `default`): whole seconds from 1 to MAX_TTL_S."""
    ttl_s = body.get("ttl_s", default)
    if type(ttl_s) is not int or not 1 <= ttl_s <= MAX_TTL_S:
        raise AdminError(400, f"ttl_s: must be an integer from 1 to {MAX_TTL_S}", "ttl_s")
    return ttl_s


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AdminError(400, f"body is not JSON: {exc}") from None
    if type(body) is not dict:
        raise AdminError(400, "body must be a JSON object")
    return body


def config_record(kind: Kind, ident: str, body: Mapping[str, Any]) -> bytes:
    """The record to write for `PUT /admin/<kind>/<ident>`, validated like the engine does."""
    if not ident or len(ident) > 128:
        raise AdminError(400, "id: must be 1-128 characters", "id")
    if kind.id_field is not None:
        given = body.get(kind.id_field)
        if given is not None and given != ident:
            raise AdminError(400, f"{kind.id_field}: {given!r} differs from the path's {ident!r}",
                             kind.id_field)
        body = {**body, kind.id_field: ident}
    try:
        raw = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # orjson reads deeper nesting (1024) than it writes (255); no valid object nests so.
        raise AdminError(400, "body: nested too deeply") from None
    try:
        kind.decode(raw, ident.encode())
    except InvalidEvent as exc:
        raise AdminError(400, str(exc), str(exc).split(": ", 1)[0]) from None
    return raw


def issue_link(signer: Signer, body: Mapping[str, Any], *, now_ms: int,
               default_ttl_s: int, public_url: str) -> dict[str, Any]:
    """A signed promotion link (`POST /admin/links`, `cps link`)."""
    try:
        promotion = promotion_from_request(body)
    except LinkError as exc:
        raise AdminError(400, str(exc), str(exc).split(":", 1)[0]) from None
    expires_ms = now_ms + _ttl_s(body, default_ttl_s) * 1000
    token = signer.sign(LINK, link_payload(promotion, expires_ms=expires_ms))
    return {"token": token, "link": f"/c/{token}", "url": f"{public_url}/c/{token}",
            "expires_ms": expires_ms}


def stamped_plan(body: Mapping[str, Any], existing: Plan | None, now_ms: int) -> dict[str, Any]:
    """A plan body with the fields the admin stamps, `created_ms` and `state`: each as given,
    else kept from the plan it replaces, else now and `active`. So re-writing a plan (a new
    rate) neither fires a `now` plan again (it fires at `created_ms`; DELETE and PUT it to
    run it anew) nor resumes a paused or stopped one."""
    stamps = {"created_ms": existing.created_ms if existing is not None else now_ms,
              "state": existing.state if existing is not None else ACTIVE}
    return {**body, **{name: value for name, value in stamps.items() if body.get(name) is None}}


def refuse_never_firing(record: bytes, now_ms: int, default_tz: str) -> None:
    """SPEC 13: a plan that can never fire again is refused, naming `trigger` or `period`."""
    refusal = never_fires(decode_plan(record), now_ms, default_tz)
    if refusal is not None:
        raise AdminError(400, str(refusal), refusal.path)


def refuse_moving_operator(record: bytes, existing: Operator | None) -> None:
    """An operator's counts live with its shop (docs/plans.md, "Operator allocation"): moving
    it to another shop would start its total over, so it is refused."""
    operator = decode_operator(record, None)
    if existing is not None and existing.shop_id != operator.shop_id:
        raise AdminError(409, f"operator {operator.operator_id!r} belongs to shop "
                              f"{existing.shop_id!r}; its counts stay there (DELETE it to "
                              "start anew elsewhere)", "shop_id")


def plan_in_state(plan: Plan, action: str) -> bytes:
    """`POST /admin/plans/{id}/pause|resume|stop`: the plan as written, in its new state."""
    states = {"pause": PAUSED, "resume": ACTIVE, "stop": STOPPED}
    if action not in states:
        raise AdminError(404, "use /admin/plans/<id>/pause, /resume or /stop")
    if plan.state == STOPPED and action != "stop":
        raise AdminError(409, f"plan {plan.plan_id!r} is stopped; PUT it with "
                              '"state": "active" to restart it')
    return orjson.dumps({**plan.source, "created_ms": plan.created_ms,
                         "state": states[action]})


def list_members(raw: bytes) -> list[str]:
    """`PUT /admin/lists/{id}`: buyer ids as a JSON array or JSON Lines (one id a line)."""
    text = raw.strip()
    try:
        if text.startswith(b"["):
            buyers = orjson.loads(text)
        else:
            buyers = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    except orjson.JSONDecodeError as exc:
        raise AdminError(400, f"body: not a JSON array or JSON Lines of buyer ids: {exc}",
                         "body") from None
    for n, buyer in enumerate(buyers):
        if type(buyer) is not str or not buyer or len(buyer) > MAX_ID_CHARS:
            raise AdminError(400, f"[{n}]: a buyer id must be a string of 1-{MAX_ID_CHARS} "
                                  "characters", f"[{n}]")
    if not buyers:
        raise AdminError(400, "body: no buyer ids (DELETE /admin/lists/<id> empties a list)",
                         "body")
    return buyers


def checked_list_id(ident: str) -> str:
    """The path's list id: the engine reads a `cps.lists` key's list id up to its first '/'."""
    if not ident or len(ident) > MAX_ID_CHARS or "/" in ident:
        raise AdminError(400, f"id: must be 1-{MAX_ID_CHARS} characters without '/'", "id")
    return ident


def list_buyer(list_id: str, key: bytes | None) -> str | None:
    """The buyer a `cps.lists` key is about when it is a key of list `list_id`, read as the
    engine reads it (`ab/x` and a key the engine refuses are not keys of list `a`)."""
    if key is None or not key.startswith(list_id.encode() + b"/"):
        return None  # most keys: no decoding
    try:
        head, buyer = split_key(key, "list_id")
    except InvalidEvent:
        return None
    return buyer if head == list_id else None


@dataclass(frozen=True, slots=True)
class ListChange:
    """What `PUT` or `DELETE /admin/lists/{id}` writes: `{}` for each buyer the list
    holds afterwards, a tombstone for each buyer taken off."""

    list_id: str
    buyers: tuple[str, ...]
    removed: tuple[str, ...]

    def records(self) -> list[tuple[str, bytes | None]]:
        return ([(f"{self.list_id}/{buyer}", None) for buyer in self.removed]
                + [(f"{self.list_id}/{buyer}", b"{}") for buyer in self.buyers])


def list_change(list_id: str, current: Iterable[str], buyers: Iterable[str]) -> ListChange:
    """The change that makes `list_id`, holding `current` now, hold exactly `buyers`."""
    wanted = tuple(dict.fromkeys(buyers))
    return ListChange(list_id, wanted, tuple(sorted(set(current).difference(wanted))))


async def buyers_on_list(connection: KafkaConnection, topic: str, list_id: str, *,
                         timeout_s: float = LIST_READ_TIMEOUT_S) -> set[str]:
    """The buyers on `list_id` as `topic` (`cps.lists`) holds it now: each key's latest
    record, not a tombstone, read from the beginning of every partition to its end offset
    as of the call (read_committed). The whole topic is read, O(its size): 503 when that
    takes over `timeout_s`."""
    consumer = connection.consumer(topic, group_id=None, enable_auto_commit=False,
                                   isolation_level="read_committed",
                                   auto_offset_reset="earliest")
    buyers: set[str] = set()
    try:
        async with asyncio.timeout(timeout_s), started(consumer):
            async for record in records_to_end(consumer):
                buyer = list_buyer(list_id, record.key)
                if buyer is None:
                    continue
                if record.value is None:
                    buyers.discard(buyer)
                else:
                    buyers.add(buyer)
    except TimeoutError:
        raise AdminError(503, f"{topic} was not read to its end within {timeout_s:.0f} s, so "
                              f"list {list_id!r} is unchanged; try again") from None
    return buyers


class ConfigWriter:
    """Writes configuration records (idempotent producer, acks from all replicas)."""

    def __init__(self, connection: KafkaConnection) -> None:
        self.connection = connection
        self._producer: AIOKafkaProducer | None = None

    async def write(self, topic: str, key: str, value: bytes | None) -> int:
        producer = await self._started()
        metadata = await producer.send_and_wait(topic, value, key=key.encode())
        return metadata.offset

    async def write_many(self, topic: str, records: list[tuple[str, bytes | None]]) -> int:
        """Write many records, all sent before any is awaited; returns how many."""
        producer = await self._started()
        acks = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*acks)
        return len(acks)

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self.connection.producer(acks="all", enable_idempotence=True,
                                                request_timeout_ms=10_000)
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
