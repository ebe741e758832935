"""The style-based generator and its residual discriminator (StyleGAN2, Karras et al. 2020): architecture only.

Generator: a mapping network (`model.mapping_layers` equalized fully connected layers at learning-rate multiplier
`model.mapping_lr_mul`, the paper's 0.01) turns the pixel-normalised latent z (B, Z), and the normalised label
embedding when conditional, into w (B, W); the synthesis network starts from a learned constant 4×4 input and, at
each resolution, runs modulated and demodulated 3×3 convolutions with per-pixel noise of learned strength, and adds
a toRGB of its features to the upsampled image so far (the skip generator). Layer i takes its own w, so that
styles can be mixed per layer; the tracked mean of w (`w_avg`) is what truncation pulls toward.

Discriminator: fromRGB at the top resolution, then residual blocks down to 4×4, the minibatch standard deviation,
a 3×3 convolution and two fully connected layers; a conditional D adds the projection term (Miyato & Koyama 2018).
With `model.spectral_norm` every weight of D, the projection's codes included, is spectrally normalised (`spectral`);
by default D is regularized by R1 alone, as in the paper.

Every weight has an equalized learning rate: it is stored N(0, 1) / lr_multiplier and scaled at run time by
lr_multiplier / sqrt(fan_in). Up- and down-sampling use the paper's [1, 3, 3, 1] binomial filter, as depthwise
(transposed) convolutions with zero padding. Channels at resolution r are min(width · image_size / r, max(512, width)):
`model.width` is the channel count at the top resolution and it doubles per halving up to 512, so that
width 32 at 1024 px is the paper's config F and 16–32 px runs with width 8–64 are small on the CPU.

Progressive growing (Karras et al. 2018, `train.progressive`): both networks run only up to a current resolution
r and fade the newest one in by α. G's skip architecture already sums an RGB image per resolution, so the image at
r is the upsampled image of r/2 plus α times r's toRGB (at α = 0 exactly the lower resolution's image, at α = 1 the
full block): ProGAN's lerp between the upsampled old output and the new one. G then repeats each pixel up to the
image size (nearest), so that every consumer of its images (D, grids, evaluation) gets (B, C, H, W) at the full side
and sees the effective resolution as it is. D averages its input back down to r (the exact inverse of that
repetition), runs a fromRGB at r and the blocks below it, and blends the new top block's output with a fromRGB of
the image averaged down to r/2 by α. The phase is `G.growth` (a buffer, so that the EMA copy and a checkpoint carry
it) and `D.resolution`/`D.alpha`; the family sets both at every step from the step alone.

`G(z, labels=None, *, truncation=None)` maps (B, Z) to (B, C, H, W) in about [-1, 1]; in eval mode the noise inputs
are fixed buffers, so the same z gives the same image, except inside `fresh_noise`, where each sample draws its own
noise maps from a seeded generator (the evaluation's samples, as StyleGAN2's metrics draw them). `D(x,
labels=None)` returns `(logits (B,), features (B, F), None)`, the shape of the noise family's discriminators.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from core.clusters import clusters_of, clusters_within
from core.config import RunConfig
from core.networks import group_codes, minibatch_std

LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' scale through a leaky ReLU (He et al. 2015)
W_AVG_BETA = 0.995  # the tracked mean of w moves this slowly at each generator step


def build_generator(cfg: RunConfig, *, channels: int, num_classes: int) -> StyleGenerator:
    m = cfg.model
    return StyleGenerator(
        z_dim=m.z_dim,
        w_dim=m.w_dim or m.z_dim,
        mapping_layers=m.mapping_layers,
        mapping_lr_mul=m.mapping_lr_mul,
        image_size=m.image_size,
        channels=channels,
        width=m.g_width or m.width,
        num_classes=m.label_classes(num_classes),
        clusters=m.clusters > 0,
        class_clusters=m.class_clusters,
        groups=m.label_groups(channels),
        progressive=cfg.train.progressive is not None,
    )


def build_discriminator(cfg: RunConfig, *, channels: int, num_classes: int) -> StyleDiscriminator:
    m, grow = cfg.model, cfg.train.progressive
    return StyleDiscriminator(
        image_size=m.image_size,
        channels=channels,
        width=m.width,
        num_classes=m.label_classes(num_classes),
        groups=m.label_groups(channels),
        start_resolution=grow.start_resolution if grow is not None else None,
        sn=m.spectral_norm,
    )


def channels_at(resolution: int, *, image_size: int, width: int) -> int:
    """Feature channels at a resolution: `width` at the top, doubling per halving, at most max(512, width)."""
    return min(width * image_size // resolution, max(512, width))


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of (B, F) to unit mean square (pixel norm over features)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """A fully connected layer with an equalized learning rate, optionally followed by a scaled leaky ReLU."""

    def __init__(
        self, in_features: int, out_features: int, *, lr_mul: float = 1.0, bias_init: float = 0.0, act: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)  # (B, out)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.act else x


class EqualConv2d(nn.Module):
    """A convolution (stride 1, same padding) with an equalized learning rate, optionally before a scaled leaky
    ReLU; `down` blurs and halves its input first."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        bias: bool = True,
        act: bool = True,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.act, self.down = act, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample(x)  # (B, C, H/2, W/2)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.act else x


