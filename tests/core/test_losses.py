from __future__ import annotations

import pytest
import torch
from torch import nn

from core.config import LossConfig, RunConfig
from core.datasets import load_dataset
from core.losses import discriminator_loss, generator_loss, gradient_penalty, top_k
from core.networks import build_discriminator, build_generator

LOSSES = ["minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge"]


def _setup(model: dict | None = None, loss: dict | None = None):
    torch.manual_seed(0)
    cfg = RunConfig.model_validate(
        {
            "dataset": "digits",
            "model": {"image_size": 16, "width": 8, "z_dim": 8, "spectral_norm": False, "clusters": 0, **(model or {})},
            "loss": loss or {},
        }
    )
    G = build_generator(cfg, channels=1, num_classes=10)
    D = build_discriminator(cfg, channels=1, num_classes=10)
    real, labels = load_dataset("digits", image_size=16).batch(torch.arange(8))
    return cfg, G, D, real, labels


def _grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", LOSSES)
def test_each_loss_is_finite_and_its_gradients_reach_both_networks(kind: str):
    cfg, G, D, real, _ = _setup(loss={"kind": kind})
    fake = G(torch.randn(8, 8))
    loss_d, stats_d = discriminator_loss(cfg.loss, D=D, real=real, fake=fake.detach(), labels=None, fake_labels=None)
    loss_d.backward()
    assert torch.isfinite(loss_d) and all(torch.isfinite(v) for v in stats_d.values())
    assert _grads(D) and all(torch.isfinite(g).all() for g in _grads(D))
    assert any(g.abs().sum() > 0 for g in _grads(D))
    assert not _grads(G)
    D.zero_grad(set_to_none=True)
    loss_g, stats_g = generator_loss(cfg.loss, D=D, fake=fake, fake_labels=None)
    loss_g.backward()
    assert torch.isfinite(loss_g) and all(torch.isfinite(v) for v in stats_g.values())
    assert any(g.abs().sum() > 0 for g in _grads(G))
    if kind == "wgan-gp":
        assert "gp" in stats_d


def test_minimax_is_the_saturating_objective_and_nonsaturating_is_not():
    logits = torch.tensor([-8.0, -8.0])  # D is sure the fakes are fake

    class Fixed(nn.Module):
        def forward(self, x, labels=None):
            return x.flatten(1).sum(1) * 0 + logits, x.flatten(1), None

    fake = torch.zeros(2, 1, 4, 4, requires_grad=True)
    grads = {}
    for kind in ("minimax", "nonsaturating"):
        cfg = LossConfig(kind=kind)
        loss, _ = generator_loss(cfg, D=Fixed(), fake=fake, fake_labels=None)
        grads[kind] = loss.detach()
    # log(1 - D(G(z))) with D(G(z)) = sigmoid(-8): close to 0 and flat; -log D(G(z)): about 8.
    assert abs(float(grads["minimax"])) < 1e-3
    assert float(grads["nonsaturating"]) == pytest.approx(8.0, abs=1e-3)


