"""`cps kafka start --secure`: a SASL_SSL broker of its own, reached through KafkaConnection."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.broker.local import BrokerState, LocalBroker
from app.config.settings import Settings
from app.kafka.connection import BrokerUnreachable, KafkaConnection, started

CPS = str(Path(sys.executable).with_name("cps"))
# A block of ports for this test alone: `start(fresh=True)` wipes the run directory of
# its port, which must therefore never be another broker's (nor the shared broker-auto).
PORTS = range(19400, 19500)
REFUSAL_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[LocalBroker, BrokerState]]:
    home = Settings.from_env().kafka_home
    port = next(port for port in PORTS if _port_free(port))
    local = LocalBroker(home, port, report=lambda _line: None)
    try:
        yield local, local.start(fresh=True, secure=True)
    finally:
        local.stop()
        shutil.rmtree(local.run_dir, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_record_goes_through_sasl_ssl(broker):
    _local, state = broker
    topic = f"secure-{uuid.uuid4().hex[:10]}"
    assert asyncio.run(_round_trip(state.connection(), topic, b"over TLS")) == b"over TLS"


async def _round_trip(connection: KafkaConnection, topic: str, value: bytes) -> bytes | None:
    async with started(connection.producer(acks="all")) as producer:
        await producer.send_and_wait(topic, value)
    consumer = connection.consumer(topic, group_id=None, auto_offset_reset="earliest")
    async with started(consumer):
        message = await asyncio.wait_for(consumer.getone(), 30)
    return message.value


@pytest.mark.parametrize(("change", "explanation"), [
    ({"sasl_password": "not-the-password"},
     r"refused the login of 'cps' \(SCRAM-SHA-512\).*CPS_KAFKA_SASL_PASSWORD"),
    ({"security_protocol": "PLAINTEXT"},
     "broke off the PLAINTEXT handshake.*check CPS_KAFKA_SECURITY_PROTOCOL"),
    ({"ssl_cafile": ""}, "certificate verify failed.*CPS_KAFKA_SSL_CAFILE"),
])
def test_a_wrong_setting_is_refused_quickly_and_named(broker, change, explanation):
    _local, state = broker
    wrong = dataclasses.replace(state.connection(), **change)
    began = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=explanation):
        asyncio.run(wrong.check(timeout_s=10))
    assert time.monotonic() - began < REFUSAL_WITHIN_S


def test_the_command_prints_the_client_settings_last_the_bootstrap(broker):
    local, state = broker
    env = {**os.environ, "CPS_KAFKA_HOME": str(local.home)}
    port = str(state.port)
    for args in (["status", "--port", port], ["start", "--secure", "--port", port]):
        result = subprocess.run([CPS, "kafka", *args], capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[-1] == f"bootstrap={state.bootstrap}"
        assert lines[1:-1] == [
            "export CPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
            "export CPS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
            "export CPS_KAFKA_SASL_USERNAME=cps",
            f"export CPS_KAFKA_SASL_PASSWORD={state.login.password}",
            f"export CPS_KAFKA_SSL_CAFILE={local.tls_dir / 'ca.pem'}",
        ]
    plain = subprocess.run([CPS, "kafka", "start", "--port", port], capture_output=True,
                           text=True, env=env, timeout=120)
    assert plain.returncode == 1
    assert "a secure (SASL_SSL) broker is already running" in plain.stderr


def test_the_secrets_are_the_owners_alone(broker):
    local, _state = broker
    for private in (local.login_file, local.config_file, local.tls_dir / "server.pem"):
        assert private.stat().st_mode & 0o077 == 0, private
    assert sorted(path.name for path in local.tls_dir.iterdir()) == ["ca.pem", "server.pem"]


def test_a_worker_runs_end_to_end_over_sasl_ssl(broker, make_worker, prefix, events):
    from conftest import Kafka

    _local, state = broker
    worker = make_worker(broker=state.bootstrap, CPS_MONITOR_INTERVAL_S="1",
                         **state.client_settings()).start()
    kafka = Kafka(state.bootstrap, prefix, connection=state.connection())
    now = int(time.time() * 1000)
    kafka.produce("shops", [("s1", {"shop_id": "s1", "cps_joined_ms": now - 86_400_000,
                                    "cps_exited_ms": None, "authorized_channels": []})])
    time.sleep(1.5)  # configuration reaches the worker within moments
    kafka.produce("clicks", [("u1", events.click("c1", "u1", now - 60_000))])
    kafka.produce("orders", [("o1", events.order("o1", "u1", now))])
    attributions = kafka.read("attributions", until=lambda records: len(records) >= 1)
    assert [(r["key"], r["value"]["click_id"]) for r in attributions] == [("o1", "c1")]
    # Everything read and committed: /lag shows the one order at the end and no lag.
    deadline = time.monotonic() + 30
    orders: list[dict] = []
    while time.monotonic() < deadline:
        _status, body = worker.get("/lag?format=json")
        rows = json.loads(body)["partitions"] if body else []
        orders = [row for row in rows if row["topic"] == prefix + "orders"]
        if orders and sum(row["end"] for row in orders) == 1 and not any(
                row["lag"] for row in orders):
            break
        time.sleep(0.5)
    assert sum(row["end"] for row in orders) == 1 and not any(row["lag"] for row in orders), \
        orders


def test_a_worker_with_a_wrong_password_stops_at_once_saying_why(broker, make_worker):
    _local, state = broker
    settings = {**state.client_settings(), "CPS_KAFKA_SASL_PASSWORD": "not-the-password"}
    worker = make_worker("refused", broker=state.bootstrap, **settings).launch()
    assert worker.process.wait(60) == 1
    assert "refused the login of 'cps'" in worker.tail()
