"""Translation jobs through the real API and worker: a tiny pix2pix run translates an uploaded ZIP (named as the
inputs, resized to the run's size, the same bytes twice) and an .npz, through HTTP, the client and the CLI; a
tiny cyclegan run with a latent code translates B to A (printed into handwritten digits) as deterministically, each
seed its own codes; refusals say why."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.client import Ganforge
from store import layout
from tests.conftest import Service
from tests.utils import zips
from tests.utils.runs import post_and_finish, wait_for_job

PIX2PIX = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"steps": 2, "batch_size": 4},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 0},
}
INPUTS = {
    "sketches/a.png": zips.image_bytes(size=40, mode="L", seed=1),  # larger than the run's 32 px
    "b.jpg": zips.image_bytes(size=20, width=24, fmt="JPEG", seed=2),  # smaller, colour, not square
    "c.png": zips.image_bytes(size=32, mode="L", seed=3),
}


def post(client: httpx.Client, run_id: str, data: bytes, filename: str = "in.zip", **fields: str) -> httpx.Response:
    return client.post(f"/runs/{run_id}/translations", files={"file": (filename, data, "application/zip")}, data=fields)


def finished(client: httpx.Client, response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 202, response.text
    job = wait_for_job(client, f"/translations/{response.json()['id']}")
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture(scope="module")
def pix2pix(postgres_service: Service) -> Iterator[tuple[httpx.Client, str]]:
    """A client of a fresh user, and that user's finished tiny pix2pix run."""
    with postgres_service.client(postgres_service.new_user_token("translate")) as client:
        _, run = post_and_finish(client, PIX2PIX)
        yield client, run["id"]


def test_a_pix2pix_run_translates_a_zip_and_an_npz(
    pix2pix: tuple[httpx.Client, str], postgres_service: Service
) -> None:
    client, run_id = pix2pix
    first = finished(client, post(client, run_id, zips.build_zip(INPUTS)))
    assert first["request"]["checkpoint_step"] == 2 and first["request"]["direction"] == "AtoB"
    result = client.get(f"/translations/{first['id']}/result")
    assert result.status_code == 200 and result.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
        assert sorted(archive.namelist()) == ["b.png", "c.png", "sketches/a.png"]
        for name in archive.namelist():
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert (image.format, image.size, image.mode) == ("PNG", (32, 32), "L")
    pairs = client.get(f"/translations/{first['id']}/pairs.png")
    assert pairs.status_code == 200 and pairs.content.startswith(b"\x89PNG")

    # Deterministic: the same input gives the same bytes.
    again = finished(client, post(client, run_id, zips.build_zip(INPUTS)))
    assert client.get(f"/translations/{again['id']}/result").content == result.content

    # An .npz in, an .npz out: float32 samples at the run's size.
    samples = np.random.default_rng(0).uniform(-1, 1, (3, 1, 16, 16)).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, samples=samples)
    npz = finished(client, post(client, run_id, buffer.getvalue(), "in.npz"))
    with np.load(io.BytesIO(client.get(f"/translations/{npz['id']}/result").content)) as out:
        assert out["samples"].shape == (3, 1, 32, 32) and out["samples"].dtype == np.float32
        assert np.abs(out["samples"]).max() <= 1

    listed = client.get(f"/runs/{run_id}/translations").json()["items"]
    assert [t["id"] for t in listed] == [npz["id"], again["id"], first["id"]]
    assert client.delete(f"/translations/{first['id']}").status_code == 204
    assert client.get(f"/translations/{first['id']}").json()["detail"] == "Translation not found"

    refused = post(client, run_id, zips.build_zip(INPUTS), direction="BtoA")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["msg"] == (
        "direction: a pix2pix run translates one way (AtoB); only cyclegan runs also go BtoA"
    )
    bad = post(client, run_id, zips.build_zip({"notes.txt": b"hello"}))
    assert (bad.status_code, bad.json()["detail"][0]["loc"]) == (422, ["body", "file"])
    unsure = post(client, run_id, zips.build_zip(INPUTS), ema="maybe")
    assert (unsure.status_code, unsure.json()["detail"][0]["loc"]) == (422, ["body", "ema"])
    # Nothing received is left behind by a refusal: the streamed file goes with the request.
    assert not list(layout.tmp_dir(postgres_service.data_dir).glob(".upload-*"))


