"""The pix2pix family (Isola et al. 2017): paired image-to-image translation. A U-Net generator maps an input image
(B, C_in, H, W) to an output (B, C, H, W), with dropout as its only noise; a PatchGAN discriminator judges
(input, target) pairs as real and (input, output) pairs as fake, patch by patch. G minimises the adversarial loss
(`loss.kind`; the paper's is nonsaturating; weighed by `loss.adversarial_weight`, 0 for the paper's L1-only
ablation) plus `loss.l1_weight` times the L1 distance of its output to the target, and with `loss.feature_matching`
that weight times pix2pixHD's feature-matching loss (the distance of D's hidden activations on its pair to those on
the real pair; see `feature_matching`). With `model.d_sobel` the PatchGAN also sees the Sobel gradient magnitude of
the image it judges (`judged`); `loss.adversarial_start` and `loss.adversarial_ramp` bring the adversarial term in
after a share of the run trained on L1 alone, optionally rising linearly (`adversarial_schedule`); `loss.edge_weight`
adds the L1 distance of the output's Sobel derivatives to the target's (`edge_loss`), and `loss.sharpness_weight` the
squared distance from 1 of the batch's sharpness ratio (`sharpness_gap`) on a second pass of the batch through G in
eval mode, as it is evaluated, from `loss.sharpness_start` on (`late_share`); with `loss.sharpness_one_sided` only
a ratio below 1 counts (`sharpness_penalty`). With `train.ema_batchnorm` recomputed the EMA generator normalises with
its own BatchNorm statistics (`recompute_batchnorm`), not the live G's.
Networks live in core.networks_translation, the adversarial objectives (with label smoothing, instance noise, R1)
in core.losses, the data in core.paired.

The loop draws the batch of targets in its data order (`Step.next_batch`); the family takes the matching inputs
from the paired dataset. The sample grid shows held-out pairs as input | output | target; `sampler` translates the
held-out inputs in order, and `evaluator` compares those outputs with their targets (core.metrics.paired).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from core import grids
from core.config import RunConfig
from core.families import Step, StepStats, eval_mode, grad_norm
from core.losses import discriminator_loss, generator_loss
from core.networks_translation import PatchDiscriminator, UNetGenerator, patch_layers
from core.paired import PairedDataset, sobel_gradients, sobel_magnitude

EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]
GRID_PAIRS, GRID_PAIRS_PER_ROW = 16, 4  # held-out pairs in the sample grid, and (input | output | target)s a row
SAMPLE_BATCH = 256
SOBEL_SCALE = 0.25  # the Sobel magnitude D sees with model.d_sobel: a step from -1 to 1 reads about 2
SOBEL_EPS = 1e-6  # under the square root of that magnitude, so that G's gradient through it is finite on flat images


@dataclass
class Models:
    """A pix2pix GAN's networks and optimizers, and the paired data its step takes the inputs from."""

    G: nn.Module  # UNetGenerator
    D: PatchDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    g_fn: Callable[..., Any]  # G, or torch.compile(G): what the step calls
    d_fn: Callable[..., Any]
    data: PairedDataset

    def modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint stores, by name (the loop adds the EMA copy of G as `G_ema`)."""
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}


def build(cfg: RunConfig, data: Any, *, device: torch.device, latest: Path | None, emit: EventFn) -> Models:
    """Check that the data is paired and build the U-Net, the PatchGAN and their Adam optimizers on `device`."""
    if not isinstance(data, PairedDataset):
        raise ValueError(f"model.arch: pix2pix needs a paired dataset (digits-edges); {cfg.dataset} is not paired")
    m = cfg.model
    G = generator(cfg, data.info())
    D = PatchDiscriminator(
        in_channels=data.source_channels + data.channels * (2 if m.d_sobel else 1),
        layers=patch_layers(m.image_size, m.patch_layers),
        width=m.width,
        sn=m.spectral_norm,
    )
    G = G.to(device, memory_format=torch.channels_last)
    D = D.to(device, memory_format=torch.channels_last)
    betas = (cfg.train.beta1, cfg.train.beta2)
    return Models(
        G=G,
        D=D,
        opt_g=torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=betas),
        opt_d=torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas),
        g_fn=torch.compile(G) if cfg.train.compile else G,
        d_fn=torch.compile(D) if cfg.train.compile else D,
        data=data,
    )


def generator(cfg: RunConfig, info: dict[str, Any]) -> nn.Module:
    """The U-Net of a run with this config and data facts (a PairedDataset's `info()`, a checkpoint's `data`):
    `source_channels` in, `channels` out. Translations load a checkpoint's G into it (core/translate.py)."""
    m = cfg.model
    return UNetGenerator(
        in_channels=int(info["source_channels"]),
        out_channels=int(info["channels"]),
        image_size=m.image_size,
        width=m.g_width or m.width,
    )


