"""The SRGAN family (Ledig et al. 2017): super-resolution by `model.scale` (2, 4 or 8). An SRResNet generator maps
a low-resolution image (B, C, S / scale, S / scale) to a high-resolution one (B, C, S, S); the paper's discriminator
judges high-resolution images as real or super-resolved.

G's loss: the pixel content loss (`loss.content`: mse, or l1) to the high-resolution image; after the first
`train.pretrain_steps` steps (the SRResNet pretraining, on the pixel loss alone, in which D does not train) also
`loss.feature_weight` times the feature loss, the mean squared difference of the feature maps of the super-resolved
and the high-resolution image in `loss.feature_net` (the discriminator's eight convolutional blocks, averaged; the
shipped digits classifier's second block; or VGG-19's phi_5,4 from a weights file), and `loss.adversarial_weight`
(1e-3) times the adversarial term (`loss.kind`, through core.losses; with `loss.relativistic`, ESRGAN's relativistic
average loss, against D's logits on the real batch). In both phases `loss.gradient_weight` adds the
gradient loss (the mean absolute difference of the Sobel derivatives of the super-resolved and the high-resolution
image), and after pretraining `loss.energy_weight` the gradient-energy loss (the mean squared difference of the
local means of their Sobel magnitudes over `loss.energy_window` px windows: as much detail as the real image has in
each window, wherever it falls; squared, so that windows short of much detail weigh more than nearly flat ones, where
any added detail costs PSNR for next to no sharpness). With `loss.psnr_weighting` the pixel and gradient terms of
each image weigh 1 / its squared error after pretraining, as the gradient of the mean per-image PSNR does. The
phase follows from the step number alone, so a resumed run continues in the phase it stopped in; so do the phase's
learning rates (`train.phase_schedule`: cosine within each phase; `train.lr_g_adversarial`: G's rate after
pretraining). `train.flips` mirrors each high-resolution image at random
and `train.channel_orders` shuffles its channels (the global random stream, which checkpoints keep) before its input
is made; `train.downscaled_copies` adds training patches of photos downscaled (`split_data`, core.superres). With
`train.adversarial_ema` the family keeps a moving average of G's weights over the adversarial phase (`G_avg`, in
checkpoints), and G takes its weights after the last step's update. With
`train.interpolation` the family
keeps the pretrained generator (`G_psnr`, in checkpoints) and, after the last step's update, sets G's weights to
(1 - interpolation)·G_psnr's + interpolation·G's (ESRGAN's network interpolation, Wang et al. 2018): a point between
the PSNR-oriented and the adversarially trained generator on the perception-distortion curve. With
`train.detail_blend` G keeps the adversarially trained weights and G_psnr follows G through the pretraining; the run
serves `DetailBlend` of the two (`served`): their outputs mixed per pixel by the pretrained output's own detail.

The loop draws the high-resolution batch in its data order (`Step.next_batch`); the family makes its
low-resolution inputs with Pillow's bicubic downscaling (core.superres). The data are an SRDataset of any image
dataset (the loop's `split_data` hook holds a split out); the sample grid shows held-out images as low-res (enlarged
by pixel repetition) | bicubic | SR | HR; `sampler` super-resolves the held-out inputs in order, and `evaluator`
compares the outputs with the high-resolution images, beside the bicubic baseline (core.metrics.superres).

`generator(cfg, info)` builds the generator a checkpoint stores (`G.*`, `G_ema.*`), as translation jobs load it: in
eval mode, G(x) maps (B, C, h, w) in [-1, 1] to (B, C, scale·h, scale·w) in [-1, 1], deterministically;
`translator(G, cfg, path)` is what they apply (with train.detail_blend, G blended with the checkpoint's G_psnr).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from core import grids
from core.checkpoint import read_module_state
from core.config import RunConfig
from core.datasets import Dataset
from core.families import Step, StepStats, eval_mode, grad_norm
from core.families.pix2pix import adversarial_scale
from core.losses import discriminator_loss, generator_loss
from core.networks_sr import SRDiscriminator, SRResNet, load_vgg19_features, vgg19_weights_path
from core.paired import sobel_gradients, sobel_magnitude
from core.superres import SRDataset, bicubic_upscale, downscale, downscaled_copies, hold_aside, sr_dataset

EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]
GRID_IMAGES, GRID_PER_ROW = 8, 2  # held-out images in the sample grid, and (low-res | bicubic | SR | HR)s a row
SAMPLE_BATCH = 64
SHARPNESS_PATCHES = 256  # training images that train.interpolation_sharpness measures a blend's sharpness on
DEFAULT_BLOCKS = 8
PSNR_WEIGHT_EPS = 1e-5  # added to each image's mean squared error (in [-1, 1]) before loss.psnr_weighting inverts it


@dataclass
class Models:
    """An SRGAN's networks and optimizers, the frozen network of its feature loss (None for the discriminator's own
    features or none), and the data."""

    G: nn.Module  # SRResNet
    D: nn.Module  # SRDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    features: nn.Module | None
    data: SRDataset
    G_psnr: nn.Module | None = None  # with train.interpolation: G as the pretraining left it
    G_avg: nn.Module | None = None  # with train.adversarial_ema: the moving average of G over the adversarial phase

    def modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint stores, by name (the loop adds the EMA copy of G as `G_ema`)."""
        kept = {"G_psnr": self.G_psnr, "G_avg": self.G_avg}
        return {"G": self.G, "D": self.D} | {name: module for name, module in kept.items() if module is not None}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}


