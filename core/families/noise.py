"""The noise family: a generator maps latents z (B, Z), and labels when it is conditioned, to images (B, C, H, W)
in [-1, 1] or 2-D points (B, 2); a discriminator judges them. Architectures live in core.networks, objectives and
stabilizers in core.losses.

Unconditional, class-conditional (`model.conditional`) and cluster-conditioned (`model.clusters`: k-means ids of
the real samples, each fake's cluster a function of its latent) runs. `build` makes the networks and optimizers,
`train_step` does one step with them, `grid_inputs` and `sample_grid` draw the fixed-seed sample grid, `sampler`
what evaluation measures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import nn

from core import grids
from core.ada import AdaptiveAugment
from core.augment import make_augment
from core.clusters import cluster_cdf
from core.config import RunConfig
from core.datasets import Dataset
from core.families import Step, StepStats, eval_mode, grad_norm, real_clusters
from core.losses import (
    MODE_SEEKING_EPS,
    Augment,
    Stats,
    discriminator_loss,
    generator_loss,
    mode_seeking_ratio,
    orthogonal_penalty,
    paired,
    top_k,
)
from core.networks import build_discriminator, build_generator

EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


@dataclass
class Models:
    """A noise-family GAN's networks and optimizers, and what its step needs beside them."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    g_fn: Callable[..., Any]  # G, or torch.compile(G): what the step calls
    d_fn: Callable[..., Any]
    augment: Augment | None  # DiffAugment, applied to every input of D
    num_classes: int  # the classes G and D are conditioned on; 0 when unconditional
    clusters: torch.Tensor | None  # (N,) each real sample's cluster id, in a cluster-conditioned run
    ada: AdaptiveAugment | None = None  # adaptive augmentation of D's inputs (train.augment ada), also `augment`

    def modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint stores, by name (the loop adds the EMA copy of G as `G_ema`)."""
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps beside the modules and optimizers: the real samples' cluster ids, ADA's state."""
        kept = {"data.clusters": self.clusters} if self.clusters is not None else {}
        return kept | (self.ada.tensors() if self.ada is not None else {})


def build(cfg: RunConfig, data: Dataset, *, device: torch.device, latest: Path | None, emit: EventFn) -> Models:
    """Check that the data suits the config, find the clusters (from the newest checkpoint `latest` when resuming),
    and build the networks on `device` and their optimizers."""
    if cfg.model.conditional and data.labels is None:
        raise ValueError(f"model.conditional: dataset {cfg.dataset} has no class labels; set conditional to false")
    if data.kind == "points" and cfg.model.arch != "mlp":
        raise ValueError(f"model.arch: {cfg.dataset} is 2-D point data; only the mlp architecture fits it")

    # Cluster conditioning: the real samples' cluster ids, from k-means at the start and from the checkpoint after.
    k, groups = cfg.model.clusters, cfg.model.label_groups(data.channels)
    ids = real_clusters(cfg, data, latest, groups=groups, device=device, emit=emit)

    # The networks (channels-last for images) and their optimizers.
    memory_format = torch.channels_last if data.kind == "images" else torch.contiguous_format
    G = build_generator(cfg, channels=data.channels, num_classes=data.num_classes)
    D = build_discriminator(cfg, channels=data.channels, num_classes=data.num_classes)
    if ids is not None:
        G.set_cluster_frequencies(cluster_cdf(ids, k, groups))
    G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
    betas = (cfg.train.beta1, cfg.train.beta2)
    ada = None
    if cfg.train.augment == "ada":
        ada = AdaptiveAugment(target=cfg.train.ada_target, batch_size=cfg.train.batch_size, device=device)
        if latest is not None:
            ada.restore(latest)
    return Models(
        G=G,
        D=D,
        opt_g=torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=betas),
        opt_d=torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas),
        g_fn=torch.compile(G) if cfg.train.compile else G,
        d_fn=torch.compile(D) if cfg.train.compile else D,
        augment=ada or make_augment(cfg.train.diffaugment),
        num_classes=data.num_classes if cfg.model.conditional else 0,
        clusters=ids,
        ada=ada,
    )