def train_step(m: Models, cfg: RunConfig, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]:
    """One step: a D update on (input, target) against (input, output) pairs, then a G update on the same output
    (graph and all) against D and the target. Returns `{"loss_d", "loss_g"}` and the step's stats."""
    noise_std = cfg.loss.instance_noise * (1.0 - at.done)  # instance noise anneals to zero over the run
    indices, target, _ = at.next_batch()  # (B, C, H, W)
    source = m.data.inputs(indices).contiguous(memory_format=torch.channels_last)  # (B, C_in, H, W)
    judge = patch_judge(functools.partial(judged, m.d_fn, source, cfg.model.d_sobel))  # D given the batch's inputs
    with at.autocast():
        fake = m.g_fn(source)  # (B, C, H, W)

    # Train the discriminator.
    m.D.requires_grad_(True)
    with at.autocast():
        loss_d, stats_d = discriminator_loss(
            cfg.loss, D=judge, real=target, fake=fake.detach(), labels=None, fake_labels=None, noise_std=noise_std
        )
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    grad_norm_d = grad_norm(m.D) if at.want_stats else None
    m.opt_d.step()

    # Train the generator: fool D, stay near the target and (with feature matching) near its features in D.
    m.D.requires_grad_(False)
    with at.autocast():
        loss_adv, stats_g = generator_loss(
            cfg.loss.model_copy(update={"feature_matching": 0.0}),  # the noise families' term; pix2pix's is below
            D=judge,
            fake=fake,
            fake_labels=None,
            noise_std=noise_std,
        )
    l1 = (fake.float() - target.float()).abs().mean()
    adv_weight = adversarial_scale(cfg) * adversarial_schedule(cfg, at.done)
    loss_g = adv_weight * loss_adv + cfg.loss.l1_weight * l1
    if cfg.loss.edge_weight > 0:
        edge = edge_loss(fake, target)
        loss_g = loss_g + cfg.loss.edge_weight * edge
        stats_g = {**stats_g, "loss_g_edge": edge.detach()}
    if cfg.loss.sharpness_weight > 0 and late_share(cfg.loss.sharpness_start, 0.0, at.done) > 0:
        # The gap of G as it is evaluated: a second pass of the batch in eval mode (no dropout, BatchNorm on its
        # running statistics), whose sharpness differs from the dropout pass's by as much as seeds differ.
        with eval_mode(m.G), at.autocast():
            evaluated = m.g_fn(source)  # (B, C, H, W)
        gap = sharpness_gap(evaluated, target)
        loss_g = loss_g + cfg.loss.sharpness_weight * sharpness_penalty(gap, one_sided=cfg.loss.sharpness_one_sided)
        stats_g = {**stats_g, "sharpness_gap": gap.detach()}
    if cfg.loss.feature_matching > 0:
        with at.autocast():
            fm = feature_matching(m.D, source, fake=fake, target=target, sobel=cfg.model.d_sobel)
        loss_g = loss_g + cfg.loss.feature_matching * fm
        stats_g = {**stats_g, "feature_matching": fm.detach()}
    m.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    grad_norm_g = grad_norm(m.G) if at.want_stats else None
    m.opt_g.step()

    # The L1 term as `loss_g_l1`: the name `l1` is the evaluation's, on held-out pairs.
    stats: StepStats = {**stats_d, **stats_g, "loss_g_l1": l1.detach(), "loss_g": loss_g.detach()}
    if grad_norm_d is not None and grad_norm_g is not None:
        stats |= {"grad_norm_d": grad_norm_d, "grad_norm_g": grad_norm_g}
    if cfg.loss.instance_noise > 0:
        stats["instance_noise"] = noise_std
    if cfg.loss.adversarial_start > 0 or cfg.loss.adversarial_ramp > 0:
        stats["adversarial_weight"] = adv_weight
    return {"loss_d": loss_d, "loss_g": loss_g}, stats


