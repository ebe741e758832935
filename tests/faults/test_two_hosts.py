"""Two hosts without a shared disk: the API and two training workers, each with a data folder of its own, share
only PostgreSQL, Redis and the object storage (a real SeaweedFS). A run trains on worker A, A is killed with
SIGKILL, and worker B resumes it from the checkpoint in the storage; its grids, checkpoints and a generation reach
the client through the API, which never touches either worker's disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ganforge.services import SeaweedFS
from store.artifacts import S3Storage
from tests.api.test_storage_e2e import local_files
from tests.conftest import S3_ENV, Service, _port_open, new_bucket_prefix
from tests.faults.conftest import FAULT_ENV, POSTGRES_ADMIN, OwnPostgres, OwnRedis, new_database, run_events, wait_until
from tests.utils.runs import wait_for_job, wait_for_status

# A few seconds of training: long enough to be killed in the middle.
RING8 = {
    "dataset": "ring8",
    "seed": 3,
    "model": {"width": 32},
    # Long enough that worker A is killed mid-run even on an idle machine (its uploader copies once a second).
    "train": {"steps": 1500, "batch_size": 64},
    "schedule": {"sample_every": 500, "checkpoint_every": 250, "keep_checkpoints": 2},
}


@pytest.fixture(scope="module")
def hosts(
    seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, S3Storage, dict[str, Path]]]:
    """The API on a PostgreSQL database, a Redis server and a bucket prefix of its own; the tests start the workers."""
    workdir = tmp_path_factory.mktemp("two-hosts")
    folders = {name: workdir / f"{name}-data" for name in ("api", "a", "b")}
    redis = OwnRedis(workdir / "redis")
    if _port_open(5432):
        database_url, drop = new_database(POSTGRES_ADMIN)
        server = None
    else:
        server = OwnPostgres()
        database_url, drop = server.url, lambda: None
    url, storage = new_bucket_prefix(seaweedfs, "ganforge-two-hosts")
    env = {
        **FAULT_ENV,
        **S3_ENV,
        "GANFORGE_ARTIFACTS_URL": url,
        "GANFORGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "GANFORGE_DATA_DIR": str(folders["api"]),
    }
    service = Service(database_url=database_url, broker_url=redis.url, workdir=workdir, extra_env=env)
    service.database_url = database_url  # type: ignore[attr-defined]
    try:
        service.start_api()
        yield service, storage, folders
    finally:
        service.stop()
        storage.close()
        redis.stop()
        drop()
        if server is not None:
            server.cleanup()


def stored_checkpoints(storage: S3Storage, run_id: str) -> list[int]:
    return sorted(int(e.key.rsplit("/", 1)[1].split(".")[0]) for e in storage.list(f"runs/{run_id}/checkpoints/"))


def test_a_run_killed_on_one_host_resumes_on_another_from_the_storage(
    hosts: tuple[Service, S3Storage, dict[str, Path]],
) -> None:
    service, storage, folders = hosts
    service.start_worker("train", name="a", env={"GANFORGE_DATA_DIR": str(folders["a"])})
    with service.client() as client:
        run = client.post("/runs", json=RING8).json()
        wait_until(lambda: (s := stored_checkpoints(storage, run["id"])) and s[-1] >= 250, what="a stored checkpoint")
        service.kill_worker("a")  # SIGKILL: host A is gone, and its disk with it
        killed_at = stored_checkpoints(storage, run["id"])[-1]
        assert killed_at < RING8["train"]["steps"], "the run ended before its worker could be killed"

        service.start_worker("train,generate", name="b", env={"GANFORGE_DATA_DIR": str(folders["b"])})
        run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"))
        assert run["status"] == "succeeded", f"{run['error']}\n{service.log('worker-b')}"
        assert run["attempts"] == 2 and run["environment"]["resumed_from_step"] >= killed_at

        # Each attempt ran on its own host; B started from a stored checkpoint, not from step 0.
        events = run_events(service, run["id"])
        workers = [d["worker"] for kind, d in events if kind == "status" and d["status"] == "running"]
        assert len(workers) == 2 and workers[0] != workers[1]
        assert not [f for f in local_files(folders["b"]) if f.startswith("runs/")]  # B's run folder was scratch

        # Grids, checkpoints and a generation, through the API.
        assert [s["step"] for s in client.get(f"/runs/{run['id']}/samples").json()["items"]] == [500, 1000, 1500]
        png = client.get(f"/runs/{run['id']}/samples/latest.png")
        assert png.status_code == 200 and png.content == storage.read_bytes(f"runs/{run['id']}/samples/00001500.png")
        checkpoints = client.get(f"/runs/{run['id']}/checkpoints").json()["items"]
        assert [c["step"] for c in checkpoints] == [1250, 1500]
        blob = client.get(checkpoints[-1]["url"])
        assert blob.status_code == 200 and len(blob.content) == checkpoints[-1]["size_bytes"]
        response = client.post(f"/runs/{run['id']}/generations", json={"n": 16, "format": "npz"})
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "succeeded", f"{job['error']}\n{service.log('worker-b')}"
        result = client.get(job["result_url"])
        assert result.status_code == 200 and result.content[:2] == b"PK"  # npz is a zip
    assert local_files(folders["api"]) == []
