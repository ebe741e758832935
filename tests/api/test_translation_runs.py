"""pix2pix, cyclegan and srgan through the service: a run posted to the real API trains on the real worker with its
grids, metrics and checkpoints; a generation from it fails saying why; impossible translation configs are 422s naming
the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Service
from tests.utils.runs import assert_trained_to, post_and_finish, wait_for_job

PIX2PIX = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"steps": 4, "batch_size": 4},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 2, "eval_samples": 64},
}

CYCLEGAN = {
    "dataset": "digits-printed",
    "model": {"width": 4, "res_blocks": 1},
    "loss": {"semantic_weight": 0},  # its classifier's training before step 1 is tested in tests/core
    "train": {"steps": 4, "batch_size": 4, "pool_size": 3},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 2, "eval_samples": 64},
}

SRGAN = {
    "dataset": "photos",
    "model": {"image_size": 32, "width": 4, "g_width": 4, "res_blocks": 1},
    "train": {"steps": 4, "pretrain_steps": 2, "batch_size": 4},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 2, "eval_samples": 64},
}


@pytest.mark.parametrize(
    ("body", "metrics"),
    [
        pytest.param(PIX2PIX, ("l1", "psnr", "ssim", "sharpness", "digit_accuracy"), id="pix2pix"),
        pytest.param(CYCLEGAN, ("label_preservation", "fd_digits"), id="cyclegan"),
        pytest.param(SRGAN, ("psnr", "ssim", "sharpness", "psnr_bicubic", "ssim_bicubic"), id="srgan"),
    ],
)
def test_a_translation_run_trains_and_refuses_generations(
    postgres_service: Service, body: dict[str, Any], metrics: tuple[str, ...]
) -> None:
    with postgres_service.client(postgres_service.new_user_token("translation")) as client:
        posted, run = post_and_finish(client, body)
        arch = posted["config"]["model"]["arch"]
        run_id = run["id"]
        assert_trained_to(client, run_id, 4, metrics, evaluated_at=(2, 4))

        response = client.post(f"/runs/{run_id}/generations", json={"n": 4})
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "failed"
        assert f"{arch}, which translates input images and does not sample from latents" in job["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"dataset": "digits", "model": {"arch": "pix2pix"}}, "model.arch", id="unpaired"),
        pytest.param({"dataset": "digits-edges", "model": {"pack": 2}}, "model.pack", id="pack"),
        pytest.param({"dataset": "digits-edges", "loss": {"kind": "wgan"}}, "loss.kind", id="wgan"),
        pytest.param({"dataset": "digits-printed", "model": {"arch": "dcgan"}}, "model.arch", id="printed-dcgan"),
        pytest.param({"dataset": "digits-printed", "train": {"compile": True}}, "train.compile", id="cyc-compile"),
        pytest.param({"dataset": "photos", "model": {"image_size": 32, "scale": 8}}, "model.scale", id="sr-4px"),
        pytest.param({"dataset": "wine", "model": {"arch": "srgan"}}, "model.arch", id="sr-table"),
    ],
)
def test_impossible_pix2pix_runs_are_422_naming_the_field(
    postgres_service: Service, body: dict[str, Any], field: str
) -> None:
    with postgres_service.client(postgres_service.new_user_token("pix2pix-422")) as client:
        response = client.post("/runs", json=body)
        assert response.status_code == 422, response.text
        error = response.json()["detail"][0]
        assert error["loc"] == ["body"] and error["msg"].startswith(f"Value error, {field}: "), error