def test_a_noise_run_has_no_translations(postgres_service: Service) -> None:
    with postgres_service.client(postgres_service.new_user_token("translate-noise")) as client:
        response = client.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}})
        assert response.status_code == 201, response.text
        refused = post(client, response.json()["id"], zips.build_zip(INPUTS))
        assert refused.status_code == 409
        assert refused.json()["detail"] == (
            "Translations need a pix2pix, cyclegan or srgan run; this run trains mlp, which does not translate images "
            "(use POST /runs/{id}/generations)"
        )


def test_the_client_and_the_cli_translate(pix2pix: tuple[httpx.Client, str], tmp_path: Path) -> None:
    client, run_id = pix2pix
    images = tmp_path / "in.zip"
    images.write_bytes(zips.build_zip(INPUTS))
    token = client.headers["Authorization"].removeprefix("Bearer ")
    with Ganforge(str(client.base_url), token) as sdk:
        handle = sdk.translations.create(run_id, images)
        data = handle.result(timeout=120)
        assert handle.translation.status == "succeeded" and handle.translation.pairs_url is not None
        assert sdk.translations.pairs(handle.id).startswith(b"\x89PNG")

    out = tmp_path / "out.zip"
    env = {"GANFORGE_URL": str(client.base_url), "GANFORGE_TOKEN": token}
    result = CliRunner().invoke(app, ["translate", run_id, str(images), "-o", str(out)], env=env)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == data  # the same images, the same bytes
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["b.png", "c.png", "sketches/a.png"]
    result = CliRunner().invoke(app, ["translate", run_id, str(images), "--direction", "BtoA"], env=env)
    assert result.exit_code == 1 and "only cyclegan runs also go BtoA" in result.stderr


CYCLEGAN = {
    "dataset": "digits-printed",
    "model": {"arch": "cyclegan", "width": 4, "res_blocks": 1, "latent_dim": 2},
    "loss": {"semantic_weight": 0},  # the job under test translates; no need to pretrain the anchor's classifier
    # G's code enters through FiLM layers that start at zero: at the default lr_g two steps move its outputs by about
    # a thousandth of an 8-bit level, too little for another seed to change a pixel; at 0.01, a few hundred change.
    "train": {"steps": 2, "batch_size": 4, "pool_size": 2, "lr_g": 0.01},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 0},
}


def test_a_cyclegan_run_translates_printed_digits_into_handwritten_ones(postgres_service: Service) -> None:
    with postgres_service.client(postgres_service.new_user_token("translate-cyclegan")) as client:
        _, run = post_and_finish(client, CYCLEGAN)
        first = finished(client, post(client, run["id"], zips.build_zip(INPUTS), direction="BtoA"))
        assert (first["request"]["direction"], first["request"]["checkpoint_step"], first["request"]["seed"]) == (
            "BtoA",
            2,
            0,
        )
        result = client.get(f"/translations/{first['id']}/result")
        assert result.status_code == 200
        with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
            assert sorted(archive.namelist()) == ["b.png", "c.png", "sketches/a.png"]
            for name in archive.namelist():
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    assert (image.format, image.size, image.mode) == ("PNG", (32, 32), "L")
        assert client.get(f"/translations/{first['id']}/pairs.png").content.startswith(b"\x89PNG")

        # Deterministic: the same input gives the same bytes; another seed draws other latent codes for G_BA, and
        # the other direction is another generator (which has no code).
        again = finished(client, post(client, run["id"], zips.build_zip(INPUTS), direction="BtoA"))
        assert client.get(f"/translations/{again['id']}/result").content == result.content
        reseeded = finished(client, post(client, run["id"], zips.build_zip(INPUTS), direction="BtoA", seed="1"))
        assert client.get(f"/translations/{reseeded['id']}/result").content != result.content
        negative = post(client, run["id"], zips.build_zip(INPUTS), direction="BtoA", seed="-1")
        assert (negative.status_code, negative.json()["detail"][0]["loc"]) == (422, ["body", "seed"])
        other = finished(client, post(client, run["id"], zips.build_zip(INPUTS), direction="AtoB"))
        assert client.get(f"/translations/{other['id']}/result").content != result.content
