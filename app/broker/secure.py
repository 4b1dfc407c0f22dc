"""What a secure local broker needs: a SCRAM login, a throwaway CA and the broker's
certificate, and the server properties of its SASL_SSL listener."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.broker import BrokerError

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "cps"
CA_FILE = "ca.pem"
KEYSTORE_FILE = "server.pem"  # the broker's private key, then its certificate
CERTIFICATE_DAYS = 3650


@dataclass(frozen=True, slots=True)
class ScramLogin:
    """The user a client of a secure broker logs in as, and the CA that signed the broker."""

    username: str
    password: str
    cafile: Path


def sasl_ssl_properties(login: ScramLogin) -> list[str]:
    keystore = login.cafile.with_name(KEYSTORE_FILE)  # `_make_certificates` wrote both
    return [
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{login.username}" password="{login.password}";',
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={login.cafile}",
    ]


def require_openssl() -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError(
            "openssl is not on PATH; `--secure` makes the broker's throwaway CA and "
            "certificate with it (e.g. `apt-get install openssl`), or start without --secure"
        )
    return openssl


def make_certificates(openssl: str, tls_dir: Path) -> None:
    """A new CA (`CA_FILE`) and a server key and certificate it signed for 127.0.0.1 and
    localhost (`KEYSTORE_FILE`); the CA key is thrown away, so nothing else is ever signed.

    openssl rather than keytool: it writes PEM, which the broker (`ssl.keystore.type=PEM`)
    and Python's ssl both read as is, while keytool keeps keys in a JKS/PKCS12 store it
    cannot export a private key from.
    """
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc",
               "-days", str(CERTIFICATE_DAYS)]
    cafile = tls_dir / CA_FILE
    with tempfile.TemporaryDirectory(dir=tls_dir) as scratch:
        ca_key, server_key, server_cert = (Path(scratch) / name
                                           for name in ("ca.key", "server.key", "server.crt"))
        _openssl(openssl, "req", "-x509", *new_key, "-subj", "/CN=cps local Kafka CA",
                 "-keyout", str(ca_key), "-out", str(cafile))
        # `req -CA` (OpenSSL 3.0+) makes and signs the server certificate in one step.
        _openssl(openssl, "req", "-x509", *new_key, "-subj", "/CN=localhost",
                 "-CA", str(cafile), "-CAkey", str(ca_key),
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-addext", "basicConstraints=critical,CA:FALSE",
                 "-addext", "extendedKeyUsage=serverAuth",
                 "-keyout", str(server_key), "-out", str(server_cert))
        write_private(tls_dir / KEYSTORE_FILE, server_key.read_text() + server_cert.read_text())


def _openssl(openssl: str, *args: str) -> None:
    result = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"openssl could not make the broker's certificates (`--secure` "
                          f"needs OpenSSL 3.0+):\n{result.stderr.strip()}")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it holds a password or a private key."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
