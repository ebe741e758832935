"""The service with its artifacts in object storage (a real SeaweedFS), and no disk in common: the API, the
training worker and the generate worker each have a data folder of their own. Everything a run, a job or a
dataset upload produces reaches the client through the storage."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from safetensors import safe_open

from ganforge.client import Ganforge
from ganforge.services import stop
from store.artifacts import S3Storage
from tests.api.test_generations import digits_zip
from tests.conftest import Service, free_port
from tests.utils.runs import wait_for_http, wait_for_job, wait_for_status

RING8 = {
    "dataset": "ring8",
    "seed": 1,
    "train": {"steps": 40},
    "schedule": {"sample_every": 20, "checkpoint_every": 20, "keep_checkpoints": 1},
}


def local_files(folder: Path) -> list[str]:
    """Files under a data folder, but the caches of fetched artifacts and the uploads' lock."""
    if not folder.exists():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] not in ("cache", "tmp") and p.name != ".lock"
    )


@pytest.fixture
def s3(s3_service: Service) -> tuple[Service, S3Storage]:
    """The service on object storage (tests/conftest.py), and its bucket."""
    assert s3_service.storage is not None
    return s3_service, s3_service.storage


def test_a_run_and_its_jobs_go_through_object_storage(s3: tuple[Service, S3Storage], tmp_path: Path) -> None:
    service, storage = s3
    with service.client(service.new_user_token()) as client:
        run = client.post("/runs", json=RING8).json()
        run = wait_for_status(client, run["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded", f"{run['error']}\n{service.log('worker-train')}"
        run_id = run["id"]

        # Grids, checkpoints, config and run info are in the bucket; the worker's run folder was scratch.
        keys = [e.key for e in storage.list(f"runs/{run_id}/")]
        assert keys == [
            f"runs/{run_id}/checkpoints/00000040.safetensors",
            f"runs/{run_id}/config.json",
            f"runs/{run_id}/run_info.json",
            f"runs/{run_id}/samples/00000020.png",
            f"runs/{run_id}/samples/00000040.png",
        ]
        assert local_files(service.workdir / "train-data") == []

        # The API serves them from the storage, with the run's authorization.
        samples = client.get(f"/runs/{run_id}/samples").json()["items"]
        assert [s["step"] for s in samples] == [20, 40]
        png = client.get(f"/runs/{run_id}/samples/latest.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == storage.read_bytes(f"runs/{run_id}/samples/00000040.png")
        checkpoints = client.get(f"/runs/{run_id}/checkpoints").json()["items"]
        assert [c["step"] for c in checkpoints] == [40]
        blob = client.get(checkpoints[0]["url"])
        assert blob.status_code == 200 and len(blob.content) == checkpoints[0]["size_bytes"]
        assert blob.headers["content-disposition"] == f'attachment; filename="{run_id}-00000040.safetensors"'
        assert client.get(f"/runs/{run_id}/samples/30.png").json() == {"detail": "Sample not found"}
        assert client.get(f"/runs/{run_id}/checkpoints/30").json() == {"detail": "Checkpoint not found"}

        # A generation on a worker that has never seen the run: it fetches the checkpoint, stores its result.
        response = client.post(f"/runs/{run_id}/generations", json={"n": 16, "format": "npz"})
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "succeeded", f"{job['error']}\n{service.log('worker-generate')}"
        result = client.get(job["result_url"])
        assert result.status_code == 200 and result.content[:2] == b"PK"  # npz is a zip
        assert storage.exists(f"runs/{run_id}/generations/{job['id']}/result.npz")
        assert local_files(service.workdir / "generate-data") == []

        # Resumed on an empty local folder, the run continues from the checkpoint in the storage.
        response = client.post(f"/runs/{run_id}/resume", json={"steps": 20})
        assert response.status_code == 202, response.text
        run = wait_for_status(client, run_id, ("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
        assert [c["step"] for c in client.get(f"/runs/{run_id}/checkpoints").json()["items"]] == [60]
        path = tmp_path / "ckpt.safetensors"
        path.write_bytes(client.get(f"/runs/{run_id}/checkpoints/60").content)
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata()["step"] == "60"

        # Deleting the run deletes its artifacts, the generation's too.
        assert client.delete(f"/runs/{run_id}").status_code == 204
        assert storage.list(f"runs/{run_id}/") == []
    assert local_files(service.workdir / "api-data") == []


def test_uploaded_datasets_and_scores_go_through_object_storage(s3: tuple[Service, S3Storage]) -> None:
    service, storage = s3
    with service.client(service.new_user_token()) as client:
        upload = client.post("/datasets", files={"file": ("d.zip", digits_zip(4), "application/zip")})
        assert upload.status_code == 201, upload.text
        dataset = upload.json()
        content_hash = next(e.key.split("/")[1] for e in storage.list("datasets/"))
        assert storage.exists(f"datasets/{content_hash}/images.npy")
        preview = client.get(f"/datasets/{dataset['id']}/preview.png")
        assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"

        # A run on it, trained on a worker that fetches the dataset into its cache.
        config = {
            "dataset": dataset["id"],
            "model": {"image_size": 16, "width": 8, "z_dim": 16},
            "train": {"steps": 4, "batch_size": 8},
            "schedule": {"sample_every": 2, "checkpoint_every": 2},
        }
        run = client.post("/runs", json=config).json()
        run = wait_for_status(client, run["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded", f"{run['error']}\n{service.log('worker-train')}"
        assert (service.workdir / "train-data" / "cache" / "datasets" / content_hash / "images.npy").is_file()

        # Scores of an uploaded ZIP (kept with the job in the storage) and of the dataset.
        response = client.post(
            f"/runs/{run['id']}/scores",
            files={"file": ("images.zip", digits_zip(2), "application/zip")},
            data={"search_steps": "2"},
        )
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/scores/{response.json()['id']}")
        assert job["status"] == "succeeded", f"{job['error']}\n{service.log('worker-generate')}"
        assert client.get(job["result_url"]).json()["count"] == 4
        assert client.get(job["csv_url"]).text.startswith("index,name")
        response = client.post(f"/runs/{run['id']}/scores", json={"dataset": dataset["id"], "search_steps": 2})
        job = wait_for_job(client, f"/scores/{response.json()['id']}")
        assert job["status"] == "succeeded", job["error"]
        assert client.get(job["result_url"]).json()["count"] == 8

        assert client.delete(f"/runs/{run['id']}").status_code == 204
        assert client.delete(f"/datasets/{dataset['id']}").status_code == 204
        assert storage.list(f"datasets/{content_hash}/") == []

        # A dataset whose files went missing from the storage fails its run saying so.
        upload = client.post("/datasets", files={"file": ("e.zip", digits_zip(5), "application/zip")})
        assert upload.status_code == 201, upload.text
        missing = next(e.key.split("/")[1] for e in storage.list("datasets/"))
        storage.delete_prefix(f"datasets/{missing}/")
        run = client.post("/runs", json={**config, "dataset": upload.json()["id"]}).json()
        run = wait_for_status(client, run["id"], ("succeeded", "failed"))
        assert run["status"] == "failed"
        assert run["error"] == f"dataset: the files of dataset {missing[:12]}… are missing from the artifact storage"
    assert local_files(service.workdir / "api-data") == []


def test_presigned_downloads(s3: tuple[Service, S3Storage]) -> None:
    """With GANFORGE_S3_PRESIGN=true the API answers 307 to a short-lived URL of the object."""
    service, storage = s3
    with service.client(service.new_user_token()) as client:
        run = client.post("/runs", json={**RING8, "train": {"steps": 20}}).json()
        run = wait_for_status(client, run["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
    port = free_port()
    api = service.spawn("api-presign", "api", "--port", str(port), env={"GANFORGE_S3_PRESIGN": "true"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/readyz")
        headers = {"Authorization": client.headers["Authorization"]}
        response = httpx.get(f"{base}/runs/{run['id']}/samples/20.png", headers=headers)
        assert response.status_code == 307
        assert response.headers["location"].startswith(storage.client.meta.endpoint_url)
        assert httpx.get(response.headers["location"]).content == storage.read_bytes(
            f"runs/{run['id']}/samples/00000020.png"
        )
        # The Python client follows the redirect (httpx drops the Authorization header on the way to S3).
        with Ganforge(url=base, token=headers["Authorization"].removeprefix("Bearer ")) as sdk:
            assert sdk.runs.sample(run["id"], 20) == storage.read_bytes(f"runs/{run['id']}/samples/00000020.png")
        assert httpx.get(f"{base}/runs/{run['id']}/samples/40.png", headers=headers).status_code == 404
        assert httpx.get(f"{base}/runs/{run['id']}/samples/20.png").status_code == 401
    finally:
        stop(api)
