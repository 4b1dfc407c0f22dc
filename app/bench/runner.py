"""Running `cps bench`: fill the input topics once, then let each implementation drain them.

Every implementation runs as its own process on the same broker, input
topics, partitions and data, with its own consumer group and output topic,
one after the other so they do not share the machine. A run is over when
the implementation has written one attribution for every order; its
throughput is the input events over the time from its first progress to
that moment, and its CPU time and peak memory come from the operating
system (`wait4`) when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
from aiokafka.structs import TopicPartition

from app.bench.workload import Shape, Workload
from app.config.settings import Settings
from app.kafka.connection import KafkaConnection, start_at_end, started
from app.kafka.topics import Role, TopicSpec
from app.kafka.topology import ensure_topics
from app.services.feeding import Feeder

# Below this, the time from first progress to the end is mostly polling intervals.
SHORTEST_TIMED_S = 0.5


@dataclass(frozen=True, slots=True)
class Implementation:
    name: str  # unique in a run: raw, peer, naive, engine, engine-x2, ...
    title: str
    command: Callable[[Path, Path, str, str, str], tuple[list[str], dict[str, str]]]
    # Processes in one consumer group, each with its own state directory (and web port).
    workers: int = 1


ENGINE = "engine"


def engine_name(workers: int) -> str:
    """`engine` for one worker, `engine-x<N>` for N workers in one group."""
    return ENGINE if workers == 1 else f"{ENGINE}-x{workers}"


def is_engine(name: str) -> bool:
    return name == ENGINE or name.startswith(f"{ENGINE}-x")


@dataclass(slots=True)
class Result:
    name: str
    title: str
    events: int
    orders: int
    workers: int = 1
    seconds: float = 0.0
    events_per_s: float = 0.0
    cpu_s: float = 0.0
    cpu_us_per_event: float = 0.0
    peak_rss_mb: float = 0.0
    attributions: int = 0
    error: str | None = None
    note: str | None = None
    delays_ms: dict[str, int | None] = field(default_factory=dict)


@dataclass(slots=True)
class Prefilled:
    prefix: str
    partitions: int
    events: int
    orders: set[str]
    config_path: Path


def _module(module: str) -> Callable:
    def command(state_dir: Path, config: Path, prefix: str, group: str,
                output: str, *, bootstrap: str, partitions: int) -> tuple[list[str], dict]:
        return ([sys.executable, "-m", module, "--bootstrap", bootstrap, "--prefix", prefix,
                 "--group", group, "--output", output, "--state-dir", str(state_dir),
                 "--config", str(config), "--partitions", str(partitions)], dict(os.environ))
    return command


def run_directory(prefix: str) -> Path:
    """Where a run keeps its files: configurations, each worker's state and log. Every
    topic prefix of a run starts with the run's own, `bench.<hex>.`."""
    return Path(tempfile.gettempdir()) / f"cps-{'.'.join(prefix.split('.')[:2])}"


def _new_directory(prefix: str, name: str) -> Path:
    """A fresh directory named after `name` in the run's directory."""
    run = run_directory(prefix)
    run.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=run))


def write_configuration(rows: list[tuple[str, str, dict]], prefix: str) -> Path:
    """The configuration records as the file an implementation loads at start."""
    path = _new_directory(prefix, "configuration") / "configuration.jsonl"
    path.write_bytes(b"".join(orjson.dumps(list(row)) + b"\n" for row in rows))
    return path