def edge_loss(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean absolute difference of the Sobel derivatives of outputs and their targets (B, C, H, W), in fp32."""
    return (sobel_gradients(fake.float()) - sobel_gradients(target.float())).abs().mean()


def sharpness_gap(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean Sobel magnitude of the outputs / that of their targets - 1 over a batch (B, C, H, W), in fp32: the held-out
    `sharpness` metric less 1 on this batch (negative: blurrier than the targets). It compares the batch's amount of
    edge, not where the edges are, so L1 keeps placing them; the epsilon keeps the square root's gradient finite on
    flat areas. G's loss takes its square, whose mean over noisy batches still pulls the expected ratio to 1."""
    out = sobel_magnitude(fake.float(), SOBEL_EPS).mean()
    real = sobel_magnitude(target.float()).mean().clamp_min(1e-12)
    return out / real - 1.0


def sharpness_penalty(gap: torch.Tensor, *, one_sided: bool) -> torch.Tensor:
    """The sharpness term of G's loss (before its weight) for a batch's `sharpness_gap`: its square, or with
    `one_sided` (loss.sharpness_one_sided) the square of its part below 0 alone, so that a batch sharper than its
    targets adds nothing and the term only ever asks for steeper edges."""
    return (gap.clamp_max(0.0) if one_sided else gap).square()


def judged(D: Callable[..., Any], source: torch.Tensor, sobel: bool, image: torch.Tensor) -> Any:
    """D (or D.hidden) on the pair (source, image), with `sobel` (model.d_sobel) also on `sobel_channel(image)`:
    source (B, C_in, H, W), image (B, C, H, W)."""
    return D(source, image, sobel_channel(image)) if sobel else D(source, image)


def sobel_channel(image: torch.Tensor) -> torch.Tensor:
    """The Sobel gradient magnitude of every channel of images (B, C, H, W) times SOBEL_SCALE, kept differentiable
    where the image is flat (the plain magnitude's square root has an infinite derivative at 0): (B, C, H, W)."""
    return sobel_magnitude(image.float(), SOBEL_EPS).to(image.dtype) * SOBEL_SCALE


def adversarial_schedule(cfg: RunConfig, done: float) -> float:
    """The share of the adversarial weight in G's loss at `done` (the fraction of the run before this step): 0
    before loss.adversarial_start, then rising linearly to 1 over loss.adversarial_ramp, 1 after."""
    return late_share(cfg.loss.adversarial_start, cfg.loss.adversarial_ramp, done)


def late_share(start: float, ramp: float, done: float) -> float:
    """The share of a term that comes in late, at `done` (the fraction of the run before this step): 0 before
    `start` (a fraction of the run), then rising linearly to 1 over `ramp`, 1 after (at once with `ramp` 0)."""
    if done < start:
        return 0.0
    return 1.0 if ramp <= 0 else min(1.0, (done - start) / ramp)


def feature_matching(
    D: PatchDiscriminator, source: torch.Tensor, *, fake: torch.Tensor, target: torch.Tensor, sobel: bool = False
) -> torch.Tensor:
    """pix2pixHD's feature-matching loss (Wang et al. 2018): the mean over D's hidden layers of the mean absolute
    difference between D's activations on (input, output), with G's graph, and on (input, target), held fixed; a
    perceptual distance D learns. (pix2pixHD sums its layers weighed 4 / layers, so its weight 10 is about 40 here.)"""
    with torch.no_grad():
        real = judged(D.hidden, source, sobel, target)
    fakes = judged(D.hidden, source, sobel, fake)
    terms = [(f.float() - r.float()).abs().mean() for f, r in zip(fakes, real, strict=True)]
    return torch.stack(terms).mean()


def adversarial_scale(cfg: RunConfig) -> float:
    """The factor of core.losses' generator term in a translation generator's loss: `loss.adversarial_weight`, and
    2 for lsgan, whose generator term the papers' code takes as (D - 1)² where core.losses takes ½ (D - 1)²."""
    return cfg.loss.adversarial_weight * (2.0 if cfg.loss.kind == "lsgan" else 1.0)


def patch_judge(D: Callable[..., Any]) -> Any:
    """A PatchGAN D(x) as core.losses calls a discriminator: x (B, C, H, W) -> (patch logits (B·P·P,), no
    features, no class logits)."""

    def judge(x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, None, None]:
        return D(x).flatten(), None, None  # (B, 1, P, P) -> (B·P·P,)

    return judge


@dataclass(frozen=True)
class GridInputs:
    """The held-out pairs a run's sample grids show: inputs (N, C_in, H, W), targets (N, C, H, W)."""

    source: torch.Tensor
    target: torch.Tensor


def grid_inputs(cfg: RunConfig, data: PairedDataset, m: Models, device: torch.device) -> GridInputs:
    """The first GRID_PAIRS held-out pairs."""
    assert data.held_source is not None and data.held_target is not None
    return GridInputs(source=data.held_source[:GRID_PAIRS].to(device), target=data.held_target[:GRID_PAIRS].to(device))


@torch.no_grad()
def sample_grid(
    G: nn.Module, inputs: GridInputs, data: PairedDataset, *, autocast: Autocast
) -> tuple[Image.Image, torch.Tensor]:
    """input | output | target for each grid pair, GRID_PAIRS_PER_ROW pairs a row, and the outputs (N, C, H, W)."""
    with eval_mode(G), autocast():
        out = G(inputs.source.contiguous(memory_format=torch.channels_last)).float().detach()  # (N, C, H, W)
    c = out.shape[1]
    triples = torch.stack([_with_channels(inputs.source.float(), c), out, inputs.target.float()], dim=1)  # (N, 3, ...)
    return grids.image_grid(triples.flatten(0, 1), nrow=3 * GRID_PAIRS_PER_ROW), out


def _with_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    """Images (N, C', H, W) shown with c channels: grey repeated into colour, colour averaged into grey."""
    if x.shape[1] == c:
        return x
    return x.expand(-1, c, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True).expand(-1, c, -1, -1)


def sampler(
    G: nn.Module, cfg: RunConfig, m: Models, *, device: torch.device, autocast: Autocast
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]:
    """sample_fn(n) -> (G's outputs for the first n held-out inputs, their labels or None), G in eval mode."""
    source, labels = m.data.held_source, m.data.held_labels
    assert source is not None

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with eval_mode(G):
            outs = []
            for start in range(0, min(n, len(source)), SAMPLE_BATCH):
                x = source[start : min(n, start + SAMPLE_BATCH)].to(device)  # (b, C_in, H, W)
                with autocast():
                    outs.append(G(x.contiguous(memory_format=torch.channels_last)).float())
        out = torch.cat(outs)  # (n', C, H, W)
        return out, labels[: len(out)] if labels is not None else None

    return sample


@torch.no_grad()
def recompute_batchnorm(G: nn.Module, m: Models, cfg: RunConfig, *, autocast: Autocast) -> None:
    """Set G's BatchNorm running statistics (the EMA copy's, with train.ema_batchnorm recomputed) to its own: the mean
    over the training inputs, in full batches of train.batch_size in stored order, of each batch's mean and unbiased
    variance, as a training step's BatchNorm takes them, with dropout off as G is evaluated. The live generator's
    running statistics, which the EMA copy otherwise takes, come from other weights and do not fit the average.
    Leaves G in eval mode, its momenta as they were; draws no random numbers."""
    assert m.data.source is not None
    norms = [layer for layer in G.modules() if isinstance(layer, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    G.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative mean over the batches
        norm.train()
    count, batch = len(m.data.source), cfg.train.batch_size
    for start in range(0, count - batch + 1, batch):
        source = m.data.inputs(torch.arange(start, start + batch))  # (batch, C_in, H, W) in [-1, 1], also for uploads
        with autocast():
            G(source.contiguous(memory_format=torch.channels_last))  # (batch, C, H, W)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    G.eval()


def evaluator(data: PairedDataset, cfg: RunConfig, device: torch.device) -> Any:
    """The translation metrics on the held-out pairs (core.metrics.paired), in place of the noise family's."""
    from core.metrics.paired import PairedEvaluator

    return PairedEvaluator(data, n_samples=cfg.schedule.eval_samples, device=device)
