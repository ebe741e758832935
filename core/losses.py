"""The objectives: one place that turns a batch into the discriminator's and the generator's losses and stats.

Adversarial losses on the discriminator's logits l (all computed in fp32):
- `minimax`: D minimises softplus(-l_real) + softplus(l_fake); G minimises log(1 - D(G(z))) = -softplus(l_fake),
  the saturating objective of Goodfellow et al. 2014.
- `nonsaturating`: as minimax, but G minimises softplus(-l_fake) = -log D(G(z)).
- `lsgan`: least squares (Mao et al. 2017), targets 0 and 1.
- `wgan`: the critic's Wasserstein estimate (Arjovsky et al. 2017); weight clipping lives in the training loop.
- `wgan-gp`: wgan plus the gradient penalty of Gulrajani et al. 2017, the norm taken per sample over C, H, W.
- `hinge`: the hinge loss of Lim & Ye 2017 / Miyato et al. 2018.

Regularisers and tricks: R1 on real data (Mescheder et al. 2018), one-sided label smoothing and feature matching
(Salimans et al. 2016), annealed instance noise (Sønderby et al. 2017), the AC-GAN classification loss,
DiffAugment applied to every input of D (Zhao et al. 2020), and top-k training (Sinha et al. 2020: G's adversarial
loss over only the fakes D rates most real, so the worst samples stop pulling G between modes; `top_k` anneals how
many). Mode seeking (Mao et al. 2019, MSGAN): fakes i and B/2 + i share a label (`paired`) and G's loss adds the
inverse of `mode_seeking_ratio`, so that different latents give different samples. BigGAN's orthogonal
regularization of G (`orthogonal_penalty`, Brock et al. 2019) is added to G's loss in the G step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from core.config import LossConfig

Stats = dict[str, torch.Tensor]
Augment = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def d_inputs(x: torch.Tensor, *, augment: Augment | None, noise_std: float) -> torch.Tensor:
    """What D sees of a batch: DiffAugment, then instance noise."""
    x = (augment or _identity)(x)
    if noise_std > 0:
        x = x + noise_std * torch.randn_like(x)
    return x


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """WGAN-GP's (||grad D(x_hat)|| - 1)^2 per sample (B,), x_hat uniform between paired real and fake samples."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)  # (B, 1, ...)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, ...)
    logits = D(x_hat, labels)[0].float()
    (grad,) = torch.autograd.grad(logits.sum(), x_hat, create_graph=True)  # (B, ...)
    norms = grad.float().flatten(1).norm(2, dim=1)  # (B,): one norm per sample over C, H, W
    return (norms - 1).square()


def discriminator_loss(
    cfg: LossConfig,
    *,
    D: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None,
    fake_labels: torch.Tensor | None,
    augment: Augment | None = None,
    noise_std: float = 0.0,
) -> tuple[torch.Tensor, Stats]:
    """D's loss on a real batch and a (detached) fake batch, and its stats as detached fp32 scalars."""
    x_real = d_inputs(real, augment=augment, noise_std=noise_std)
    x_fake = d_inputs(fake, augment=augment, noise_std=noise_std)
    if cfg.r1_gamma > 0:
        x_real = x_real.detach().requires_grad_(True)
    l_real, _, aux_real = D(x_real, labels)
    l_fake, _, aux_fake = D(x_fake, fake_labels)
    l_real, l_fake = l_real.float(), l_fake.float()  # (B',)
    stats: Stats = {}
    observe = getattr(augment, "observe", None)
    if observe is not None:  # an adaptive augmentation (core.ada) steers by D's logits on the reals it augmented
        observe(l_real)

    # The adversarial term.
    real_target = 1.0 - cfg.label_smoothing
    if cfg.kind in ("minimax", "nonsaturating"):
        loss = (
            F.binary_cross_entropy_with_logits(l_real, torch.full_like(l_real, real_target)) + F.softplus(l_fake).mean()
        )
        stats["d_real"], stats["d_fake"] = torch.sigmoid(l_real).mean(), torch.sigmoid(l_fake).mean()
    elif cfg.kind == "lsgan":
        loss = 0.5 * ((l_real - real_target).square().mean() + l_fake.square().mean())
        stats["d_real"], stats["d_fake"] = l_real.mean(), l_fake.mean()
    elif cfg.kind in ("wgan", "wgan-gp"):
        loss = l_fake.mean() - l_real.mean()
        stats["d_real"], stats["d_fake"] = l_real.mean(), l_fake.mean()
    else:  # hinge
        loss = F.relu(1 - l_real).mean() + F.relu(1 + l_fake).mean()
        stats["d_real"], stats["d_fake"] = l_real.mean(), l_fake.mean()

    # The penalties.
    if cfg.kind == "wgan-gp":
        gp = gradient_penalty(D, x_real.detach(), x_fake.detach(), labels).mean()
        loss = loss + cfg.gp_weight * gp
        stats["gp"] = gp
    if cfg.r1_gamma > 0:
        (grad,) = torch.autograd.grad(l_real.sum(), x_real, create_graph=True)  # (B, ...)
        r1 = grad.float().square().flatten(1).sum(1).mean()
        loss = loss + 0.5 * cfg.r1_gamma * r1
        stats["r1"] = r1

    # The auxiliary classifier, learned from real data only: trained on the fakes' labels too (Odena et al.'s L_C),
    # D learned to read a faint label code that G put into otherwise label-blind fakes, and G stopped there.
    if aux_real is not None and aux_fake is not None and labels is not None and fake_labels is not None:
        ac = F.cross_entropy(aux_real.float(), labels)
        loss = loss + cfg.acgan_weight * ac
        stats["acgan_d"] = ac

    stats["loss_d"] = loss
    return loss, {k: v.detach() for k, v in stats.items()}


