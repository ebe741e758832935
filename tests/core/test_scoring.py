from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core import generate as g
from core import scoring
from core.checkpoint import FORMAT, load_generator, write_safetensors
from core.config import RunConfig
from core.networks import build_discriminator, build_generator


def write_checkpoint(path: Path, config: dict[str, Any], *, channels: int, num_classes: int) -> Path:
    """A checkpoint with freshly initialised networks, in the trainer's format (no training needed)."""
    cfg = RunConfig.model_validate(config)
    torch.manual_seed(0)
    G = build_generator(cfg, channels=channels, num_classes=num_classes)
    D = build_discriminator(cfg, channels=channels, num_classes=num_classes)
    tensors = {f"G.{k}": v for k, v in G.state_dict().items()} | {f"D.{k}": v for k, v in D.state_dict().items()}
    kind = "points" if channels == 0 else "images"
    data = {"kind": kind, "channels": channels, "image_size": cfg.model.image_size, "num_classes": num_classes}
    metadata = {"format": FORMAT, "config": cfg.model_dump_json(), "step": "1", "data": json.dumps(data)}
    write_safetensors(path, tensors, metadata)
    return path


DIGITS = {"dataset": "digits", "model": {"image_size": 16, "width": 8, "z_dim": 16}}


def test_a_real_checkpoint_generates_the_same_npz_twice(tmp_path: Path) -> None:
    config = {**DIGITS, "model": {**DIGITS["model"], "conditional": True}}
    path = write_checkpoint(tmp_path / "00000001.safetensors", config, channels=1, num_classes=10)
    outputs = []
    for name in ("a.npz", "b.npz"):
        generator, cfg, _info = load_generator(path)
        result = g.generate(generator, z_dim=cfg.model.z_dim, num_classes=10, n=70, seed=3, truncation=0.8)
        outputs.append(g.write_npz(result, tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    with np.load(tmp_path / "a.npz") as data:
        assert data["samples"].shape == (70, 1, 16, 16)
        assert data["samples"].dtype == np.float32
        assert float(np.abs(data["samples"]).max()) <= 1.0
        assert data["labels"].shape == (70,)


def test_prepare_images_crops_resizes_and_converts_channels() -> None:
    rgb = np.zeros((2, 20, 30, 3), dtype=np.uint8)
    rgb[:, :, :, 0] = 255
    x = scoring.prepare_images(rgb, channels=1, image_size=8)
    assert x.shape == (2, 1, 8, 8)
    assert -1.0 <= float(x.min()) <= float(x.max()) <= 1.0
    gray = np.full((1, 8, 8, 1), 255, dtype=np.uint8)
    x = scoring.prepare_images(gray, channels=3, image_size=16)
    assert x.shape == (1, 3, 16, 16)
    torch.testing.assert_close(x, torch.ones_like(x))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param({}, id="unconditional"),
        pytest.param({"conditional": True}, id="projection"),
        pytest.param({"conditional": True, "d_conditioning": "acgan"}, id="acgan"),
        pytest.param({"pack": 2}, id="packed"),
    ],
)
def test_scores_have_one_value_per_image_and_repeat(tmp_path: Path, model: dict[str, Any]) -> None:
    config = {**DIGITS, "model": {**DIGITS["model"], **model}}
    conditional = bool(model.get("conditional"))
    path = write_checkpoint(tmp_path / "c.safetensors", config, channels=1, num_classes=10)
    scorer = scoring.load_scorer(path)
    images = torch.rand(5, 1, 16, 16) * 2 - 1
    first = scoring.score_images(scorer, images, steps=3, weight=0.1, seed=0, batch_size=2)
    again = scoring.score_images(scorer, images, steps=3, weight=0.1, seed=0, batch_size=4)
    for name in ("discriminator", "residual", "feature", "anogan"):
        assert first[name].shape == (5,)
        assert np.isfinite(first[name]).all()
        # Eval-mode networks: a score does not depend on the other images in the batch.
        np.testing.assert_allclose(first[name], again[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first["anogan"], 0.9 * first["residual"] + 0.1 * first["feature"], rtol=1e-6)
    assert ((first["class"] >= 0) & (first["class"] < 10)).all() if conditional else (first["class"] == -1).all()


def test_the_latent_search_lowers_the_reconstruction_loss(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "c.safetensors", DIGITS, channels=1, num_classes=10)
    scorer = scoring.load_scorer(path)
    with torch.no_grad():
        target = scorer.generator(torch.randn(4, 16, generator=torch.Generator().manual_seed(9)), None)
    before = scoring.score_images(scorer, target, steps=0, seed=0)
    after = scoring.score_images(scorer, target, steps=60, seed=0)
    assert (after["anogan"] < before["anogan"]).all()


def test_points_runs_cannot_be_scored(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "c.safetensors", {"dataset": "ring8"}, channels=0, num_classes=0)
    with pytest.raises(ValueError, match="Anomaly scoring works on image runs; this run is trained on 2-D points"):
        scoring.load_scorer(path)


def test_results_are_json_and_csv(tmp_path: Path) -> None:
    scores = {
        "discriminator": np.array([1.0, -2.5]),
        "residual": np.array([0.1, 0.2]),
        "feature": np.array([0.3, 0.4]),
        "anogan": np.array([0.12, 0.22]),
        "class": np.array([-1, -1]),
    }
    scoring.write_results(
        scores,
        names=["a,b.png", "c.png"],
        labels=["cats", "dogs"],
        json_path=tmp_path / "s.json",
        csv_path=tmp_path / "s.csv",
        extra={"checkpoint_step": 5},
    )
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["checkpoint_step"] == 5 and data["count"] == 2
    assert data["items"][1] == {
        "index": 1,
        "name": "c.png",
        "label": "dogs",
        "discriminator": -2.5,
        "residual": 0.2,
        "feature": 0.4,
        "anogan": 0.22,
        "class": -1,
    }
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert rows[0]["name"] == "a,b.png"
    assert float(rows[1]["discriminator"]) == -2.5
