"""State of operator allocation (SPEC 14), in the shop's partition unless said otherwise.

- assign_queue: "<shop>\\x1f<fire ms, 16 digits>\\x1f<priority, inverted, 20 digits>\\x1f
  <plan>\\x1f<buyer>\\x1f<occurrence>" -> AssignRequest: buyers waiting to be allocated,
  in allocation order
- assign_ends: "<fire ms>\\x1f<shop>\\x1f<occurrence>" -> the buyer partitions whose task of
  the occurrence is done (kept 8 days)
- operator_loads: "<shop>\\x1f<operator>" -> Load: the operator's assignments per day and in
  total, the counts the caps are checked against
- assigned_today: "<day>\\x1f<shop>\\x1f<buyer>" -> operator id: at most once a day per shop
- allocations: "<fire ms>\\x1f<occurrence>\\x1f<buyer>" -> operator id, "" when capped: each
  request allocated once (kept 8 days)
- operator_assignments (the operator's partition): "<operator>\\x1f<ts ms>\\x1f
  <assignment id>" -> the assignment, for /operators/{id}/assignments
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from app.engine.processor import Engine
from app.records.allocation import AssignRequest, decode_load, encode_load


@dataclass(frozen=True, slots=True)
class AllocationTables:
    # StateTable in a worker, any object with the same `read`/`scan` in tests.
    assign_queue: Any
    assign_ends: Any
    operator_loads: Any
    assigned_today: Any
    allocations: Any
    operator_assignments: Any


def define(engine: Engine) -> AllocationTables:
    def json_table(name: str, decode=lambda value: value, encode=lambda value: value):
        return engine.state_table(name, encode=lambda value: orjson.dumps(encode(value)),
                                  decode=lambda raw: decode(orjson.loads(raw)))

    return AllocationTables(
        assign_queue=json_table("assign_queue", encode=asdict,
                                decode=lambda row: AssignRequest(**row)),
        assign_ends=json_table("assign_ends", decode=tuple),
        operator_loads=engine.state_table("operator_loads", encode=encode_load,
                                          decode=decode_load),
        assigned_today=json_table("assigned_today"),
        allocations=json_table("allocations"),
        operator_assignments=json_table("operator_assignments"),
    )
