"""A Server-Sent Events client for the tests of /subscribe."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time

import orjson
from tokens import VIEW_TOKEN


class SSEClient:
    """Reads an event stream in a thread; keeps (id, data) of each event."""

    def __init__(self, port: int, path: str, last_event_id: str | None = None, *,
                 token: str | None = VIEW_TOKEN) -> None:
        self.events: list[tuple[str, dict]] = []
        self.status = None
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event_id, data = None, None
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = orjson.loads(line[6:])
                elif line == "" and data is not None:
                    self.events.append((event_id, data))
                    event_id, data = None, None
        except (OSError, ValueError, AttributeError):
            pass  # the connection was closed under the reader

    def wait(self, count: int, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.events) < count:
            time.sleep(0.1)
        return len(self.events) >= count

    def close(self) -> None:
        # Shut down first: a close alone waits for the reading thread, that is for the
        # server's next heartbeat, seconds away.
        if self.connection.sock is not None:
            with contextlib.suppress(OSError):
                self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
