"""How the engine reaches Kafka: one connection config, one factory for every client.

Every consumer, producer and admin client of the engine (and Faust's own,
through `faust_credentials`) is made here, so the bootstrap servers, the
security protocol, SASL and TLS are set in one place (the `CPS_KAFKA_*`
settings) and a managed cluster needs nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import ConsumerRecord

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# A commit's records for one partition in one batch. aiokafka sends one produce
# request to a broker at a time and queues a partition's next batch only after
# the previous one left, so at the default 16 KiB a commit took one round trip
# per 16 KiB of its largest partition: a worker that fell behind made larger
# commits, which took longer still (BENCHMARKS.md, issue 17). Half of the
# broker's default message.max.bytes (1 MiB), which a batch may not exceed.
PRODUCER_BATCH_BYTES = 512 * 1024


class BrokerUnreachable(RuntimeError):
    """Kafka cannot be reached or refuses the credentials; the message says which."""


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)  # a repr may reach a log line
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> KafkaConnection:
        return cls(
            bootstrap=settings.broker,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_cafile=settings.kafka_ssl_cafile,
            ssl_certfile=settings.kafka_ssl_certfile,
            ssl_keyfile=settings.kafka_ssl_keyfile,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        # An empty CA file means the system's trusted roots (managed clusters).
        return create_ssl_context(cafile=self.ssl_cafile or None,
                                  certfile=self.ssl_certfile or None,
                                  keyfile=self.ssl_keyfile or None)

    def options(self) -> dict[str, Any]:
        """The aiokafka keyword arguments every client of this connection takes."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap,
                                   "security_protocol": self.security_protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, **self.options(), **options)

    def producer(self, **options: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self.options(), **options)

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**self.options(), **options)

    def faust_credentials(self) -> Any:
        """Faust's `broker_credentials` for this connection (None for PLAINTEXT)."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username,
                                         password=self.sasl_password,
                                         ssl_context=self.ssl_context(),
                                         mechanism=self.sasl_mechanism)
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def faust_urls(self) -> list[str]:
        return [f"kafka://{server}" for server in self.servers]

    async def check(self, *, timeout_s: float = 30.0) -> None:
        """Wait until Kafka answers a metadata request, for at most `timeout_s`.

        A broker that is not up yet (connection refused, as while a cluster
        starts beside the worker) is asked again every second; a refused login,
        an untrusted certificate or the wrong protocol fails at once, with a
        clear error instead of a worker that retries it for ever.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                await self._check_once(max(deadline - loop.time(), 1.0))
                return
            except BrokerUnreachable as exc:
                if not _not_up_yet(exc.__cause__) or loop.time() + 1.0 >= deadline:
                    raise
            await asyncio.sleep(1.0)

    async def _check_once(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        admin = self.admin(request_timeout_ms=int(timeout_s * 1000))
        try:
            await asyncio.wait_for(_list_topics(admin), timeout_s)
        except TimeoutError:
            raise BrokerUnreachable(
                f"Kafka at {self.bootstrap} ({self.security_protocol}) did not answer within "
                f"{timeout_s:.0f}s; check CPS_BROKER and CPS_KAFKA_SECURITY_PROTOCOL") from None
        except KafkaConnectionError as exc:
            # aiokafka's bootstrap only logs why each server failed (a refused login, an
            # untrusted certificate, a closed connection) and raises "Unable to bootstrap
            # from [...]", which names none of them: ask once more to find the cause.
            cause = await self._bootstrap_failure(max(deadline - loop.time(), 1.0)) or exc
            raise BrokerUnreachable(self._explain(cause)) from cause
        except Exception as exc:
            raise BrokerUnreachable(self._explain(exc)) from exc
        finally:
            await admin.close()

    async def _bootstrap_failure(self, timeout_s: float) -> Exception | None:
        """The error of the first bootstrap server that will not answer a metadata request
        (None when they all answer now, or do not say within timeout_s)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for host, port, _family in collect_hosts(self.bootstrap):
                    try:
                        await self._request_metadata(host, port, int(timeout_s * 1000))
                    except Exception as exc:
                        return exc
        return None

    async def _request_metadata(self, host: str, port: int, timeout_ms: int) -> None:
        """One metadata request over a connection of our own, the way aiokafka bootstraps."""
        connection = await create_conn(
            host, port, request_timeout_ms=timeout_ms, ssl_context=self.ssl_context(),
            security_protocol=self.security_protocol, sasl_mechanism=self.sasl_mechanism,
            sasl_plain_username=self.sasl_username, sasl_plain_password=self.sasl_password)
        try:
            await connection.send(MetadataRequest([]))
        finally:
            connection.close()

    def _explain(self, exc: Exception) -> str:
        # aiokafka's errors already begin with their class name.
        text = str(exc) if isinstance(exc, KafkaError) else f"{type(exc).__name__}: {exc}"
        if self.uses_sasl and isinstance(exc, UnsupportedSaslMechanismError):
            return (f"Kafka at {self.bootstrap} does not offer SASL mechanism "
                    f"{self.sasl_mechanism}; check CPS_KAFKA_SASL_MECHANISM")
        if self.uses_sasl and (isinstance(exc, SaslAuthenticationFailed)
                               or "auth" in text.lower()):
            return (f"Kafka at {self.bootstrap} refused the login of {self.sasl_username!r} "
                    f"({self.sasl_mechanism}): {text}; check CPS_KAFKA_SASL_USERNAME, "
                    "CPS_KAFKA_SASL_PASSWORD and CPS_KAFKA_SASL_MECHANISM")
        if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "certificate" in text.lower():
            return (f"TLS with Kafka at {self.bootstrap} failed: {text}; check "
                    "CPS_KAFKA_SSL_CAFILE (the CA that signed the broker's certificate)")
        # A TLS or SASL listener drops a client that speaks the other protocol, and a
        # plain one resets a TLS greeting or answers SASL out of turn.
        if (isinstance(exc, ConnectionResetError | IllegalSaslStateError)
                or (isinstance(exc, KafkaConnectionError) and "closed" in text)):
            return (f"Kafka at {self.bootstrap} broke off the {self.security_protocol} "
                    f"handshake ({text}): its listener may expect another security protocol; "
                    "check CPS_KAFKA_SECURITY_PROTOCOL")
        return f"cannot reach Kafka at {self.bootstrap} ({self.security_protocol}): {text}"


def _not_up_yet(cause: BaseException | None) -> bool:
    """A failure a broker still starting gives: nothing listens on the port yet."""
    # aiokafka's own "Unable to bootstrap" stays the cause only when asking again
    # found no server at fault: it may answer now.
    return isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, KafkaConnectionError)
        and any(word in str(cause) for word in ("refused", "Unable to bootstrap")))


Client = TypeVar("Client", AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaAdminClient)


async def start_at_end(consumer: AIOKafkaConsumer, partitions: list) -> None:
    """Start `consumer` on `partitions` (TopicPartitions), positioned at their ends: it
    reads what comes from now on."""
    await consumer.start()
    consumer.assign(partitions)
    for partition, end in (await consumer.end_offsets(partitions)).items():
        consumer.seek(partition, end)


@contextlib.asynccontextmanager
async def started(client: Client) -> AsyncIterator[Client]:
    """`client` (an aiokafka consumer, producer or admin client) started, and stopped
    when the block is left, however it is left."""
    await client.start()
    try:
        yield client
    finally:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()  # the admin client's stop is called close
        else:
            await client.stop()


async def records_to_end(consumer: AIOKafkaConsumer) -> AsyncIterator[ConsumerRecord]:
    """The records of the started `consumer`'s partitions (every partition of its topics,
    without a group) from its position up to their end offsets as of the call: a snapshot,
    however much is written meanwhile."""
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    ends = await consumer.end_offsets(list(consumer.assignment()))
    remaining = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    consumer.pause(*(set(ends) - remaining))
    while remaining:
        for tp, messages in (await consumer.getmany(*remaining, timeout_ms=500)).items():
            for message in messages:
                if message.offset < ends[tp]:
                    yield message
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
                consumer.pause(tp)  # fetch no further than the snapshot


async def _list_topics(admin: AIOKafkaAdminClient) -> None:
    await admin.start()
    await admin.list_topics()
