"""ctgan through the service: a run on a built-in table posted to the real API trains on the real worker with its
histogram picture, table metrics and checkpoints; a generation from it gives CSV rows with its conditions; an image
architecture on a table, or ctgan on images, is a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Service
from tests.utils.runs import assert_trained_to, post_and_finish, wait_for_job

CTGAN = {
    "dataset": "wine",
    "model": {"width": 16, "z_dim": 8, "pack": 2},
    "train": {"steps": 4, "batch_size": 20},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 2, "eval_samples": 64},
}


def test_a_ctgan_run_on_a_builtin_table_trains_and_generates_rows(postgres_service: Service) -> None:
    with postgres_service.client(postgres_service.new_user_token("ctgan")) as client:
        wine = client.get("/datasets/wine").json()
        assert (wine["kind"], wine["num_images"], wine["builtin"]) == ("table", 178, True)
        posted, run = post_and_finish(client, CTGAN)
        assert posted["config"]["model"]["arch"] == "ctgan"
        run_id = run["id"]
        table_metrics = ("column_shapes", "column_pair_trends", "quality_score", "dcr_ratio", "ml_efficacy")
        assert_trained_to(client, run_id, 4, table_metrics, evaluated_at=(2, 4))

        response = client.post(f"/runs/{run_id}/generations", json={"n": 4, "conditions": {"target": "class_1"}})
        assert response.status_code == 202, response.text
        job = wait_for_job(client, f"/generations/{response.json()['id']}")
        assert job["status"] == "succeeded", job["error"]
        lines = client.get(job["result_url"]).text.splitlines()
        assert lines[0].endswith(",target") and len(lines) == job["made"] + 1
        assert all(line.endswith(",class_1") for line in lines[1:])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"dataset": "wine", "model": {"arch": "dcgan"}}, id="image-arch-on-a-table"),
        pytest.param({"dataset": "digits", "model": {"arch": "ctgan"}}, id="ctgan-on-images"),
    ],
)
def test_mixing_tables_and_image_architectures_is_a_422_naming_model_arch(
    postgres_service: Service, body: dict[str, Any]
) -> None:
    with postgres_service.client(postgres_service.new_user_token("ctgan-422")) as client:
        response = client.post("/runs", json=body)
        assert response.status_code == 422, response.text
        error = response.json()["detail"][0]
        assert error["loc"] == ["body"] and error["msg"].startswith("Value error, model.arch: "), error
