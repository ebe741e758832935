"""The style-based family (StyleGAN2, Karras et al. 2020): latents z (B, Z), and class labels when conditional,
through a mapping network to w and a style-modulated synthesis network to images (B, C, H, W); the networks live
in core.networks_stylegan2.

A cluster-conditioned run (`model.clusters`, core.clusters) conditions G's mapping network and D's projection on
k-means cluster ids of the real images as a conditional run does on its classes; each fake's cluster is a
function of its latent, so G(z) still samples the whole data (the noise family's cluster conditioning). A
conditional run with clusters within its classes (`model.class_clusters`) does the same inside each class: G and D
see the id class · k + cluster, a real's from k-means within its class and a fake's picked from its latent within
the class it was drawn for, so G(z, class) still samples the whole class.

One step is the paper's four phases in order: the generator's nonsaturating logistic loss on style-mixed fakes,
the lazy path-length regularization (every `loss.pl_every` steps), the discriminator's logistic loss, and the lazy
R1 penalty on reals (every `loss.r1_every` steps). A lazy term is scaled by its interval, and Adam's learning rate
and betas of the regularized network by interval / (interval + 1), as the paper does, so that the regularized runs
match the unregularized schedule. The running mean of the path lengths is a tensor of the checkpoint
(`loss.pl_mean`); the tracked mean of w is a buffer of G (and of G_ema). With `train.augment` ada, D sees every
image through core.ada's pipeline, whose probability p moves after each D step by the signs of D's logits on the
reals (p and those signs are checkpoint tensors too). The sample grid and the evaluation's sampler are the noise
family's, the sampler with noise maps drawn per sample (`fresh_noise`) where the grid keeps the fixed ones.

`loss.diversity` adds DSGAN's bounded diversity term (Yang et al. 2019) to G's loss: the second half of G's batch
takes the first half's label ids (a fake's cluster, class, or class and cluster), so that fakes i and B/2 + i are two
latents of one cluster, and G's loss subtracts λ · min(ratio, `loss.diversity_cap`), the ratio being mean |G(z_i) -
G(z_B/2+i)| over mean |z_i - z_B/2+i|. It is measured in Z, the latent fed to G as the paper has it: z is drawn
N(0, I), so the denominator stays near 2/√π and the term asks for images apart, where a ratio over w would also be
raised by the mapping network drawing the ws together, a path length in W grown rather than images spread. The pairs
come from G's own batch (no second pass, no extra draws: a resumed run draws what an unbroken one does); each fake
is style-mixed as usual, with its own second latent.

With `train.progressive` every step first sets both networks' phase, (resolution, α) = the config's
`ProgressiveConfig.phase(step)` (a function of the step alone, so a resumed run grows as an unbroken one), and D
sees the reals as G can make them at that phase (core.networks_stylegan2.fade_reals); style mixing draws its
cutoff among the layers in use, as StyleGAN did while growing. The phase is reported as the stats `resolution` and
`fade_alpha`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from core import checkpoint
from core.ada import AdaptiveAugment
from core.augment import make_augment
from core.clusters import class_cluster_cdf, cluster_cdf
from core.config import RunConfig
from core.datasets import Dataset
from core.families import Step, StepStats, grad_norm, noise, real_clusters
from core.losses import Augment, bounded_diversity, mode_seeking_ratio, paired
from core.networks_stylegan2 import (
    StyleDiscriminator,
    StyleGenerator,
    build_discriminator,
    build_generator,
    fade_reals,
    fresh_noise,
)

EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]

PL_DECAY = 0.01  # the running mean of the path lengths moves this much toward each batch's mean
PL_BATCH_SHRINK = 2  # path-length regularization runs on this fraction of a batch, as the paper does, to save time
PL_MEAN = "loss.pl_mean"  # the checkpoint's name for that running mean


@dataclass
class Models:
    """A stylegan2 run's networks and optimizers, and the regularizers' state."""

    G: StyleGenerator
    D: StyleDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    augment: Augment | None  # DiffAugment, applied to every input of D
    ada: AdaptiveAugment | None  # adaptive augmentation of every input of D (train.augment ada)
    num_classes: int  # the classes fakes are drawn for; 0 when unconditional or cluster-conditioned
    pl_mean: torch.Tensor  # () the running mean of the path lengths
    # (N,) each real image's label id in a cluster-conditioned run: its cluster, or class · k + its cluster within it
    clusters: torch.Tensor | None = None
    # The lazy regularizers' last values, reported with the step's stats when they ran on it.
    reg_stats: dict[str, torch.Tensor] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps beside the modules: the path-length mean, the real images' cluster ids, and ADA's
        p and sign sums."""
        kept = {PL_MEAN: self.pl_mean}
        if self.clusters is not None:
            kept["data.clusters"] = self.clusters
        return kept | (self.ada.tensors() if self.ada is not None else {})


