"""`GET /subscribe`: new results as Server-Sent Events (app.sinks.subscriptions)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

from aiohttp import web
from faust.web import Request, Response, View

from app.sinks.subscriptions import SubscriptionError, parse

if TYPE_CHECKING:
    import faust

    from app.sinks.subscriptions import Subscriptions

WRITE_TIMEOUT_S = 5.0
SEND_BUFFER_BYTES = 64 * 1024
HEARTBEAT_S = 5.0


def register(*, app: faust.App, subscriptions: Subscriptions) -> None:
    """/subscribe."""

    @app.page("/subscribe")
    class Subscribe(View):
        async def get(self, request: Request) -> Response:
            try:
                subscription = parse(request.query, request.headers.get("Last-Event-ID")
                                     or request.query.get("last_event_id"))
                subscriptions.admit()
            except SubscriptionError as exc:
                return self.json({"error": str(exc)}, status=exc.status)
            response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no"})
            connection = request.transport.get_extra_info("socket") if request.transport else None
            if connection is not None:
                # Bound what a subscriber can hold in the kernel; beyond it, writes wait, and a
                # client that does not read is cut off after WRITE_TIMEOUT_S.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            try:
                await response.prepare(request)
                await response.write(b"retry: 2000\n\n")
                async with contextlib.aclosing(subscriptions.follow(subscription)) as events:
                    await self._relay(response, subscription, events)
            except TimeoutError:
                subscriptions.cut_off += 1
            except ConnectionResetError:
                pass
            finally:
                subscriptions.leave()
                with contextlib.suppress(Exception):
                    await response.write_eof()
            return response

        async def _relay(self, response: web.StreamResponse, subscription, events) -> None:
            quiet = 0.0
            async for event_id, data in events:
                if event_id:
                    chunk = b"id: %s\nevent: %s\ndata: %s\n\n" % (
                        event_id.encode(), subscription.stream.encode(), data)
                    quiet = 0.0
                else:
                    quiet += 1.0
                    if quiet < HEARTBEAT_S:
                        continue
                    chunk, quiet = b": keep-alive\n\n", 0.0
                # A client that does not read is cut off rather than buffered.
                await asyncio.wait_for(response.write(chunk), WRITE_TIMEOUT_S)
