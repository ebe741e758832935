"""stylegan2 through the service: a run posted to the real API trains on the real worker with its grids and
checkpoints, and generations from it (truncated toward its mean w, and latent walks) succeed."""

from __future__ import annotations

import io

import numpy as np
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


def test_a_stylegan2_run_trains_and_generates(postgres_service: Service) -> None:
    with postgres_service.client(postgres_service.new_user_token("stylegan2")) as client:
        posted, run = post_and_finish(client, STYLEGAN2)
        config = posted["config"]
        assert config["model"]["arch"] == "stylegan2" and config["train"]["ema_kimg"] == 10.0
        run_id = run["id"]
        assert_trained_to(client, run_id, 4)

        request = {"n": 4, "seed": 5, "truncation": 0.5, "labels": [3], "format": "npz"}
        response = client.post(f"/runs/{run_id}/generations", json=request)
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "succeeded", job["error"]
        samples = np.load(io.BytesIO(client.get(job["result_url"]).content))["samples"]
        assert samples.shape == (4, 1, 16, 16) and np.isfinite(samples).all()

        walk = {"n": 2, "interpolate": {"steps": 3}, "format": "png"}
        response = client.post(f"/runs/{run_id}/generations", json=walk)
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "succeeded", job["error"]
        assert Image.open(io.BytesIO(client.get(job["result_url"]).content)).format == "PNG"
