"""Translation inputs through core: side-by-side AB images split into inputs and targets, an .npz's checks, and a
translator's directions, channels and sizes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import uploads
from core.config import RunConfig
from core.families import cyclegan
from core.translate import Translator, prepare_inputs, translate
from tests.utils import zips


def _ab_image(i: int) -> bytes:
    """A 48 × 24 side-by-side pair: its left half grey level 10·i, its right half 255 - 10·i."""
    pixels = np.zeros((24, 48), dtype=np.uint8)
    pixels[:, :24], pixels[:, 24:] = 10 * i, 255 - 10 * i
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_side_by_side_images_split_into_inputs_and_targets(tmp_path: Path) -> None:
    archive = tmp_path / "ab.zip"
    archive.write_bytes(zips.build_zip({f"train/{i:02d}.png": _ab_image(i) for i in range(16)}))
    prepared = uploads.prepare(archive, datasets_dir=tmp_path / "datasets", layout="AB")
    source, target, held = uploads.read_pairs(prepared.tmp_dir)
    assert source.shape == target.shape == (16, 24, 24, 1) and len(held) == 8
    levels = 10 * np.arange(16)
    assert (source.reshape(16, -1) == levels[:, None]).all()
    assert (target.reshape(16, -1) == 255 - levels[:, None]).all()


def _npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(_npz(samples=np.full((2, 1, 8, 8), {"a": 1}, dtype=object)), "not object", id="pickle"),
        pytest.param(_npz(samples=np.zeros((2, 4, 8, 8), np.float32)), r"not \(2, 4, 8, 8\)", id="channels"),
        pytest.param(_npz(samples=np.full((2, 1, 8, 8), 3.0, np.float32)), "in \\[-1, 1\\]", id="range"),
        pytest.param(_npz(samples=np.zeros((2, 1, 8, 8), np.uint8)), "not uint8", id="dtype"),
        pytest.param(_npz(a=np.zeros(1), b=np.zeros(1)), "the arrays a, b; name the images", id="which"),
    ],
)
def test_a_bad_npz_is_refused_naming_why(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "in.npz"
    path.write_bytes(data)
    assert uploads.is_npz(path)
    with pytest.raises(uploads.UploadError, match=message):
        uploads.read_npz_images(path, limits=uploads.Limits(), max_images=10)


def test_an_npz_of_generated_samples_is_read_as_float32(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    path.write_bytes(_npz(samples=np.zeros((3, 1, 8, 8), np.float64), labels=np.arange(3)))
    assert uploads.read_npz_images(path, limits=uploads.Limits(), max_images=10).dtype == np.float32
    with pytest.raises(uploads.UploadError, match="at most 2 images per job, not 3"):
        uploads.read_npz_images(path, limits=uploads.Limits(), max_images=2)


def test_a_cyclegan_translator_goes_both_ways_with_each_domains_channels() -> None:
    model = {"width": 4, "res_blocks": 1, "residual_generator": False}  # a residual one keeps its input's channels
    cfg = RunConfig.model_validate({"dataset": "digits-printed", "model": model})
    info = {"channels": 1, "b_channels": 3}
    tr = Translator(G=cyclegan.generator(cfg, info).eval(), cfg=cfg, data_info=info)
    colour = torch.rand(5, 3, 40, 50) * 2 - 1  # another size and aspect: a centre square resized to 32 px
    x = prepare_inputs(tr, colour, direction="AtoB")
    assert x.shape == (5, 1, 32, 32)  # domain A is grey: luma
    out = translate(tr, x, direction="AtoB")
    assert out.shape == (5, 3, 32, 32) and torch.equal(out, translate(tr, x, direction="AtoB"))
    grey = prepare_inputs(tr, colour[:, :1, :32, :32], direction="BtoA")
    assert grey.shape == (5, 3, 32, 32) and torch.equal(grey[:, 0], grey[:, 2])  # grey repeated into colour
    assert translate(tr, grey, direction="BtoA").shape == (5, 1, 32, 32)
    with pytest.raises(ValueError, match="direction: 'sideways' is not AtoB or BtoA"):
        tr.route("sideways")
