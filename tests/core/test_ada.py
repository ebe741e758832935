"""Adaptive discriminator augmentation (core/ada.py): the pipeline, the steering of p, and runs that use it."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from core import ada as ada_module
from core.ada import INTERVAL as ADA_INTERVAL
from core.ada import KIMG as ADA_KIMG
from core.ada import AdaptiveAugment, ada_augment
from core.config import RunConfig
from core.train import train


def test_ada_pipeline_is_the_identity_at_p_0_and_differentiable(monkeypatch):
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    assert torch.allclose(ada_augment(x, torch.tensor(0.0)), x, atol=1e-5)
    y = ada_augment(x, torch.tensor(1.0))
    assert y.shape == x.shape and not torch.allclose(y, x, atol=1e-2)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # Flips, quarter turns and whole-pixel shifts land on pixel centres: with scaling and colour changes off, every
    # output pixel is one of the input's values (or cutout's 0).
    for name in ("SCALE_STD", "BRIGHTNESS_STD", "CONTRAST_STD"):
        monkeypatch.setattr(ada_module, name, 0.0)
    levels = torch.randint(0, 4, (8, 1, 8, 8)).float()
    moved = ada_augment(levels, torch.tensor(1.0))
    assert not torch.equal(moved, levels)
    assert torch.allclose(moved, moved.round(), atol=1e-4) and set(moved.round().unique().tolist()) <= {0, 1, 2, 3}


def test_ada_moves_p_by_the_sign_of_d_on_reals_every_interval():
    ada = AdaptiveAugment(target=0.6, batch_size=8, device=torch.device("cpu"))
    step_size = 8 * ADA_INTERVAL / (1000 * ADA_KIMG)
    for step in range(1, 2 * ADA_INTERVAL + 1):
        ada.observe(torch.ones(8))  # D sure of every real: r_t = 1 > 0.6
        ada.adjust(step)
        expected = step_size * (step // ADA_INTERVAL)
        assert float(ada.p) == pytest.approx(expected)
    for step in range(1, 100):
        ada.observe(-torch.ones(8))
        ada.adjust(step)
    assert float(ada.p) == 0.0  # p never leaves [0, 1]


def test_ada_is_refused_on_points():
    with pytest.raises(ValidationError, match=r"train\.augment"):
        RunConfig.model_validate({"dataset": "ring8", "train": {"augment": "ada"}})


def test_ada_trains_a_dcgan_and_resumes_exactly(tmp_path):
    """ADA on the noise family: D's logits on the reals steer p through discriminator_loss; p resumes exactly."""
    body = {
        "dataset": "digits",
        "model": {"width": 8, "clusters": 0},
        "train": {"steps": 8, "batch_size": 8, "precision": "fp32", "device": "cpu", "augment": "ada"},
        "schedule": {"sample_every": 100, "checkpoint_every": 100},
    }
    cfg = RunConfig.model_validate(body | {"loss": {"kind": "hinge"}})
    stats = []

    def run(out, stop_at=None):
        calls = []
        on_event = lambda kind, data: stats.append(data["values"]) if kind == "stats" else None  # noqa: E731
        train(cfg, out_dir=out, on_event=on_event, should_stop=lambda: calls.append(1) or len(calls) == stop_at)

    run(tmp_path / "a")
    assert "ada_p" in stats[-1]
    run(tmp_path / "b", stop_at=4)
    run(tmp_path / "b")
    a = load_file(str(tmp_path / "a" / "checkpoints" / f"{8:08d}.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / f"{8:08d}.safetensors"))
    assert {"augment.p", "augment.signs"} <= a.keys()
    assert [key for key in a if not torch.equal(a[key], b[key])] == []
