"""Short fixed-seed runs that must learn something: ring8 modes, and a conditional generator that honours labels."""

from __future__ import annotations

import torch

from core.checkpoint import load_generator
from core.config import RunConfig
from core.datasets import mixture_modes
from core.metrics.classifier import load_digits_classifier
from core.train import train


def _ring8_modes_captured(tmp_path, steps: int, preset: str | None = None) -> int:
    """Train a fixed-seed ring8 run for `steps` and count the modes its generator captures (PacGAN's metric)."""
    cfg = RunConfig.model_validate(
        {
            "dataset": "ring8",
            "preset": preset,
            "seed": 0,
            "train": {"steps": steps, "batch_size": 256},
            "schedule": {"sample_every": steps},
        }
    )
    train(cfg, out_dir=tmp_path)
    G, _, _ = load_generator(tmp_path / "checkpoints" / f"{steps:08d}.safetensors")
    with torch.no_grad():
        points = G(torch.randn(2500, cfg.model.z_dim, generator=torch.Generator().manual_seed(1)))  # (2500, 2)
    modes, std = mixture_modes("ring8")
    distance, nearest = torch.cdist(points, modes).min(dim=1)
    high_quality = distance <= 3 * std
    return torch.unique(nearest[high_quality]).numel()


def test_a_short_ring8_run_captures_at_least_six_modes(tmp_path):
    assert _ring8_modes_captured(tmp_path, steps=600) >= 6


def test_a_short_ring8_run_with_the_wgan_gp_preset_captures_at_least_six_modes(tmp_path):
    # With the image recipe's gradient-penalty weight (10) this run captures none.
    assert _ring8_modes_captured(tmp_path, steps=1000, preset="wgan-gp") >= 6


def test_a_conditional_digits_generator_honours_its_labels(tmp_path):
    cfg = RunConfig.model_validate(
        {
            "dataset": "digits",
            "model": {
                "image_size": 16,
                "width": 16,
                "conditional": True,
                "g_conditioning": "concat",
                "d_conditioning": "acgan",
            },
            "loss": {"acgan_weight": 5.0},
            "train": {"steps": 250, "batch_size": 32, "lr_g": 1e-3, "lr_d": 1e-3},
            "schedule": {"sample_every": 250},
        }
    )
    train(cfg, out_dir=tmp_path)
    G, _, _ = load_generator(tmp_path / "checkpoints" / "00000250.safetensors")
    labels = torch.arange(500) % 10
    with torch.no_grad():
        images = G(torch.randn(500, cfg.model.z_dim, generator=torch.Generator().manual_seed(1)), labels)
    # The shipped digits classifier (about 99 % right on held-out real digits) reads the generated labels.
    classifier = load_digits_classifier()
    with torch.no_grad():
        predicted = classifier(images).argmax(dim=1)
    accuracy = float((predicted == labels).float().mean())
    assert accuracy > 0.3, f"generated digits match their labels {accuracy:.0%} of the time; chance is 10 %"
