"""A single-node Apache Kafka broker (KRaft) on loopback, for development and tests.

The broker jars come from Maven Central through Maven (the pom beside this
module) into a user cache, once. Each broker lives in its own run directory,
keyed by port, holding its config, data, log and pid, so `stop` ends exactly
the process `start` began and a second `start` finds the running one.

A run directory is plain (PLAINTEXT) or secure (SASL_SSL with a SCRAM login,
`start(secure=True)`) from the moment its storage is formatted: the SCRAM user
lives in the formatted metadata, and its login and certificates in the run
directory beside it (`login.json`, `tls/`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from app.broker import BrokerError
from app.broker.process import (
    free_port,
    is_our_process,
    log_tail,
    pid_alive,
    port_free,
    require_free,
)
from app.broker.secure import (
    CA_FILE,
    SCRAM_MECHANISM,
    SCRAM_USER,
    ScramLogin,
    make_certificates,
    require_openssl,
    sasl_ssl_properties,
    write_private,
)
from app.kafka.connection import KafkaConnection

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int
    version: str
    login: ScramLogin | None = None  # None: a plain broker

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure(self) -> bool:
        return self.login is not None

    def connection(self) -> KafkaConnection:
        """How a client reaches this broker, logged in when it is secure."""
        if self.login is None:
            return KafkaConnection(self.bootstrap)
        return KafkaConnection(self.bootstrap, security_protocol="SASL_SSL",
                               sasl_mechanism=SCRAM_MECHANISM,
                               sasl_username=self.login.username,
                               sasl_password=self.login.password,
                               ssl_cafile=str(self.login.cafile))

    def client_settings(self) -> dict[str, str]:
        """The CPS_KAFKA_* settings a client needs besides CPS_BROKER (none for a plain broker)."""
        connection = self.connection()
        if not connection.uses_sasl:
            return {}
        return {"CPS_KAFKA_SECURITY_PROTOCOL": connection.security_protocol,
                "CPS_KAFKA_SASL_MECHANISM": connection.sasl_mechanism,
                "CPS_KAFKA_SASL_USERNAME": connection.sasl_username,
                "CPS_KAFKA_SASL_PASSWORD": connection.sasl_password,
                "CPS_KAFKA_SSL_CAFILE": connection.ssl_cafile}


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
        self.login_file = self.run_dir / "login.json"
        self.tls_dir = self.run_dir / "tls"

    # -- public commands -------------------------------------------------

    def start(self, *, fresh: bool = False, secure: bool = False) -> BrokerState:
        """Start the broker (or find it running) and wait until it answers metadata requests.

        `secure` serves clients over SASL_SSL with a SCRAM login; the run directory keeps
        whichever it was formatted with, so switching needs `fresh`.
        """
        running = self.running()
        if running is not None:
            if fresh:
                raise BrokerError(
                    f"a broker is already running on {running.bootstrap} (pid {running.pid}); "
                    "stop it first to start fresh"
                )
            if running.secure != secure:
                raise BrokerError(
                    f"a {_kind(running.secure)} broker is already running on "
                    f"{running.bootstrap} (pid {running.pid}); stop it first to start a "
                    f"{_kind(secure)} one (with --fresh: its data cannot be reused)"
                )
            _wait_until_answering(running, None, self.log_dir, timeout=READY_TIMEOUT_S)
            self.report(f"reusing the running broker (pid {running.pid})")
            return running
        if not fresh:
            self._require_formatted_as(secure)
        java = _require_java()
        self.ensure_jars()
        port = self.requested_port or self._previous_port() or free_port()
        require_free(port, "CPS_KAFKA_PORT")
        controller_port = free_port()
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        formatted = self._formatted()
        login = self._login(secure=secure, formatted=formatted)
        # Private: a secure broker's config holds its own SCRAM password.
        write_private(self.config_file,
                       _server_properties(port, controller_port, self.data_dir, login))
        if not formatted:
            self._format_storage(java, login)
        state = self._launch(java, port, controller_port, login)
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
        while time.monotonic() < deadline and is_our_process(state.pid, self.config_file):
            time.sleep(0.2)
        if is_our_process(state.pid, self.config_file):
            logger.warning("broker pid %s ignored SIGTERM for %.0fs; killing it",
                           state.pid, timeout)
            os.kill(state.pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        return state

    def running(self) -> BrokerState | None:
        """The recorded broker if its process is still alive and still ours."""
        try:
            raw = json.loads(self.state_file.read_text())
            login = self._recorded_login() if self.login_file.exists() else None
            state = BrokerState(int(raw["pid"]), int(raw["port"]), int(raw["controller_port"]),
                                str(raw["version"]), login)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state if is_our_process(state.pid, self.config_file) else None

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

    def _formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def _require_formatted_as(self, secure: bool) -> None:
        """Refuse data formatted the other way: a plain broker's storage has no SCRAM user,
        and a secure one's clients would lose their login."""
        if self._formatted() and self.login_file.exists() != secure:
            raise BrokerError(
                f"{self.run_dir} holds the data of a {_kind(not secure)} broker; start it "
                f"{'without' if secure else 'with'} --secure, or add --fresh to delete its "
                f"data and start a {_kind(secure)} one"
            )

    def _login(self, *, secure: bool, formatted: bool) -> ScramLogin | None:
        """The recorded login of formatted secure data, or, for data about to be formatted,
        a new one with a new CA and certificate (None for a plain broker)."""
        if formatted:
            return self._recorded_login() if secure else None
        # Left over by --fresh, or by a secure format that failed.
        self.login_file.unlink(missing_ok=True)
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        if not secure:
            return None
        make_certificates(require_openssl(), self.tls_dir)
        login = ScramLogin(SCRAM_USER, secrets.token_hex(16), self.tls_dir / CA_FILE)
        write_private(self.login_file, json.dumps(
            {"username": login.username, "password": login.password,
             "cafile": str(login.cafile)}))
        return login

    def _recorded_login(self) -> ScramLogin:
        raw = json.loads(self.login_file.read_text())
        return ScramLogin(str(raw["username"]), str(raw["password"]), Path(raw["cafile"]))

    def _previous_port(self) -> int | None:
        """The port this run directory's broker had, so a restart keeps its address."""
        try:
            port = int((self.run_dir / "port").read_text())
        except (OSError, ValueError):
            return None
        return port if port_free(port) else None

    def _java_command(self, java: str, *args: str) -> list[str]:
        log4j = resources.files("app.broker") / "log4j2.properties"
        return [
            java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{self.libs}/*", *args,
        ]

    def _format_storage(self, java: str, login: ScramLogin | None = None) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # The SCRAM user goes into the first metadata: adding it later would take an admin
        # client that is already logged in, and the broker logs in to itself as this user.
        scram = ([] if login is None else
                 [f"--add-scram={SCRAM_MECHANISM}=[name={login.username},"
                  f"password={login.password}]"])
        result = subprocess.run(
            # `--cluster-id=` form: a random id may begin with "-", which argparse
            # would take for an option (one format in 64 failed that way).
            self._java_command(java, "kafka.tools.StorageTool", "format",
                               f"--cluster-id={cluster_id}", "-c", str(self.config_file),
                               *scram),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")

    def _launch(self, java: str, port: int, controller_port: int,
                login: ScramLogin | None) -> BrokerState:
        out = open(self.log_dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            self._java_command(java, "kafka.Kafka", str(self.config_file)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        state = BrokerState(process.pid, port, controller_port, KAFKA_VERSION, login)
        (self.run_dir / "port").write_text(str(port))
        self.state_file.write_text(json.dumps(
            {"pid": state.pid, "port": port, "controller_port": controller_port,
             "version": KAFKA_VERSION}
        ))
        return state


SEGMENT_BYTES = 128 * 1024 * 1024
INDEX_BYTES = SEGMENT_BYTES // 4096 * 12


def _server_properties(port: int, controller_port: int, data_dir: Path,
                       login: ScramLogin | None = None) -> str:
    listener = "PLAINTEXT" if login is None else "SASL_SSL"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners={listener}://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        # The broker reaches itself (transaction markers) through the clients' listener,
        # logged in as the SCRAM user: a second, unauthenticated listener for itself would
        # let any local process past the login.
        f"inter.broker.listener.name={listener}",
        # The controller listener stays PLAINTEXT: only this process dials it, on loopback.
        f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
        *([] if login is None else sasl_ssl_properties(login)),
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
        f"log.segment.bytes={SEGMENT_BYTES}",
        # A partition's index files are mapped when its first index entry is written
        # (after its first 4 KiB). At Kafka's 10 MiB that stalled every produce to the
        # broker 5-20 ms per file: 1-6 s for an engine's few hundred fresh partitions
        # (README.md, "Kafka version"). This size holds a whole segment's entries (12 bytes per
        # 4 KiB in the time index) and maps without a measurable stall.
        f"log.index.size.max.bytes={INDEX_BYTES}",
        "",
    ])


def _kind(secure: bool) -> str:
    return "secure (SASL_SSL)" if secure else "plain (PLAINTEXT)"


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


def _wait_until_answering(state: BrokerState, pid: int | None, log_dir: Path,
                          *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            raise BrokerError("the broker exited during start; last log lines:\n"
                              + log_tail(log_dir))
        try:
            asyncio.run(_metadata_probe(state.connection()))
            return
        except Exception as exc:
            last_error = exc
            time.sleep(0.5)
    still_up = (f"; it is still starting as pid {state.pid} (a large data directory loads "
                "slowly): `cps kafka status` tells when it answers, `cps kafka stop` ends it"
                if pid_alive(state.pid) else "")
    raise BrokerError(f"the broker on {state.bootstrap} did not answer within {timeout:.0f}s "
                      f"({last_error!r}){still_up}; log:\n{log_tail(log_dir)}")


async def _metadata_probe(connection: KafkaConnection) -> None:
    # A refused connection is the expected answer while the broker boots.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    await connection.check(timeout_s=3.0)


