"""Retention of job results: a finished job's result is served until its time to live, then answers 410, and the
generate worker deletes its files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from tests.conftest import Service
from tests.faults.conftest import OwnRedis
from tests.utils.runs import post_and_finish, wait_for_job

TTL = 6
RING8 = {"dataset": "ring8", "train": {"steps": 20}, "schedule": {"sample_every": 10, "checkpoint_every": 10}}


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service of its own (its Redis, its SQLite): results live TTL seconds, the reconciler looks every second."""
    workdir = tmp_path_factory.mktemp("retention")
    redis = OwnRedis(workdir / "redis")
    service = Service(
        database_url=f"sqlite:///{workdir / 'ganforge.db'}",
        broker_url=redis.url,
        workdir=workdir,
        extra_env={"GANFORGE_JOB_RESULT_TTL_SECONDS": str(TTL), "GANFORGE_RECONCILE_INTERVAL_SECONDS": "1"},
    )
    try:
        service.start_worker("train")
        service.start_worker("generate")
        service.start_api()
        yield service
    finally:
        service.stop()
        redis.stop()


def test_a_result_expires_then_answers_410_and_its_files_go(short_lived: Service) -> None:
    with short_lived.client(short_lived.new_user_token()) as client:
        run, _ = post_and_finish(client, RING8)
        job = client.post(f"/runs/{run['id']}/generations", json={"n": 4, "seed": 1}).json()
        job = wait_for_job(client, f"/generations/{job['id']}")
        assert job["status"] == "succeeded", job["error"]
        finished = datetime.fromisoformat(job["finished_at"])
        assert datetime.fromisoformat(job["expires_at"]) == finished + timedelta(seconds=TTL)
        assert client.get(f"/generations/{job['id']}/result").status_code == 200
        folder = short_lived.data_dir / "runs" / run["id"] / "generations" / job["id"]
        assert any(folder.iterdir())

        time.sleep(max(0.0, (finished + timedelta(seconds=TTL + 1) - datetime.now(finished.tzinfo)).total_seconds()))
        gone = client.get(f"/generations/{job['id']}/result")
        assert gone.status_code == 410 and gone.json()["detail"].startswith("Result expired at ")
        deadline = time.monotonic() + 30
        while folder.exists() and any(folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not folder.exists() or not any(folder.iterdir())
        # The job and the run stay: only the result's files went.
        assert client.get(f"/generations/{job['id']}").json()["status"] == "succeeded"
        assert client.get(f"/runs/{run['id']}/samples/latest.png").status_code == 200
