"""The worker fleet with real processes: workers report themselves (GET /workers), a killed one turns lost, one
stopped cleanly leaves; a run's placement sends it only to the workers of its queue."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Service, _port_open
from tests.faults.conftest import FAULT_ENV, POSTGRES_ADMIN, OwnPostgres, OwnRedis, new_database, wait_until
from tests.utils.runs import post_and_finish

# Heartbeats every half second, lost after two seconds of silence.
FLEET_ENV = {
    **FAULT_ENV,
    "GANFORGE_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "GANFORGE_WORKER_LOST_AFTER_INTERVALS": "4",
}
ENDLESS = {"dataset": "ring8", "model": {"width": 16}, "train": {"steps": 1_000_000, "batch_size": 32}}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API and two workers, `plain` on the train queue and `placed` on fleet-a and generate, on a PostgreSQL
    database and a Redis server of their own (so that no other test's worker takes their runs)."""
    workdir = tmp_path_factory.mktemp("fleet")
    redis = OwnRedis(workdir / "redis")
    if _port_open(5432):
        database_url, drop = new_database(POSTGRES_ADMIN)
        server = None
    else:
        server = OwnPostgres()
        database_url, drop = server.url, lambda: None
    service = Service(database_url=database_url, broker_url=redis.url, workdir=workdir, extra_env=FLEET_ENV)
    try:
        service.start_worker("train", name="plain")
        service.start_worker("fleet-a,generate", name="placed")
        service.start_api()
        wait_until(lambda: workers(service).keys() >= {"plain", "placed"}, what="both workers registered")
        yield service
    finally:
        service.stop()
        redis.stop()
        drop()
        if server is not None:
            server.cleanup()


def workers(service: Service) -> dict[str, dict[str, Any]]:
    """GET /workers by the name each worker was started with (its id is NAME-PID@HOST)."""
    with service.client() as client:
        response = client.get("/workers")
    assert response.status_code == 200, response.text
    return {w["id"].split("-")[0]: w for w in response.json()["items"]}


def test_a_placed_run_goes_only_to_the_workers_of_its_queue(fleet: Service) -> None:
    with fleet.client() as client:
        # No GPU and two processes more than any live worker has: 422s that name what is available.
        response = client.post("/runs", json={**ENDLESS, "placement": {"min_gpu_memory_gb": 40}})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "placement", "min_gpu_memory_gb"]
        assert "the largest available is 0 GB" in response.json()["detail"][0]["msg"]
        cores = workers(fleet)["plain"]["slots"]
        too_many = {**ENDLESS, "train": {**ENDLESS["train"], "world_size": cores + 2, "batch_size": 8 * (cores + 2)}}
        response = client.post("/runs", json=too_many)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["msg"].endswith(f"the largest available has {cores}")

        placed = client.post("/runs", json={**ENDLESS, "placement": {"queue": "fleet-a"}}).json()
        wait_until(lambda: workers(fleet)["placed"]["current_job"] == placed["id"], what="the placed worker on it")
        plain = client.post("/runs", json=ENDLESS).json()
        wait_until(lambda: workers(fleet)["plain"]["current_job"] == plain["id"], what="the plain worker on it")
        assert workers(fleet)["placed"]["current_job"] == placed["id"]
        for run in (placed, plain):
            client.post(f"/runs/{run['id']}/cancel")
        wait_until(
            lambda: all(client.get(f"/runs/{r['id']}").json()["status"] == "canceled" for r in (placed, plain)),
            what="both runs canceled",
        )


def test_a_run_of_two_processes_trains_on_a_worker(fleet: Service) -> None:
    """world_size 2 through the worker: the task spawns two gloo ranks (this machine's CPU worker has a slot per
    core), whose rank 0 reports and writes once."""
    body = {
        "dataset": "ring8",
        "model": {"width": 16},
        "train": {"steps": 20, "batch_size": 32, "world_size": 2},
        "schedule": {"sample_every": 10, "checkpoint_every": 10},
    }
    with fleet.client() as client:
        _, run = post_and_finish(client, body)
        assert (run["environment"]["world_size"], run["environment"]["backend"]) == (2, "gloo")
        assert [c["step"] for c in client.get(f"/runs/{run['id']}/checkpoints").json()["items"]] == [10, 20]
        assert [s["step"] for s in client.get(f"/runs/{run['id']}/samples").json()["items"]] == [10, 20]


def test_workers_report_themselves_a_killed_one_turns_lost_a_stopped_one_leaves(fleet: Service) -> None:
    listed = workers(fleet)
    plain, placed = listed["plain"], listed["placed"]
    assert (plain["status"], plain["queues"], plain["current_job"]) == ("live", ["train"], None)
    assert placed["queues"] == ["fleet-a", "generate"]
    assert plain["pid"] == fleet.workers["plain"].pid
    (cpu,) = plain["devices"]  # no GPU on this machine: the CPU, with its cores
    assert cpu["kind"] == "cpu" and cpu["cores"] == plain["slots"] == len(os.sched_getaffinity(0))
    with fleet.client(fleet.new_user_token()) as user:
        assert user.get("/workers").status_code == 403

    fleet.kill_worker("placed")  # kill -9: no goodbye
    wait_until(lambda: workers(fleet)["placed"]["status"] == "lost", what="placed shown as lost", timeout=30)
    assert workers(fleet)["plain"]["status"] == "live"

    process = fleet.workers.pop("plain")  # SIGTERM (docker stop): a clean shutdown leaves the registry
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(30) == 0  # the worker's own exit code: a warm shutdown is a success
    assert "plain" not in workers(fleet)
