"""Translation datasets through the real API: paired (A/ and B/, or side-by-side AB images) and unpaired (trainA/,
trainB/) uploads, bad layouts refused with what is missing and nothing left behind, runs that check the pairing,
and a tiny pix2pix and cyclegan run on uploads through the real worker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.utils import zips
from tests.utils.datasets import dataset_rows, tree
from tests.utils.runs import post_and_finish

TINY = {
    "model": {"image_size": 32, "width": 4},
    "train": {"steps": 2, "batch_size": 4},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 2, "eval_samples": 64},
}


def paired(n: int = 16, *, drop: str | None = None) -> bytes:
    """n pairs under a wrapper folder: grey inputs in A/ (PNG), colour targets in B/ (JPEG), sharing names."""
    members = {f"edges2x/A/{i}.png": zips.image_bytes(size=32, seed=i, mode="L") for i in range(n)}
    members |= {f"edges2x/B/{i}.jpg": zips.image_bytes(size=32, seed=100 + i, fmt="JPEG") for i in range(n)}
    members.pop(drop or "", None)
    return zips.build_zip(members)


def side_by_side(n: int = 16, *, width: int = 64) -> bytes:
    """pix2pix's AB images: 64 × 32 px, input on the left and target on the right."""
    return zips.build_zip({f"train/{i}.png": zips.image_bytes(size=32, width=width, seed=i) for i in range(n)})


def unpaired(*, b: bool = True) -> bytes:
    """CycleGAN's layout: trainA/ and trainB/, with testA/ and testB/ held out."""
    members = {f"trainA/{i}.png": zips.image_bytes(size=32, seed=i) for i in range(12)}
    members |= {f"testA/{i}.png": zips.image_bytes(size=32, seed=50 + i) for i in range(2)}
    if b:
        members |= {f"trainB/{i}.png": zips.image_bytes(size=32, seed=200 + i, mode="L") for i in range(10)}
        members |= {f"testB/{i}.png": zips.image_bytes(size=32, seed=250 + i, mode="L") for i in range(2)}
    return zips.build_zip(members)


def upload(client: httpx.Client, data: bytes, **fields: str) -> httpx.Response:
    return client.post("/datasets", files={"file": ("data.zip", data, "application/zip")}, data=fields)


def invalid(field: str, message: str) -> list[dict[str, object]]:
    return [{"type": "value_error", "loc": ["body", field], "msg": message}]


PAIRED_HELP = "a paired archive holds folders A/ (inputs) and B/ (targets) whose files share names"


@pytest.mark.parametrize(
    ("data", "fields", "detail"),
    [
        pytest.param(
            paired(drop="edges2x/B/7.jpg"),
            {},
            invalid("file", f"file: A/7.png has no partner in B/; {PAIRED_HELP}"),
            id="no-partner",
        ),
        pytest.param(
            side_by_side(width=50),
            {"layout": "AB"},
            invalid(
                "file",
                "file: train/0.png is 50×32 px; a side-by-side (layout AB) archive holds images twice as wide as "
                "tall, the input on the left and the target on the right",
            ),
            id="ab-not-2-to-1",
        ),
        pytest.param(
            unpaired(b=False),
            {"layout": "unpaired"},
            invalid(
                "file",
                "file: trainB/ missing; an unpaired archive holds folders trainA/ and trainB/ (and optionally testA/ "
                "and testB/)",
            ),
            id="no-trainB",
        ),
        pytest.param(
            paired(10),
            {},
            invalid(
                "file",
                "file: 10 readable pairs; at least 16 are needed (8 or more are held out of training for evaluation)",
            ),
            id="too-few-pairs",
        ),
        pytest.param(
            paired(),
            {"layout": "sideways"},
            invalid("layout", "layout: 'sideways' is not a layout; use one of auto, images, paired, AB, unpaired"),
            id="unknown-layout",
        ),
    ],
)
def test_bad_layouts_are_refused_naming_what_is_missing_and_leave_nothing(
    postgres_service: Service, postgres_url: str, data: bytes, fields: dict[str, str], detail: object
) -> None:
    with postgres_service.client(postgres_service.new_user_token("layouts")) as client:
        before, rows = tree(postgres_service.data_dir / "datasets"), dataset_rows(postgres_url)
        response = upload(client, data, **fields)
        assert (response.status_code, response.json()["detail"]) == (422, detail)
        assert tree(postgres_service.data_dir / "datasets") == before
        assert dataset_rows(postgres_url) == rows


def test_a_side_by_side_archive_is_a_paired_dataset(postgres_service: Service) -> None:
    with postgres_service.client(postgres_service.new_user_token("ab")) as client:
        response = upload(client, side_by_side(), layout="AB")
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert dataset["id"].startswith("paired_") and dataset["kind"] == "paired"
        assert (dataset["num_images"], dataset["image_size"], dataset["channels"]) == (16, 32, 3)
        assert {k: dataset["stats"][k] for k in ("layout", "held_out", "source_channels")} == {
            "layout": "AB",
            "held_out": 8,
            "source_channels": 3,
        }
        assert client.get(f"/datasets/{dataset['id']}/preview.png").headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("data", "kind", "arch", "wrong", "why"),
    [
        pytest.param(
            paired(),
            "paired",
            "pix2pix",
            "cyclegan",
            "model.arch: cyclegan translates between two domains and needs an unpaired dataset (digits-printed, or an "
            "upload of trainA/ and trainB/ folders); {id} is paired",
            id="paired",
        ),
        pytest.param(
            unpaired(),
            "unpaired",
            "cyclegan",
            "pix2pix",
            "model.arch: pix2pix translates inputs into targets and needs a paired dataset (digits-edges, or an upload "
            "of A/ and B/ folders); {id} is unpaired",
            id="unpaired",
        ),
    ],
)
def test_a_translation_upload_trains_with_its_family_only(
    postgres_service: Service, data: bytes, kind: str, arch: str, wrong: str, why: str
) -> None:
    with postgres_service.client(postgres_service.new_user_token(kind)) as client:
        response = upload(client, data, name=kind)
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert dataset["id"].startswith(f"{kind}_") and dataset["kind"] == kind
        assert [d["kind"] for d in client.get("/datasets").json()["items"] if d["id"] == dataset["id"]] == [kind]

        for other, message in ((wrong, why.format(id=dataset["id"])), ("dcgan", None)):
            refused = client.post("/runs", json={"dataset": dataset["id"], "model": {"arch": other}})
            assert refused.status_code == 422, refused.text
            error = refused.json()["detail"][0]
            assert error["loc"] == ["body"] and error["msg"].startswith("Value error, model.arch: "), error
            assert message is None or error["msg"] == f"Value error, {message}"

        body: dict[str, Any] = {**TINY, "dataset": dataset["id"]}  # the dataset's kind picks the family
        if arch == "cyclegan":
            body = {**body, "model": {**TINY["model"], "res_blocks": 1}, "train": {**TINY["train"], "pool_size": 2}}
        posted, run = post_and_finish(client, body)
        assert posted["config"]["model"]["arch"] == arch
        assert [c["step"] for c in client.get(f"/runs/{run['id']}/checkpoints").json()["items"]] == [2]
        assert client.get(f"/runs/{run['id']}/samples/latest.png").status_code == 200
