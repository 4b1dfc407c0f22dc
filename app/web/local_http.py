"""A small HTTP server on a free loopback port, for local webhook receivers (the demo's,
the benchmark's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


async def serve(path: str, handler: Callable[[web.Request], Awaitable[web.Response]]
                ) -> tuple[web.AppRunner, str]:
    """Serve POST `path` with `handler`; returns the runner (to clean up) and the URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}{path}"
