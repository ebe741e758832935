"""The Evaluator on the real built-in datasets, the shipped digits classifier, and evaluate_checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from core.config import RunConfig
from core.datasets import Dataset, load_dataset
from core.metrics import Evaluator, evaluate_checkpoint
from core.metrics.classifier import ASSET_PATH, classifier_metadata, load_digits_classifier
from core.metrics.digits_data import digits_split_indices


def test_shipped_classifier_reaches_its_recorded_held_out_accuracy() -> None:
    meta = classifier_metadata()
    assert ASSET_PATH.stat().st_size < 1_000_000
    assert float(meta["heldout_accuracy"]) >= 0.95
    assert json.loads(meta["split"])["heldout"] == 360
    # Recompute it on the held-out digits as the `digits` dataset makes them (Pillow bilinear), at 16 and 32 px.
    _, held = digits_split_indices()
    model = load_digits_classifier()
    for size in (16, 32):
        ds = load_dataset("digits", image_size=size)
        x, labels = ds.batch(torch.from_numpy(held))
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == labels).float().mean())
        assert accuracy >= 0.95, (size, accuracy)


def _slice_sampler(ds: Dataset, start: int) -> object:
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return ds.batch(torch.arange(start, start + n) % len(ds))

    return sample


def test_points_evaluator_counts_modes_caches_its_reference_and_reports_a_floor(tmp_path: Path) -> None:
    ds = load_dataset("ring8", image_size=32)
    ev = Evaluator(ds, n_samples=256, device="cpu", cache_dir=tmp_path)
    assert ev.primary == ("modes", "max")
    assert not ev.cache_hit
    assert ev.floor["modes"] == 8 and ev.floor["high_quality"] > 95 and ev.floor["n_fake"] == 256

    good = ev(_slice_sampler(ds, 50_000))
    assert good["modes"] == 8 and good["high_quality"] > 95 and good["fd_points"] < 0.1
    assert set(good) == set(ev.floor)
    assert good["n_fake"] == 256 and good["n_real"] == 256

    collapsed = ev(lambda n: (ds.modes[2].repeat(n, 1), None))
    assert collapsed["modes"] == 1 and collapsed["high_quality"] == 100.0
    assert collapsed["kl_modes"] == pytest.approx(math.log(8))
    assert collapsed["fd_points"] > 10 * good["fd_points"]

    again = Evaluator(ds, n_samples=256, device="cpu", cache_dir=tmp_path)
    assert again.cache_hit and again.floor == ev.floor
    assert len(list(tmp_path.glob("ref-points-*.safetensors"))) == 1
    other_n = Evaluator(ds, n_samples=128, device="cpu", cache_dir=tmp_path)
    assert not other_n.cache_hit  # the sample count is part of the key


def test_digits_evaluator_separates_real_digits_from_noise(tmp_path: Path) -> None:
    ds = load_dataset("digits", image_size=16)
    ev = Evaluator(ds, n_samples=256, device="cpu", cache_dir=tmp_path)
    assert ev.primary == ("fid_digits", "min")
    assert ev.floor["n_fake"] == 256 and ev.floor["n_real"] == 256
    assert "fid_inception" in ev.skipped and "fid_inception" not in ev.floor

    _, held = digits_split_indices()
    held_t = torch.from_numpy(held)

    def real(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return ds.batch(held_t[torch.arange(n) % len(held_t)])

    def noise(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1, None

    good, bad = ev(real), ev(noise)
    assert good["fid_digits"] < 0.2 * bad["fid_digits"]
    assert bad["fid_digits"] > 10 * ev.floor["fid_digits"]
    assert good["classes"] == 10 and good["kl_classes"] < 0.05 and good["label_accuracy"] > 0.95
    assert good["precision_digits"] > 0.5 and bad["precision_digits"] < 0.05
    assert good["coverage_digits"] > 0.5 and bad["coverage_digits"] < 0.05
    assert good["swd"] < bad["swd"]
    assert "label_accuracy" not in bad
    for key in ("fid_digits", "kid_digits", "precision_digits", "recall_digits", "density_digits", "swd", "n_pr"):
        assert math.isfinite(good[key]) and key in ev.floor

    with pytest.raises(ValueError, match=r"eval: samples have shape \(1, 32, 32\), the data \(1, 16, 16\)"):
        ev(lambda n: (torch.zeros(n, 1, 32, 32), None))
    with pytest.raises(ValueError, match="eval: the generator produced non-finite samples"):
        ev(lambda n: (torch.full((n, 1, 16, 16), math.nan), None))


def test_stacked_digits_evaluator_counts_modes_of_a_thousand(tmp_path: Path) -> None:
    ds = load_dataset("stacked-digits", image_size=16)
    ev = Evaluator(ds, n_samples=150, device="cpu", cache_dir=tmp_path)
    assert ev.primary == ("fid_digits", "min")
    values = ev(_slice_sampler(ds, 40_000))
    assert 120 < values["modes"] <= 150  # 150 draws of 1,000 equally likely modes cover about 139
    assert values["label_accuracy"] > 0.9
    assert ev.floor["modes"] > 120 and "label_accuracy" not in ev.floor


def test_uploaded_images_get_swd_only(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    store = (torch.rand(100, 3, 16, 16, generator=gen) * 255).to(torch.uint8)
    ds = Dataset(name="ds_0123abcd", kind="images", store=store, labels=None, num_classes=0, channels=3, image_size=16)
    ev = Evaluator(ds, n_samples=64, device="cpu", cache_dir=tmp_path)
    assert ev.primary == ("swd", "min")
    values = ev(lambda n: (torch.zeros(n, 3, 16, 16), None))
    assert values["swd"] > ev.floor["swd"]
    assert not any(k.endswith("_digits") for k in values)
    small = Dataset(
        name="ds_0123abce", kind="images", store=store[:20], labels=None, num_classes=0, channels=3, image_size=16
    )
    with pytest.raises(ValueError, match=r"ds_0123abce has too few samples \(20\) to evaluate .* set eval_every to 0"):
        Evaluator(small, n_samples=64, device="cpu", cache_dir=tmp_path)


def _trained_checkpoint(tmp_path: Path, dataset: str, **sections: object) -> Path:
    from core.train import train

    cfg = RunConfig.model_validate({"dataset": dataset, **sections})
    train(cfg, out_dir=tmp_path)
    return sorted((tmp_path / "checkpoints").glob("*.safetensors"))[-1]


def test_evaluate_checkpoint_of_a_points_run(tmp_path: Path) -> None:
    path = _trained_checkpoint(tmp_path / "run", "ring8", train={"steps": 2, "batch_size": 8})
    out = evaluate_checkpoint(path, dataset="ring8", n_samples=128, device="cpu", cache_dir=tmp_path / "cache")
    assert out["step"] == 2 and out["dataset"] == "ring8"
    assert out["primary"] == {"name": "modes", "direction": "max"}
    assert set(out["metrics"]) <= set(out["floor"])  # kl_modes is left out when no sample is high quality
    assert out["metrics"]["n_fake"] == 128
    again = evaluate_checkpoint(path, dataset="ring8", n_samples=128, device="cpu", cache_dir=tmp_path / "cache")
    assert again["metrics"] == out["metrics"]  # fixed latents


def test_evaluate_checkpoint_of_a_conditional_digits_run(tmp_path: Path) -> None:
    path = _trained_checkpoint(
        tmp_path / "run",
        "digits",
        model={"image_size": 16, "width": 8, "conditional": True},
        train={"steps": 2, "batch_size": 8},
    )
    out = evaluate_checkpoint(path, dataset="digits", n_samples=64, device="cpu", cache_dir=tmp_path / "cache")
    assert out["primary"] == {"name": "fid_digits", "direction": "min"}
    assert "label_accuracy" in out["metrics"] and math.isfinite(out["metrics"]["fid_digits"])
    assert out["metrics"]["ppl_z_digits"] > 0  # a dcgan walks its path in Z
    with pytest.raises(ValueError, match="the checkpoint generates images but ring8 holds points"):
        evaluate_checkpoint(path, dataset="ring8", n_samples=64, device="cpu", cache_dir=tmp_path / "cache")
