"""Limits and quotas on the real service, with a PostgreSQL database and a Redis server of its own (so that no
other service's worker or reconciler takes its queued runs): each limit is a 422 naming the field and the limit
with nothing queued; each quota a 429 (with Retry-After) or a 403 naming the quota and its numbers, with nothing
queued or written; an admin raises one user's quota; GET /me shows use against quotas; and the workers, started
with a lower limit than the API, fail a run queued under the higher one, and train one user's runs one at a time."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.client import Ganforge
from ganforge.services import start_redis, stop
from tests.conftest import Service, free_port
from tests.utils.runs import wait_for_job, wait_for_status
from tests.utils.zips import class_folders_zip

LIMITS = {
    "GANFORGE_MAX_STEPS": "1000",
    "GANFORGE_MAX_BATCH_SIZE": "512",
    "GANFORGE_MAX_IMAGE_SIZE": "32",
    "GANFORGE_MAX_WIDTH": "128",
    "GANFORGE_MAX_SAMPLE_GRIDS": "20",
    "GANFORGE_MAX_RUN_BYTES": "40000000",  # digits' default (about 8 MB a checkpoint) keeps 5 checkpoints
    "GANFORGE_QUOTA_QUEUED_RUNS": "2",
    "GANFORGE_QUOTA_RUNNING_RUNS": "1",
    "GANFORGE_QUOTA_DATASETS": "1",
    "GANFORGE_QUOTA_JOBS_IN_FLIGHT": "1",
}
# The workers' lower limit: a run queued with more steps fails when a worker takes it.
WORKER_MAX_STEPS = 300
TINY = {"dataset": "ring8", "model": {"width": 16}, "train": {"steps": 4, "batch_size": 64}}


@pytest.fixture(scope="module")
def limited(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone on a database and a Redis server of its own; `workers` adds training workers later."""
    workdir = tmp_path_factory.mktemp("svc-limits")
    url = make_url(postgres_url)
    name = f"ganforge_limits_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    broker = start_redis(directory=workdir / "redis", port=port, appendonly=False)
    database = url.set(database=name).render_as_string(hide_password=False)
    service = Service(
        database_url=database, broker_url=f"redis://127.0.0.1:{port}/0", workdir=workdir, extra_env=LIMITS
    )
    try:
        service.start_api()
        yield service
    finally:
        service.stop()
        stop(broker)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def workers(limited: Service) -> Iterator[Service]:
    """Two training workers with a lower step limit than the API, reconciling every second."""
    env = {"GANFORGE_MAX_STEPS": str(WORKER_MAX_STEPS), "GANFORGE_RECONCILE_INTERVAL_SECONDS": "1"}
    names = ("train-a", "train-b")
    for name in names:
        limited.start_worker("train", name=name, env=env)
    yield limited
    for name in names:  # nothing of theirs to keep: no graceful shutdown to wait for
        limited.kill_worker(name)


