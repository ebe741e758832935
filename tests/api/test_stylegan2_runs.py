"""stylegan2 through the service: a run posted to the real API trains on the real worker with its grids and
checkpoints; generations from it (truncated toward its mean w, latent walks in Z and in W, the style-mixing grid)
succeed, a projection of real digits gives latents and reconstructions named as the inputs, and requests that do
not fit the run are 422s naming the field. One tiny run serves every test here."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.client import Ganforge
from tests.conftest import Service
from tests.utils.runs import assert_trained_to, post_and_finish, wait_for_job, wait_for_status
from tests.utils.zips import build_zip

STYLEGAN2 = {
    "dataset": "digits",
    "model": {"arch": "stylegan2", "width": 4, "z_dim": 8, "w_dim": 8, "mapping_layers": 2, "conditional": True},
    "train": {"steps": 4, "batch_size": 4},
    "loss": {"r1_every": 2, "pl_every": 2},
    "schedule": {"sample_every": 2, "checkpoint_every": 2},
}
SIZE = 16  # the digits' default image size; its generator has 2·log2(16) − 2 = 6 layers
PAD = 2  # core.grids.image_grid's padding


@dataclass
class Trained:
    service: Service
    token: str
    client: httpx.Client
    run_id: str
    posted: dict[str, Any]


@pytest.fixture(scope="module")
def trained(postgres_service: Service) -> Iterator[Trained]:
    token = postgres_service.new_user_token("stylegan2")
    with postgres_service.client(token) as client:
        posted, run = post_and_finish(client, STYLEGAN2)
        yield Trained(service=postgres_service, token=token, client=client, run_id=run["id"], posted=posted)


def generate(trained: Trained, body: dict[str, Any]) -> bytes:
    """POST a generation, wait for it to succeed, and return its result's bytes."""
    response = trained.client.post(f"/runs/{trained.run_id}/generations", json=body)
    assert response.status_code == 202, response.text
    job = wait_for_job(trained.client, f"/generations/{response.json()['id']}")
    assert job["status"] == "succeeded", job["error"]
    return trained.client.get(job["result_url"]).content


def test_a_stylegan2_run_trains_and_generates(trained: Trained) -> None:
    config = trained.posted["config"]
    assert config["model"]["arch"] == "stylegan2" and config["train"]["ema_kimg"] == 10.0
    assert_trained_to(trained.client, trained.run_id, 4)

    request = {"n": 4, "seed": 5, "truncation": 0.5, "labels": [3], "format": "npz"}
    samples = np.load(io.BytesIO(generate(trained, request)))["samples"]
    assert samples.shape == (4, 1, SIZE, SIZE) and np.isfinite(samples).all()

    walk = {"n": 2, "interpolate": {"steps": 3}, "format": "png"}
    assert Image.open(io.BytesIO(generate(trained, walk))).format == "PNG"


def test_the_style_mixing_grid_has_its_sources_on_the_edges(trained: Trained) -> None:
    mix = {"row_seeds": [1, 2], "col_seeds": [3, 4, 5], "layers": "0-3"}
    grid = np.asarray(Image.open(io.BytesIO(generate(trained, {"style_mix": mix, "labels": [3]}))))
    assert grid.shape == (3 * (SIZE + PAD) + PAD, 4 * (SIZE + PAD) + PAD)  # (rows + 1) × (cols + 1) cells

    def cell(row: int, col: int) -> np.ndarray:
        top, left = PAD + row * (SIZE + PAD), PAD + col * (SIZE + PAD)
        return grid[top : top + SIZE, left : left + SIZE].astype(int)

    assert (cell(0, 0) == 0).all()  # the blank corner
    for seed, (row, col) in {3: (0, 1), 5: (0, 3), 1: (1, 0), 2: (2, 0)}.items():
        # Each source is the image a one-sample generation with its seed (and the same label) gives.
        one = np.load(io.BytesIO(generate(trained, {"n": 1, "seed": seed, "labels": [3], "format": "npz"})))
        expected = np.clip(np.rint((one["samples"][0, 0] + 1.0) * 127.5), 0, 255)
        assert np.abs(cell(row, col) - expected).max() <= 1, seed
    # A mixed cell is neither of its sources (the columns' layers 0-3 replace 4 of the row's 6 ws).
    assert np.abs(cell(1, 1) - cell(1, 0)).max() > 0 and np.abs(cell(1, 1) - cell(0, 1)).max() > 0