def train_step(m: Models, cfg: RunConfig, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]:
    """One step: `train.n_critic` discriminator updates on fresh real and fake batches, then one generator update
    (on the last critic batch's fake when n_critic is 1, graph and all, as pytorch/examples does). Returns the losses
    as optimized, `{"loss_d", "loss_g"}`, and the step's stats."""
    noise_std = cfg.loss.instance_noise * (1.0 - at.done)  # instance noise anneals to zero over the run

    # Train the discriminator.
    m.D.requires_grad_(True)
    for _ in range(cfg.train.n_critic):
        d = _discriminator_step(m, cfg, at, noise_std)
    if m.ada is not None:  # move the augmentation probability by the signs D's steps saw on the reals
        m.ada.adjust(at.step)

    # Train the generator, on a fresh fake batch when D took several steps.
    m.D.requires_grad_(False)
    real, labels, z, fake, fake_labels = d.real, d.labels, d.z, d.fake, d.fake_labels
    if cfg.train.n_critic > 1:
        z, fake_labels = _latents(m, cfg, at)
        with at.autocast():
            fake = m.g_fn(z, fake_labels)  # (B, C, H, W) or (B, 2)
    with at.autocast():
        loss_g, stats_g = generator_loss(
            cfg.loss,
            D=m.d_fn,
            fake=fake,
            fake_labels=fake_labels,
            real=real,
            labels=labels,
            augment=m.augment,
            noise_std=noise_std,
            top_k=top_k(cfg.loss.top_k, cfg.train.batch_size // cfg.model.pack, at.done),
        )
    if cfg.loss.mode_seeking:
        ratio = mode_seeking_ratio(fake, z)
        stats_g = stats_g | {"mode_seeking_ratio": ratio.detach()}
        loss_g = loss_g + cfg.loss.mode_seeking / (ratio + MODE_SEEKING_EPS)
    if cfg.loss.ortho_weight > 0:  # BigGAN's orthogonal regularization of G's filters
        ortho = orthogonal_penalty(m.G)
        stats_g = stats_g | {"ortho": ortho.detach()}
        loss_g = loss_g + cfg.loss.ortho_weight * ortho
    m.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    grad_norm_g = grad_norm(m.G) if at.want_stats else None
    m.opt_g.step()

    stats: StepStats = {**d.stats, **stats_g}
    if d.grad_norm is not None and grad_norm_g is not None:
        stats |= {"grad_norm_d": d.grad_norm, "grad_norm_g": grad_norm_g}
    if cfg.loss.instance_noise > 0:
        stats["instance_noise"] = noise_std
    if m.ada is not None:
        stats["ada_p"] = m.ada.p.detach().clone()
    return {"loss_d": d.loss, "loss_g": loss_g}, stats


class _CriticStep(NamedTuple):
    """One update of D: its loss, stats and gradient norm (None unless the loop wants stats), and the batches."""

    loss: torch.Tensor
    stats: Stats
    grad_norm: torch.Tensor | None
    real: torch.Tensor  # (B, C, H, W) or (B, 2)
    labels: torch.Tensor | None  # (B,) classes or clusters, when conditioned
    z: torch.Tensor  # (B, Z)
    fake: torch.Tensor  # (B, C, H, W) or (B, 2), with its graph when n_critic is 1
    fake_labels: torch.Tensor | None


def _discriminator_step(m: Models, cfg: RunConfig, at: Step, noise_std: float) -> _CriticStep:
    """One update of D on the next real batch and a fresh fake one; the fake keeps its graph when the generator's
    step will reuse it."""
    indices, real, labels = at.next_batch()  # (B, C, H, W) or (B, 2)
    labels = labels if m.num_classes else None
    z, fake_labels = _latents(m, cfg, at)
    if m.clusters is not None:  # real clusters from k-means, each fake's from its latent
        labels = m.clusters[indices.to(at.device)]
    reuse_fake = cfg.train.n_critic == 1
    with at.autocast():
        with torch.no_grad() if not reuse_fake else contextlib.nullcontext():
            fake = m.g_fn(z, fake_labels)  # (B, C, H, W) or (B, 2)
        loss_d, stats_d = discriminator_loss(
            cfg.loss,
            D=m.d_fn,
            real=real,
            fake=fake.detach(),
            labels=labels,
            fake_labels=fake_labels,
            augment=m.augment,
            noise_std=noise_std,
        )
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    grad_norm_d = grad_norm(m.D) if at.want_stats else None
    m.opt_d.step()
    if cfg.loss.kind == "wgan":  # weight clipping keeps the critic Lipschitz
        with torch.no_grad():
            for p in m.D.parameters():
                p.clamp_(-cfg.loss.clip, cfg.loss.clip)
    return _CriticStep(loss_d, stats_d, grad_norm_d, real, labels, z, fake, fake_labels)


def _latents(m: Models, cfg: RunConfig, at: Step) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch of latents (B, Z) and their fakes' labels (B,): random classes, or each latent's cluster; with mode
    seeking, pairs (i, B/2 + i) share a label."""
    b = cfg.train.batch_size
    z = torch.randn(b, cfg.model.z_dim, device=at.device)  # (B, Z)
    fake_labels = torch.randint(m.num_classes, (b,), device=at.device) if m.num_classes else None
    if m.clusters is not None:
        fake_labels = m.G.clusters_of(z)
    return z, paired(fake_labels) if cfg.loss.mode_seeking else fake_labels


@dataclass(frozen=True)
class GridInputs:
    """The fixed latents (N, Z) and labels (N,) of a run's sample grids, and how many samples a row shows."""

    z: torch.Tensor
    labels: torch.Tensor | None
    nrow: int


def grid_inputs(cfg: RunConfig, data: Dataset, m: Models, device: torch.device) -> GridInputs:
    """The sample grid's inputs, from a generator of their own: one class per column for up to 10 classes, 1,000
    points for 2-D data, else 8 × 8."""
    if data.kind == "points":
        n, nrow = 1000, 1
    elif 0 < m.num_classes <= 10:
        n, nrow = m.num_classes * 10, m.num_classes
    else:
        n, nrow = 64, 8
    z = torch.randn(n, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1)).to(device)
    labels = (torch.arange(n) % m.num_classes).to(device) if m.num_classes else None
    return GridInputs(z=z, labels=labels, nrow=nrow)


