"""`KafkaConnection`: a refused connection is explained by the setting to check; no repr
or debug log line shows the SASL password."""

from __future__ import annotations

import re
import ssl

import aiokafka.conn
import aiokafka.producer.producer
import pytest
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.admin import SaslAuthenticateRequest_v0

from app.cli.worker import LOGGERS_QUOTING_SECRETS
from app.kafka.connection import KafkaConnection

SECURE = KafkaConnection("127.0.0.1:9093", "SASL_SSL", "SCRAM-SHA-512", "cps", "wrong")
PLAIN = KafkaConnection("127.0.0.1:9093")


@pytest.mark.parametrize(("connection", "error", "explanation"), [
    (SECURE, SaslAuthenticationFailed("invalid credentials"),
     r"refused the login of 'cps' \(SCRAM-SHA-512\).*CPS_KAFKA_SASL_PASSWORD"),
    (SECURE, UnsupportedSaslMechanismError(),
     "does not offer SASL mechanism SCRAM-SHA-512; check CPS_KAFKA_SASL_MECHANISM"),
    (SECURE, ssl.SSLCertVerificationError("certificate verify failed"),
     "TLS with Kafka at 127.0.0.1:9093 failed.*CPS_KAFKA_SSL_CAFILE"),
    (PLAIN, KafkaConnectionError("Connection at 127.0.0.1:9093 closed"),
     "broke off the PLAINTEXT handshake.*check CPS_KAFKA_SECURITY_PROTOCOL"),
    (SECURE, ConnectionResetError(),
     "broke off the SASL_SSL handshake.*check CPS_KAFKA_SECURITY_PROTOCOL"),
    (SECURE, IllegalSaslStateError(),
     "broke off the SASL_SSL handshake.*check CPS_KAFKA_SECURITY_PROTOCOL"),
    (PLAIN, OSError("Connect call failed"),
     r"cannot reach Kafka at 127.0.0.1:9093 \(PLAINTEXT\): OSError: Connect call failed"),
])
def test_each_refusal_names_the_setting_to_check(connection, error, explanation):
    assert re.search(explanation, connection._explain(error)), connection._explain(error)


@pytest.mark.parametrize(("failures", "asked"), [
    ([ConnectionRefusedError("not up yet")] * 2, 3),
    ([KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9093, 0)]")], 2),
    ([SaslAuthenticationFailed("invalid credentials")], 1),
])
def test_a_broker_not_up_yet_is_asked_again_a_refusal_is_final(monkeypatch, failures, asked):
    import asyncio

    from app.kafka.connection import BrokerUnreachable

    calls = []

    async def check_once(self, timeout_s):
        calls.append(timeout_s)
        if len(calls) <= len(failures):
            cause = failures[len(calls) - 1]
            raise BrokerUnreachable(self._explain(cause)) from cause

    monkeypatch.setattr(KafkaConnection, "_check_once", check_once)
    monkeypatch.setattr(asyncio, "sleep", _no_wait)
    try:
        asyncio.run(SECURE.check(timeout_s=30))
        refused = None
    except BrokerUnreachable as exc:
        refused = exc
    assert len(calls) == asked
    assert (refused is not None) == isinstance(failures[0], SaslAuthenticationFailed)


async def _no_wait(_seconds):
    return None


def test_the_sasl_password_is_in_no_repr_and_no_explanation():
    # A repr reaches log lines and tracebacks; the explanations are what a refused worker
    # prints. The settings' own repr and `cps settings` are tests/test_settings.py's.
    connection = KafkaConnection("127.0.0.1:9093", "SASL_PLAINTEXT", "PLAIN", "cps", "pw-mark")
    shown = [repr(connection), repr(connection.faust_credentials()),
             *(connection._explain(error) for error in (
                 SaslAuthenticationFailed("invalid credentials"), IllegalSaslStateError(),
                 UnsupportedSaslMechanismError(), OSError("Connect call failed")))]
    assert not [text for text in shown if "pw-mark" in text]


def test_the_worker_keeps_the_aiokafka_loggers_that_quote_secrets_at_info():
    # At debug level aiokafka's connections log each request as its repr, a SASL PLAIN
    # login's with the password, and its producer each record's key and value.
    assert "pw-mark" in repr(SaslAuthenticateRequest_v0(b"\0cps\0pw-mark"))
    assert {aiokafka.conn.log.name, aiokafka.producer.producer.log.name} <= set(
        LOGGERS_QUOTING_SECRETS)