def _wait_for_idle_workers(service: Service, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with service.client() as admin:
        while time.monotonic() < deadline:
            items = admin.get("/workers").json()["items"]
            idle = [w for w in items if "train" in w["queues"] and w["status"] == "live" and not w["current_job"]]
            if len(idle) >= count:
                return
            time.sleep(0.2)
    raise AssertionError(f"{count} idle training workers did not register within {timeout} s")


def _sql(service: Service, statement: str, **params: object) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(service.env["GANFORGE_DATABASE_URL"], poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def _queued_messages(service: Service) -> int:
    with redis.Redis.from_url(service.env["GANFORGE_BROKER_URL"]) as broker:
        return int(broker.llen("train"))


def _user(service: Service, name: str) -> tuple[int, httpx.Client]:
    with service.client() as admin:
        response = admin.post("/tokens", json={"name": name})
        assert response.status_code == 201, response.text
    return int(response.json()["id"]), service.client(response.json()["token"])


def _set_quotas(service: Service, token_id: int, quotas: dict[str, int | None]) -> dict[str, Any]:
    with service.client() as admin:
        response = admin.patch(f"/tokens/{token_id}", json={"quotas": quotas})
        assert response.status_code == 200, response.text
        return dict(response.json())


def _invalid(field: str, message: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ["body", *field.split(".")], "msg": message}


OVER_LIMITS = [
    pytest.param(
        {"dataset": "ring8", "train": {"steps": 1001}},
        [_invalid("train.steps", "train.steps: 1001 is over this server's limit of 1000 (GANFORGE_MAX_STEPS)")],
        id="steps",
    ),
    pytest.param(
        {"dataset": "ring8", "train": {"steps": 100, "batch_size": 1024}},
        [
            _invalid(
                "train.batch_size",
                "train.batch_size: 1024 is over this server's limit of 512 (GANFORGE_MAX_BATCH_SIZE)",
            )
        ],
        id="batch_size",
    ),
    pytest.param(
        {"dataset": "digits", "model": {"image_size": 64}, "train": {"steps": 100}},
        [
            _invalid(
                "model.image_size",
                "model.image_size: 64 px is over this server's limit of 32 (GANFORGE_MAX_IMAGE_SIZE)",
            )
        ],
        id="image_size",
    ),
    pytest.param(
        {"dataset": "digits", "model": {"width": 256, "g_width": 192}, "train": {"steps": 100}},
        [
            _invalid("model.width", "model.width: 256 is over this server's limit of 128 (GANFORGE_MAX_WIDTH)"),
            _invalid("model.g_width", "model.g_width: 192 is over this server's limit of 128 (GANFORGE_MAX_WIDTH)"),
        ],
        id="widths",
    ),
    pytest.param(
        {"dataset": "ring8", "train": {"steps": 1000}, "schedule": {"sample_every": 10}},
        [
            _invalid(
                "schedule.keep_samples",
                "schedule.keep_samples: 1000 steps with a grid every 10 keep 100 sample grids, over this server's "
                "limit of 20 (GANFORGE_MAX_SAMPLE_GRIDS); keep at most 20",
            )
        ],
        id="sample_grids",
    ),
    pytest.param(
        {"dataset": "digits", "train": {"steps": 1000}, "schedule": {"checkpoint_every": 100, "keep_checkpoints": 8}},
        [
            _invalid(
                "schedule.keep_checkpoints",
                "schedule.keep_checkpoints: 8 checkpoints of about 8.08 MB each need 64.6 MB, over this server's "
                "disk budget of 40 MB per run (GANFORGE_MAX_RUN_BYTES); keep at most 4",
            )
        ],
        id="checkpoint_bytes",
    ),
]


@pytest.mark.parametrize(("body", "errors"), OVER_LIMITS)
def test_a_config_over_a_limit_is_a_422_naming_field_and_limit(
    limited: Service, body: dict[str, Any], errors: list[dict[str, Any]]
) -> None:
    before = _sql(limited, "SELECT count(*) FROM runs")
    with limited.client() as admin:  # limits bind admins too
        response = admin.post("/runs", json=body)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": errors}
    assert _sql(limited, "SELECT count(*) FROM runs") == before
    assert _queued_messages(limited) == 0


def test_over_the_queue_quota_is_a_429_and_an_admin_raises_it(limited: Service) -> None:
    user_id, user = _user(limited, "queue")
    with user:
        ids = [user.post("/runs", json=TINY).json()["id"] for _ in range(2)]
        refused = user.post("/runs", json=TINY)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
        assert refused.json() == {
            "detail": "queued_runs quota: 2 of 2 used; your runs waiting in the queue fill it; try again once one "
            "has started, or cancel one"
        }
        assert _sql(limited, "SELECT count(*) FROM runs WHERE owner_id = :u", u=user_id) == [(2,)]
        assert _queued_messages(limited) == 2
        # A resume is a queued run too.
        user.post(f"/runs/{ids[1]}/cancel")
        assert user.post("/runs", json=TINY).status_code == 201
        assert user.post(f"/runs/{ids[1]}/resume", json={}).status_code == 429

        token = _set_quotas(limited, user_id, {"queued_runs": 3, "datasets": 4})
        assert token["quotas"] == {"queued_runs": 3, "datasets": 4}
        third = user.post("/runs", json=TINY)
        assert third.status_code == 201, third.text
        me = user.get("/me").json()
        assert me["quotas"]["queued_runs"] == {"limit": 3, "used": 3}
        assert me["quotas"]["running_runs"] == {"limit": 1, "used": 0}
        assert me["quotas"]["datasets"] == {"limit": 4, "used": 0}
        assert me["quotas"]["jobs_in_flight"] == {"limit": 1, "used": 0}
        assert me["usage"]["runs"]["queued"] == 3 and me["usage"]["runs"]["canceled"] == 1
        # null puts the server's number back; quotas left out stay.
        assert _set_quotas(limited, user_id, {"datasets": None})["quotas"] == {"queued_runs": 3}
        for run_id in [*ids, third.json()["id"]]:
            user.post(f"/runs/{run_id}/cancel")
        # Only an admin sets quotas: a user's own token is 403, another's 404 (as if absent).
        assert user.patch(f"/tokens/{user_id}", json={"quotas": {"queued_runs": 50}}).status_code == 403
        assert user.patch("/tokens/1", json={"quotas": {"queued_runs": 50}}).status_code == 404
    with limited.client() as admin:
        assert admin.get("/me").json()["quotas"] is None  # admins have none
        assert admin.patch("/tokens/1", json={"quotas": {"queued_runs": 1}}).status_code == 422
        assert admin.patch(f"/tokens/{user_id}", json={"quotas": {"runs": 1}}).status_code == 422
        assert admin.patch("/tokens/999999", json={"quotas": {"queued_runs": 1}}).status_code == 404


def test_requests_at_once_take_the_last_places_of_a_quota_once(limited: Service) -> None:
    """Twelve POST /runs of one user at the same moment, with two places left in the queue: exactly two pass
    (the quota is counted under a lock on the user's row), the others are 429."""
    user_id, user = _user(limited, "racer")
    user.close()
    token = user.headers["Authorization"]
    start = threading.Barrier(12)

    def post() -> int:
        with httpx.Client(base_url=limited.url, headers={"Authorization": token}, timeout=60) as client:
            start.wait()
            return client.post("/runs", json=TINY).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = sorted(pool.map(lambda _: post(), range(12)))
    assert codes == [201] * 2 + [429] * 10
    assert _sql(limited, "SELECT count(*) FROM runs WHERE owner_id = :u", u=user_id) == [(2,)]
    with httpx.Client(base_url=limited.url, headers={"Authorization": token}) as client:  # none left queued
        for (run_id,) in _sql(limited, "SELECT id FROM runs WHERE owner_id = :u", u=user_id):
            assert client.post(f"/runs/{run_id}/cancel").status_code == 202


def _stored(service: Service) -> set[str]:
    """Everything under the data folder's datasets/ (content folders, uploads in transit, temporary folders)."""
    root = service.data_dir / "datasets"
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_over_a_dataset_quota_is_a_403_and_nothing_is_written(limited: Service) -> None:
    user_id, user = _user(limited, "uploader")
    with user:
        first = user.post("/datasets", files={"file": ("pets.zip", class_folders_zip(), "application/zip")})
        assert first.status_code == 201, first.text
        stored = _stored(limited)
        second = user.post("/datasets", files={"file": ("more.zip", class_folders_zip(per_class=7), "application/zip")})
        assert second.status_code == 403
        assert second.json() == {
            "detail": "datasets quota: 1 of 1 used; uploaded datasets; delete one to upload another"
        }
        assert _stored(limited) == stored
        used = user.get("/me").json()["quotas"]["dataset_bytes"]["used"]
        assert used == user.get("/me").json()["usage"]["dataset_bytes"] > 0

        # Room for another dataset, but not for its bytes: refused once its size is known, before it is placed.
        _set_quotas(limited, user_id, {"datasets": 2, "dataset_bytes": used + 100})
        third = user.post("/datasets", files={"file": ("more.zip", class_folders_zip(per_class=7), "application/zip")})
        assert third.status_code == 403
        detail = third.json()["detail"]
        assert detail.startswith(f"dataset_bytes quota: {used} of {used + 100} used; bytes of stored datasets, and ")
        assert _stored(limited) == stored
        assert _sql(limited, "SELECT count(*) FROM datasets WHERE owner_id = :u", u=user_id) == [(1,)]


def test_the_worker_fails_a_run_over_its_own_lower_limit(workers: Service) -> None:
    _, user = _user(workers, "lowered")
    with user:
        posted = user.post("/runs", json={**TINY, "train": {"steps": 500, "batch_size": 64}})
        assert posted.status_code == 201, posted.text  # within the API's limit of 1000
        run = wait_for_status(user, posted.json()["id"], ("succeeded", "failed"), timeout=120)
    assert run["status"] == "failed"
    assert run["error"] == (
        f"Over this server's limits: train.steps: 500 is over this server's limit of {WORKER_MAX_STEPS} "
        "(GANFORGE_MAX_STEPS)"
    )


def test_one_users_runs_train_one_at_a_time_and_jobs_and_checkpoints_have_quotas(workers: Service) -> None:
    user_id, user = _user(workers, "running")
    _wait_for_idle_workers(workers, 2)
    with user:
        # The first run trains a few seconds; the second, posted while it trains, goes to the idle worker.
        first = user.post("/runs", json={**TINY, "train": {"steps": WORKER_MAX_STEPS, "batch_size": 256}}).json()
        assert wait_for_status(user, first["id"], ("running", "succeeded", "failed"))["status"] == "running"
        ids = [first["id"], user.post("/runs", json=TINY).json()["id"]]
        runs = [wait_for_status(user, run_id, ("succeeded", "failed"), timeout=120) for run_id in ids]
        assert [r["status"] for r in runs] == ["succeeded", "succeeded"], runs
        # Two workers were free, but the user may train one run at a time: the second started after the first ended
        # (the idle worker gave it back to the queue, and the reconciler sent it again).
        first_ended, second_started = runs[0]["finished_at"], runs[1]["started_at"]
        assert datetime.fromisoformat(second_started) >= datetime.fromisoformat(first_ended), runs
        assert [r["attempts"] for r in runs] == [1, 1]

        # No generate worker here: a generation stays queued, in flight.
        created = user.post(f"/runs/{ids[0]}/generations", json={"n": 4})
        assert created.status_code == 202, created.text
        for path, body in ((f"/runs/{ids[0]}/generations", {"n": 4}), (f"/runs/{ids[0]}/scores", {"dataset": "x"})):
            refused = user.post(path, json=body)
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "10", refused.text
            assert refused.json()["detail"].startswith("jobs_in_flight quota: 1 of 1 used; ")
        assert _sql(workers, "SELECT count(*) FROM generations WHERE owner_id = :u", u=user_id) == [(1,)]

        # Checkpoint bytes: each run keeps what its events announced.
        kept = sum(c["size_bytes"] for i in ids for c in user.get(f"/runs/{i}/checkpoints").json()["items"])
        assert user.get("/me").json()["quotas"]["artifact_bytes"]["used"] == kept > 0
        _set_quotas(workers, user_id, {"artifact_bytes": kept})
        refused = user.post("/runs", json=TINY)
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == (
            f"artifact_bytes quota: {kept} of {kept} used; bytes of checkpoints your runs keep; delete runs you no "
            "longer need"
        )
        assert _sql(workers, "SELECT count(*) FROM runs WHERE owner_id = :u", u=user_id) == [(2,)]


def test_a_generate_worker_with_a_lower_limit_fails_a_larger_generation(workers: Service) -> None:
    workers.start_worker("generate", env={"GANFORGE_MAX_GENERATION_N": "8"})
    try:
        _, user = _user(workers, "sampler")
        with user:
            run = user.post("/runs", json=TINY).json()
            assert wait_for_status(user, run["id"], ("succeeded", "failed"), timeout=120)["status"] == "succeeded"
            created = user.post(f"/runs/{run['id']}/generations", json={"n": 16})  # under the API's limit
            assert created.status_code == 202, created.text
            job = wait_for_job(user, f"/generations/{created.json()['id']}")
            assert job["status"] == "failed"
            assert job["error"] == "n: 16 samples is over this worker's limit of 8 (GANFORGE_MAX_GENERATION_N)"
            small = user.post(f"/runs/{run['id']}/generations", json={"n": 8}).json()
            assert wait_for_job(user, f"/generations/{small['id']}")["status"] == "succeeded"
    finally:
        workers.kill_worker("generate")


def test_the_client_and_the_command_line_set_quotas(limited: Service) -> None:
    user_id, user = _user(limited, "by-client")
    user.close()
    with Ganforge(limited.url, limited.admin_token) as admin:
        assert admin.tokens.set_quotas(user_id, queued_runs=7, datasets=3).quotas == {"queued_runs": 7, "datasets": 3}
        assert admin.tokens.set_quotas(user_id, datasets=None).quotas == {"queued_runs": 7}
    env = {"GANFORGE_URL": limited.url, "GANFORGE_TOKEN": limited.admin_token}
    result = CliRunner().invoke(app, ["tokens", "quotas", str(user_id), "jobs_in_flight=2", "queued_runs="], env=env)
    assert result.exit_code == 0, result.output
    assert f"token {user_id} quotas: jobs_in_flight 2" in result.output
    refused = CliRunner().invoke(app, ["tokens", "quotas", str(user_id), "jobs_in_flight=many"], env=env)
    assert refused.exit_code != 0 and "write NAME=N" in refused.output
    listed = {t["id"]: t for t in httpx.get(f"{limited.url}/tokens", headers=_admin(limited)).json()["items"]}
    assert listed[user_id]["quotas"] == {"jobs_in_flight": 2}


def _admin(service: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.admin_token}"}