def _lazy_adam(params: Any, *, lr: float, betas: tuple[float, float], every: int, on: bool) -> torch.optim.Adam:
    """Adam for a network regularized every `every` steps: lr and betas adjusted by every / (every + 1). It updates
    the parameters with torch's multi-tensor kernels (`foreach`), which torch picks on CUDA but not on the CPU: there
    they give the same values bit for bit, and the many small parameters of these networks cost a third less time an
    update than in a loop over them (bench/optimizer_step.py)."""
    ratio = every / (every + 1) if on else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), foreach=True)


def build(cfg: RunConfig, data: Dataset, *, device: torch.device, latest: Path | None, emit: EventFn) -> Models:
    """Check that the data suits the config, build the networks on `device` and their optimizers, and restore the
    path-length mean from the newest checkpoint `latest` when resuming."""
    if data.kind != "images":
        raise ValueError(f"model.arch: {cfg.dataset} is not an image dataset; stylegan2 generates images")
    if cfg.model.conditional and data.labels is None:
        raise ValueError(f"model.conditional: dataset {cfg.dataset} has no class labels; set conditional to false")
    # Cluster conditioning: the real images' k-means cluster ids, from the checkpoint when resuming.
    groups = cfg.model.label_groups(data.channels)  # a cluster per channel, or one per image
    ids = real_clusters(cfg, data, latest, groups=groups, device=device, emit=emit)
    G = build_generator(cfg, channels=data.channels, num_classes=data.num_classes)
    D = build_discriminator(cfg, channels=data.channels, num_classes=data.num_classes)
    if ids is not None and cfg.model.class_clusters:
        G.set_cluster_frequencies(class_cluster_cdf(ids, data.num_classes, cfg.model.class_clusters))
    elif ids is not None:
        G.set_cluster_frequencies(cluster_cdf(ids, cfg.model.clusters, groups))
    G = G.to(device, memory_format=torch.channels_last)
    D = D.to(device, memory_format=torch.channels_last)
    betas = (cfg.train.beta1, cfg.train.beta2)
    loss = cfg.loss
    pl_mean = torch.zeros((), device=device)
    ada = None
    if cfg.train.augment == "ada":
        ada = AdaptiveAugment(target=cfg.train.ada_target, batch_size=cfg.train.batch_size, device=device)
    if latest is not None:
        saved = checkpoint.read_tensor(latest, PL_MEAN)
        if saved is not None:
            pl_mean.copy_(saved)
        if ada is not None:
            ada.restore(latest)
    return Models(
        G=G,
        D=D,
        opt_g=_lazy_adam(G.parameters(), lr=cfg.train.lr_g, betas=betas, every=loss.pl_every, on=loss.pl_weight > 0),
        opt_d=_lazy_adam(D.parameters(), lr=cfg.train.lr_d, betas=betas, every=loss.r1_every, on=loss.r1_gamma > 0),
        augment=make_augment(cfg.train.diffaugment),
        ada=ada,
        num_classes=data.num_classes if cfg.model.conditional else 0,
        pl_mean=pl_mean,
        clusters=ids,
    )


