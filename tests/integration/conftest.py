"""Real-broker fixtures: one local Kafka per session, fresh topics and group per test.

`make test` starts the broker and exports CPS_BROKER; run alone, the session
starts its own broker on a free port (`cps kafka start` machinery) and stops it.
Workers run as real `cps worker` processes, each with its own prefix, app id,
data directory and web port, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from tokens import ADMIN_TOKEN, VIEW_TOKEN

from app.broker.local import LocalBroker
from app.config.settings import Settings
from app.kafka.connection import KafkaConnection, started
from app.kafka.topics import Role, TopicSpec
from app.kafka.topology import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
CPS = str(Path(sys.executable).with_name("cps"))

pytestmark = pytest.mark.kafka


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def bootstrap() -> Iterable[str]:
    given = os.environ.get("CPS_BROKER")
    if given:
        yield given
        return
    broker = LocalBroker(Settings.from_env().kafka_home, 0, report=lambda _line: None)
    state = broker.start(fresh=True)
    try:
        yield state.bootstrap
    finally:
        broker.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Kafka:
    """Produce and read records of one prefix, synchronously, for test code."""

    def __init__(self, bootstrap: str, prefix: str,
                 connection: KafkaConnection | None = None) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.connection = connection or KafkaConnection(bootstrap)

    def produce(self, topic: str, records: Iterable[tuple[str | bytes | None, object]]) -> None:
        asyncio.run(self._produce(self.prefix + topic, list(records)))

    async def _produce(self, topic: str, records: list) -> None:
        async with started(self.connection.producer(acks="all")) as producer:
            for key, value in records:
                raw_key = key.encode() if isinstance(key, str) else key
                raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
                await producer.send_and_wait(topic, raw, key=raw_key)

    def read(self, topic: str, *, until: Callable[[list[dict]], bool] | None = None,
             timeout: float = 60.0, settle: float = 0.0) -> list[dict]:
        """Every committed record of the topic, as dicts with key/partition/offset/value."""
        return asyncio.run(self._read(self.prefix + topic, until, timeout, settle))

    async def _read(self, topic, until, timeout, settle) -> list[dict]:
        consumer = self.connection.consumer(topic, group_id=None, auto_offset_reset="earliest",
                                            isolation_level="read_committed")
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        async with started(consumer):
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for messages in batch.values():
                    records.extend(_record(m) for m in messages)
                if until is not None and until(records):
                    break
            if settle:
                await asyncio.sleep(settle)
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(_record(m) for m in messages)
        return records


def slot_ids(log: str) -> list[str]:
    """The transactional ids of a worker's slots, from its log."""
    found = re.findall(r"transactional ids of this worker's slots: (.+)", log)
    assert found, "the worker logged no slot transactional id"
    return found[-1].strip().split(", ")


async def take_over(connection: KafkaConnection, transactional_ids: list[str]) -> None:
    """Start a producer under each id: the broker fences the worker's producers."""
    for transactional_id in transactional_ids:
        producer = connection.producer(transactional_id=transactional_id)
        await producer.start()
        await producer.stop()


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Plain topics, as the engine creates its outputs (and waits until they are there)."""
    await ensure_topics(KafkaConnection(bootstrap), [TopicSpec(name, Role.OUTPUT)
                                                     for name in names],
                        partitions=partitions, replication=1)


def _record(message) -> dict:
    """The record as a dict; `value` is None when it is not JSON (see `raw`)."""
    try:
        value = orjson.loads(message.value) if message.value is not None else None
    except orjson.JSONDecodeError:
        value = None
    return {"key": message.key.decode(errors="replace") if message.key is not None else None,
            "partition": message.partition, "offset": message.offset, "value": value,
            "raw": message.value}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass(frozen=True)
class _Own:
    """One of a worker's own tokens, by its setting."""

    setting: str


VIEWER, ADMINISTRATOR = _Own("CPS_VIEW_TOKEN"), _Own("CPS_ADMIN_TOKEN")


