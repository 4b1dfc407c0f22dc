"""The field readers every wire format uses: each names the field at fault.

Hand-written checks on purpose: this is the per-event hot path, and the
errors name the field so a dead letter says exactly what was wrong. Every
reader raises `InvalidEvent` (never anything else) for bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson

MAX_ID_CHARS = 128
MAX_TRACKING_CHARS = 2048
MAX_URL_CHARS = 2048
MAX_LINES = 1000
MAX_COUPONS = 100
MAX_COUPON_ID_CHARS = 512
MAX_LIST_ITEMS = 10_000
# Largest integer every JSON consumer (JavaScript included) represents exactly.
MAX_SAFE_INT = 2**53 - 1
MAX_BP = 10_000
DEAD_LETTER_VALUE_BYTES = 64 * 1024


class InvalidEvent(ValueError):
    """A message that cannot be parsed or validated; the text is the dead-letter reason."""


def parse_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidEvent("empty message (null value)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if type(value) is not dict:
        raise InvalidEvent(f"expected a JSON object, got {type(value).__name__}")
    return value


def keyed_by(key: bytes | None, value: str, name: str) -> None:
    """A record the engine keyed by its field `name` (re-keyed, or its own output read back)
    must carry that key: under another one it sits in the wrong partition."""
    if key != value.encode():
        raise InvalidEvent(f"key: must be the record's {name}")


@contextmanager
def within(path: str, *, whole: bool = False) -> Iterator[None]:
    """Name the fields of a record nested at `path` from the outer record: `path.field: ...`,
    or `path: ...` for what concerns the nested record as a whole (`whole`, e.g. not JSON)."""
    try:
        yield
    except InvalidEvent as exc:
        raise InvalidEvent(f"{path}{': ' if whole else '.'}{exc}") from None


def required_id(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if type(value) is not str:
        raise InvalidEvent(f"{name}: required string" if value is None
                           else f"{name}: must be a string")
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidEvent(f"{name}: must be 1-{MAX_ID_CHARS} characters")
    return value


def optional_id(obj: Mapping[str, Any], name: str) -> str | None:
    return None if obj.get(name) is None else required_id(obj, name)


def choice(obj: Mapping[str, Any], name: str, values: tuple[str, ...]) -> str:
    value = obj.get(name)
    if type(value) is not str or value not in values:
        raise InvalidEvent(f"{name}: must be one of {', '.join(values)}")
    return value


def optional_choice(obj: Mapping[str, Any], name: str, values: tuple[str, ...]) -> str | None:
    return None if obj.get(name) is None else choice(obj, name, values)


def integer(obj: Mapping[str, Any], name: str, *, minimum: int = 0,
         maximum: int = MAX_SAFE_INT) -> int:
    value = obj.get(name)
    if type(value) is not int:
        raise InvalidEvent(f"{name}: required integer" if value is None
                           else f"{name}: must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidEvent(f"{name}: must be between {minimum} and {maximum}")
    return value


def optional_integer(obj: Mapping[str, Any], name: str, default: int | None,
                  **bounds: int) -> int | None:
    return default if obj.get(name) is None else integer(obj, name, **bounds)


def boolean(obj: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = obj.get(name)
    if value is None:
        return default
    if type(value) is not bool:
        raise InvalidEvent(f"{name}: must be true or false")
    return value


def array(obj: Mapping[str, Any], name: str, *, limit: int = MAX_LIST_ITEMS) -> list:
    value = obj.get(name)
    if value is None:
        return []
    if type(value) is not list:
        raise InvalidEvent(f"{name}: must be a list")
    if len(value) > limit:
        raise InvalidEvent(f"{name}: more than {limit} entries")
    return value


def id_list(obj: Mapping[str, Any], name: str, *, limit: int = MAX_LIST_ITEMS
            ) -> tuple[str, ...]:
    values = array(obj, name, limit=limit)
    for index, value in enumerate(values):
        if type(value) is not str or not value or len(value) > MAX_ID_CHARS:
            raise InvalidEvent(f"{name}[{index}]: must be a string of 1-{MAX_ID_CHARS} characters")
    return tuple(values)


def subobject(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if type(value) is not dict:
        raise InvalidEvent(f"{name}: required object" if value is None
                           else f"{name}: must be an object")
    return value


def text(obj: Mapping[str, Any], name: str, limit: int) -> str:
    value = obj.get(name)
    if type(value) is not str or not value or len(value) > limit:
        raise InvalidEvent(f"{name}: must be a string of 1-{limit} characters")
    return value