def train_step(m: Models, cfg: RunConfig, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]:
    """One step: G's loss, path-length regularization when due, D's loss, R1 when due. Returns the losses as
    optimized, `{"loss_d", "loss_g"}`, and the step's stats."""
    b, loss, grow = cfg.train.batch_size, cfg.loss, cfg.train.progressive
    stats: StepStats = {}
    if grow is not None:  # progressive growing: both networks at this step's resolution and fade-in
        resolution, alpha = grow.phase(at.step, cfg.model.image_size)
        m.G.grow(resolution, alpha)
        m.D.grow(resolution, alpha)
        stats |= {"resolution": float(resolution), "fade_alpha": alpha}

    # Train the generator on style-mixed fakes; its mapping network moves the tracked mean of w.
    m.D.requires_grad_(False)
    z, labels = _latents(m, cfg, b, at.device)
    if loss.diversity > 0:  # fakes i and B/2 + i share a label id, so that their distance is one within a cluster
        labels = paired(labels)
    with at.autocast():
        fake = m.G.synthesis(mixed_ws(m.G, z, labels, mixing_prob=cfg.model.mixing_prob, update_w_avg=True))
        logits_g = m.D(_d_input(m, fake), labels)[0].float()  # (B,)
    loss_g = F.softplus(-logits_g).mean()
    if loss.diversity > 0:  # DSGAN's bounded term: the pairs' images apart, per unit of z, up to the cap
        spread = mode_seeking_ratio(fake, z)
        diversity = bounded_diversity(spread, loss.diversity_cap)
        loss_g = loss_g - loss.diversity * diversity
        stats |= {"loss_g_diversity": diversity.detach(), "mode_seeking_spread": spread.detach()}
    m.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    if at.want_stats:
        stats["grad_norm_g"] = grad_norm(m.G)
    m.opt_g.step()

    # Path-length regularization: the Jacobian of G's synthesis at w should have one length in every direction.
    if loss.pl_weight > 0 and at.step % loss.pl_every == 0:
        penalty = path_length_penalty(m, cfg, at)
        m.opt_g.zero_grad(set_to_none=True)
        (penalty * loss.pl_weight * loss.pl_every).backward()
        m.opt_g.step()
        m.reg_stats |= {"pl_penalty": penalty.detach(), "pl_mean": m.pl_mean.detach().clone()}

    # Train the discriminator on a real batch and fresh fakes.
    m.D.requires_grad_(True)
    indices, real, real_labels = at.next_batch()  # (B,), (B, C, H, W), (B,) | None
    if grow is not None:
        real = fade_reals(real, resolution, alpha)
    real_labels = real_labels if m.num_classes else None
    if m.clusters is not None:  # the reals' k-means clusters (within their classes)
        real_labels = m.clusters[indices.to(at.device)]
    z, labels = _latents(m, cfg, b, at.device)
    with at.autocast():
        with torch.no_grad():
            fake = m.G.synthesis(mixed_ws(m.G, z, labels, mixing_prob=cfg.model.mixing_prob))
        logits_fake = m.D(_d_input(m, fake), labels)[0].float()  # (B,)
        logits_real = m.D(_d_input(m, real), real_labels)[0].float()  # (B,)
    loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    if at.want_stats:
        stats["grad_norm_d"] = grad_norm(m.D)
    m.opt_d.step()
    if m.ada is not None:  # steer the augmentation probability by how sure D is of the reals
        m.ada.observe(logits_real)
        m.ada.adjust(at.step)
        stats["ada_p"] = m.ada.p.detach().clone()

    # Lazy R1: the gradient of D at the reals, on the same real batch.
    if loss.r1_gamma > 0 and at.step % loss.r1_every == 0:
        penalty = r1_penalty(m, real, real_labels, autocast=at.autocast)
        m.opt_d.zero_grad(set_to_none=True)
        (penalty * (loss.r1_gamma / 2) * loss.r1_every).backward()
        m.opt_d.step()
        m.reg_stats["r1_penalty"] = penalty.detach()

    stats |= {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": logits_real.detach().mean(),
        "d_fake": logits_fake.detach().mean(),
        **m.reg_stats,
    }
    m.reg_stats = {} if at.want_stats else m.reg_stats
    return {"loss_d": loss_d, "loss_g": loss_g}, stats


