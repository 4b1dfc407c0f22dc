"""Promotion links: what a signed link carries, and where its click may redirect.

A link token (app.domain.tokens, purpose `link`) carries the promotion:
channel, promoter, shop, item, optional activity / group leader / base, the
product URL and an expiry. The redirect goes only to that signed URL, with
the click's tracking token added as the `cps_t` query parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.domain.model import Click

MAX_URL_CHARS = 2048
MAX_ID_CHARS = 128
TRACKING_PARAM = "cps_t"
# Printable ASCII only: no spaces, no control characters (header injection), no quotes.
_SAFE_URL = re.compile(r"^[\x21-\x7e]+$")
_SAFE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")

_FIELDS = (("h", "channel_id"), ("p", "promoter_id"), ("s", "shop_id"), ("i", "item_id"),
           ("a", "activity_id"), ("g", "group_leader_id"), ("b", "base_id"), ("u", "url"))
_REQUIRED = ("channel_id", "promoter_id", "shop_id", "item_id", "url")


class LinkError(ValueError):
    """A link request or payload that cannot be used; the text says which field and why."""


@dataclass(frozen=True, slots=True)
class Promotion:
    channel_id: str
    promoter_id: str
    shop_id: str
    item_id: str
    url: str
    activity_id: str | None = None
    group_leader_id: str | None = None
    base_id: str | None = None

    def click(self, *, click_id: str, buyer_id: str, ts_ms: int) -> Click:
        return Click(click_id=click_id, ts_ms=ts_ms, buyer_id=buyer_id, shop_id=self.shop_id,
                     channel_id=self.channel_id, promoter_id=self.promoter_id,
                     item_id=self.item_id, activity_id=self.activity_id,
                     group_leader_id=self.group_leader_id, base_id=self.base_id)


def check_url(url: Any) -> str:
    """The URL if a redirect may go there: absolute http(s), printable, no credentials."""
    if type(url) is not str or not url or len(url) > MAX_URL_CHARS:
        raise LinkError(f"url: must be a string of 1-{MAX_URL_CHARS} characters")
    if not _SAFE_URL.match(url):
        raise LinkError("url: must not contain spaces, quotes or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise LinkError("url: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LinkError("url: must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None or "\\" in url:
        raise LinkError("url: must not carry credentials or backslashes")
    return url


def check_id(name: str, value: Any, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if type(value) is not str or not _SAFE_ID.match(value):
        raise LinkError(f"{name}: must be 1-{MAX_ID_CHARS} printable characters without spaces")
    return value


def promotion_from_request(body: Mapping[str, Any]) -> Promotion:
    """The promotion of a `POST /admin/links` body (or `cps link` options), checked."""
    values = {name: check_id(name, body.get(name), required=name in _REQUIRED)
              for _short, name in _FIELDS if name != "url"}
    return Promotion(url=check_url(body.get("url")), **values)


def link_payload(promotion: Promotion, *, expires_ms: int) -> dict[str, Any]:
    payload = {short: getattr(promotion, name) for short, name in _FIELDS
               if getattr(promotion, name) is not None}
    payload["x"] = expires_ms
    return payload


def promotion_from_payload(payload: Mapping[str, Any]) -> Promotion:
    """The promotion a verified link payload describes; LinkError if it is not one."""
    try:
        return promotion_from_request({name: payload.get(short) for short, name in _FIELDS})
    except LinkError as exc:
        raise LinkError(f"link payload: {exc}") from None


def redirect_url(url: str, tracking_token: str) -> str:
    """The product URL with the tracking token as `cps_t` (replacing any already there)."""
    parts = urlsplit(check_url(url))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k != TRACKING_PARAM]
    query.append((TRACKING_PARAM, tracking_token))
    return urlunsplit(parts._replace(query=urlencode(query)))