async def prefill(settings: Settings, shape: Shape, prefix: str,
                  report: Callable[[str], None]) -> Prefilled:
    """Create the topics and write the configuration and every event, once."""
    start_ms = int(time.time() * 1000) - 2 * 3_600_000
    workload = Workload(shape, start_ms=start_ms, run=prefix.rstrip(".").split(".")[-1] + "-")
    configuration = list(workload.configuration())
    config_path = write_configuration(configuration, prefix)
    orders: set[str] = set()
    feeding = replace(settings, topic_prefix=prefix)
    async with Feeder(feeding) as feeder:
        for topic, key, value in configuration:
            await feeder.send(topic, key, orjson.dumps(value))
        started = time.monotonic()
        for count, (topic, key, value) in enumerate(workload.events(), 1):
            await feeder.send(topic, key, value)
            if topic == "orders":
                orders.add(key)
            if count % 100_000 == 0:
                report(f"bench: filled {count:,} of {shape.events:,} events "
                       f"({count / (time.monotonic() - started):,.0f}/s)")
    report(f"bench: input ready: {shape.events:,} events, {len(orders):,} orders, "
           f"{workload.clicks:,} clicks, topics {prefix}clicks and {prefix}orders")
    return Prefilled(prefix, settings.partitions, shape.events, orders, config_path)


async def measure(settings: Settings, implementation: Implementation, data: Prefilled,
                  report: Callable[[str], None], *, timeout_s: float) -> Result:
    """Run one implementation over the prefilled input until every order is attributed."""
    result = Result(implementation.name, implementation.title, data.events, len(data.orders),
                    implementation.workers)
    output = await prepare_output(settings, implementation, data.prefix)
    # From the output's end: an engine run before this one wrote the same topic.
    counter = OutputCounter(settings.broker, output, settings.partitions)
    await counter.start()
    launched = await launch(settings, implementation, data.prefix, data.config_path,
                            output=output)
    group = launched.group
    began = time.monotonic()
    first_progress: float | None = None
    inputs = [f"{data.prefix}clicks", f"{data.prefix}orders"]
    try:
        deadline = began + timeout_s
        next_report = next_probe = began + 5
        while counter.seen < len(data.orders):
            await counter.poll()
            now = time.monotonic()
            if first_progress is None and not counter.seen and now >= next_probe:
                # Offsets show work before any attribution does: the engine decides an
                # order only once its inputs are read as far as they reached (a backlog:
                # to its end), so its first attribution comes late in a drain.
                next_probe = now + 0.5
                if await _committed_any(settings.broker, group, inputs):
                    first_progress = now
            if first_progress is None and counter.seen:
                first_progress = now
            if exited := launched.exited():
                result.error = exited
                break
            if now > deadline:
                result.error = f"not done after {timeout_s:.0f}s; log: {launched.log_paths}"
                break
            if now >= next_report:
                report(f"bench: {implementation.name}: {counter.seen:,} of "
                       f"{len(data.orders):,} orders attributed")
                next_report = now + 5
        finished = time.monotonic()
    finally:
        usage = await asyncio.to_thread(launched.stop)
        await counter.stop()
    result.attributions = counter.seen
    if result.error is None and first_progress is not None:
        # Timed from the first sign of work (input offsets committed or an attribution
        # out), so start-up (group join, recovery) does not count; an implementation that
        # holds its attributions back until late still pays for the wait.
        result.seconds = finished - first_progress
        if result.seconds < SHORTEST_TIMED_S:  # a tiny input, drained in one go
            result.seconds = SHORTEST_TIMED_S
            result.note = f"done within {SHORTEST_TIMED_S} s: events/s is a lower bound"
        result.events_per_s = data.events / result.seconds
    result.cpu_s = usage.cpu_s
    result.cpu_us_per_event = usage.cpu_s * 1e6 / data.events
    result.peak_rss_mb = usage.peak_rss_mb
    return result


LOG_NAME = "output.log"


@dataclass(frozen=True, slots=True)
class Usage:
    """What the operating system counted for an implementation's processes."""
    cpu_s: float = 0.0  # user + system, summed over the workers
    peak_rss_mb: float = 0.0  # the largest worker's


