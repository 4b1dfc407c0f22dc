"""`cps kafka`: clear failures without Java, Maven or a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.broker import local
from app.broker.local import BrokerError, LocalBroker
from app.settings import Settings

CPS = str(Path(sys.executable).with_name("cps"))


def test_java_missing_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match=r"Java is not on PATH.*Java 17"):
        LocalBroker(tmp_path, 0).start()


def test_old_java_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(local.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(local.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, stdout="", stderr='openjdk version "11.0.2" 2019-01-15'))
    with pytest.raises(BrokerError, match="needs Java 17"):
        LocalBroker(tmp_path, 0).start()


def test_maven_missing_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(local.shutil, "which", lambda name: None if name == "mvn" else name)
    with pytest.raises(BrokerError, match="Maven \\(mvn\\) is not on PATH"):
        LocalBroker(tmp_path, 0).ensure_jars()


def test_status_without_a_broker(tmp_path):
    result = subprocess.run([CPS, "kafka", "status", "--port", "1"], capture_output=True,
                            text=True, env={"CPS_KAFKA_HOME": str(tmp_path), "PATH": ""})
    assert result.returncode == 1 and "not running" in result.stdout


@pytest.mark.kafka
def test_start_reuse_status_stop_and_a_taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        taken = subprocess.run([CPS, "kafka", "start", "--port", str(port)], capture_output=True,
                               text=True)
        assert taken.returncode == 1
        assert f"port {port} on 127.0.0.1 is taken" in taken.stderr
    try:
        first = subprocess.run([CPS, "kafka", "start", "--port", str(port)], capture_output=True,
                               text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip().splitlines()[-1] == f"bootstrap=127.0.0.1:{port}"
        again = subprocess.run([CPS, "kafka", "start", "--port", str(port)], capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0 and "reusing the running broker" in again.stderr
        assert again.stdout.strip().splitlines()[-1] == f"bootstrap=127.0.0.1:{port}"
        status = subprocess.run([CPS, "kafka", "status", "--port", str(port)],
                                capture_output=True, text=True)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        stop = subprocess.run([CPS, "kafka", "stop", "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert "stopped broker pid" in stop.stdout
    assert subprocess.run([CPS, "kafka", "status", "--port", str(port)],
                          capture_output=True).returncode == 1
    shutil.rmtree(LocalBroker(Settings.from_env().kafka_home, port).run_dir)


@pytest.mark.kafka
def test_a_cluster_id_beginning_with_a_dash_formats(monkeypatch, tmp_path):
    # The random id is URL-safe base64; one in 64 begins with "-" and once made the
    # storage tool take it for an option, failing a CI run.
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    monkeypatch.setattr(local.uuid, "uuid4", lambda: dashed)
    broker = LocalBroker(Settings.from_env().kafka_home, 0, run_dir=tmp_path)
    broker.ensure_jars()
    tmp_path.mkdir(exist_ok=True)
    broker.config_file.write_text(local._server_properties(0, 0, broker.data_dir))
    broker._format_storage(local._require_java())
    assert "cluster.id=-" in (broker.data_dir / "meta.properties").read_text()
