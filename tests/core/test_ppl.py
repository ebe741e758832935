"""Perceptual path length (core.metrics.ppl): finite, positive and deterministic for a seed, in W for a
style-based generator and in Z otherwise, zero for a generator that ignores its latent, along a path that keeps
its cluster for a cluster-conditioned generator (in Z and in W), and reported by the Evaluator on digits as
ppl_w_digits."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from core.config import RunConfig
from core.datasets import load_dataset
from core.metrics import Evaluator
from core.metrics.classifier import load_digits_classifier
from core.metrics.ppl import PathSampler, path_length, slerp
from core.networks import build_generator
from core.networks_stylegan2 import StyleGenerator

CLASSIFIER = load_digits_classifier()


def unit_features(x: torch.Tensor) -> torch.Tensor:
    f, _ = CLASSIFIER.features_and_logits(x)
    unit: torch.Tensor = f / f.norm(dim=1, keepdim=True)
    return unit


def style_generator() -> StyleGenerator:
    torch.manual_seed(0)
    return StyleGenerator(z_dim=8, w_dim=8, mapping_layers=2, image_size=16, channels=1, width=4, num_classes=10)


class PixelGenerator(nn.Module):
    """z (B, 8) -> (B, 1, 16, 16) through one linear layer; `scale` 0 ignores z."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Linear(8, 256)
        self.bias = nn.Parameter(torch.randn(256))
        self.scale = scale

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.scale * self.net(z) + self.bias).view(-1, 1, 16, 16)


def test_path_length_is_finite_positive_and_deterministic() -> None:
    style = PathSampler(style_generator(), z_dim=8, num_classes=10)
    plain = PathSampler(PixelGenerator(), z_dim=8)
    assert (style.space, plain.space) == ("w", "z")
    for path in (style, plain):
        value = path_length(path, unit_features, n=64, seed=3)
        assert math.isfinite(value) and value > 0
        assert path_length(path, unit_features, n=64, seed=3) == value
        assert path_length(path, unit_features, n=64, seed=4) != value
    assert style.generator.training  # measured in eval mode, handed back as it was
    assert path_length(PathSampler(PixelGenerator(scale=0.0), z_dim=8), unit_features, n=16) == 0.0


def test_a_cluster_conditioned_generator_keeps_its_cluster_along_the_path() -> None:
    """Such a generator picks a latent's cluster from a hash-like function of it; were the cluster to change along
    a step of ε, the distance would not shrink with ε and PPL would grow as 1 / ε²."""
    cfg = RunConfig.model_validate({"dataset": "digits", "model": {"clusters": 10}})
    G = build_generator(cfg, channels=1, num_classes=10)
    path = PathSampler(G, z_dim=cfg.model.z_dim)
    small, large = (path_length(path, unit_features, n=32, eps=eps) for eps in (1e-4, 1e-2))
    assert 0.5 < small / large < 2.0


def test_a_cluster_conditioned_style_generator_maps_both_ends_in_the_start_cluster() -> None:
    """In W the path runs toward the other latent's w in the start's cluster, as a conditional path keeps its class:
    at ε = 1 its end is G(z1) drawn in z0's cluster, not in z1's own."""
    torch.manual_seed(0)
    G = StyleGenerator(
        z_dim=8, w_dim=8, mapping_layers=2, image_size=16, channels=1, width=4, num_classes=10, clusters=True
    ).eval()
    z0, z1 = torch.randn(16, 8), torch.randn(16, 8)
    start, other = G.clusters_of(z0), G.clusters_of(z1)
    assert (start != other).any()
    with torch.no_grad():
        ends = PathSampler(G, z_dim=8).pairs(z0, z1, None, eps=1.0)
        torch.testing.assert_close(ends[:16], G(z0))
        torch.testing.assert_close(ends[16:], G(z1, start))


def test_slerp_keeps_the_ends_and_the_norms() -> None:
    a, b = torch.randn(4, 8), torch.randn(4, 8) * 2
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(slerp(a, b, 0.5).norm(dim=1), (a.norm(dim=1) + b.norm(dim=1)) / 2)


def test_the_evaluator_reports_ppl_in_w_on_digits(tmp_path: Path) -> None:
    ev = Evaluator(load_dataset("digits", image_size=16), n_samples=32, device="cpu", cache_dir=tmp_path)
    G = style_generator().eval()

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        labels = torch.arange(n) % 10
        with torch.no_grad():
            return G(torch.randn(n, 8), labels), labels

    values = ev(sample, PathSampler(G, z_dim=8, num_classes=10))
    assert math.isfinite(values["ppl_w_digits"]) and values["ppl_w_digits"] > 0
    assert "ppl_w_digits" not in ev(sample)  # without a generator to walk, no path length