def _binomial(x: torch.Tensor) -> torch.Tensor:
    """The [1, 3, 3, 1] ⊗ [1, 3, 3, 1] filter (sums to 1), one per channel of x: (C, 1, 4, 4)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=x.dtype)
    k = torch.outer(k, k) / 64.0  # (4, 4)
    return k.expand(x.shape[1], 1, 4, 4)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zeros between the pixels, then the binomial filter (gain 4)."""
    return F.conv_transpose2d(x, _binomial(x) * 4.0, stride=2, padding=1, groups=x.shape[1])


def downsample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): the binomial filter, then every other pixel."""
    return F.conv2d(x, _binomial(x), stride=2, padding=1, groups=x.shape[1])


def fade_reals(x: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """Real images as a growing G makes them (ProGAN's real-image fade): averaged down to `resolution`, blended by
    `alpha` with their further halved and re-upsampled version (G's own upsampling, so that at α = 0 the reals are
    exactly what the lower resolution's output upsampled can be), and repeated back to their side. (B, C, S, S) ->
    (B, C, S, S)."""
    side = x.shape[-1]
    if resolution == side and alpha >= 1:
        return x
    x = F.avg_pool2d(x, side // resolution)  # (B, C, r, r)
    if alpha < 1:
        x = torch.lerp(upsample(F.avg_pool2d(x, 2)), x, alpha)
    return F.interpolate(x, scale_factor=side // resolution, mode="nearest")  # (B, C, S, S)


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled per sample by a style from w (modulation), and whose output
    channels are rescaled to unit expected variance (demodulation), computed as scale → shared conv → rescale, which
    equals the paper's per-sample weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # w -> styles, starting at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, C_in)
        weight = self.weight * self.weight_gain  # (C_out, C_in, k, k)
        x = x * styles[:, :, None, None].to(x.dtype)  # (B, C_in, H, W)
        x = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)  # (B, C_out, H, W)
        if self.demodulate:
            # 1 / sqrt(sum over C_in, k, k of (weight · style)^2), per sample and output channel.
            sigma = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # (B, C_out)
            x = x * (sigma + 1e-8).rsqrt()[:, :, None, None].to(x.dtype)
        return x


class StyleLayer(nn.Module):
    """Modulated 3×3 convolution (after upsampling, in the first layer of a block), noise, bias, leaky ReLU."""

    noise_const: torch.Tensor  # (1, 1, H, W)

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int, up: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim=w_dim)
        self.up = up
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # The noise eval mode uses, so that a latent always gives the same image.
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.noise_source: torch.Generator | None = None  # set by `fresh_noise`

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise` (B or 1, 1, H, W) replaces the layer's own (projection optimises it per image)."""
        if self.up:
            x = upsample(x)  # (B, C_in, 2H, 2W)
        x = self.conv(x, w)  # (B, C_out, H, W)
        if noise is not None:
            noise = noise.to(x.dtype)
        elif self.noise_source is not None:  # drawn on the CPU: the same maps on every device
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], generator=self.noise_source)
            noise = noise.to(device=x.device, dtype=x.dtype)  # (B, 1, H, W)
        elif self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)  # (1, 1, H, W)
        x = x + noise * self.noise_strength.to(x.dtype) + self.bias[None, :, None, None].to(x.dtype)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


