"""The guard in front of every route, and a browser's sign-in.

Every request passes `guard` before its view: the route's rule in
app.web.access.ROUTES decides (a route without one is refused), and the reader
it admits is kept on the request for the views that show less to a promoter.
A browser that is refused for want of a token gets the sign-in form instead of
JSON; signing in sets the HttpOnly, SameSite=Strict session cookie.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from aiohttp import web
from faust.web import Request, Response, View

from app.web.access import ROUTES, SESSION_COOKIE, Gate, Reader, Refusal

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings
    from app.domain.tokens import Signer

READER = "cps_reader"
DEFAULT_PAGE = "/dashboard"


def reader_of(request: Request) -> Reader | None:
    """Who the guard admitted `request` as (None on a route open to anyone)."""
    return request.get(READER)


def register(*, app: faust.App, settings: Settings, signer: Signer) -> None:
    """Guard every route; serve `/signin` and `/signout`."""
    gate = Gate(admin_token=settings.admin_token, view_token=settings.view_token,
                metrics_token=settings.metrics_token, signer=signer,
                session_ttl_s=settings.session_ttl_s)
    # Over plain HTTP a Secure cookie would never come back; behind TLS it must not leave it.
    secure = "; Secure" if settings.public_url.startswith("https://") else ""

    def session_cookie(value: str, max_age: int) -> str:
        return (f"{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; "
                f"SameSite=Strict{secure}")

    @web.middleware
    async def guard(request: web.Request, handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is None:  # no such route: aiohttp answers 404 or 405
            return await handler(request)
        rule = ROUTES.get(resource.canonical)
        if rule is None:
            return web.json_response({"error": "this route has no access rule"}, status=403)
        try:
            request[READER] = gate.admit(
                rule, authorization=request.headers.get("Authorization"),
                session=request.cookies.get(SESSION_COOKIE), params=request.match_info,
                query=request.query, now_ms=_now_ms())
        except Refusal as refusal:
            if refusal.status == 401 and _is_browser_page(request):
                return web.Response(text=_signin_page(_local_path(request.path_qs)), status=401,
                                    content_type="text/html", headers=_NO_STORE)
            headers = {"WWW-Authenticate": 'Bearer realm="cps"'} if refusal.status == 401 else {}
            return web.json_response({"error": refusal.message}, status=refusal.status,
                                     headers=headers)
        return await handler(request)

    app.web.web_app.middlewares.append(guard)

    @app.page("/signin")
    class SignIn(View):
        async def get(self, request: Request) -> Response:
            return self.html(_signin_page(_local_path(request.query.get("next"))),
                             headers=_NO_STORE)

        async def post(self, request: Request) -> Response:
            """Sign in with a view, admin or promoter token (form fields `token`, `next`)."""
            form = await request.post()
            target = _local_path(form.get("next"))
            now = _now_ms()
            try:
                reader = gate.reader_of(str(form.get("token") or "").strip(), now)
            except Refusal as refusal:
                return self.html(_signin_page(target, refusal.message), status=403,
                                 headers=_NO_STORE)
            session, max_age = gate.session_for(reader, now)
            return self.text("", status=303, headers={
                "Location": target, **_NO_STORE, "Set-Cookie": session_cookie(session, max_age)})

    @app.page("/signout")
    class SignOut(View):
        async def post(self, request: Request) -> Response:
            return self.text("", status=303, headers={
                "Location": "/signin", **_NO_STORE, "Set-Cookie": session_cookie("", 0)})


_NO_STORE = {"Cache-Control": "no-store"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_browser_page(request: web.Request) -> bool:
    return (request.method == "GET" and request.query.get("format") != "json"
            and "text/html" in request.headers.get("Accept", ""))


def _local_path(target: object) -> str:
    """`target` when it is a path on this server, else the dashboard: signing in never sends
    the browser elsewhere."""
    if (not isinstance(target, str) or not target.startswith("/") or target.startswith("//")
            or any(c in target for c in "\\\r\n\t") or len(target) > 2048):
        return DEFAULT_PAGE
    return target


def _signin_page(target: str, problem: str = "") -> str:
    note = f"<p class=problem>{html.escape(problem)}</p>" if problem else ""
    # An empty icon: a browser would otherwise ask for /favicon.ico and be told 404.
    return ("<!doctype html><meta charset=utf-8><title>Sign in</title><link rel=icon href=data:,>"
            "<style>body{font:15px system-ui;margin:3em auto;max-width:26em}"
            "input,button{font:inherit;padding:4px 8px}input{width:100%;box-sizing:border-box}"
            ".problem{color:#b00}</style>"
            "<h1>Sign in</h1>"
            "<p>The views need a reader's token: the view token (<code>CPS_VIEW_TOKEN</code>), "
            "the admin token, or a promoter token.</p>"
            f"{note}<form method=post action=/signin>"
            f'<input type=hidden name=next value="{html.escape(target)}">'
            "<p><label>Token <input type=password name=token autocomplete=current-password "
            "required autofocus></label></p><p><button>Sign in</button></p></form>")
