"""Who may call which route (SPEC 8): one table, and the reader each request carries.

The port that answers buyers' link clicks serves every view, so every route is
listed in `ROUTES` with who may call it; a route without a rule is refused
(tests/test_access.py walks the web app's routes). Readers:

- the view token (`CPS_VIEW_TOKEN`), or the admin token, reads every view;
- a promoter token (`POST /admin/promoter-tokens`, `cps promoter-token`), signed
  with the link secret and expiring, reads only its own promoter's orders,
  account and subscription;
- a browser signs in once (`/signin`) with either and keeps a session cookie,
  signed the same way, which carries that reader until it expires. A session
  never admits to the admin API: that takes the admin token in the header on
  each request, so no page another site makes a browser load can change the
  configuration.

Nothing here imports the web framework: the guard (app.web.guard) hands it the
request's header, cookie, path parameters and query.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.domain.tokens import PROMOTER, SESSION, ExpiredToken, Signer, TokenError

SESSION_COOKIE = "cps_session"


class Audience(StrEnum):
    """Who may call a route."""

    ANYONE = "anyone"
    METRICS = "anyone; only the metrics token when `CPS_METRICS_TOKEN` is set"
    READERS = "view or admin token, or a signed-in browser"
    PROMOTERS = "readers; a promoter token for its own promoter"
    ADMIN = "admin token (in the header)"


class Scope(StrEnum):
    """Where a promoter token's own id must appear for a `PROMOTERS` route."""

    PATH = "path"    # the route's parameter `param`
    QUERY = "query"  # the query parameter `param`
    ORDER = "order"  # the order, checked by the view once it is read (`order_for_promoter`)


@dataclass(frozen=True, slots=True)
class Rule:
    audience: Audience
    what: str
    scope: Scope | None = None
    param: str | None = None

    def __post_init__(self) -> None:
        if (self.audience is Audience.PROMOTERS) != (self.scope is not None):
            raise ValueError("a promoters' route, and only one, says where the promoter's id is")
        if (self.scope in (Scope.PATH, Scope.QUERY)) != (self.param is not None):
            raise ValueError("a path or query scope names its parameter")

    @property
    def who(self) -> str:
        if self.scope is Scope.ORDER:
            return f"{self.audience.value}'s orders (attributed to it or paying it)"
        if self.scope is not None:
            return f"{self.audience.value} (`{self.param}` = its id)"
        return self.audience.value


def _promoter(what: str, scope: Scope, param: str | None = None) -> Rule:
    return Rule(Audience.PROMOTERS, what, scope, param)


ROUTES: dict[str, Rule] = {
    "/c/{token}": Rule(Audience.ANYONE, "a promotion link: records the click, redirects"),
    "/health": Rule(Audience.ANYONE, "the process answers"),
    "/ready": Rule(Audience.ANYONE, "the worker can do its work"),
    "/metrics": Rule(Audience.METRICS, "Prometheus metrics"),
    "/signin": Rule(Audience.ANYONE, "a browser's sign-in form; signing in sets the session"),
    "/signout": Rule(Audience.ANYONE, "ends the browser's session"),
    "/demo/product": Rule(Audience.ANYONE, "the demo's product page (no data)"),
    "/static/{name}": Rule(Audience.ANYONE, "the dashboard's chart library (no data)"),
    "/dashboard": Rule(Audience.READERS, "the dashboard"),
    "/monitor": Rule(Audience.READERS, "every worker's figures, merged"),
    "/monitor/local": Rule(Audience.READERS, "this worker's figures (asked by its peers)"),
    "/lag": Rule(Audience.READERS, "consumer lag"),
    "/alerts": Rule(Audience.READERS, "alerts"),
    "/sinks": Rule(Audience.READERS, "notification sinks"),
    "/plans": Rule(Audience.READERS, "operation plans and their results"),
    "/plans/{plan_id}": Rule(Audience.READERS, "one plan's occurrences and results"),
    "/members/{buyer_id}/records": Rule(Audience.READERS, "a buyer's operation records"),
    "/operators/{operator_id}/assignments": Rule(Audience.READERS,
                                                 "an operator's assignments"),
    "/clicks": Rule(Audience.READERS, "a buyer's recent clicks"),
    "/orders/{order_id}": _promoter("an order", Scope.ORDER),
    "/promoters/{promoter_id}/orders": _promoter("a promoter's orders", Scope.PATH,
                                                 "promoter_id"),
    "/accounts/{account_id}": _promoter("an account's balances", Scope.PATH, "account_id"),
    "/subscribe": _promoter("new results as Server-Sent Events", Scope.QUERY, "promoter_id"),
    "/admin/{kind}/{ident}": Rule(Audience.ADMIN, "write or delete a configuration entry"),
    "/admin/links": Rule(Audience.ADMIN, "make a promotion link"),
    "/admin/promoter-tokens": Rule(Audience.ADMIN, "make a promoter's read-only token"),
    "/admin/sinks/{ident}/{action}": Rule(Audience.ADMIN, "pause or resume a sink"),
    "/admin/plans/{ident}/{action}": Rule(Audience.ADMIN, "pause, resume or stop a plan"),
    "/admin/plans/pause-all": Rule(Audience.ADMIN, "the kill switch: pause every plan"),
    "/admin/lists/{ident}": Rule(Audience.ADMIN, "replace or empty an audience list"),
    "/admin/engine/{action}": Rule(Audience.ADMIN, "pause or resume this worker"),
}