@contextlib.contextmanager
def fresh_noise(G: nn.Module, source: torch.Generator) -> Iterator[None]:
    """Inside the block, every style layer of G draws a noise map per sample from `source` (a CPU generator)
    instead of its fixed `noise_const`: the noise a sample gets in training, which StyleGAN2's metrics give each
    generated image too. A seeded `source` keeps an evaluation reproducible; a G without style layers is unchanged."""
    layers = [m for m in G.modules() if isinstance(m, StyleLayer)]
    for layer in layers:
        layer.noise_source = source
    try:
        yield
    finally:
        for layer in layers:
            layer.noise_source = None


class ToRGB(nn.Module):
    """A modulated 1×1 convolution to the image's channels, not demodulated, with a bias."""

    def __init__(self, in_channels: int, channels: int, *, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim=w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None].to(x.dtype)  # (B, C, H, W)


class MappingNetwork(nn.Module):
    """z (B, Z) [and labels (B,)] -> w (B, W), with the tracked mean of w as the buffer `w_avg`. It embeds one code
    per label id (`num_classes` of them): a class, a cluster, or a class's cluster. A cluster-conditioned network
    (`model.clusters`, core.clusters) holds the clusters' cumulative real frequencies as the buffer `cluster_cdf`
    (K,) float64 and, given no labels, picks each latent's cluster from the latent itself; with clusters within
    classes (`class_clusters` k) `cluster_cdf` holds each class's (classes · k,) and, given a class, the network
    picks the cluster within it from the latent (label id class · k + cluster). With a cluster per channel
    (`groups` channels, `model.cluster_channels`) it holds each channel's (groups · K,), picks every channel's
    cluster from the latent, and embeds the sum of one code per channel (`group_codes`)."""

    w_avg: torch.Tensor  # (W,)
    cluster_cdf: torch.Tensor | None  # (K,) float64, when cluster-conditioned

    def __init__(
        self,
        *,
        z_dim: int,
        w_dim: int,
        layers: int,
        num_classes: int,
        clusters: bool = False,
        class_clusters: int = 0,
        groups: int = 1,
        lr_mul: float = 0.01,
    ) -> None:
        """`lr_mul`: the layers' learning-rate multiplier (`model.mapping_lr_mul`; the paper's 0.01)."""
        super().__init__()
        self.num_classes, self.class_clusters, self.groups = num_classes, class_clusters, groups
        self.embed = nn.Parameter(torch.randn(num_classes * groups, w_dim)) if num_classes else None
        sizes = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, act=True) for a, b in itertools.pairwise(sizes)])
        self.register_buffer("w_avg", torch.zeros(w_dim))
        # One cdf per class (clusters within classes) or per group (a cluster per channel), uniform until set.
        per = class_clusters or num_classes
        copies = num_classes // per if class_clusters else groups
        uniform = torch.linspace(1.0 / per, 1.0, per, dtype=torch.float64).repeat(copies) if per else None
        self.register_buffer("cluster_cdf", uniform if clusters or class_clusters else None)

    def ids(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The label id (B,) each latent (B, Z) is mapped with: its class, its cluster (picked from it when no
        labels are given) or its class's cluster (picked from it within the given class), or None."""
        if self.class_clusters:
            if labels is None:
                raise ValueError("this generator is conditional: give it a label per latent")
            assert self.cluster_cdf is not None
            return clusters_within(z, labels, self.cluster_cdf, self.class_clusters)
        if labels is None and self.cluster_cdf is not None:
            return clusters_of(z, self.cluster_cdf, self.groups)
        return labels

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        ids: torch.Tensor | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """w (B, W) of latents z (B, Z) given their labels, or given their label ids (`ids`, from `ids`) directly,
        as training does to judge each fake in D on the id it was made with."""
        x = normalize_2nd_moment(z)  # (B, Z)
        ids = self.ids(z, labels) if ids is None else ids
        if self.embed is not None:
            if ids is None:
                raise ValueError("this generator is conditional: give it a label per latent")
            code = group_codes(self.embed, ids, self.num_classes, self.groups)  # (B, W)
            x = torch.cat([x, normalize_2nd_moment(code)], dim=1)  # (B, Z + W)
        w = self.net(x)  # (B, W)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().float().mean(0), 1.0 - W_AVG_BETA)
        return w


class StyleGenerator(nn.Module):
    growth: torch.Tensor | None  # (2,) the current resolution and fade-in α of a progressive generator, else None

    def __init__(
        self,
        *,
        z_dim: int,
        w_dim: int,
        mapping_layers: int,
        image_size: int,
        channels: int,
        width: int,
        num_classes: int,
        clusters: bool = False,
        class_clusters: int = 0,
        groups: int = 1,
        progressive: bool = False,
        mapping_lr_mul: float = 0.01,
    ) -> None:
        """`num_classes`: the label ids w is conditioned on (classes; with `clusters` the k-means clusters, which
        the mapping network then picks from each latent when it is given no labels; with `class_clusters` k, k
        clusters in each of num_classes / k classes, the cluster picked from the latent within the given class)."""
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        # What a caller must pass labels for: none, or the classes
        self.num_classes = 0 if clusters else num_classes // (class_clusters or 1)
        self.image_size = image_size
        self.mapping = MappingNetwork(
            z_dim=z_dim,
            w_dim=w_dim,
            layers=mapping_layers,
            num_classes=num_classes,
            clusters=clusters,
            class_clusters=class_clusters,
            groups=groups,
            lr_mul=mapping_lr_mul,
        )
        resolutions = [2**i for i in range(2, int(math.log2(image_size)) + 1)]  # 4, 8, ..., image_size
        ch = [channels_at(r, image_size=image_size, width=width) for r in resolutions]
        self.const = nn.Parameter(torch.randn(ch[0], 4, 4))
        # Block i: its style layers (one at 4×4, then upsample + two), and its toRGB, which takes the next w.
        self.layers = nn.ModuleList([StyleLayer(ch[0], ch[0], w_dim=w_dim, resolution=4, up=False)])
        self.to_rgb = nn.ModuleList([ToRGB(ch[0], channels, w_dim=w_dim)])
        for r, (c_in, c_out) in zip(resolutions[1:], itertools.pairwise(ch), strict=True):
            self.layers.append(StyleLayer(c_in, c_out, w_dim=w_dim, resolution=r, up=True))
            self.layers.append(StyleLayer(c_out, c_out, w_dim=w_dim, resolution=r, up=False))
            self.to_rgb.append(ToRGB(c_out, channels, w_dim=w_dim))
        self.num_ws = len(self.layers) + 1  # every style layer, and the last toRGB
        # A buffer rather than attributes: the EMA generator copies buffers at every update, and a checkpoint keeps
        # it, so that a generation from a checkpoint taken while growing shows what its grid showed.
        full = torch.tensor([float(image_size), 1.0])
        self.register_buffer("growth", full if progressive else None)

    @property
    def cluster_cdf(self) -> torch.Tensor | None:
        """The clusters' cumulative real frequencies (K,) of a cluster-conditioned generator, else None."""
        return self.mapping.cluster_cdf

    def set_cluster_frequencies(self, cdf: torch.Tensor) -> None:
        """Use the real data's cumulative cluster frequencies (K,) (core.clusters.cluster_cdf), or each class's
        (classes · k,) (core.clusters.class_cluster_cdf)."""
        assert self.mapping.cluster_cdf is not None and cdf.shape == self.mapping.cluster_cdf.shape
        self.mapping.cluster_cdf.copy_(cdf)

    def label_ids(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The label id (B,) the mapping network gives each latent (B, Z) with these labels (see MappingNetwork.ids)."""
        return self.mapping.ids(z, labels)

    def clusters_of(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster (B,) that a call without labels gives each latent (B, Z)."""
        assert self.mapping.cluster_cdf is not None, "this generator is not cluster-conditioned"
        return clusters_of(z, self.mapping.cluster_cdf, self.mapping.groups)

    def grow(self, resolution: int, alpha: float) -> None:
        """Run up to `resolution` px, its toRGB weighted by `alpha` (progressive growing)."""
        if self.growth is None:
            raise ValueError("this generator was built without progressive growing")
        self.growth.copy_(torch.tensor([float(resolution), float(alpha)]))

    def phase(self) -> tuple[int, float]:
        """(resolution, α) that synthesis runs at: (image_size, 1) unless growing."""
        if self.growth is None:
            return self.image_size, 1.0
        resolution, alpha = self.growth.tolist()
        return int(resolution), float(alpha)

    def active_ws(self) -> int:
        """How many of the ws the current phase uses (all of them unless growing): the style layers up to the
        current resolution and its toRGB."""
        return 2 * int(math.log2(self.phase()[0])) - 2

    def truncate(self, w: torch.Tensor, psi: float | None) -> torch.Tensor:
        """w pulled toward the tracked mean: w_avg + ψ (w - w_avg); ψ None or 1 leaves it."""
        if psi is None or psi == 1:
            return w
        return self.mapping.w_avg.to(w.dtype).lerp(w, psi)

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """ws (B, num_ws, W), one w per layer -> images (B, C, H, W); `noise`, one map (B, 1, r, r) per style layer
        in the order of `self.layers`, replaces the layers' own."""
        maps: list[torch.Tensor | None] = list(noise) if noise is not None else [None] * len(self.layers)
        resolution, alpha = self.phase()
        x = self.const.to(ws.dtype).expand(ws.shape[0], -1, -1, -1)  # (B, C4, 4, 4)
        x = self.layers[0](x, ws[:, 0], maps[0])
        image = self.to_rgb[0](x, ws[:, 1])  # (B, C, 4, 4)
        for i, to_rgb in enumerate(self.to_rgb[1 : int(math.log2(resolution)) - 1]):
            x = self.layers[2 * i + 1](x, ws[:, 2 * i + 1], maps[2 * i + 1])  # (B, C_r, r, r)
            x = self.layers[2 * i + 2](x, ws[:, 2 * i + 2], maps[2 * i + 2])
            rgb = to_rgb(x, ws[:, 2 * i + 3])  # (B, C, r, r)
            if 8 << i == resolution and alpha < 1:  # the resolution fading in
                rgb = rgb * alpha
            image = upsample(image) + rgb
        if resolution < self.image_size:  # growing: each pixel repeated up to the full side
            image = F.interpolate(image, scale_factor=self.image_size // resolution, mode="nearest")
        return image  # (B, C, H, W)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        truncation: float | None = None,
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images of latents z (B, Z) given their labels, or their label ids (`ids`: the ids D is conditioned on,
        which with clusters within classes name the cluster as well as the class)."""
        w = self.truncate(self.mapping(z, labels, ids=ids), truncation)  # (B, W)
        return self.synthesis(w[:, None].expand(-1, self.num_ws, -1))  # (B, C, H, W)


def spectral(layer: EqualConv2d | EqualLinear, on: bool) -> nn.Module:
    """The layer with its weight divided by its largest singular value (Miyato et al. 2018, the weight reshaped to
    (out, in · k · k) as SNGAN and torch do it), and without the equalized-lr gain 1 / sqrt(fan_in), when `on`.

    Spectral norm makes the layer's linear map 1-Lipschitz; multiplying by the constant gain afterwards would make it
    1 / sqrt(fan_in)-Lipschitz instead, which compounds over D's layers into a logit orders of magnitude below 1 that
    the biases cannot restore. The gain is not needed for what it does elsewhere: the normalised weight has the same
    scale in every layer whatever its fan-in, and since W / σ(W) does not change with the stored weight's scale, the
    stored weights stay N(0, 1) and Adam moves every layer's by the same relative step, as equalized lr intends. What
    is left is 1-Lipschitz up to the constant √2 of the scaled leaky ReLU (and the binomial blur, which sums to 1)."""
    if not on:
        return layer
    layer.weight_gain = 1.0
    return spectral_norm(layer)


class DBlock(nn.Module):
    """Two 3×3 convolutions, the second halving the resolution, beside a 1×1 skip that halves it too; the sum
    scaled by 1/sqrt(2) keeps the variance. `sn`: spectral norm on the three (see `spectral`)."""

    def __init__(self, in_channels: int, out_channels: int, *, sn: bool = False) -> None:
        super().__init__()
        self.conv0 = spectral(EqualConv2d(in_channels, in_channels, 3), sn)
        self.conv1 = spectral(EqualConv2d(in_channels, out_channels, 3, down=True), sn)
        self.skip = spectral(EqualConv2d(in_channels, out_channels, 1, bias=False, act=False, down=True), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)  # (B, C_out, H/2, W/2)


class StyleDiscriminator(nn.Module):
    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        width: int,
        num_classes: int,
        groups: int = 1,
        start_resolution: int | None = None,
        sn: bool = False,
    ) -> None:
        """`start_resolution`: a progressive D's first resolution; it gets a fromRGB at each resolution from there
        up to image_size / 2 (`grow_from_rgb`, the highest first) besides the top one. `sn` (`model.spectral_norm`):
        spectral norm on every weight (`spectral`), the projection's class codes included, as in SNGAN's projection
        discriminator; off, D is regularized by R1 alone, as in the paper."""
        super().__init__()
        self.image_size = image_size
        resolutions = [2**i for i in range(int(math.log2(image_size)), 1, -1)]  # image_size, ..., 4
        ch = [channels_at(r, image_size=image_size, width=width) for r in resolutions]
        self.from_rgb = spectral(EqualConv2d(channels, ch[0], 1), sn)
        lowest = resolutions.index(start_resolution) if start_resolution is not None else 0
        self.grow_from_rgb = nn.ModuleList([spectral(EqualConv2d(channels, c, 1), sn) for c in ch[1 : lowest + 1]])
        self.resolution, self.alpha = image_size, 1.0  # the phase of a progressive D (see `grow`)
        self.blocks = nn.Sequential(*[DBlock(a, b, sn=sn) for a, b in itertools.pairwise(ch)])
        c4 = ch[-1]
        self.conv = spectral(EqualConv2d(c4 + 1, c4, 3), sn)  # after the minibatch std feature
        self.fc = spectral(EqualLinear(c4 * 16, c4, act=True), sn)
        self.out = spectral(EqualLinear(c4, 1), sn)
        self.num_classes, self.groups = num_classes, groups
        self.embed = nn.Parameter(torch.randn(num_classes * groups, c4) / math.sqrt(c4)) if num_classes else None
        if sn and self.embed is not None:
            spectral_norm(self, name="embed")  # the (codes, C4) table's largest singular value to 1

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        growing = self.resolution < self.image_size or self.alpha < 1
        h = self._grown(x) if growing else self.blocks(self.from_rgb(x))  # (B, C4, 4, 4)
        h = self.conv(minibatch_std(h))  # (B, C4, 4, 4)
        features = self.fc(h.flatten(1))  # (B, C4)
        logits = self.out(features).squeeze(1)  # (B,)
        if self.embed is not None and labels is not None:
            code = group_codes(self.embed, labels, self.num_classes, self.groups)  # (B, C4)
            logits = logits + (code.to(features.dtype) * features).sum(1)  # projection
        return logits, features, None

    def grow(self, resolution: int, alpha: float) -> None:
        """Judge images at `resolution` px, its top block blended in by `alpha` (progressive growing)."""
        if resolution != self.image_size and self._level(resolution) > len(self.grow_from_rgb):
            raise ValueError(f"this discriminator grows from {self.image_size >> len(self.grow_from_rgb)} px")
        self.resolution, self.alpha = resolution, alpha

    def _level(self, resolution: int) -> int:
        """How many halvings `resolution` is below image_size: the index of its block."""
        return int(math.log2(self.image_size // resolution))

    def _from_rgb_at(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """fromRGB of x at the resolution `level` halvings below image_size."""
        return self.from_rgb(x) if level == 0 else self.grow_from_rgb[level - 1](x)

    def _grown(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) at any side that is a multiple of the current resolution r -> (B, C4, 4, 4): averaged down
        to r, fromRGB at r and the blocks below it, the new top block faded in by α over a fromRGB at r/2."""
        if x.shape[-1] > self.resolution:
            x = F.avg_pool2d(x, x.shape[-1] // self.resolution)  # (B, C, r, r)
        level = self._level(self.resolution)
        h = self._from_rgb_at(x, level)  # (B, C_r, r, r)
        if level < len(self.blocks):
            h = self.blocks[level](h)  # (B, C_r/2, r/2, r/2)
            if self.alpha < 1:
                h = torch.lerp(self._from_rgb_at(F.avg_pool2d(x, 2), level + 1), h, self.alpha)
        return self.blocks[level + 1 :](h)  # type: ignore[no-any-return]
