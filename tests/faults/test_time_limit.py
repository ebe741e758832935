"""The soft time limit of a training attempt: the run stops at its next step with a checkpoint and fails
saying so, instead of being killed mid-step by the hard limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Service, start_service
from tests.faults.conftest import FAULT_ENV, OwnRedis
from tests.utils.runs import wait_for_status


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("limited")
    redis = OwnRedis(workdir / "redis")
    env = {**FAULT_ENV, "GANFORGE_TRAIN_TIME_LIMIT_SECONDS": "3"}
    service = start_service(
        database_url=f"sqlite:///{workdir / 'db.sqlite'}", broker_url=redis.url, workdir=workdir, **env
    )
    yield service
    service.stop()
    redis.stop()


def test_a_run_past_its_time_limit_stops_with_a_checkpoint_and_fails_saying_so(limited: Service) -> None:
    body = {"dataset": "ring8", "train": {"steps": 1_000_000}, "schedule": {"checkpoint_every": 1_000_000}}
    with limited.client() as client:
        run = client.post("/runs", json=body).json()
        run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"), timeout=120)
        assert run["status"] == "failed"
        assert run["error"].startswith("Stopped at the time limit (3 s, GANFORGE_TRAIN_TIME_LIMIT_SECONDS)")
        checkpoints = client.get(f"/runs/{run['id']}/checkpoints").json()["items"]
        # The checkpoint was written where the loop stopped, not at a scheduled step.
        assert checkpoints and 0 < checkpoints[-1]["step"] < 1_000_000
        assert f"at step {checkpoints[-1]['step']};" in run["error"]