def test_gradient_penalty_takes_the_norm_per_sample():
    class Linear(nn.Module):
        """D(x) = <w, x> per sample: its gradient is w for every sample, of norm ||w||."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.full((1, 3, 4, 4), 0.5))

        def forward(self, x, labels=None):
            return (x * self.w).flatten(1).sum(1), x.flatten(1), None

    D = Linear()
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    penalty = gradient_penalty(D, real, fake, None)
    norm = 0.5 * (3 * 4 * 4) ** 0.5  # per sample; a norm over the whole batch would be sqrt(6) times larger
    assert penalty.shape == (6,)
    assert torch.allclose(penalty, torch.full((6,), (norm - 1) ** 2))


def test_r1_penalises_the_gradient_on_real_data_only():
    cfg, G, D, real, _ = _setup(loss={"r1_gamma": 10.0})
    fake = G(torch.randn(8, 8)).detach()
    loss, stats = discriminator_loss(cfg.loss, D=D, real=real, fake=fake, labels=None, fake_labels=None)
    plain, _ = discriminator_loss(LossConfig(), D=D, real=real, fake=fake, labels=None, fake_labels=None)
    assert float(stats["r1"]) > 0
    assert float(loss.detach()) == pytest.approx(float(plain.detach()) + 5.0 * float(stats["r1"]), rel=1e-4)
    loss.backward()
    assert all(torch.isfinite(g).all() for g in _grads(D))


def test_one_sided_label_smoothing_moves_only_the_real_target():
    class Sure(nn.Module):
        def forward(self, x, labels=None):
            sign = 1.0 if float(x.mean()) > 0 else -1.0
            return torch.full((x.shape[0],), 20.0 * sign), x.flatten(1), None

    real, fake = torch.ones(4, 1, 4, 4), -torch.ones(4, 1, 4, 4)
    sharp, _ = discriminator_loss(LossConfig(), D=Sure(), real=real, fake=fake, labels=None, fake_labels=None)
    smooth, _ = discriminator_loss(
        LossConfig(label_smoothing=0.1), D=Sure(), real=real, fake=fake, labels=None, fake_labels=None
    )
    assert float(sharp) < 1e-6
    assert float(smooth) == pytest.approx(0.1 * 20.0, rel=1e-3)  # -(0.9 log s(20) + 0.1 log(1 - s(20))) ~ 2.0


def test_feature_matching_adds_a_term_to_the_generator_loss():
    cfg, G, D, real, _ = _setup(loss={"feature_matching": 1.0})
    fake = G(torch.randn(8, 8))
    loss, stats = generator_loss(cfg.loss, D=D, fake=fake, fake_labels=None, real=real)
    assert float(stats["feature_matching"]) > 0
    assert float(loss.detach()) == pytest.approx(float(stats["loss_g_adv"] + stats["feature_matching"]), rel=1e-5)
    loss.backward()
    assert any(g.abs().sum() > 0 for g in _grads(G))


def test_instance_noise_changes_what_d_sees():
    cfg, G, D, real, _ = _setup()
    D.eval()
    fake = G(torch.randn(8, 8)).detach()
    a, _ = discriminator_loss(cfg.loss, D=D, real=real, fake=fake, labels=None, fake_labels=None)
    b, _ = discriminator_loss(cfg.loss, D=D, real=real, fake=fake, labels=None, fake_labels=None, noise_std=0.5)
    c, _ = discriminator_loss(cfg.loss, D=D, real=real, fake=fake, labels=None, fake_labels=None)
    assert float(a.detach()) == float(c.detach()) != float(b.detach())


@pytest.mark.parametrize("d_cond", ["projection", "acgan"])
def test_conditional_losses_use_the_labels(d_cond: str):
    cfg, G, D, real, labels = _setup(model={"conditional": True, "d_conditioning": d_cond})
    fake_labels = torch.randint(10, (8,))
    fake = G(torch.randn(8, 8), fake_labels)
    loss_d, stats = discriminator_loss(
        cfg.loss, D=D, real=real, fake=fake.detach(), labels=labels, fake_labels=fake_labels
    )
    loss_d.backward()
    assert ("acgan_d" in stats) == (d_cond == "acgan")
    embed = D.head.embed if d_cond == "projection" else D.head.classifier
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in embed.parameters())
    loss_g, stats_g = generator_loss(cfg.loss, D=D, fake=fake, fake_labels=fake_labels)
    loss_g.backward()
    assert torch.isfinite(loss_g) and ("acgan_g" in stats_g) == (d_cond == "acgan")


def test_top_k_trains_g_only_on_the_fakes_d_rates_most_real():
    class Score(nn.Module):  # D's logit of a sample is its first pixel
        def forward(self, x, labels=None):
            return x.flatten(1)[:, 0], x.flatten(1), None

    fake = torch.tensor([3.0, -1.0, 2.0, -5.0]).reshape(4, 1, 1, 1).requires_grad_(True)
    loss, _ = generator_loss(LossConfig(kind="wgan-gp"), D=Score(), fake=fake, fake_labels=None, top_k=2)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-2.5)  # -(3 + 2) / 2
    assert fake.grad.flatten().tolist() == [-0.5, 0.0, -0.5, 0.0]


def test_top_k_anneals_from_the_whole_batch_to_its_fraction_at_mid_run():
    assert top_k(1.0, 64, 0.3) is None
    assert [top_k(0.5, 64, done) for done in (0.0, 0.25, 0.5, 0.9)] == [64, 48, 32, 32]