def markdown_table() -> str:
    """The routes table of README.md (tests/test_access.py keeps the two equal)."""
    rows = ["| route | what | who may call it |", "|---|---|---|"]
    rows += [f"| `{path}` | {rule.what} | {rule.who} |" for path, rule in ROUTES.items()]
    return "\n".join(rows) + "\n"


class Refusal(Exception):
    """Why a request may not go on: 401 (no reader) or 403 (a wrong or out-of-scope one)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


ADMIN, VIEWER, PROMOTER_READER = "admin", "viewer", "promoter"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who a request reads as."""

    role: str  # ADMIN, VIEWER or PROMOTER_READER
    promoter_id: str | None = None
    expires_ms: int | None = None  # a promoter token's expiry

    @property
    def is_promoter(self) -> bool:
        return self.role == PROMOTER_READER


class Gate:
    """Decides, for a route's rule, whether a request's token or session may call it."""

    def __init__(self, *, admin_token: str, view_token: str, metrics_token: str,
                 signer: Signer, session_ttl_s: int) -> None:
        self._admin = admin_token.encode()
        self._view = view_token.encode()
        self._metrics = metrics_token.encode()
        self._signer = signer
        self._session_ttl_ms = session_ttl_s * 1000
        # Sessions made with an earlier view token end when it changes.
        self._view_mark = hashlib.sha256(b"view:" + self._view).hexdigest()[:12]

    def admit(self, rule: Rule, *, authorization: str | None, session: str | None,
              params: Mapping[str, str], query: Mapping[str, str],
              now_ms: int) -> Reader | None:
        """The reader a request may call `rule`'s route as (None for anyone's routes);
        raises Refusal."""
        if rule.audience is Audience.ANYONE:
            return None
        if rule.audience is Audience.METRICS:
            if self._metrics:
                self._require(authorization, self._metrics, "CPS_METRICS_TOKEN")
            return None
        if rule.audience is Audience.ADMIN:
            self._require(authorization, self._admin, "CPS_ADMIN_TOKEN")
            return Reader(ADMIN)
        reader = self.reader(authorization, session, now_ms)
        if reader.is_promoter:
            _within_scope(rule, reader, params, query)
        return reader

    def reader(self, authorization: str | None, session: str | None, now_ms: int) -> Reader:
        """The reader of a bearer token, else of a session cookie; raises Refusal."""
        if authorization is not None:
            return self.reader_of(_bearer(authorization), now_ms)
        if session:
            found = self._session_reader(session, now_ms)
            if found is not None:
                return found
        raise Refusal(401, "a reader's token is needed: Authorization: Bearer <CPS_VIEW_TOKEN "
                           "or a promoter token>, or sign in at /signin")

    def reader_of(self, token: str, now_ms: int) -> Reader:
        """The reader a token (view, admin or promoter) stands for; raises Refusal."""
        given = token.encode()
        # Both compared every time, in constant time, so timing tells nothing of either.
        is_admin = hmac.compare_digest(given, self._admin)
        is_viewer = hmac.compare_digest(given, self._view)
        if is_admin:
            return Reader(ADMIN)
        if is_viewer:
            return Reader(VIEWER)
        try:
            payload = self._signer.verify(PROMOTER, token, now_ms=now_ms)
        except ExpiredToken:
            raise Refusal(403, "the promoter token has expired") from None
        except TokenError:
            raise Refusal(403, "wrong token") from None
        promoter_id, expires_ms = payload.get("p"), payload.get("x")
        if not isinstance(promoter_id, str) or type(expires_ms) is not int:
            raise Refusal(403, "wrong token")
        return Reader(PROMOTER_READER, promoter_id, expires_ms)

    def session_for(self, reader: Reader, now_ms: int) -> tuple[str, int]:
        """The session cookie's value for `reader`, and its lifetime in seconds (a promoter's
        session ends with its token). An admin's session only reads, like a viewer's."""
        expires_ms = now_ms + self._session_ttl_ms
        if reader.is_promoter:
            expires_ms = min(expires_ms, reader.expires_ms or expires_ms)
            payload: dict[str, Any] = {"r": PROMOTER_READER, "p": reader.promoter_id}
        else:
            payload = {"r": VIEWER, "v": self._view_mark}
        payload["x"] = expires_ms
        return self._signer.sign(SESSION, payload), max(0, (expires_ms - now_ms) // 1000)

    def _session_reader(self, session: str, now_ms: int) -> Reader | None:
        try:
            payload = self._signer.verify(SESSION, session, now_ms=now_ms)
        except TokenError:
            return None  # an expired or foreign cookie is no session: sign in again
        if payload.get("r") == VIEWER and payload.get("v") == self._view_mark:
            return Reader(VIEWER)
        if payload.get("r") == PROMOTER_READER and isinstance(payload.get("p"), str):
            return Reader(PROMOTER_READER, payload["p"], payload.get("x"))
        return None

    @staticmethod
    def _require(authorization: str | None, expected: bytes, name: str) -> None:
        if authorization is None:
            raise Refusal(401, f"missing bearer token (Authorization: Bearer <{name}>)")
        if not hmac.compare_digest(_bearer(authorization).encode(), expected):
            raise Refusal(403, f"wrong token (this route takes {name})")


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "the Authorization header must be `Bearer <token>`")
    return token.strip()


