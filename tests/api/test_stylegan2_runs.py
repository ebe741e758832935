"""stylegan2 through the service: a run posted to the real API trains on the real worker with its grids and
checkpoints; generations from it (truncated toward its mean w, latent walks in Z and in W, the style-mixing grid)
succeed, and requests that do not fit it are 422s naming the field. One tiny run serves every test here."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Service
from tests.utils.runs import assert_trained_to, post_and_finish, wait_for_job

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
    client: httpx.Client
    run_id: str
    posted: dict[str, Any]


@pytest.fixture(scope="module")
def trained(postgres_service: Service) -> Iterator[Trained]:
    with postgres_service.client(postgres_service.new_user_token("stylegan2")) as client:
        posted, run = post_and_finish(client, STYLEGAN2)
        yield Trained(client=client, run_id=run["id"], posted=posted)


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
