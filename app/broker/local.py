"""A single-node Apache Kafka broker (KRaft) on loopback, for development and tests.

The broker jars come from Maven Central through Maven (the pom beside this
module) into a user cache, once. Each broker lives in its own run directory,
keyed by port, holding its config, data, log and pid, so `stop` ends exactly
the process `start` began and a second `start` finds the running one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
READY_TIMEOUT_S = 90.0


class BrokerError(RuntimeError):
    """The local broker cannot be fetched, started or stopped; the message says what to do."""


@dataclass(frozen=True, slots=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int
    version: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalBroker:
    """The broker of one port under `home` (CPS_KAFKA_HOME)."""

    def __init__(self, home: Path, port: int, *, report=print, run_dir: Path | None = None) -> None:
        self.home = home
        self.requested_port = port
        self.report = report
        self.libs = home / f"kafka-{KAFKA_VERSION}" / "libs"
        self.run_dir = run_dir or home / ("broker-auto" if port == 0 else f"broker-{port}")
        self.state_file = self.run_dir / "broker.json"
        self.config_file = self.run_dir / "server.properties"
        self.data_dir = self.run_dir / "data"
        self.log_dir = self.run_dir / "logs"

    # -- public commands -------------------------------------------------

    def start(self, *, fresh: bool = False) -> BrokerState:
        """Start the broker (or find it running) and wait until it answers metadata requests."""
        running = self.running()
        if running is not None:
            if fresh:
                raise BrokerError(
                    f"a broker is already running on {running.bootstrap} (pid {running.pid}); "
                    "stop it first to start fresh"
                )
            _wait_until_answering(running, None, self.log_dir, timeout=READY_TIMEOUT_S)
            self.report(f"reusing the running broker (pid {running.pid})")
            return running
        java = _require_java()
        self.ensure_jars()
        port = self.requested_port or self._previous_port() or _free_port()
        _require_free(port, "CPS_KAFKA_PORT")
        controller_port = _free_port()
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(_server_properties(port, controller_port, self.data_dir))
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage(java)
        state = self._launch(java, port, controller_port)
        _wait_until_answering(state, state.pid, self.log_dir, timeout=READY_TIMEOUT_S)
        return state

    def stop(self, *, timeout: float = 30.0) -> BrokerState | None:
        """Stop the broker this run directory started; None when none was running."""
        state = self.running()
        if state is None:
            self.state_file.unlink(missing_ok=True)
            return None
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_our_process(state.pid, self.config_file):
            time.sleep(0.2)
        if _is_our_process(state.pid, self.config_file):
            logger.warning("broker pid %s ignored SIGTERM for %.0fs; killing it",
                           state.pid, timeout)
            os.kill(state.pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        return state

    def running(self) -> BrokerState | None:
        """The recorded broker if its process is still alive and still ours."""
        try:
            raw = json.loads(self.state_file.read_text())
            state = BrokerState(int(raw["pid"]), int(raw["port"]), int(raw["controller_port"]),
                                str(raw["version"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state if _is_our_process(state.pid, self.config_file) else None

    def ensure_jars(self) -> Path:
        """Fetch the broker jars with Maven into the cache, once."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is not on PATH; it fetches the Kafka broker from Maven Central. "
                "Install Maven 3.6+ (e.g. `apt-get install maven`) and try again."
            )
        staging = self.libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        self.report(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (once)...")
        pom = resources.files("app.broker") / "pom.xml"
        with resources.as_file(pom) as pom_path:
            result = subprocess.run(
                [mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
                 f"-Dkafka.version={KAFKA_VERSION}"],
                capture_output=True, text=True, check=False,
            )
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise BrokerError(f"Maven could not fetch the Kafka jars:\n{tail}")
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.write_text(KAFKA_VERSION)
        return self.libs

    # -- internals -----------------------------------------------------------

    def _previous_port(self) -> int | None:
        """The port this run directory's broker had, so a restart keeps its address."""
        try:
            port = int((self.run_dir / "port").read_text())
        except (OSError, ValueError):
            return None
        return port if _port_free(port) else None

    def _java_command(self, java: str, *args: str) -> list[str]:
        log4j = resources.files("app.broker") / "log4j2.properties"
        return [
            java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{self.libs}/*", *args,
        ]

    def _format_storage(self, java: str) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        result = subprocess.run(
            # `--cluster-id=` form: a random id may begin with "-", which argparse
            # would take for an option (one format in 64 failed that way).
            self._java_command(java, "kafka.tools.StorageTool", "format",
                               f"--cluster-id={cluster_id}", "-c", str(self.config_file)),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")

    def _launch(self, java: str, port: int, controller_port: int) -> BrokerState:
        out = open(self.log_dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            self._java_command(java, "kafka.Kafka", str(self.config_file)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        state = BrokerState(process.pid, port, controller_port, KAFKA_VERSION)
        (self.run_dir / "port").write_text(str(port))
        self.state_file.write_text(json.dumps(
            {"pid": state.pid, "port": port, "controller_port": controller_port,
             "version": KAFKA_VERSION}
        ))
        return state


def _server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=8",
        "auto.create.topics.enable=true",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=8",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.hours=168",
        "log.segment.bytes=134217728",
        "",
    ])


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            f"Java is not on PATH; the Kafka broker needs Java {MIN_JAVA}+ "
            "(e.g. `apt-get install openjdk-17-jre-headless`)."
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, found {java} "
                          f"({(result.stderr or result.stdout).strip().splitlines()[0]})")
    return java


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether a listener could bind the port (as the broker does, TIME_WAIT is no obstacle)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _require_free(port: int, setting: str) -> None:
    if not _port_free(port):
        raise BrokerError(
            f"port {port} on 127.0.0.1 is taken by another process; set {setting} "
            "to a free port (0 picks one)"
        )


def _is_our_process(pid: int, config_file: Path) -> bool:
    """True when pid is alive and is the broker started with this config (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(config_file).encode() in cmdline


def _wait_until_answering(state: BrokerState, pid: int | None, log_dir: Path,
                          *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not _pid_alive(pid):
            raise BrokerError("the broker exited during start; last log lines:\n"
                              + _log_tail(log_dir))
        try:
            asyncio.run(_metadata_probe(state.bootstrap))
            return
        except Exception as exc:
            last_error = exc
            time.sleep(0.5)
    still_up = (f"; it is still starting as pid {state.pid} (a large data directory loads "
                "slowly): `cps kafka status` tells when it answers, `cps kafka stop` ends it"
                if _pid_alive(state.pid) else "")
    raise BrokerError(f"the broker on {state.bootstrap} did not answer within {timeout:.0f}s "
                      f"({last_error!r}){still_up}; log:\n{_log_tail(log_dir)}")


async def _metadata_probe(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    # A refused connection is the expected answer while the broker boots.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _log_tail(log_dir: Path, lines: int = 20) -> str:
    texts = []
    for name in ("stdout.log", "server.log"):
        with contextlib.suppress(OSError):
            texts.extend((log_dir / name).read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(texts[-lines:]) or "(no log output)"