def generator(cfg: RunConfig, info: dict[str, Any]) -> SRResNet:
    """The SRResNet of a run from its config and data facts (a checkpoint's `data`): width model.g_width (else
    model.width), model.res_blocks blocks (else 8), BatchNorm as model.g_batchnorm, the data's channels. Translation
    jobs load it (core.translate)."""
    m = cfg.model
    blocks = m.res_blocks or DEFAULT_BLOCKS
    width, channels = m.g_width or m.width, int(info["channels"])
    return SRResNet(
        channels=channels,
        width=width,
        blocks=blocks,
        scale=m.scale,
        bicubic_skip=m.bicubic_skip,
        batchnorm=m.g_batchnorm,
    )


def split_data(data: Dataset, cfg: RunConfig) -> SRDataset:
    """The loop's hook before training: the data (less `train.aside_columns`, with `train.downscaled_copies`'
    patches) with a held-out split and the held-out inputs (core.superres)."""
    aside = cfg.train.aside_columns or 0
    copied = downscaled_copies(hold_aside(data, aside), cfg.train.downscaled_copies, aside)
    return sr_dataset(copied, cfg.model.scale)


def build(cfg: RunConfig, data: Any, *, device: torch.device, latest: Path | None, emit: EventFn) -> Models:
    """Build the SRResNet, the discriminator, their Adam optimizers and the feature network on `device`."""
    if not isinstance(data, SRDataset):
        raise ValueError(f"model.arch: srgan needs image data with a held-out split; {cfg.dataset} has none")
    G = generator(cfg, data.info()).to(device, memory_format=torch.channels_last)
    D = SRDiscriminator(channels=data.channels, width=cfg.model.width, image_size=cfg.model.image_size)
    D = D.to(device, memory_format=torch.channels_last)
    features: nn.Module | None = None
    if cfg.loss.feature_net == "digits":
        if data.channels != 1:
            raise ValueError(
                f"loss.feature_net: the digits classifier reads 1-channel images, and {cfg.dataset} has "
                f"{data.channels} channels; use discriminator"
            )
        from core.metrics.classifier import load_digits_classifier  # core.metrics is imported only when used

        features = _DigitsFeatures(load_digits_classifier(device=device))
    elif cfg.loss.feature_net == "vgg19":
        features = load_vgg19_features(vgg19_weights_path(), device=device)
    betas = (cfg.train.beta1, cfg.train.beta2)
    return Models(
        G=G,
        D=D,
        opt_g=torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=betas),
        opt_d=torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas),
        features=features,
        data=data,
        G_psnr=copy.deepcopy(G).requires_grad_(False) if cfg.train.interpolation is not None else None,
        G_avg=copy.deepcopy(G).requires_grad_(False) if cfg.train.adversarial_ema is not None else None,
    )


class _DigitsFeatures(nn.Module):
    """The shipped digits classifier's second convolutional block (after its ReLU, before pooling): (B, 1, H, W) in
    [-1, 1] -> (B, 64, 16, 16) at the classifier's native 32 px."""

    def __init__(self, classifier: Any) -> None:  # core.metrics.classifier.DigitsClassifier
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.blocks[:7](self.classifier.prepare(x))  # type: ignore[no-any-return]