@dataclass(slots=True)
class Launched:
    """An implementation's worker processes, all in one consumer group."""
    processes: list[subprocess.Popen]
    group: str
    state_dirs: list[Path]
    ready_urls: list[str] = field(default_factory=list)  # the engine's /ready, per worker

    @property
    def log_paths(self) -> str:
        return ", ".join(str(state_dir / LOG_NAME) for state_dir in self.state_dirs)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def exited(self) -> str | None:
        """Which worker has stopped and how, while none should; None while all run."""
        workers = zip(self.processes, self.state_dirs, strict=True)
        for number, (process, state_dir) in enumerate(workers, 1):
            if process.poll() is not None:
                return (f"worker {number} of {len(self.processes)} exited with "
                        f"{process.returncode}; log: {state_dir / LOG_NAME}")
        return None

    def stop(self) -> Usage:
        usages = [stop(process) for process in self.processes]
        return Usage(sum(u.ru_utime + u.ru_stime for u in usages if u is not None),
                     max((u.ru_maxrss / 1024 for u in usages if u is not None), default=0.0))


async def prepare_output(settings: Settings, implementation: Implementation,
                         prefix: str) -> str:
    """The topic `implementation` writes its attributions to, created if it is not the
    engine's own (which `Feeder` creates with the engine's other topics)."""
    if is_engine(implementation.name):
        return f"{prefix}attributions"
    output = f"{prefix}{implementation.name}-{secrets.token_hex(3)}.attributions"
    await ensure_topics(KafkaConnection.from_settings(settings),
                        [TopicSpec(output, Role.OUTPUT),
                         TopicSpec(f"{output}-changelog", Role.CHANGELOG)],
                        partitions=settings.partitions, replication=settings.replication)
    return output


async def delete_run_topics(settings: Settings, prefix: str) -> tuple[int, int]:
    """Delete every topic whose name holds the run's `prefix` (a peer names its internal
    topics after its group, which holds it too); how many were deleted and how many the
    broker refused. A broker kept for many runs would otherwise gather thousands of
    partitions, each holding files open, until it accepts no more connections."""
    async with started(KafkaConnection.from_settings(settings).admin()) as admin:
        topics = [topic for topic in await admin.list_topics() if prefix in topic]
        refused = 0
        for start in range(0, len(topics), 100):
            # The answer names an error per topic; aiokafka raises none of them.
            response = await admin.delete_topics(topics[start:start + 100])
            refused += sum(1 for _topic, error, *_rest in response.topic_error_codes if error)
        return len(topics) - refused, refused


