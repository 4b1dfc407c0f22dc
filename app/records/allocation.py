"""Wire formats of operator allocation (SPEC 14): the buyers an `assign` plan selected, sent
to their shop's partition (internal.assign-requests), and the assignments out."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from app.domain.allocation import Load
from app.records.fields import (
    choice,
    integer,
    keyed_by,
    optional_id,
    parse_object,
    required_id,
    text,
)

REQUEST, END = "request", "end"
# Occurrence ids are built of a plan id and a fire time or an event id: longer than one id.
MAX_OCCURRENCE_CHARS = 300


@dataclass(frozen=True, slots=True)
class AssignRequest:
    """A buyer an occurrence selected (`request`), or a buyer partition's task of the
    occurrence finished (`end`: `buyer_id` None, `partition` set)."""

    kind: str
    plan_id: str
    occurrence_id: str
    fire_ms: int
    shop_id: str
    buyer_id: str | None = None
    variant: str | None = None
    partition: int | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self)


def decode_assign_request(key: bytes | None, raw: bytes | None, partitions: int
                          ) -> AssignRequest:
    obj = parse_object(raw)
    kind = choice(obj, "kind", (REQUEST, END))
    request = AssignRequest(
        kind=kind, plan_id=required_id(obj, "plan_id"),
        occurrence_id=text(obj, "occurrence_id", MAX_OCCURRENCE_CHARS),
        fire_ms=integer(obj, "fire_ms"), shop_id=required_id(obj, "shop_id"),
        buyer_id=required_id(obj, "buyer_id") if kind == REQUEST else None,
        variant=optional_id(obj, "variant") if kind == REQUEST else None,
        partition=integer(obj, "partition", maximum=partitions - 1) if kind == END else None)
    keyed_by(key, request.shop_id, "shop_id")
    return request


def assignment(*, plan_id: str, occurrence_id: str, buyer_id: str, operator_id: str,
               shop_id: str, ts_ms: int) -> dict:
    """SPEC 14's assignment (with the shop, which sinks and subscribers filter on); one per
    occurrence and buyer, so its id is theirs."""
    return {"assignment_id": f"{occurrence_id}:{buyer_id}", "plan_id": plan_id,
            "occurrence_id": occurrence_id, "buyer_id": buyer_id, "operator_id": operator_id,
            "shop_id": shop_id, "ts_ms": ts_ms}


def decode_assignment(key: bytes | None, raw: bytes | None) -> dict:
    """An assignment read back from cps.assignments (keyed by operator)."""
    obj = parse_object(raw)
    found = {"assignment_id": text(obj, "assignment_id", 2 * MAX_OCCURRENCE_CHARS),
             "plan_id": required_id(obj, "plan_id"),
             "occurrence_id": text(obj, "occurrence_id", MAX_OCCURRENCE_CHARS),
             "buyer_id": required_id(obj, "buyer_id"),
             "operator_id": required_id(obj, "operator_id"),
             "shop_id": required_id(obj, "shop_id"), "ts_ms": integer(obj, "ts_ms")}
    keyed_by(key, found["operator_id"], "operator_id")
    return found



def encode_load(load: Load) -> bytes:
    return orjson.dumps([load.days, load.total])


def decode_load(raw: bytes) -> Load:
    """An operator's counts as the allocating partition stores them (operator_loads)."""
    days, total = orjson.loads(raw)
    return Load(tuple((day, count) for day, count in days), total)