def psnr_weights(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Per-image weights (B,) of the pixel terms for loss.psnr_weighting: 1 / each image's mean squared error,
    over their batch mean, detached. The gradient of the mean per-image PSNR weighs each image's squared error so."""
    mse = (sr.detach().float() - hr.float()).square().mean((1, 2, 3)) + PSNR_WEIGHT_EPS  # (B,)
    inverse = 1.0 / mse
    return inverse / inverse.mean()


def pixel_loss(cfg: RunConfig, sr: torch.Tensor, hr: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The pixel content loss (loss.content) of outputs against their high-resolution images, in fp32, each image
    weighted by `weights` (B,) when given."""
    diff = sr.float() - hr.float()
    error = diff.square() if cfg.loss.content == "mse" else diff.abs()  # (B, C, S, S)
    return error.mean() if weights is None else (weights * error.mean((1, 2, 3))).mean()


def gradient_loss(sr: torch.Tensor, hr: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean absolute difference of the Sobel derivatives of outputs and their high-resolution images, in fp32,
    each image weighted by `weights` (B,) when given."""
    error = (sobel_gradients(sr.float()) - sobel_gradients(hr.float())).abs()  # (B, C, 2, S, S)
    return error.mean() if weights is None else (weights * error.mean((1, 2, 3, 4))).mean()


def gradient_energy_loss(sr: torch.Tensor, hr: torch.Tensor, window: int = 8) -> torch.Tensor:
    """The mean squared difference of the local mean Sobel magnitudes (over `window` px windows, every channel) of
    outputs and their high-resolution images, in fp32: how much detail each window has, not where."""

    def energy(x: torch.Tensor) -> torch.Tensor:
        # (B, C, S, S) -> (B, C, S / w, S / w); the epsilon keeps the square root's gradient finite on flat areas
        magnitude = sobel_magnitude(x.float(), 1e-6)
        return F.avg_pool2d(magnitude, window, ceil_mode=True)

    return (energy(sr) - energy(hr)).square().mean()


def random_symmetry(x: torch.Tensor) -> torch.Tensor:
    """Square images (B, C, S, S), each mirrored left-right, top-bottom and across its diagonal with probability 1/2
    apiece, by the global random stream (which checkpoints keep)."""
    flips = torch.rand(3, x.shape[0], 1, 1, 1, device=x.device) < 0.5  # (3, B, 1, 1, 1)
    x = torch.where(flips[0], x.flip(-1), x)
    x = torch.where(flips[1], x.flip(-2), x)
    return torch.where(flips[2], x.transpose(-1, -2), x)


def random_channel_order(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W), each with its channels in a random order (uniform over the C! orders: the ranks of C
    uniform draws), by the global random stream (which checkpoints keep)."""
    order = torch.rand(x.shape[0], x.shape[1], device=x.device).argsort(1)  # (B, C)
    return x.gather(1, order[:, :, None, None].expand_as(x))


def phase_rate_scale(cfg: RunConfig, step: int) -> float:
    """train.phase_schedule's factor on the learning rates at `step` (1-based): 1 (constant), or half a cosine from
    1 to 0 over the step's phase (cosine)."""
    if cfg.train.phase_schedule == "constant":
        return 1.0
    pretrain, total = min(cfg.train.pretrain_steps, cfg.train.steps), cfg.train.steps
    start, length = (0, pretrain) if step <= pretrain else (pretrain, total - pretrain)
    return 0.5 * (1.0 + math.cos(math.pi * (step - 1 - start) / max(1, length)))


def set_phase_rates(m: Models, cfg: RunConfig, step: int, pretraining: bool) -> None:
    """Scale the rates the loop set for this step by the phase schedule; in the adversarial phase G's rate starts
    from train.lr_g_adversarial when set."""
    scale = phase_rate_scale(cfg, step)
    g_scale = scale
    if not pretraining and cfg.train.lr_g_adversarial is not None:
        g_scale *= cfg.train.lr_g_adversarial / cfg.train.lr_g
    for opt, factor in ((m.opt_g, g_scale), (m.opt_d, scale)):
        if factor != 1.0:
            for group in opt.param_groups:
                group["lr"] *= factor


@torch.no_grad()
def interpolate(G: nn.Module, G_psnr: nn.Module, alpha: float) -> None:
    """ESRGAN's network interpolation, in place: G's parameters and BatchNorm statistics become
    (1 - alpha)·G_psnr's + alpha·G's (integer buffers, the batch counts, stay G's)."""
    psnr = G_psnr.state_dict()
    for name, value in G.state_dict().items():
        if value.is_floating_point():
            value.copy_(torch.lerp(psnr[name].to(value.dtype), value, alpha))


def detail(x: torch.Tensor, window: int) -> torch.Tensor:
    """The mean Sobel magnitude of images (N, C, H, W) in [-1, 1] over their channels: (N, 1, 1, 1) over the whole
    image (window 0), else (N, 1, H, W) over the window × window px neighbourhood of each pixel (odd window; the part
    of it inside the image at the borders)."""
    magnitude = sobel_magnitude(x.float().clamp(-1, 1)).mean(1, keepdim=True)  # (N, 1, H, W)
    if window == 0:
        return magnitude.mean((2, 3), keepdim=True)
    return F.avg_pool2d(magnitude, window, stride=1, padding=window // 2, count_include_pad=False)


def detail_blend(pretrained: torch.Tensor, adversarial: torch.Tensor, d0: float, window: int) -> torch.Tensor:
    """train.detail_blend on outputs (N, C, H, W) of the pretrained (P) and the adversarially trained generator (A):
    P + w·(A - P) per pixel, w = d² / (d² + d0²), d = `detail`(P, window)."""
    d2 = detail(pretrained, window).square()
    return pretrained + d2 / (d2 + d0**2) * (adversarial - pretrained)


class DetailBlend(nn.Module):
    """What a run with train.detail_blend serves: the adversarially trained G and the pretrained G_psnr on the same
    inputs, their outputs (in fp32) mixed by `detail_blend`."""

    def __init__(self, G: nn.Module, G_psnr: nn.Module, d0: float, window: int) -> None:
        super().__init__()
        self.G, self.G_psnr, self.d0, self.window = G, G_psnr, d0, window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return detail_blend(self.G_psnr(x).float(), self.G(x).float(), self.d0, self.window)


def served(G: nn.Module, G_psnr: nn.Module | None, cfg: RunConfig) -> nn.Module:
    """The module a run's grids, evaluations and translations apply: G, or with train.detail_blend the DetailBlend
    of G and the pretrained G_psnr."""
    d0 = cfg.train.detail_blend
    if d0 is None or G_psnr is None:
        return G
    return DetailBlend(G, G_psnr, d0, cfg.train.detail_window)


def translator(G: nn.Module, cfg: RunConfig, path: Path) -> nn.Module:
    """What a translation job applies for a checkpoint's generator G (core.translate): `served`, with the
    checkpoint's G_psnr beside G when train.detail_blend asks for it (a copy of G with G_psnr's weights, so on G's
    device)."""
    if cfg.train.detail_blend is None:
        return G
    state = read_module_state(path, "G_psnr")
    if not state:
        raise ValueError("this srgan checkpoint sets train.detail_blend but holds no pretrained generator (G_psnr)")
    G_psnr = copy.deepcopy(G)
    G_psnr.load_state_dict(state)
    return served(G, G_psnr, cfg)


@torch.no_grad()
def update_average(G_avg: nn.Module, G: nn.Module, decay: float, k: int) -> None:
    """train.adversarial_ema after the adversarial phase's k-th step (1-based), in place: G_avg's floating-point
    weights move towards G's by 1 - min(decay, 1 - 1 / k), the running mean of the phase's generators until it spans
    1 / (1 - decay) steps, then their moving average over about that many; integer buffers are G's. (A ramp such as
    (1 + k) / (10 + k) would hold every decay above 0.989 at that ramp through an 800-step phase.)"""
    current = min(decay, 1.0 - 1.0 / k)
    source = G.state_dict()
    for name, value in G_avg.state_dict().items():
        if value.is_floating_point():
            value.lerp_(source[name].to(value.dtype), 1.0 - current)
        else:
            value.copy_(source[name])


@torch.no_grad()
def sharpness_patches(hr: torch.Tensor, cfg: RunConfig) -> tuple[torch.Tensor, float]:
    """The inputs (n, C, s, s) of high-resolution images `hr` (n, C, S, S) and their mean Sobel magnitude: what
    `training_sharpness` compares a generator's outputs with."""
    hr = hr.float().cpu()
    return downscale(hr, cfg.model.scale), float(sobel_magnitude(hr).mean())


def training_patches(data: SRDataset, cfg: RunConfig) -> tuple[torch.Tensor, float]:
    """`sharpness_patches` of SHARPNESS_PATCHES training images evenly spaced through the data."""
    count = min(SHARPNESS_PATCHES, len(data))
    return sharpness_patches(data.batch(torch.linspace(0, len(data) - 1, count).round().long())[0], cfg)


@torch.no_grad()
def training_sharpness(
    G: nn.Module, patches: tuple[torch.Tensor, float], *, device: torch.device, autocast: Autocast
) -> float:
    """The sharpness ratio of G's outputs on `training_patches`: their mean Sobel magnitude over the high-resolution
    images', as the metric sharpness is on the held-out ones."""
    low, detail = patches
    return sharpness_ratio(super_resolve(G, low, device=device, autocast=autocast).cpu(), detail)


def sharpness_ratio(out: torch.Tensor, detail: float) -> float:
    """Outputs' (N, C, S, S) mean Sobel magnitude, clamped to [-1, 1] as they are served, over `detail`, the
    high-resolution images' (`sharpness_patches`)."""
    return float(sobel_magnitude(out.clamp(-1, 1)).mean()) / max(detail, 1e-12)


@torch.no_grad()
def sharpness_weight(
    G: nn.Module, G_psnr: nn.Module, data: SRDataset, cfg: RunConfig, *, device: torch.device, autocast: Autocast
) -> float:
    """train.interpolation_sharpness: the smallest blend weight (to 1/1024, by bisection) whose generator reaches that
    sharpness ratio (`training_sharpness`) on the images train.aside_columns keeps out of training, else on training
    images; 1 when even the adversarially trained G falls short. The sharpness of a blend rises with its weight and
    its PSNR falls, so this is the blend of best PSNR at that sharpness. G's weights are left as they were."""
    target = cfg.train.interpolation_sharpness
    assert target is not None
    patches = sharpness_patches(data.aside, cfg) if data.aside is not None else training_patches(data, cfg)
    blend = copy.deepcopy(G)

    def sharpness(weight: float) -> float:
        blend.load_state_dict(G.state_dict())
        interpolate(blend, G_psnr, weight)
        return training_sharpness(blend, patches, device=device, autocast=autocast)

    if sharpness(1.0) < target:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(10):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if sharpness(mid) >= target else (mid, hi)
    return hi


def feature_distance(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """The mean over layers of the mean squared difference of two lists of feature maps, in fp32."""
    terms = [F.mse_loss(f.float(), r.float()) for f, r in zip(fake, real, strict=True)]
    return torch.stack(terms).mean()


def relativistic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The relativistic average logistic loss (ESRGAN's) of logits (B,) and (B',), in fp32: the mean of
    -log sigmoid(real - mean(fake)) and -log(1 - sigmoid(fake - mean(real))). D minimises it as given; G minimises
    it with the roles swapped, `relativistic_loss(fake, real)`."""
    real, fake = real.float(), fake.float()
    above = F.binary_cross_entropy_with_logits(real - fake.mean(), torch.ones_like(real))
    below = F.binary_cross_entropy_with_logits(fake - real.mean(), torch.zeros_like(fake))
    return 0.5 * (above + below)


def train_step(m: Models, cfg: RunConfig, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]:
    """One step: while pretraining, a G update on the pixel loss alone; after it, a D update on high-resolution
    against super-resolved images, then a G update on the pixel, feature and adversarial terms. Returns
    `{"loss_d", "loss_g"}` (loss_d is 0 while D waits) and the step's stats."""
    _, hr, _ = at.next_batch()  # (B, C, S, S)
    pretraining = at.step <= cfg.train.pretrain_steps
    set_phase_rates(m, cfg, at.step, pretraining)
    if cfg.train.flips:
        hr = random_symmetry(hr).contiguous(memory_format=torch.channels_last)
    if cfg.train.channel_orders and hr.shape[1] > 1:
        hr = random_channel_order(hr).contiguous(memory_format=torch.channels_last)
    lr = downscale(hr, cfg.model.scale).contiguous(memory_format=torch.channels_last)  # (B, C, S/r, S/r)
    with at.autocast():
        sr = m.G(lr)  # (B, C, S, S)
    weights = psnr_weights(sr, hr) if cfg.loss.psnr_weighting and not pretraining else None  # (B,) or None
    pixel = pixel_loss(cfg, sr, hr, weights)
    stats: StepStats = {"loss_g_pixel": pixel.detach(), "pretraining": float(pretraining)}
    if cfg.loss.gradient_weight > 0:
        gradient = gradient_loss(sr, hr, weights)
        pixel = pixel + cfg.loss.gradient_weight * gradient
        stats["loss_g_gradient"] = gradient.detach()

    if pretraining:  # the SRResNet: the pixel (and gradient) loss alone, D untouched
        loss_g, loss_d = pixel, torch.zeros((), device=at.device)
        m.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm_g = grad_norm(m.G) if at.want_stats else None
        m.opt_g.step()
        # Keep the pretrained G to blend with; with train.detail_blend G_psnr follows G through the pretraining, so
        # that until the adversarial phase the blend of the two serves G's own outputs.
        if m.G_psnr is not None and (at.step == cfg.train.pretrain_steps or cfg.train.detail_blend is not None):
            m.G_psnr.load_state_dict(m.G.state_dict())
        stats |= {"loss_d": loss_d, "loss_g": loss_g.detach()}
        if grad_norm_g is not None:
            stats["grad_norm_g"] = grad_norm_g
        return {"loss_d": loss_d, "loss_g": loss_g}, stats

    noise_std = cfg.loss.instance_noise * (1.0 - at.done)  # instance noise anneals to zero over the run

    # Train the discriminator.
    m.D.requires_grad_(True)
    with at.autocast():
        if cfg.loss.relativistic:
            l_real, l_fake = m.D(hr)[0].float(), m.D(sr.detach())[0].float()  # (B,), (B,)
            loss_d = relativistic_loss(l_real, l_fake)
            stats_d = {
                "loss_d": loss_d.detach(),
                "d_real": torch.sigmoid(l_real - l_fake.mean()).mean().detach(),
                "d_fake": torch.sigmoid(l_fake - l_real.mean()).mean().detach(),
            }
        else:
            loss_d, stats_d = discriminator_loss(
                cfg.loss, D=m.D, real=hr, fake=sr.detach(), labels=None, fake_labels=None, noise_std=noise_std
            )
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    grad_norm_d = grad_norm(m.D) if at.want_stats else None
    m.opt_d.step()

    # Train the generator: stay near the high-resolution image, in pixels and in features, and fool D.
    m.D.requires_grad_(False)
    with at.autocast():
        judged = m.D(sr)  # (logits (B,), features, None)

        def judge_fn(x: torch.Tensor, labels: torch.Tensor | None) -> Any:
            # core.losses passes sr itself when there is no instance noise: reuse the pass already made.
            return judged if x is sr else m.D(x)

        judge: Any = judge_fn  # core.losses calls D(x, labels)

        real_judged = None  # D's pass over the real batch, made once for the terms that read it
        if cfg.loss.relativistic:
            with torch.no_grad():
                real_judged = m.D(hr)
            loss_adv = relativistic_loss(judged[0], real_judged[0])
            stats_g = {"loss_g_adv": loss_adv.detach()}
        else:
            loss_adv, stats_g = generator_loss(cfg.loss, D=judge, fake=sr, fake_labels=None, noise_std=noise_std)
        feature = torch.zeros((), device=at.device)
        if cfg.loss.feature_net == "discriminator":
            if real_judged is None:
                with torch.no_grad():
                    real_judged = m.D(hr)
            feature = feature_distance(judged[1], real_judged[1])
        elif m.features is not None:
            with torch.no_grad():
                real_map = m.features(hr)
            feature = feature_distance([m.features(sr)], [real_map])
    loss_g = pixel + cfg.loss.feature_weight * feature + adversarial_scale(cfg) * loss_adv
    if cfg.loss.energy_weight > 0:
        energy = gradient_energy_loss(sr, hr, cfg.loss.energy_window)
        loss_g = loss_g + cfg.loss.energy_weight * energy
        stats["loss_g_energy"] = energy.detach()
    m.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    grad_norm_g = grad_norm(m.G) if at.want_stats else None
    m.opt_g.step()
    if m.G_avg is not None and cfg.train.adversarial_ema is not None:
        update_average(m.G_avg, m.G, cfg.train.adversarial_ema, at.step - cfg.train.pretrain_steps)
        if at.step == cfg.train.steps:  # the run ends with the average of its adversarial phase
            m.G.load_state_dict(m.G_avg.state_dict())
    blends_weights = cfg.train.interpolation is not None and cfg.train.detail_blend is None
    if m.G_psnr is not None and blends_weights and at.step == cfg.train.steps:
        weight = cfg.train.interpolation
        if cfg.train.interpolation_sharpness is not None:
            weight = sharpness_weight(m.G, m.G_psnr, m.data, cfg, device=at.device, autocast=at.autocast)
            stats["interpolation"] = torch.tensor(weight)
        interpolate(m.G, m.G_psnr, weight)

    stats |= {**stats_d, **stats_g, "loss_g_feature": feature.detach(), "loss_g": loss_g.detach()}
    if grad_norm_d is not None and grad_norm_g is not None:
        stats |= {"grad_norm_d": grad_norm_d, "grad_norm_g": grad_norm_g}
    if cfg.loss.instance_noise > 0:
        stats["instance_noise"] = noise_std
    return {"loss_d": loss_d, "loss_g": loss_g}, stats


@dataclass(frozen=True)
class GridInputs:
    """The held-out images a run's sample grids show: inputs (N, C, s, s), their bicubic upscaling and the
    high-resolution images (N, C, S, S)."""

    low: torch.Tensor
    bicubic: torch.Tensor
    high: torch.Tensor
    served: Callable[[nn.Module], nn.Module]  # the module the grid shows for G (`served`)


def grid_inputs(cfg: RunConfig, data: SRDataset, m: Models, device: torch.device) -> GridInputs:
    """The first GRID_IMAGES held-out images."""
    assert data.held is not None and data.held_low is not None
    low = data.held_low[:GRID_IMAGES]
    return GridInputs(
        low=low.to(device),
        bicubic=bicubic_upscale(low, cfg.model.scale).to(device),
        high=data.held[:GRID_IMAGES].to(device),
        served=lambda G: served(G, m.G_psnr, cfg),
    )


@torch.no_grad()
def sample_grid(
    G: nn.Module, inputs: GridInputs, data: SRDataset, *, autocast: Autocast
) -> tuple[Image.Image, torch.Tensor]:
    """low-res (enlarged by pixel repetition) | bicubic | SR | HR for each grid image, GRID_PER_ROW images a row,
    and the outputs (N, C, S, S)."""
    G = inputs.served(G)
    with eval_mode(G), autocast():
        out = G(inputs.low.contiguous(memory_format=torch.channels_last)).float().detach()  # (N, C, S, S)
    low = F.interpolate(inputs.low.float(), size=out.shape[-1], mode="nearest")  # (N, C, S, S)
    rows = torch.stack([low, inputs.bicubic.float(), out, inputs.high.float()], dim=1)  # (N, 4, C, S, S)
    return grids.image_grid(rows.flatten(0, 1), nrow=4 * GRID_PER_ROW), out


def sampler(
    G: nn.Module, cfg: RunConfig, m: Models, *, device: torch.device, autocast: Autocast
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]:
    """sample_fn(n) -> (the outputs of G (as `served`) for the first n held-out inputs, None), in eval mode."""
    G = served(G, m.G_psnr, cfg)
    low = m.data.held_low
    assert low is not None

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return super_resolve(G, low[:n], device=device, autocast=autocast), None

    return sample


@torch.no_grad()
def super_resolve(G: nn.Module, low: torch.Tensor, *, device: torch.device, autocast: Autocast) -> torch.Tensor:
    """G's outputs (N, C, scale·h, scale·w) in fp32 for inputs (N, C, h, w), SAMPLE_BATCH at a time, G in eval
    mode."""
    with eval_mode(G):
        outs = []
        for start in range(0, len(low), SAMPLE_BATCH):
            x = low[start : start + SAMPLE_BATCH].to(device)  # (b, C, h, w)
            with autocast():
                outs.append(G(x.contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(outs)


def evaluator(data: SRDataset, cfg: RunConfig, device: torch.device) -> Any:
    """The super-resolution metrics on the held-out images (core.metrics.superres), in place of the noise family's."""
    from core.metrics.superres import SREvaluator

    return SREvaluator(data, n_samples=cfg.schedule.eval_samples, device=device)
