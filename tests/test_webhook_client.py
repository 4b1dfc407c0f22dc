"""The webhook client against a raw loopback server that answers each request as told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.sinks.webhook_client import WebhookClient, WebhookError

Answer = Callable[[int, bytes], list[bytes | float | None]]  # parts; float: pause; None: close


class RawServer:
    """Reads whole requests (head + Content-Length body) and writes the answer's parts."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook?x=1"

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for part in self.answer(len(self.requests), request):
                    if part is None:
                        writer.close()
                        return
                    if isinstance(part, float):
                        await writer.drain()
                        await asyncio.sleep(part)
                    else:
                        writer.write(part)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def run(answer: Answer, calls: Callable[[WebhookClient, str], object]):
    async def main():
        server = RawServer(answer)
        client = WebhookClient()
        async with server as url:
            try:
                return await calls(client, url), server
            finally:
                await client.close()
    return asyncio.run(main())


def post(client: WebhookClient, url: str, timeout_s: float = 5.0):
    return client.post(url, b'{"a":1}', {"Idempotency-Key": "k1"}, timeout_s=timeout_s)


def test_the_request_carries_path_host_length_headers_and_body():
    response, server = run(lambda n, r: [b"HTTP/1.1 204 No Content\r\n\r\n"], post)
    assert response.status == 204
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
    assert b"Content-Length: 7" in lines and b"Idempotency-Key: k1" in lines
    assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
    assert body == b'{"a":1}'


def test_connections_are_kept_and_reused_across_answer_kinds():
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
               b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
               b"2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 204 No Content\r\n\r\n"]

    async def calls(client, url):
        return [(await post(client, url)).status for _ in answers]

    statuses, server = run(lambda n, r: [answers[n - 1]], calls)
    assert statuses == [200, 201, 202, 204]
    assert server.connections == 1


def test_answers_arriving_byte_by_byte_are_parsed():
    answer = b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n" \
             b"4\r\nslow\r\n0\r\n\r\n"
    parts = [bytes([b]) for b in answer]

    async def calls(client, url):
        return [await post(client, url), await post(client, url)]

    responses, server = run(lambda n, r: parts, calls)
    assert [r.status for r in responses] == [429, 429]
    assert responses[0].headers["retry-after"] == "3"
    assert server.connections == 1


def test_connection_close_and_a_body_without_length_end_with_the_connection():
    answers = [[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", None],
               [b"HTTP/1.1 500 Oops\r\n\r\nread until the end", None],
               [b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", None]]

    async def calls(client, url):
        return [(await post(client, url)).status for _ in answers]

    statuses, server = run(lambda n, r: answers[n - 1], calls)
    assert statuses == [200, 500, 200]
    assert server.connections == 3


def test_a_kept_connection_the_receiver_closed_is_replaced_once():
    # The receiver closes the kept connection when the second request arrives on it (an
    # idle timeout racing the request): sent once more, on a new connection.
    answers = lambda n, r: [None] if n == 2 else [b"HTTP/1.1 204 No Content\r\n\r\n"]  # noqa: E731

    async def calls(client, url):
        return [(await post(client, url)).status, (await post(client, url)).status]

    statuses, server = run(answers, calls)
    assert statuses == [204, 204]
    assert len(server.requests) == 3 and server.connections == 2


def test_a_kept_connection_closed_while_idle_is_not_used():
    answers = lambda n, r: [b"HTTP/1.1 204 No Content\r\n\r\n", 0.05, None]  # noqa: E731

    async def calls(client, url):
        first = await post(client, url)
        await asyncio.sleep(0.2)
        return [first.status, (await post(client, url)).status]

    statuses, server = run(answers, calls)
    assert statuses == [204, 204]
    assert len(server.requests) == 2 and server.connections == 2


def test_a_receiver_closing_before_answering_is_an_error():
    with pytest.raises(WebhookError, match="closed before an answer"):
        run(lambda n, r: [None], post)


def test_a_cut_answer_is_an_error():
    with pytest.raises(WebhookError, match="mid-answer"):
        run(lambda n, r: [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", None], post)


@pytest.mark.parametrize("answer, error", [
    (b"SMTP ready\r\n\r\n", "not an HTTP"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "bad status"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
])
def test_malformed_answers_are_errors(answer, error):
    with pytest.raises(WebhookError, match=error):
        run(lambda n, r: [answer], post)


def test_a_slow_receiver_times_out_and_its_connection_is_not_reused():
    answers = lambda n, r: [1.0, b"HTTP/1.1 204 No Content\r\n\r\n"] if n == 1 else [  # noqa: E731
        b"HTTP/1.1 204 No Content\r\n\r\n"]

    async def calls(client, url):
        with pytest.raises(TimeoutError):
            await post(client, url, timeout_s=0.2)
        return (await post(client, url)).status

    status, server = run(answers, calls)
    assert status == 204 and server.connections == 2


def test_nothing_listening_is_an_error():
    async def calls(client, url):
        return await post(client, "http://127.0.0.1:9/hook")

    with pytest.raises(WebhookError, match="cannot connect"):
        run(lambda n, r: [], calls)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "http://h:99999/"])
def test_urls_it_cannot_post_to_are_errors(url):
    async def calls(client, _url):
        return await post(client, url)

    with pytest.raises(WebhookError):
        run(lambda n, r: [], calls)


@pytest.mark.parametrize("url", [
    "ftp://user:pw-mark@example.com/path-mark?token=q-mark",
    "http://user:pw-mark@h:99999/path-mark?token=q-mark",
    "http://user:pw-mark/path-mark@h/x?token=q-mark",  # the password read as the port
    "http://[::1/path-mark?token=q-mark",
    "http://127.0.0.1:9/path-mark?token=q-mark-\u00e9\u4e2d",  # no latin-1 for the head
])
def test_an_error_shows_no_part_of_the_url_but_scheme_host_and_port(url):
    async def calls(client, _url):
        return await post(client, url)

    with pytest.raises(WebhookError) as info:
        run(lambda n, r: [], calls)
    assert "mark" not in repr(info.value)


def test_a_header_with_a_line_break_is_refused_before_sending():
    async def calls(client, url):
        return await client.post(url, b"{}", {"X-Evil": "a\r\nInjected: 1"}, timeout_s=1)

    with pytest.raises(WebhookError, match="line break"):
        run(lambda n, r: [b"HTTP/1.1 204 No Content\r\n\r\n"], calls)


def test_concurrent_requests_use_connections_of_their_own():
    answers = lambda n, r: [0.05, b"HTTP/1.1 204 No Content\r\n\r\n"]  # noqa: E731

    async def calls(client, url):
        first = await asyncio.gather(*(post(client, url) for _ in range(10)))
        again = await asyncio.gather(*(post(client, url) for _ in range(10)))
        return [r.status for r in (*first, *again)]

    statuses, server = run(answers, calls)
    assert statuses == [204] * 20
    assert server.connections == 10
