"""The metric functions of core/metrics on hand-built inputs, checked against direct NumPy/SciPy computations."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from core.metrics.distances import density_coverage, fid, frechet_distance, kid, precision_recall
from core.metrics.inception import ENV_VAR, check_inception_weights, inception_status
from core.metrics.modes import kl_to_reference, label_metrics, mode_metrics
from core.metrics.swd import swd


def _feats(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """n draws of one correlated Gaussian in d dimensions (the same for every seed), shifted by `shift`."""
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(1234)) / math.sqrt(d)
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) @ mix + shift  # (n, d)


def _stats(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = f.double()
    return f.sum(0), f.T @ f


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_a_set_against_itself_is_zero() -> None:
    a = _feats(600, 32, seed=0)
    assert fid(*_stats(a), 600, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_against_noise_is_large() -> None:
    a = _feats(600, 32, seed=0)
    noise = torch.rand(600, 32) * 10
    assert fid(*_stats(a), 600, noise) > 100


def test_fid_matches_a_direct_scipy_computation() -> None:
    a, b = _feats(800, 32, seed=1), _feats(700, 32, seed=2, shift=0.3)
    expected = _scipy_fid(a.double().numpy(), b.double().numpy())
    assert fid(*_stats(a), 800, b) == pytest.approx(expected, rel=1e-6, abs=1e-8)
    mu_a, mu_b = a.double().mean(0).numpy(), b.double().mean(0).numpy()
    s_a, s_b = np.cov(a.double().numpy(), rowvar=False), np.cov(b.double().numpy(), rowvar=False)
    assert frechet_distance(mu_a, s_a, mu_b, s_b) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_frechet_distance_is_finite_and_real_for_singular_covariances() -> None:
    a, b = _feats(10, 64, seed=3), _feats(12, 64, seed=4)  # fewer samples than dimensions: rank-deficient
    value = fid(*_stats(a), 10, b)
    assert math.isfinite(value) and value >= 0
    s_a = np.cov(a.double().numpy(), rowvar=False)
    s_b = np.cov(b.double().numpy(), rowvar=False)
    direct = frechet_distance(a.double().mean(0).numpy(), s_a, b.double().mean(0).numpy(), s_b)
    assert math.isfinite(direct) and direct >= 0


def test_frechet_distance_rejects_nan_features() -> None:
    mu = np.zeros(3)
    sigma = np.eye(3)
    with pytest.raises(ValueError, match="the statistics are not finite"):
        frechet_distance(mu, sigma, mu + np.nan, sigma)


def test_frechet_distance_of_a_collapsed_set_is_finite() -> None:
    a = _feats(200, 8, seed=3).double()
    point = a[:1].repeat(200, 1)  # zero covariance
    sigma = np.cov(a.numpy(), rowvar=False)
    value = frechet_distance(a.mean(0).numpy(), sigma, point.mean(0).numpy(), np.zeros((8, 8)))
    expected = float(((a.mean(0) - a[0]) ** 2).sum()) + float(np.trace(sigma))
    assert value == pytest.approx(expected, rel=1e-9)
    assert fid(*_stats(a), 200, point) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two_without_touching_the_rng() -> None:
    a, a2, b = _feats(500, 16, seed=5), _feats(500, 16, seed=6), _feats(500, 16, seed=7, shift=1.0)
    state = torch.get_rng_state()
    same_mean, _ = kid(a, a2, subsets=5)
    diff_mean, _ = kid(a, b, subsets=5)
    assert torch.equal(state, torch.get_rng_state())
    assert abs(same_mean) < 0.01
    assert diff_mean > 0.5
    assert kid(a, b, subsets=3) == kid(a, b, subsets=3)  # the subsets come from a fixed seed
    _, std = kid(a, b[:400], subsets=3)
    assert std is not None and std > 0
    assert kid(a, b)[1] is None  # 500 and 500 samples: every subset would be the whole of both


def test_precision_recall_of_identical_sets_is_one_one() -> None:
    a = _feats(300, 8, seed=8)
    assert precision_recall(a, a.clone(), k=3) == (1.0, 1.0)


def test_precision_recall_of_disjoint_sets_is_zero_zero() -> None:
    a = _feats(300, 8, seed=8)
    assert precision_recall(a, a + 100, k=3) == (0.0, 0.0)


def test_precision_drops_when_half_the_fakes_are_off_the_manifold_and_recall_when_half_the_reals_are_missed() -> None:
    real = _feats(400, 4, seed=9)
    fake = torch.cat([_feats(200, 4, seed=10), _feats(200, 4, seed=11) + 50])
    precision, recall = precision_recall(real, fake, k=3)
    assert 0.4 < precision < 0.6
    assert recall > 0.8  # the on-manifold half still spans the real set
    real_two = torch.cat([_feats(200, 4, seed=12), _feats(200, 4, seed=13) + 50])
    precision, recall = precision_recall(real_two, _feats(400, 4, seed=14), k=3)
    assert precision > 0.8 and 0.4 < recall < 0.6


def test_density_and_coverage_are_near_one_for_one_distribution_and_zero_for_disjoint_sets() -> None:
    real, fake = _feats(500, 4, seed=15), _feats(500, 4, seed=16)
    density, coverage = density_coverage(real, fake, k=5)
    assert 0.8 < density < 1.2
    assert coverage > 0.9
    assert density_coverage(real, fake + 100, k=5) == (0.0, 0.0)
    collapsed = real[:1].repeat(500, 1)  # every fake on one real point
    density, coverage = density_coverage(real, collapsed, k=5)
    assert coverage < 0.05


RING = torch.tensor([[math.cos(a), math.sin(a)] for a in np.arange(8) * (2 * math.pi / 8)], dtype=torch.float32)


def test_mode_metric_all_modes() -> None:
    gen = torch.Generator().manual_seed(0)
    points = RING.repeat(50, 1) + 0.01 * torch.randn(400, 2, generator=gen).clamp(-2, 2)
    out = mode_metrics(points, RING, std=0.01)
    assert out["modes"] == 8
    assert out["high_quality"] == 100.0
    assert out["kl_modes"] == pytest.approx(0.0, abs=1e-12)


def test_mode_metric_one_mode() -> None:
    points = RING[3].repeat(100, 1) + 0.005
    out = mode_metrics(points, RING, std=0.01)
    assert out["modes"] == 1
    assert out["high_quality"] == 100.0
    assert out["kl_modes"] == pytest.approx(math.log(8))


def test_mode_metric_points_far_from_every_mode() -> None:
    points = torch.zeros(100, 2)  # the centre of the ring: 1.0 from every mode, 100 std
    out = mode_metrics(points, RING, std=0.01)
    assert out["modes"] == 0
    assert out["high_quality"] == 0.0
    assert "kl_modes" not in out  # undefined without a high-quality sample, so not reported


def test_mode_metric_counts_only_high_quality_samples() -> None:
    near = RING[:2].repeat(10, 1)  # 20 good samples on modes 0 and 1
    off = RING[2:].repeat(5, 1) * 1.1  # 30 samples 0.1 (10 std) outside modes 2..7
    out = mode_metrics(torch.cat([near, off]), RING, std=0.01)
    assert out["modes"] == 2
    assert out["high_quality"] == pytest.approx(40.0)


def test_grid_mode_metric_three_std_boundary() -> None:
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    grid = torch.cartesian_prod(axis, axis)
    inside = grid + torch.tensor([0.149, 0.0])  # 2.98 std
    outside = grid + torch.tensor([0.151, 0.0])  # 3.02 std
    assert mode_metrics(inside, grid, std=0.05)["modes"] == 25
    assert mode_metrics(outside, grid, std=0.05)["modes"] == 0


@pytest.mark.parametrize(
    ("labels", "covered", "kl"),
    [
        pytest.param(torch.arange(100) % 10, 10, 0.0, id="uniform"),
        pytest.param(torch.full((50,), 7), 1, math.log(10), id="one-class"),
        pytest.param(torch.tensor([0, 1] * 25), 2, math.log(5), id="two-classes"),
    ],
)
def test_label_coverage_and_kl_to_uniform(labels: torch.Tensor, covered: int, kl: float) -> None:
    out = label_metrics(labels, 10)
    assert out["covered"] == covered
    assert out["kl"] == pytest.approx(kl)


def test_label_kl_to_a_real_label_distribution() -> None:
    reference = torch.tensor([30.0, 10.0])  # 3:1
    assert label_metrics(torch.tensor([0, 0, 0, 1]), 2, reference=reference)["kl"] == pytest.approx(0.0, abs=1e-12)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert label_metrics(torch.tensor([0, 1]), 2, reference=reference)["kl"] == pytest.approx(expected)
    assert kl_to_reference(torch.tensor([1, 1]), torch.tensor([1.0, 0.0])) == math.inf


def test_stacked_mode_ids_cover_a_thousand() -> None:
    out = label_metrics(torch.arange(1000).repeat(3), 1000)
    assert out == {"covered": 1000.0, "kl": pytest.approx(0.0, abs=1e-12)}


def test_swd_is_small_for_one_distribution_and_large_against_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.zeros(64, 1, 32, 32)
    base[:, :, 8:24, 12:20] = 1.0  # a bar
    real = (base + 0.05 * torch.randn(base.shape, generator=gen)).clamp(-1, 1)
    real2 = (base + 0.05 * torch.randn(base.shape, generator=gen)).clamp(-1, 1)
    noise = torch.rand(64, 1, 32, 32, generator=gen) * 2 - 1
    same = swd(real, real2)
    other = swd(real, noise)
    assert set(same) == {32, 16}
    assert all(other[r] > 5 * same[r] for r in same)
    assert swd(real, noise) == other  # the patches and directions come from a fixed seed
    with pytest.raises(ValueError, match="same shape"):
        swd(real, noise[:10])


def test_inception_weights_are_checked_by_hash(tmp_path: Path) -> None:
    fake = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    fake.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match=r"has SHA-256 .* not that of pytorch-fid's"):
        check_inception_weights(fake)
    with pytest.raises(ValueError, match="is not a file"):
        check_inception_weights(tmp_path / "missing.pth")
    assert "is not set" in inception_status({})
    with pytest.raises(ValueError, match="has SHA-256"):
        inception_status({ENV_VAR: str(fake)})


def test_metrics_import_neither_torchvision_nor_torch_fidelity() -> None:
    import core.metrics  # noqa: F401  (the whole package, evaluator included)

    a = _feats(64, 8, seed=0)
    fid(*_stats(a), 64, a)
    kid(a, a, subsets=2)
    loaded = [m for m in sys.modules if m.split(".")[0] in ("torchvision", "torch_fidelity")]
    assert loaded == []