def generator_loss(
    cfg: LossConfig,
    *,
    D: nn.Module,
    fake: torch.Tensor,
    fake_labels: torch.Tensor | None,
    real: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    augment: Augment | None = None,
    noise_std: float = 0.0,
    top_k: int | None = None,
) -> tuple[torch.Tensor, Stats]:
    """G's loss on a fake batch (with its graph), and its stats. `real` is needed only for feature matching;
    `top_k` keeps only the k fake logits D rates highest in the adversarial term (None: all of them)."""
    l_fake, f_fake, aux_fake = D(d_inputs(fake, augment=augment, noise_std=noise_std), fake_labels)
    l_fake = l_fake.float()  # (B',)
    if top_k is not None and top_k < l_fake.shape[0]:
        l_fake = torch.topk(l_fake, top_k, sorted=False).values  # (k,)
    stats: Stats = {}

    # The adversarial term.
    if cfg.kind == "minimax":
        loss = -F.softplus(l_fake).mean()  # mean log(1 - D(G(z)))
    elif cfg.kind == "nonsaturating":
        loss = F.softplus(-l_fake).mean()  # mean -log D(G(z))
    elif cfg.kind == "lsgan":
        loss = 0.5 * (l_fake - 1).square().mean()
    else:  # wgan, wgan-gp, hinge
        loss = -l_fake.mean()
    stats["loss_g_adv"] = loss

    # Feature matching: the mean features of real and fake batches in D's last hidden layer.
    if cfg.feature_matching > 0:
        assert real is not None, "feature matching needs the real batch"
        with torch.no_grad():
            f_real = D(d_inputs(real, augment=augment, noise_std=noise_std), labels)[1].float()  # (B', F)
        fm = (f_real.mean(0) - f_fake.float().mean(0)).square().mean()
        loss = loss + cfg.feature_matching * fm
        stats["feature_matching"] = fm

    # The auxiliary classifier.
    if aux_fake is not None and fake_labels is not None:
        ac = F.cross_entropy(aux_fake.float(), fake_labels)
        loss = loss + cfg.acgan_weight * ac
        stats["acgan_g"] = ac

    stats["loss_g"] = loss
    return loss, {k: v.detach() for k, v in stats.items()}


def top_k(fraction: float, n: int, done: float) -> int | None:
    """How many of `n` fake logits G's loss keeps at `done` (0..1) of the run: all at first, `fraction` from mid-run
    on; None when `fraction` keeps them all."""
    if fraction >= 1.0:
        return None
    current = 1.0 - (1.0 - fraction) * min(1.0, 2.0 * done)
    return max(1, round(current * n))


def paired(labels: torch.Tensor | None) -> torch.Tensor | None:
    """Labels (B,) whose second half repeats the first, so that fakes i and B/2 + i share one (mode seeking)."""
    if labels is None or labels.shape[0] < 2:
        return labels
    half = labels.shape[0] // 2
    out = labels.clone()
    out[half : 2 * half] = labels[:half]
    return out


# loss.mode_seeking's term is weight / (ratio + this), as Mao et al.'s code has it.
MODE_SEEKING_EPS = 1e-5


def mode_seeking_ratio(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN's ratio, in fp32: mean |G(z_i) - G(z_i')| over mean |z_i - z_i'| for the pairs (i, B/2 + i), each
    mean over the pairs and their entries (as Mao et al.'s code computes it)."""
    half = fake.shape[0] // 2
    if half == 0:
        return torch.ones((), device=fake.device)
    d_image = (fake[:half].float() - fake[half : 2 * half].float()).abs().mean()
    return d_image / (z[:half] - z[half : 2 * half]).abs().mean()


def bounded_diversity(ratio: torch.Tensor, cap: float) -> torch.Tensor:
    """loss.diversity's term before its weight (DSGAN, Yang et al. 2019): min(ratio, cap) of a `mode_seeking_ratio`.
    G's loss subtracts it, so its gradient is the ratio's, unscaled, while the ratio is below the cap, and zero above
    it; loss.mode_seeking's 1 / ratio has the ratio's gradient times 1 / ratio², unbounded as the ratio nears zero."""
    return ratio.clamp(max=cap)


def orthogonal_penalty(module: nn.Module) -> torch.Tensor:
    """BigGAN's orthogonal regularization without its weight β, in fp32: Σ ||W Wᵀ ⊙ (1 - I)||²_F over the weights
    of the module's convolutions and linear layers (under spectral norm, the weight before normalisation), each W
    as a matrix (out, in · k · k) of its filters. It penalises the inner products between different filters and
    leaves their norms free, the relaxation of ||WᵀW - I||² that Brock et al. found to keep G amenable to the
    truncation trick. Embeddings and normalisation parameters are left out. (Their code adds the gradient
    2β (W Wᵀ ⊙ (1 - I)) W directly, half this penalty's gradient.)"""
    total = torch.zeros((), device=next(module.parameters()).device)
    for layer in module.modules():
        if not isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            continue
        parametrized = hasattr(layer, "parametrizations")
        w = (layer.parametrizations.weight.original if parametrized else layer.weight).float().flatten(1)  # (O, I)
        gram = w @ w.T  # (O, O): the filters' inner products
        total = total + (gram - torch.diag_embed(torch.diagonal(gram))).square().sum()
    return total