def _within_scope(rule: Rule, reader: Reader, params: Mapping[str, str],
                  query: Mapping[str, str]) -> None:
    if rule.scope is Scope.ORDER:
        return  # the view checks the order it reads
    if rule.scope is Scope.PATH and params.get(rule.param or "") == reader.promoter_id:
        return
    if rule.scope is Scope.QUERY and query.get(rule.param or "") == reader.promoter_id:
        return
    if rule.scope is Scope.QUERY:
        raise Refusal(403, f"a promoter token subscribes with {rule.param}={reader.promoter_id}")
    raise Refusal(403, "a promoter token reads only its own promoter's orders, account and "
                       "subscription")


def order_for_promoter(document: Mapping[str, Any], promoter_id: str) -> dict[str, Any] | None:
    """The order as its promoter may read it, or None when the order is none of its own:
    attributed to it, or paying its account (a group leader's). Other participants' money is
    left out."""
    attribution = document.get("attribution") or {}
    paid_to = {row.get("account_id") for row in (*document.get("commissions", ()),
                                                  *document.get("settlement", ()))}
    if attribution.get("promoter_id") != promoter_id and promoter_id not in paid_to:
        return None
    return {**document,
            "commissions": [row for row in document.get("commissions", ())
                            if row.get("account_id") == promoter_id],
            "settlement": [row for row in document.get("settlement", ())
                           if row.get("account_id") == promoter_id]}