def mixed_ws(
    G: StyleGenerator, z: torch.Tensor, ids: torch.Tensor | None, *, mixing_prob: float, update_w_avg: bool = False
) -> torch.Tensor:
    """One w per synthesis layer (B, L, W) of latents z (B, Z) with label ids (B,) (`_latents`): with probability
    `mixing_prob` a sample's layers from a random cutoff on take the w of a second latent with the same label id
    (style-mixing regularization); only the first latents move the tracked mean."""
    w = G.mapping(z, None, ids=ids, update_w_avg=update_w_avg)  # (B, W)
    ws = w[:, None].expand(-1, G.num_ws, -1)  # (B, L, W)
    if mixing_prob <= 0:
        return ws
    w2 = G.mapping(torch.randn_like(z), None, ids=ids)  # (B, W)
    # (B,) the first layer of the second style, among the layers in use (all of them unless growing)
    cutoff = torch.randint(1, G.active_ws(), (z.shape[0],), device=z.device)
    cutoff = torch.where(torch.rand(z.shape[0], device=z.device) < mixing_prob, cutoff, G.num_ws)
    first = torch.arange(G.num_ws, device=z.device)[None, :] < cutoff[:, None]  # (B, L)
    return torch.where(first[:, :, None], ws, w2[:, None])  # (B, L, W)


def path_length_penalty(m: Models, cfg: RunConfig, at: Step) -> torch.Tensor:
    """(|J_w^T y| - a)² averaged over half a batch, y random images of unit expected norm per pixel and `a` the
    running mean of the lengths, which moves toward this batch's (Karras et al. 2020, eq. 4)."""
    n = max(cfg.train.batch_size // PL_BATCH_SHRINK, 1)
    z, labels = _latents(m, cfg, n, at.device)
    with at.autocast():
        ws = mixed_ws(m.G, z, labels, mixing_prob=cfg.model.mixing_prob)  # (n, L, W)
        images = m.G.synthesis(ws)  # (n, C, H, W)
    y = torch.randn_like(images, dtype=torch.float32) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images.float() * y).sum(), ws, create_graph=True)  # (n, L, W)
    lengths = grad.float().square().sum(2).mean(1).sqrt()  # (n,)
    pl_mean = m.pl_mean.lerp(lengths.mean(), PL_DECAY)
    m.pl_mean.copy_(pl_mean.detach())
    return (lengths - pl_mean).square().mean()


def r1_penalty(m: Models, real: torch.Tensor, labels: torch.Tensor | None, *, autocast: Autocast) -> torch.Tensor:
    """|∇_x D(x)|² at the real images x, averaged over the batch (Mescheder et al. 2018)."""
    x = real.detach().requires_grad_(True)
    with autocast():
        logits = m.D(_d_input(m, x), labels)[0].float()  # (B,)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)  # (B, C, H, W)
    return grad.float().square().sum(dim=(1, 2, 3)).mean()


def _d_input(m: Models, x: torch.Tensor) -> torch.Tensor:
    """What D sees of a batch: DiffAugment's or ADA's augmentation of it, or the batch."""
    if m.ada is not None:
        return m.ada(x)
    return m.augment(x) if m.augment is not None else x


def _latents(m: Models, cfg: RunConfig, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n latents (n, Z) and their label ids (n,) for G's mapping network and D's projection: uniformly drawn classes
    when conditional, each latent's cluster (within its class), or None."""
    z = torch.randn(n, cfg.model.z_dim, device=device)  # (n, Z)
    labels = torch.randint(m.num_classes, (n,), device=device) if m.num_classes else None
    return z, m.G.label_ids(z, labels)


# The sample grid and the sampler: the noise family's, which need only G(z, labels) and the number of classes; the
# sampler with per-sample noise.


def grid_inputs(cfg: RunConfig, data: Dataset, m: Models, device: torch.device) -> noise.GridInputs:
    return noise.grid_inputs(cfg, data, m, device)  # type: ignore[arg-type]


def sample_grid(
    G: nn.Module, inputs: noise.GridInputs, data: Dataset, *, autocast: Autocast
) -> tuple[Image.Image, torch.Tensor]:
    return noise.sample_grid(G, inputs, data, autocast=autocast)


def sampler(
    G: nn.Module, cfg: RunConfig, m: Models, *, device: torch.device, autocast: Autocast
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]:
    """The noise family's sampler, each sample with noise maps of its own (`fresh_noise`) from a generator seeded by
    the run's seed: every evaluation of a run draws the same noise, as it draws the same latents, and the latents
    stay those of the evaluation's stream."""
    sample = noise.sampler(G, cfg, m, device=device, autocast=autocast)  # type: ignore[arg-type]

    def sample_with_fresh_noise(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with fresh_noise(G, torch.Generator().manual_seed(cfg.seed)):
            return sample(n)

    return sample_with_fresh_noise