async def launch(settings: Settings, implementation: Implementation, prefix: str,
                 config_path: Path, *, output: str) -> Launched:
    """Start `implementation`'s workers on the topics of `prefix`, each in a process and
    state directory of its own, in a fresh consumer group, writing to `output`."""
    group = f"{prefix}{implementation.name}-{secrets.token_hex(3)}"
    launched = Launched([], group, [])
    for _ in range(implementation.workers):
        state_dir = _new_directory(prefix, implementation.name)
        argv, env = implementation.command(state_dir, config_path, prefix, group, output)
        with open(state_dir / LOG_NAME, "wb") as log:
            launched.processes.append(subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        launched.state_dirs.append(state_dir)
        if "CPS_WEB_PORT" in env:
            launched.ready_urls.append(f"http://127.0.0.1:{env['CPS_WEB_PORT']}/ready")
    return launched


async def group_members(bootstrap: str, group: str) -> int:
    """Members of `group` once it is stable (every member has its partitions), else 0."""
    async with started(KafkaConnection(bootstrap).admin()) as admin:
        try:
            [response] = await admin.describe_consumer_groups([group])
        except Exception:  # the group's coordinator may not be known yet
            return 0
    _error, _group, state, _protocol_type, _protocol, members = response.groups[0][:6]
    return len(members) if state == "Stable" else 0


async def _committed_any(bootstrap: str, group: str, topics: list[str]) -> bool:
    """Whether `group` has committed an offset beyond 0 on any of `topics`."""
    async with started(KafkaConnection(bootstrap).admin()) as admin:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except Exception:  # the group may not exist yet
            return False
    return any(tp.topic in topics and meta.offset > 0 for tp, meta in offsets.items())


def stop(process: subprocess.Popen):
    """Stop the process (and what it started) and return its resource usage: None when it
    had exited already and was reaped (by `exited()`'s poll), its usage gone with it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    if process.returncode is not None:
        return None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid, _status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = 0
            return rusage
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    _pid, _status, rusage = os.wait4(process.pid, 0)
    return rusage


class OutputCounter:
    """Counts the distinct orders attributed on an output topic (committed records only),
    from the topic's end when it starts: an earlier run may have written it.

    With `timed`, also keeps for each of those orders the time from its `ts_ms` to the
    moment its attribution could be read here (orders that waited for a late click or
    their `created`, marked `delayed`, are counted apart).
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, *,
                 timed: set[bytes] | None = None) -> None:
        self.topic = topic
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer = KafkaConnection(bootstrap).consumer(
            group_id=None, isolation_level="read_committed", enable_auto_commit=False)
        self.timed = timed
        self.attributed: set[bytes] = set()
        self.delays: list[int] = []
        self.waited = 0

    @property
    def seen(self) -> int:
        return len(self.attributed)

    async def start(self) -> None:
        await start_at_end(self.consumer, self.partitions)

    async def poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=100, max_records=20_000)
        read_ms = int(time.time() * 1000)
        for messages in batches.values():
            for message in messages:
                if message.key is None or message.key in self.attributed:
                    continue
                self.attributed.add(message.key)
                if self.timed is not None and message.key in self.timed:
                    value = orjson.loads(message.value)
                    if value["delayed"]:
                        self.waited += 1
                    else:
                        self.delays.append(read_ms - value["ts_ms"])

    async def stop(self) -> None:
        await self.consumer.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine_command(settings: Settings) -> Callable:
    def command(state_dir: Path, config: Path, prefix: str, group: str,
                output: str) -> tuple[list[str], dict]:
        env = dict(os.environ, CPS_BROKER=settings.broker, CPS_TOPIC_PREFIX=prefix,
                   CPS_APP_ID=group, CPS_DATA_DIR=str(state_dir),
                   CPS_WEB_PORT=str(free_port()), CPS_PARTITIONS=str(settings.partitions),
                   CPS_ADMIN_TOKEN=secrets.token_hex(8), CPS_LINK_SECRET=secrets.token_hex(8),
                   CPS_VIEW_TOKEN=secrets.token_hex(8),
                   CPS_LOG_LEVEL="warn",
                   # Orders without a click wait this long for a late one; the others
                   # decide at once, so a 30 s default would only add a tail to the run.
                   CPS_ATTRIBUTION_GRACE_MS="1000")
        return [sys.executable, "-m", "app", "worker"], env
    return command


def implementations(settings: Settings,
                    engine_workers: tuple[int, ...] = (1,)) -> dict[str, Implementation]:
    """Every implementation by name; the engine once per worker count."""
    def module(name: str) -> Callable:
        command = _module(name)
        return lambda *args: command(*args, bootstrap=settings.broker,
                                     partitions=settings.partitions)
    return {
        "raw": Implementation("raw", "a. raw aiokafka loop (the limit)",
                              module("app.bench.raw_loop")),
        "peer": Implementation("peer", "b. Quix Streams (peer)", module("app.bench.peer_quix")),
        "naive": Implementation("naive", "c. naive Faust agent",
                                module("app.bench.naive_faust")),
        **{engine_name(n): engine(settings, n) for n in engine_workers},
    }


def engine(settings: Settings, workers: int = 1) -> Implementation:
    """The engine as shipped, `workers` processes in one consumer group."""
    title = "d. the engine as shipped" + (f" ({workers} workers)" if workers > 1 else "")
    return Implementation(engine_name(workers), title, engine_command(settings), workers)
