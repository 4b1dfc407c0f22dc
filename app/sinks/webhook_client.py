"""The webhook sinks' HTTP/1.1 client: POSTs over kept-alive connections, little else.

A sink makes one request per event (an operation plan: a million of them), so
the client's own cost per request bounds the delivery rate: aiohttp's client
spent ~270 µs of CPU per request here (cookies, redirects, tracing, proxies,
multipart payloads), this one a fraction of it. What a webhook needs stays:
http and https, Content-Length and chunked responses, a response without a
length read to the connection's end, `Connection: close`, a total timeout per
request, and connections kept per origin and reused. Redirects are not
followed (a webhook that moved answers 3xx, which the sink refuses).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.domain.sinks import DEFAULT_PORTS, shown_url

MAX_HEAD = 64 * 1024  # status line and headers
MAX_BODY = 1024 * 1024  # a webhook's answer is read and dropped; more is refused
NO_BODY = frozenset({204, 304})


class WebhookError(Exception):
    """The request failed on the way: connection, protocol or a malformed answer."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case


@dataclass(frozen=True, slots=True)
class _Target:
    origin: tuple[str, str, int]  # scheme, host, port
    host_header: str
    path: str


class WebhookClient:
    def __init__(self, *, idle_per_origin: int = 512) -> None:
        self.idle_per_origin = idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
                   timeout_s: float) -> Response:
        target = self._target(url)
        head = [f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
                f"Content-Length: {len(body)}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise WebhookError(f"header {name} holds a line break")
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        try:
            request = "".join(head).encode("latin-1") + body
        except UnicodeEncodeError:
            # Not the exception's own text: it quotes the whole head, the URL's query with it.
            raise WebhookError(f"the path of {shown_url(url)} or a header holds characters "
                               "HTTP/1.1 cannot carry (percent-encode them)") from None
        loop = asyncio.get_running_loop()
        # A deadline the connection enforces itself: asyncio.timeout() per request cost
        # more than the rest of the request's way out.
        deadline = loop.time() + timeout_s
        connection = self._idle_connection(target.origin)
        if connection is not None:
            try:
                return await self._exchange(target, connection, request, deadline)
            except _Stale:
                pass  # the receiver had closed it while idle: once more, on a new one
        connection = await asyncio.wait_for(self._connect(target.origin),
                                            max(deadline - loop.time(), 0))
        try:
            return await self._exchange(target, connection, request, deadline)
        except _Stale as exc:
            raise WebhookError("connection closed before an answer") from exc

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _exchange(self, target: _Target, connection: _Connection,
                        request: bytes, deadline: float) -> Response:
        try:
            response = await connection.send(request, deadline)
        except BaseException:
            connection.close()  # cancelled or failed half way: its state is unknown
            raise
        if connection.reusable:
            idle = self._idle.setdefault(target.origin, [])
            if len(idle) < self.idle_per_origin:
                idle.append(connection)
            else:
                connection.close()
        return response

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
        return None

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            _transport, connection = await loop.create_connection(
                _Connection, host, port, ssl=tls, server_hostname=host if tls else None)
        except OSError as exc:
            raise WebhookError(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _parse_target(url)
        return target


def _parse_target(url: str) -> _Target:
    """Where `url` points; a refusal shows it as scheme, host and port only (SPEC 8)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a bracket left open, or no IP address inside the brackets
        raise WebhookError("not an http(s) URL: its host cannot be read") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"not an http(s) URL: {shown_url(url)}")
    default = DEFAULT_PORTS[parts.scheme]
    try:
        port = parts.port or default
    except ValueError:  # its text quotes the port, which may be part of a password
        raise WebhookError(f"the port of {shown_url(url)} is no number from 0 to 65535"
                           ) from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target((parts.scheme, host, port), host_header, path)


class _Stale(Exception):
    """The connection ended before any byte of the answer (a kept-alive one timed out)."""


class _Connection(asyncio.Protocol):
    """One connection, one request at a time; parses the answer as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self._waiter: asyncio.Future[Response] | None = None
        self._buffer = bytearray()
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body_left: int | None = None  # bytes of body still to come; None: unknown
        self._chunked = False
        self._to_close = False
        self._in_head = True
        self._received = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.reusable = True

    def send(self, request: bytes, deadline: float) -> asyncio.Future[Response]:
        """The answer to `request`, or TimeoutError at `deadline` (loop time)."""
        assert self.transport is not None and self._waiter is None
        self.reusable = False
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._timer = loop.call_at(deadline, self._fail, TimeoutError())
        self._buffer.clear()
        self._in_head, self._received, self._chunked = True, False, False
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._received = True
        self._buffer += data
        try:
            self._parse()
        except WebhookError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._ended(exc)
        self._stop_timer()

    def _ended(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._received:
            self._fail(_Stale())
        elif not self._in_head and self._body_left is None and not self._chunked:
            self._to_close = True  # a body without a length ends with the connection
            self._complete()
        else:
            self._fail(WebhookError(f"connection closed mid-answer: {exc!r}"))

    def _parse(self) -> None:
        if self._in_head:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise WebhookError("answer head too long")
                return
            self._read_head(bytes(self._buffer[:end]))
            del self._buffer[:end + 4]
            self._in_head = False
            if self._status < 200:  # 100 Continue and the like: the real answer follows
                self._in_head = True
                self._parse()
                return
        if self._chunked:
            self._read_chunks()
        elif self._body_left is not None:
            if len(self._buffer) >= self._body_left:
                del self._buffer[:self._body_left]
                self._complete()
        elif len(self._buffer) > MAX_BODY:
            raise WebhookError("answer body too long")
        else:
            self._buffer.clear()  # read to the connection's end

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise WebhookError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        try:
            self._status = int(status_line[1])
        except ValueError:
            raise WebhookError(f"bad status line: {lines[0][:80]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise WebhookError(f"bad header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self._headers = headers
        self._to_close = (headers.get("connection", "").lower() == "close"
                          or status_line[0] == "HTTP/1.0")
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if self._status in NO_BODY:
            self._body_left = 0
        elif self._chunked:
            self._body_left = None
        elif "content-length" in headers:
            try:
                self._body_left = int(headers["content-length"])
            except ValueError:
                raise WebhookError("bad Content-Length") from None
            if not 0 <= self._body_left <= MAX_BODY:
                raise WebhookError("answer body too long")
        else:
            self._body_left = None
            self._to_close = True

    def _read_chunks(self) -> None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            try:
                size = int(bytes(self._buffer[:line_end]).split(b";", 1)[0], 16)
            except ValueError:
                raise WebhookError("bad chunk size") from None
            if size == 0:
                trailers_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailers_end < 0:
                    return
                del self._buffer[:trailers_end + 4]
                self._complete()
                return
            if size > MAX_BODY:
                raise WebhookError("answer chunk too long")
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            del self._buffer[:line_end + 2 + size + 2]

    def _complete(self) -> None:
        waiter = self._waiter
        self._waiter = None
        self._stop_timer()
        self.reusable = not self._to_close and self.transport is not None \
            and not self.transport.is_closing() and not self._buffer
        if not self.reusable:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self._waiter = None
        self._stop_timer()
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
