"""The click service behind `GET /c/{token}`: verify, record (spool first), redirect.

Kept apart from the web view so its rules are tested without a server:
a genuine, unexpired link records a click for the buyer (from `?uid=`, else
the first-party cookie, else a new id it sets) and redirects to the signed
product URL with a signed tracking token; anything else answers 400, 403 or
410 and records nothing. A buyer clicking the same link again within
CPS_CLICK_DEDUPE_MS gets the same redirect and no second click.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from app.domain.links import LinkError, promotion_from_payload, redirect_url
from app.domain.tokens import LINK, TRACKING, Signer, TokenError, tracking_payload
from app.records.inputs import encode_click
from app.services.spool import ClickSpool

BUYER_COOKIE = "cps_uid"
COOKIE_MAX_AGE_S = 365 * 86_400
_VALID_BUYER = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_RECENT_CAP = 100_000


@dataclass(frozen=True, slots=True)
class ClickOutcome:
    status: int
    location: str | None = None
    new_buyer_cookie: str | None = None
    error: str | None = None
    click_id: str | None = None


class ClickService:
    def __init__(self, signer: Signer, spool: ClickSpool, *, dedupe_ms: int,
                 tracking_ttl_ms: int) -> None:
        self.signer = signer
        self.spool = spool
        self.dedupe_ms = dedupe_ms
        self.tracking_ttl_ms = tracking_ttl_ms
        self._recent: OrderedDict[tuple[str, str], tuple[int, str, str]] = OrderedDict()
        self.recorded = 0
        self.rejected = 0
        self.repeated = 0

    async def click(self, token: str, *, uid: str | None, cookie: str | None,
                    now_ms: int) -> ClickOutcome:
        try:
            promotion = promotion_from_payload(self.signer.verify(LINK, token, now_ms=now_ms))
        except TokenError as exc:
            self.rejected += 1
            return ClickOutcome(exc.status, error=str(exc))
        except LinkError as exc:
            self.rejected += 1
            return ClickOutcome(400, error=str(exc))
        new_cookie = None
        if uid is not None:
            if not _VALID_BUYER.match(uid):
                self.rejected += 1
                return ClickOutcome(400, error="uid: 1-128 letters, digits or ._:@-")
            buyer = uid
        elif cookie is not None and _VALID_BUYER.match(cookie):
            buyer = cookie
        else:
            buyer = new_cookie = f"v-{secrets.token_hex(12)}"

        recent = self._recent.get((buyer, token))
        if recent is not None and now_ms - recent[0] < self.dedupe_ms:
            self.repeated += 1
            return ClickOutcome(302, location=recent[1], new_buyer_cookie=new_cookie,
                                click_id=recent[2])

        click = promotion.click(click_id=f"c-{secrets.token_hex(10)}", buyer_id=buyer,
                                ts_ms=now_ms)
        await self.spool.append(encode_click(click))
        tracking = self.signer.sign(TRACKING, tracking_payload(
            click, expires_ms=now_ms + self.tracking_ttl_ms))
        location = redirect_url(promotion.url, tracking)
        self._remember((buyer, token), (now_ms, location, click.click_id))
        self.recorded += 1
        return ClickOutcome(302, location=location, new_buyer_cookie=new_cookie,
                            click_id=click.click_id)

    def _remember(self, key: tuple[str, str], value: tuple[int, str, str]) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > _RECENT_CAP:
            self._recent.popitem(last=False)