@torch.no_grad()
def sample_grid(
    G: nn.Module, inputs: GridInputs, data: Dataset, *, autocast: Autocast
) -> tuple[Image.Image, torch.Tensor]:
    """A grid of G's samples from the fixed inputs (a scatter plot over the real modes for 2-D data), and the
    samples themselves (N, C, H, W) or (N, 2)."""
    with eval_mode(G), autocast():
        out = G(inputs.z, inputs.labels).float().detach()  # (N, C, H, W) or (N, 2)
    if data.kind == "points":
        return grids.scatter_plot(out, modes=data.modes), out
    return grids.image_grid(out, nrow=inputs.nrow), out


def sampler(
    G: nn.Module, cfg: RunConfig, m: Models, *, device: torch.device, autocast: Autocast
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]:
    """sample_fn(n) -> (samples in [-1, 1] or (n, 2) points, labels or None), from G in eval mode, for evaluation."""

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with eval_mode(G):
            outs, labs = [], []
            for start in range(0, n, 500):
                b = min(500, n - start)
                z = torch.randn(b, cfg.model.z_dim, device=device)
                labels = torch.randint(m.num_classes, (b,), device=device) if m.num_classes else None
                with autocast():
                    outs.append(G(z, labels).float())
                if labels is not None:
                    labs.append(labels)
        return torch.cat(outs), (torch.cat(labs) if labs else None)

    return sample
