"""`cps kafka`: clear failures without Java, Maven or a free port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.broker import local, secure
from app.broker.local import BrokerError, BrokerState, LocalBroker, ScramLogin
from app.config.settings import Settings
from app.kafka.connection import KafkaConnection

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


def test_a_plain_broker_has_one_plaintext_listener(tmp_path):
    properties = local._server_properties(9092, 9093, tmp_path / "data")
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in properties
    assert "inter.broker.listener.name=PLAINTEXT" in properties
    assert "sasl" not in properties and "ssl" not in properties


def test_a_segment_s_index_entries_fit_its_index_files(tmp_path):
    lines = local._server_properties(9092, 9093, tmp_path / "data").splitlines()
    segment = int(next(line for line in lines if line.startswith("log.segment.bytes="))
                  .split("=")[1])
    index = int(next(line for line in lines if line.startswith("log.index.size.max.bytes="))
                .split("=")[1])
    # One entry per 4 KiB of records; the time index's 12-byte entries are the larger.
    assert segment // 4096 * 12 <= index < 1024 * 1024


def test_a_secure_broker_serves_sasl_ssl_and_logs_in_to_itself(tmp_path):
    login = ScramLogin("cps", "s3cret", tmp_path / "tls" / "ca.pem")
    lines = local._server_properties(9092, 9093, tmp_path / "data", login).splitlines()
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in lines
    assert "advertised.listeners=SASL_SSL://127.0.0.1:9092" in lines
    assert "inter.broker.listener.name=SASL_SSL" in lines
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT" in lines
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in lines
    assert "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" in lines
    assert ("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            'username="cps" password="s3cret";') in lines
    assert f"ssl.keystore.location={tmp_path / 'tls' / 'server.pem'}" in lines
    assert f"ssl.truststore.location={login.cafile}" in lines
    assert "ssl.keystore.type=PEM" in lines and "ssl.truststore.type=PEM" in lines


def test_a_secure_state_gives_the_client_its_login(tmp_path):
    login = ScramLogin("cps", "s3cret", tmp_path / "ca.pem")
    state = BrokerState(1, 9092, 9093, "4.1.1", login)
    assert state.client_settings() == {
        "CPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CPS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CPS_KAFKA_SASL_USERNAME": "cps", "CPS_KAFKA_SASL_PASSWORD": "s3cret",
        "CPS_KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem")}
    assert state.connection() == KafkaConnection(
        "127.0.0.1:9092", "SASL_SSL", "SCRAM-SHA-512", "cps", "s3cret", str(tmp_path / "ca.pem"))
    plain = BrokerState(1, 9092, 9093, "4.1.1")
    assert plain.client_settings() == {} and plain.connection() == KafkaConnection(plain.bootstrap)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_certificate_is_trusted_for_loopback_through_the_ca(tmp_path, host):
    tls_dir = tmp_path / "tls"
    secure.make_certificates(secure.require_openssl(), tls_dir)
    assert sorted(path.name for path in tls_dir.iterdir()) == ["ca.pem", "server.pem"]
    assert (tls_dir / "server.pem").stat().st_mode & 0o077 == 0
    client = KafkaConnection("unused:1", "SSL", ssl_cafile=str(tls_dir / "ca.pem")).ssl_context()
    _handshake(client, tls_dir / "server.pem", host)


def test_the_certificate_names_no_other_host(tmp_path):
    tls_dir = tmp_path / "tls"
    secure.make_certificates(secure.require_openssl(), tls_dir)
    client = KafkaConnection("unused:1", "SSL", ssl_cafile=str(tls_dir / "ca.pem")).ssl_context()
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(client, tls_dir / "server.pem", "kafka.example.com")


def _handshake(client: ssl.SSLContext, keystore: Path, host: str) -> None:
    """A TLS handshake in memory between a server with the broker's keystore and the client."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(keystore)
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client_side = client.wrap_bio(pipes[0], pipes[1], server_hostname=host)
    server_side = server.wrap_bio(pipes[2], pipes[3], server_side=True)
    done = {client_side: False, server_side: False}
    for _round in range(10):
        for side in done:
            if not done[side]:
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
                    done[side] = True
        pipes[2].write(pipes[1].read())
        pipes[0].write(pipes[3].read())
        if all(done.values()):
            return
    raise AssertionError("the TLS handshake did not finish")


def test_secure_start_without_openssl_says_what_to_install(monkeypatch):
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match=r"openssl is not on PATH.*apt-get install openssl"):
        secure.require_openssl()


def test_an_openssl_failure_is_a_broker_error():
    with pytest.raises(BrokerError, match=r"OpenSSL 3\.0\+"):
        secure._openssl(secure.require_openssl(), "req", "-no-such-option")


@pytest.mark.parametrize(("recorded_secure", "start_secure", "refusal"), [
    (False, True, r"data of a plain \(PLAINTEXT\) broker; start it without --secure, or add "
                  r"--fresh to delete its data and start a secure \(SASL_SSL\) one"),
    (True, False, r"data of a secure \(SASL_SSL\) broker; start it with --secure, or add "
                  r"--fresh to delete its data and start a plain \(PLAINTEXT\) one"),
])
def test_data_formatted_one_way_is_not_started_the_other(tmp_path, recorded_secure,
                                                         start_secure, refusal):
    broker = LocalBroker(tmp_path, 1)
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("cluster.id=x\n")
    if recorded_secure:
        broker.login_file.write_text('{"username": "cps", "password": "p", "cafile": "ca.pem"}')
    with pytest.raises(BrokerError, match=refusal):
        broker.start(secure=start_secure)