def test_walks_in_w_share_their_ends_with_walks_in_z(trained: Trained) -> None:
    walks = {}
    for space in ("z", "w"):
        body = {"n": 2, "seed": 4, "interpolate": {"steps": 3, "space": space}, "format": "npz"}
        walks[space] = np.load(io.BytesIO(generate(trained, body)))["samples"].reshape(2, 3, 1, SIZE, SIZE)
    np.testing.assert_allclose(walks["w"][:, [0, 2]], walks["z"][:, [0, 2]], atol=1e-5)
    assert np.abs(walks["w"][:, 1] - walks["z"][:, 1]).max() > 1e-4  # halfway in W is not halfway in Z


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        pytest.param(
            {"style_mix": {"row_seeds": [1], "col_seeds": [2], "layers": "4-6"}},
            ["body", "style_mix", "layers"],
            "style_mix.layers: this generator has layers 0 to 5; '4-6' is outside",
            id="layers-past-the-generator",
        ),
        pytest.param(
            {"style_mix": {"row_seeds": [1], "col_seeds": [2], "layers": "coarse"}},
            ["body", "style_mix", "layers"],
            "style_mix.layers: write a layer or a range such as '0-3', not 'coarse'",
            id="layers-unreadable",
        ),
        pytest.param(
            {"style_mix": {"row_seeds": [], "col_seeds": [2]}},
            ["body", "style_mix", "row_seeds"],
            "List should have at least 1 item after validation, not 0",
            id="no-row-seeds",
        ),
        pytest.param(
            {"style_mix": {"row_seeds": [1], "col_seeds": list(range(17))}},
            ["body", "style_mix", "col_seeds"],
            "List should have at most 16 items after validation, not 17",
            id="too-many-col-seeds",
        ),
        pytest.param(
            {"style_mix": {"row_seeds": [1], "col_seeds": [2]}, "format": "npz"},
            ["body", "format"],
            "format: a style-mixing grid is one png picture, not npz",
            id="style-mix-as-npz",
        ),
        pytest.param(
            {"style_mix": {"row_seeds": [1], "col_seeds": [2]}, "interpolate": {"steps": 3}},
            ["body", "style_mix"],
            "style_mix: ask for a style-mixing grid or for latent walks, not both",
            id="style-mix-and-walks",
        ),
        pytest.param(
            {"interpolate": {"space": "x"}},
            ["body", "interpolate", "space"],
            "Input should be 'z' or 'w'",
            id="unknown-space",
        ),
    ],
)
def test_bad_style_requests_are_422_naming_the_field(
    trained: Trained, body: dict[str, Any], loc: list[str], message: str
) -> None:
    before = trained.client.get(f"/runs/{trained.run_id}/generations").json()["items"]
    response = trained.client.post(f"/runs/{trained.run_id}/generations", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert (error["loc"], error["msg"]) == (loc, message)
    assert trained.client.get(f"/runs/{trained.run_id}/generations").json()["items"] == before  # nothing queued


def test_a_conditional_run_on_an_upload_splits_its_classes_by_the_smallest(trained: Trained) -> None:
    """Left out, model.class_clusters is chosen from the upload's smallest class (34 images: 2 clusters); a chosen
    one that a class cannot fill is a 422 naming that class, with no run queued."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    members = {}
    for folder, digit, count in (("ones", 1, 34), ("sevens", 7, 40)):
        for i, pixels in enumerate(digits.images[digits.target == digit][:count]):
            out = io.BytesIO()
            Image.fromarray((pixels * 255 / 16).astype(np.uint8), mode="L").resize((SIZE, SIZE)).save(out, "PNG")
            members[f"{folder}/{i:02d}.png"] = out.getvalue()
    files = {"file": ("digits.zip", build_zip(members), "application/zip")}
    response = trained.client.post("/datasets", files=files, data={"name": "ones and sevens"})
    assert response.status_code == 201, response.text
    body = {**STYLEGAN2, "dataset": response.json()["id"]}
    posted, _ = post_and_finish(trained.client, body)
    assert posted["config"]["model"]["class_clusters"] == 2
    assert_trained_to(trained.client, posted["id"], 4)

    before = trained.client.get("/runs").json()["items"]
    response = trained.client.post("/runs", json={**body, "model": {**STYLEGAN2["model"], "class_clusters": 35}})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert (error["loc"], error["msg"]) == (
        ["body", "model", "class_clusters"],
        f"model.class_clusters: 35 clusters in each class need 35 images in each; class 'ones' of dataset "
        f"{body['dataset']} has 34",
    )
    assert trained.client.get("/runs").json()["items"] == before
    chosen = trained.client.post("/runs", json={**body, "model": {**STYLEGAN2["model"], "class_clusters": 0}})
    assert chosen.status_code == 201 and chosen.json()["config"]["model"]["class_clusters"] == 0
    trained.client.post(f"/runs/{chosen.json()['id']}/cancel")
    wait_for_status(trained.client, chosen.json()["id"], ("canceled", "failed", "succeeded"))


# Projection.


def digits_zip(names_and_sizes: dict[str, int]) -> bytes:
    """Real digits (scikit-learn's, 8×8) scaled up to the given sides, as PNGs under the given names."""
    from sklearn.datasets import load_digits

    digits = load_digits().images  # (1797, 8, 8) in 0..16
    members = {}
    for i, (name, side) in enumerate(names_and_sizes.items()):
        pixels = (digits[1000 + i] * 255 / 16).astype(np.uint8)
        image = Image.fromarray(pixels, mode="L").resize((side, side), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="PNG")
        members[name] = out.getvalue()
    return build_zip(members)


def test_a_projection_gives_latents_and_reconstructions_named_as_the_inputs(trained: Trained) -> None:
    client = trained.client
    archive = digits_zip({"held/one.png": 16, "held/two.png": 24, "three.png": 16})
    response = client.post(
        f"/runs/{trained.run_id}/projections",
        files={"file": ("digits.zip", archive, "application/zip")},
        data={"steps": "4", "space": "w+", "seed": "2"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/projections/{response.json()['id']}"
    job = wait_for_job(client, response.headers["Location"])
    assert job["status"] == "succeeded", job["error"]
    assert job["request"]["distance"] == "pixel+discriminator+digits" and job["request"]["checkpoint_step"] == 4
    result = client.get(job["result_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(result.content)) as zipped:
        files = ["held/one.png", "held/two.png", "three.png"]
        assert sorted(zipped.namelist()) == sorted([*files, "latents.npz", "projection.json"])
        for name in files:
            image = Image.open(io.BytesIO(zipped.read(name)))
            assert (image.size, image.mode) == ((SIZE, SIZE), "L")
        latents = np.load(io.BytesIO(zipped.read("latents.npz")), allow_pickle=False)
        order = list(latents["names"])
        assert sorted(order) == sorted(files)
        assert latents["ws"].shape == (3, 6, 8) and np.isfinite(latents["ws"]).all()
        assert "w" not in latents  # w+ gives one w per layer
        assert [latents[f"noise_{i}"].shape for i in range(5)] == [(3, 1, r, r) for r in (4, 8, 8, 16, 16)]
        summary = json.loads(zipped.read("projection.json"))
    assert (summary["space"], summary["steps"], summary["seed"]) == ("w+", 4, 2)

    with trained.service.client(trained.service.new_user_token("stranger")) as stranger:
        for method in ("GET", "DELETE"):
            answer = stranger.request(method, response.headers["Location"])
            assert (answer.status_code, answer.json()["detail"]) == (404, "Projection not found")
    assert client.delete(response.headers["Location"]).status_code == 204
    assert client.get(response.headers["Location"]).status_code == 404


@pytest.mark.parametrize(
    ("files", "data", "message"),
    [
        pytest.param(
            {"small.png": 8},
            {},
            "file: images must be at least the run's size, 16×16 px; the smallest is 8×8",
            id="small",
        ),
        pytest.param({"a.png": 16}, {"steps": "0"}, "Input should be greater than or equal to 1", id="steps=0"),
        pytest.param({"a.png": 16}, {"space": "z"}, "Input should be 'w' or 'w+'", id="space"),
    ],
)
def test_bad_projection_requests_are_422(
    trained: Trained, files: dict[str, int], data: dict[str, str], message: str
) -> None:
    response = trained.client.post(
        f"/runs/{trained.run_id}/projections",
        files={"file": ("digits.zip", digits_zip(files), "application/zip")},
        data=data,
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"] == message


def test_the_client_and_the_cli_project(trained: Trained, tmp_path: Path) -> None:
    archive = tmp_path / "in.zip"
    archive.write_bytes(digits_zip({"seven.png": 16}))
    with Ganforge(trained.service.url, token=trained.token) as client:
        handle = client.projections.create(trained.run_id, archive, steps=2, seed=1)
        with zipfile.ZipFile(io.BytesIO(handle.result(timeout=120))) as zipped:
            assert sorted(zipped.namelist()) == ["latents.npz", "projection.json", "seven.png"]
        assert handle.projection.status == "succeeded"

    out = tmp_path / "out.zip"
    env = {"GANFORGE_URL": trained.service.url, "GANFORGE_TOKEN": trained.token}
    args = ["project", trained.run_id, str(archive), "-o", str(out), "--steps", "2", "--space", "w"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.stderr
    latents = np.load(io.BytesIO(zipfile.ZipFile(out).read("latents.npz")), allow_pickle=False)
    assert latents["w"].shape == (1, 8) and list(latents["names"]) == ["seven.png"]
    bad = CliRunner().invoke(app, [*args[:-2], "--space", "z"], env=env)
    assert bad.exit_code == 1 and "--space z: w or w+" in bad.stderr
