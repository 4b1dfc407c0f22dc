"""The local broker's process and port: is it ours, is it alive, is a port free, its log."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from app.broker import BrokerError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether a listener could bind the port (as the broker does, TIME_WAIT is no obstacle)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require_free(port: int, setting: str) -> None:
    if not port_free(port):
        raise BrokerError(
            f"port {port} on 127.0.0.1 is taken by another process; set {setting} "
            "to a free port (0 picks one)"
        )


def is_our_process(pid: int, config_file: Path) -> bool:
    """True when pid is alive and is the broker started with this config (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(config_file).encode() in cmdline


def pid_alive(pid: int) -> bool:
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


def log_tail(log_dir: Path, lines: int = 20) -> str:
    texts = []
    for name in ("stdout.log", "server.log"):
        with contextlib.suppress(OSError):
            texts.extend((log_dir / name).read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(texts[-lines:]) or "(no log output)"
