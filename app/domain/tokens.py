"""Signed tokens: promotion links, the tracking tokens orders carry back, promoters'
read-only tokens and browsers' sign-in sessions.

Format: `<kid>.<payload>.<sig>`, all base64url without padding.
- `payload` is a compact JSON object;
- `sig` is the first 16 bytes of HMAC-SHA256(secret, "<purpose>.<kid>.<payload>"),
  so a token made for one purpose (a link) never verifies as another (tracking);
- `kid` names the secret (4 characters derived from it), so secrets can rotate:
  a verifier knows the current secret and any previous ones.

The payload's `x` field, when present, is the expiry in epoch ms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from app.domain.model import Click

MAX_TOKEN_CHARS = 2048
_SIG_BYTES = 16

LINK = "link"
TRACKING = "tracking"
PROMOTER = "promoter"  # a promoter's read-only token (SPEC 8)
SESSION = "session"    # a browser's sign-in cookie


class TokenError(ValueError):
    """Base of token failures; `status` is the HTTP status a click endpoint answers with."""

    status = 400


class MalformedToken(TokenError):
    status = 400


class BadSignature(TokenError):
    status = 403


class ExpiredToken(TokenError):
    status = 410


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise MalformedToken("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("not base64url") from None
    # The last character's spare bits are ignored when decoding; without this check a
    # token would have several spellings that all verify (found by the fuzz test).
    if _b64encode(raw) != text:
        raise MalformedToken("not canonical base64url")
    return raw


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def key_id(secret: str) -> str:
    return _b64encode(hashlib.sha256(secret.encode()).digest()[:3])


class Signer:
    """Signs with the current secret; verifies with it or any previous one."""

    def __init__(self, secret: str, previous: Iterable[str] = ()) -> None:
        if not secret:
            raise ValueError("the signing secret must not be empty")
        self._current = (key_id(secret), secret.encode())
        self._keys = {key_id(s): s.encode() for s in (*previous, secret) if s}

    def sign(self, purpose: str, payload: Mapping[str, Any]) -> str:
        kid, secret = self._current
        body = _b64encode(orjson.dumps(payload))
        return f"{kid}.{body}.{_b64encode(_mac(secret, purpose, kid, body))}"

    def verify(self, purpose: str, token: str, *, now_ms: int) -> dict[str, Any]:
        """The payload of a genuine, unexpired token; raises a TokenError otherwise."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise MalformedToken("token too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise MalformedToken("token must have three parts")
        kid, body, sig_text = parts
        sig = _b64decode(sig_text)
        raw = _b64decode(body)
        if len(sig) != _SIG_BYTES:
            raise MalformedToken("signature has the wrong length")
        secret = self._keys.get(kid)
        if secret is None or not hmac.compare_digest(sig, _mac(secret, purpose, kid, body)):
            raise BadSignature("signature does not match")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedToken("payload is not JSON") from None
        if not isinstance(payload, dict):
            raise MalformedToken("payload is not an object")
        expires = payload.get("x")
        if expires is not None:
            if type(expires) is not int:
                raise MalformedToken("expiry is not an integer")
            if now_ms >= expires:
                raise ExpiredToken("token expired")
        return payload


def _mac(secret: bytes, purpose: str, kid: str, body: str) -> bytes:
    message = f"{purpose}.{kid}.{body}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()[:_SIG_BYTES]


# Tracking token payload keys: short, because the token rides in a URL.
_TRACKING_FIELDS = (("c", "click_id"), ("t", "ts_ms"), ("u", "buyer_id"), ("s", "shop_id"),
                    ("h", "channel_id"), ("p", "promoter_id"), ("i", "item_id"),
                    ("a", "activity_id"), ("g", "group_leader_id"), ("b", "base_id"))
_REQUIRED_TRACKING = ("c", "t", "u", "s", "h", "p")


def tracking_payload(click: Click, *, expires_ms: int | None = None) -> dict[str, Any]:
    """The payload of the tracking token that the redirect hands the buyer for `click`."""
    payload = {short: getattr(click, name) for short, name in _TRACKING_FIELDS
               if getattr(click, name) is not None}
    if expires_ms is not None:
        payload["x"] = expires_ms
    return payload


def click_from_tracking(payload: Mapping[str, Any]) -> Click:
    """The click a verified tracking payload describes; MalformedToken when fields are wrong."""
    for short in _REQUIRED_TRACKING:
        if short not in payload:
            raise MalformedToken(f"tracking token lacks {short!r}")
    values = {name: payload.get(short) for short, name in _TRACKING_FIELDS}
    if type(values["ts_ms"]) is not int:
        raise MalformedToken("tracking token time is not an integer")
    for short, name in _TRACKING_FIELDS:
        value = values[name]
        if name != "ts_ms" and value is not None and not isinstance(value, str):
            raise MalformedToken(f"tracking token field {short!r} is not a string")
    return Click(**values)