class Worker:
    """A `cps worker` process with its own settings; start, stop, kill, wipe."""

    def __init__(self, bootstrap: str, prefix: str, data_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "CPS_BROKER": bootstrap, "CPS_TOPIC_PREFIX": prefix, "CPS_APP_ID": prefix.rstrip("."),
            "CPS_DATA_DIR": str(data_dir), "CPS_WEB_PORT": str(self.port),
            "CPS_ADMIN_TOKEN": ADMIN_TOKEN, "CPS_LINK_SECRET": "test-secret",
            "CPS_VIEW_TOKEN": VIEW_TOKEN, "CPS_PARTITIONS": "4", "CPS_LOG_LEVEL": "info",
            **settings,
        }
        # The repository's own `cps`, run from the repository; test_wheel points both elsewhere.
        self.command = [CPS, "worker"]
        self.cwd = ROOT
        self.process: subprocess.Popen | None = None
        self.logs: list[Path] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Worker:
        """Start the process without waiting for it to be ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir.with_name(f"{self.data_dir.name}-{len(self.logs)}.log")
        self.logs.append(log)
        with open(log, "wb") as output:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd,
                                            stdout=output, stderr=subprocess.STDOUT)
        return self

    def start(self, *, timeout: float = 120.0) -> Worker:
        return self.launch().wait_ready(timeout=timeout)

    def wait_ready(self, *, timeout: float = 120.0) -> Worker:
        """Wait for the launched process to answer /ready with 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.tail()}")
            if self.get("/ready")[0] == 200:
                return self
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        status, _headers, body = self.request("GET", path)
        return status, body

    def request(self, method: str, path: str, body: object = None, *,
                token: str | _Own | None = VIEWER,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request, as a reader with the worker's view token
        unless `token` says otherwise (None: no token); redirects are not followed."""
        if isinstance(token, _Own):
            token = self.env[token.setting]
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=headers or {})
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), exc.read()
        except OSError:
            return 0, {}, b""

    def admin(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        status, _headers, raw = self.request(method, path, body, token=ADMINISTRATOR)
        return status, orjson.loads(raw) if raw else {}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def wipe_state(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail(self, lines: int = 60) -> str:
        if not self.logs:
            return ""
        text = self.logs[-1].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def click(click_id: str, buyer: str, ts_ms: int, *, shop: str = "s1", channel: str = "ch",
          promoter: str = "p1", **extra) -> dict:
    return {"click_id": click_id, "ts_ms": ts_ms, "buyer_id": buyer, "shop_id": shop,
            "channel_id": channel, "promoter_id": promoter, "item_id": "i1", **extra}


def order(order_id: str, buyer: str, ts_ms: int, *, event: str = "created", shop: str = "s1",
          **extra) -> dict:
    return {"order_id": order_id, "event": event, "ts_ms": ts_ms, "buyer_id": buyer,
            "shop_id": shop, "items": [{"item_id": "i1", "category_id": "c1", "quantity": 1,
                                        "amount": 12900}], **extra}


@pytest.fixture
def events() -> SimpleNamespace:
    """Builders of click and order events for the tests."""
    return SimpleNamespace(click=click, order=order)


class Receiver:
    """A webhook receiver in a thread: records every request, answers as `respond` says.

    `respond(n, event)` gets the request's number (from 1) and its JSON body and returns
    (status, headers, delay_s).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict] = []
        self.respond = lambda n, event: (200, {}, 0.0)
        self._loop = None
        self._thread = None
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        import threading

        from aiohttp import web

        started = threading.Event()

        async def handle(request):
            body = await request.read()
            event = orjson.loads(body)
            status, headers, delay = self.respond(len(self.requests) + 1, event)
            self.requests.append({"at": time.monotonic(), "headers": dict(request.headers),
                                  "body": body, "event": event, "status": status})
            if delay:
                await asyncio.sleep(delay)
            return web.Response(status=status, headers=headers)

        def serve():
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/hook", handle)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def event_ids(self) -> list[str]:
        """Event ids of the requests answered with success, in arrival order."""
        return [r["event"]["event_id"] for r in self.requests if 200 <= r["status"] < 300]

    def wait_for(self, condition, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return True
            time.sleep(0.1)
        return False


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make() -> Receiver:
        receiver = Receiver().start()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def prefix(bootstrap: str) -> Iterable[str]:
    """The test's own topic prefix; its topics (and its workers' changelogs, named after the
    app id, the prefix without its dot) are deleted after it, so a broker running the whole
    suite does not keep every test's partitions open (it ran out of file handles)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    asyncio.run(_delete_topics(bootstrap, prefix.rstrip(".")))


async def _delete_topics(bootstrap: str, starting_with: str) -> None:
    admin = KafkaConnection(bootstrap).admin(request_timeout_ms=10_000)
    try:
        async with started(admin):
            ours = [t for t in await admin.list_topics() if t.startswith(starting_with)]
            if ours:
                await admin.delete_topics(ours, timeout_ms=10_000)
    except Exception as exc:  # a cleanup that fails must not fail the test
        print(f"topics of {starting_with} not deleted: {exc!r}")


@pytest.fixture
def kafka(bootstrap: str, prefix: str) -> Kafka:
    return Kafka(bootstrap, prefix)


@pytest.fixture
def make_worker(bootstrap: str, prefix: str, tmp_path: Path):
    workers: list[Worker] = []

    def make(name: str = "w1", *, worker_prefix: str | None = None,
             broker: str | None = None, **settings: str) -> Worker:
        worker = Worker(broker or bootstrap, worker_prefix or prefix, tmp_path / name,
                        **settings)
        workers.append(worker)
        return worker

    yield make
    # Killed, not stopped: each test has its own topics and group, so nothing is left for
    # another test, and a graceful stop takes seconds per worker (the tests that check a
    # graceful stop call `stop` themselves).
    for worker in workers:
        worker.kill()
