"""`GET /c/{token}`: a promotion link's click and redirect (app.services.clicks)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from app.services.clicks import BUYER_COOKIE, COOKIE_MAX_AGE_S

if TYPE_CHECKING:
    import faust

    from app.services.clicks import ClickService


def register(*, app: faust.App, click_service: ClickService) -> None:
    """/c/{token}."""

    @app.page("/c/{token}")
    class Click(View):
        async def get(self, request: Request, token: str) -> Response:
            outcome = await click_service.click(
                token, uid=request.query.get("uid"), cookie=request.cookies.get(BUYER_COOKIE),
                now_ms=int(time.time() * 1000))
            if outcome.status != 302:
                return self.json({"error": outcome.error}, status=outcome.status)
            headers = {"Location": outcome.location, "Cache-Control": "no-store",
                       "Referrer-Policy": "no-referrer"}
            if outcome.new_buyer_cookie is not None:
                headers["Set-Cookie"] = (f"{BUYER_COOKIE}={outcome.new_buyer_cookie}; "
                                         f"Max-Age={COOKIE_MAX_AGE_S}; Path=/; HttpOnly; "
                                         "SameSite=Lax")
            return self.text("", status=302, headers=headers)
