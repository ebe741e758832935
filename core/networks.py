"""Generators and discriminators: architecture only.

- `mlp`: fully connected G and D for 2-D point data.
- `dcgan`: Radford et al. 2016 as laid out in pytorch/examples `dcgan` (ConvTranspose2d/BatchNorm/ReLU generator
  ending in Tanh; Conv2d/BatchNorm/LeakyReLU(0.2) discriminator without BatchNorm on its first layer), for 16, 32,
  64 and 128 px and any channel count.
- `resnet`: the SNGAN residual networks (Miyato et al. 2018) for 32 and 64 px.
- `biggan`: BigGAN (Brock et al. 2019) for 32, 64 and 128 px, in core/networks_biggan.py.

With `model.clusters` (core.clusters) the labels are k-means cluster ids of the real images, and the generator
picks a cluster from each latent itself when it is given none, at the clusters' real frequencies (its buffer
`cluster_cdf`), so that `G(z)` samples the whole data.

Conditional generators see the label as an embedding concatenated to z (`concat`) or through conditional
BatchNorm (`cbn`); conditional discriminators add a projection term (Miyato & Koyama 2018) or an auxiliary
classifier head (AC-GAN, Odena et al. 2017).

`G(z, labels=None)` maps (B, z_dim) to (B, C, H, W) in [-1, 1] or (B, 2). `D(x, labels=None)` returns
`(logits (B',), features (B', F), class_logits (B', K) | None)` where B' = B / pack: PacGAN packing
(Lin et al. 2018) concatenates `pack` consecutive samples along channels before the first layer.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from core import networks_biggan
from core.clusters import clusters_of, group_digits
from core.config import RunConfig


def build_generator(cfg: RunConfig, *, channels: int, num_classes: int) -> nn.Module:
    """The generator that `cfg.model` describes, for data with `channels` (0 = 2-D points) and `num_classes`."""
    m = cfg.model
    classes, groups = m.label_classes(num_classes), m.label_groups(channels)
    width = m.g_width or m.width
    if m.arch == "biggan":
        return networks_biggan.build_generator(cfg, channels=channels, num_classes=num_classes)
    if m.arch == "mlp":
        return MLPGenerator(z_dim=m.z_dim, width=width, depth=m.depth)
    if m.arch == "dcgan":
        return DCGANGenerator(
            z_dim=m.z_dim,
            width=width,
            image_size=m.image_size,
            channels=channels,
            num_classes=classes,
            conditioning=m.g_conditioning,
            clusters=m.clusters > 0,
            label_groups=groups,
        )
    return ResNetGenerator(
        z_dim=m.z_dim,
        width=width,
        image_size=m.image_size,
        channels=channels,
        num_classes=classes,
        conditioning=m.g_conditioning,
        clusters=m.clusters > 0,
        label_groups=groups,
    )


def build_discriminator(cfg: RunConfig, *, channels: int, num_classes: int) -> nn.Module:
    """The discriminator that `cfg.model` describes. BatchNorm is left out under spectral norm and wgan-gp."""
    m = cfg.model
    if m.arch == "biggan":
        return networks_biggan.build_discriminator(cfg, channels=channels, num_classes=num_classes)
    classes = m.label_classes(num_classes)
    common: dict[str, Any] = {
        "width": m.width,
        "pack": m.pack,
        "sn": m.spectral_norm,
        "minibatch_std": m.minibatch_std,
        "num_classes": classes,
        "conditioning": m.d_conditioning,
    }
    if m.arch == "mlp":
        return MLPDiscriminator(depth=m.depth, **common)
    common["label_groups"] = m.label_groups(channels)
    if m.arch == "dcgan":
        batchnorm = not m.spectral_norm and cfg.loss.kind != "wgan-gp"
        return DCGANDiscriminator(
            image_size=m.image_size, channels=channels, batchnorm=batchnorm, depth=m.d_depth, **common
        )
    return ResNetDiscriminator(image_size=m.image_size, channels=channels, **common)


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces.


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(module) if on else module


def minibatch_std(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean std over groups of samples as one more feature (Karras et al. 2018). h: (B, C, ...). A group
    is the largest size up to `group` that divides the batch, so every group has the same size."""
    b = h.shape[0]
    g = max(size for size in range(1, min(group, b) + 1) if b % size == 0)
    y = h.float().reshape(g, b // g, *h.shape[1:])  # (G, B/G, C, ...)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # (B/G, C, ...)
    y = y.flatten(1).mean(1)  # (B/G,)
    y = y.repeat(g).reshape(b, 1, *([1] * (h.dim() - 2))).expand(b, 1, *h.shape[2:])  # (B, 1, ...)
    return torch.cat([h, y.to(h.dtype)], dim=1)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(B, C, ...) -> (B / pack, pack * C, ...): consecutive samples judged jointly (PacGAN)."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


class _ClusterPick(nn.Module):
    """A conv generator's label handling. It may be cluster-conditioned: `cluster_cdf` (groups · K,) float64 is then
    a buffer (saved with it) and a call without labels picks each latent's cluster (core.clusters.clusters_of). With
    `concat` conditioning it appends a label code to z (`embed`)."""

    cluster_cdf: torch.Tensor | None
    embed: nn.Embedding | None

    def _init_clusters(self, num_classes: int, on: bool, groups: int) -> None:
        cdf = torch.arange(1, num_classes + 1, dtype=torch.float64).repeat(groups) / num_classes if on else None
        self.register_buffer("cluster_cdf", cdf)
        self.label_groups = groups

    def set_cluster_frequencies(self, cdf: torch.Tensor) -> None:
        """Use the real data's cumulative cluster frequencies (groups · K,) (core.clusters.cluster_cdf)."""
        assert self.cluster_cdf is not None and cdf.shape == self.cluster_cdf.shape
        self.cluster_cdf.copy_(cdf)

    def clusters_of(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster (B,) that a call without labels gives each latent (B, Z)."""
        assert self.cluster_cdf is not None, "this generator is not cluster-conditioned"
        return clusters_of(z, self.cluster_cdf, self.label_groups)

    def _init_labels(self, *, z_dim: int, num_classes: int, conditioning: str, clusters: bool, groups: int) -> int:
        """Set up how a conv generator sees its labels: cluster picking, and the label code it concatenates to z
        (`embed`, with `concat` conditioning); returns the classes of its conditional BatchNorm (0: none)."""
        self._init_clusters(num_classes, clusters, groups)
        concat = num_classes and conditioning == "concat"
        self.embed = _label_code(num_classes, z_dim, groups) if concat else None
        return num_classes if conditioning == "cbn" else 0

    def _inputs(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latent (B, Z), or (B, 2Z) with the label code appended, and the labels (B,) of a call; a
        cluster-conditioned call without labels picks each latent's cluster."""
        if labels is None and self.cluster_cdf is not None:
            labels = self.clusters_of(z)
        if self.embed is not None:
            assert labels is not None, "a conditional generator needs labels"
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, 2 * z_dim)
        return z, labels


class GroupEmbedding(nn.Embedding):
    """The embedding of labels made of `groups` digits in base `num_classes` (a cluster per channel,
    core.clusters): the sum of one code per group, over √groups so that it keeps one code's scale. With one group
    it is nn.Embedding(num_classes, dim), parameters and all."""

    def __init__(self, num_classes: int, dim: int, groups: int = 1) -> None:
        super().__init__(num_classes * groups, dim)
        self.k, self.groups = num_classes, groups

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return super().forward(labels)
        return group_codes(self.weight, labels, self.k, self.groups)  # (B, dim)


def group_codes(table: torch.Tensor, ids: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """The rows (B, F) of a code table (k · groups, F) for label ids (B,): the id's row, or for ids made of `groups`
    digits in base k (a cluster per channel, core.clusters) the sum of one row per digit over √groups."""
    if groups == 1:
        return table[ids]
    rows = group_digits(ids, k, groups) + k * torch.arange(groups, device=ids.device)  # (B, groups)
    return F.embedding(rows, table).sum(-2) / math.sqrt(groups)


# Width of the class code of conditional BatchNorm (BigGAN's shared embedding is 128 wide).
CBN_CODE_DIM = 128


class Norm2d(nn.Module):
    """BatchNorm2d, or conditional BatchNorm with a per-class scale and shift when num_classes > 0.

    The scale and shift are linear in a class code, as in BigGAN (Brock et al. 2019): gain = 1 + W_g e(y),
    bias = W_b e(y), e(y) ~ N(0, I) of CBN_CODE_DIM. A plain per-class table (gain = G[y], bias = B[y]) is the
    same function but learns far too slowly under Adam, whose step is about lr per entry whatever the entry's
    scale: a gain of 1 moves 2e-4 a step, so after 2,000 steps the classes had barely separated and the
    conditional digits default honoured its labels 28 % of the time. Through the code, every entry of W moves
    every class, so the gains move about ||e||_1 ≈ 100 times faster. W starts at N(0, 0.02 / sqrt(dim)): each
    class starts with gain N(1, 0.02) and bias N(0, 0.02), DCGAN's BatchNorm init.
    """

    def __init__(self, features: int, num_classes: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.conditional = num_classes > 0
        self.bn = nn.BatchNorm2d(features, affine=not self.conditional)
        if self.conditional:
            self.embed = GroupEmbedding(num_classes, CBN_CODE_DIM, groups)  # N(0, 1) class codes
            std = 0.02 / math.sqrt(CBN_CODE_DIM)
            self.gain = nn.Parameter(torch.randn(features, CBN_CODE_DIM) * std)  # (F, E)
            self.bias = nn.Parameter(torch.randn(features, CBN_CODE_DIM) * std)  # (F, E)

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(h)
        if not self.conditional:
            return h
        assert labels is not None, "a conditional generator needs labels"
        code = self.embed(labels)  # (B, E)
        gain = 1.0 + F.linear(code, self.gain)  # (B, F)
        bias = F.linear(code, self.bias)  # (B, F)
        return h * gain[:, :, None, None] + bias[:, :, None, None]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Read the per-class tables of checkpoints written before the class code (`gain.weight`, `bias.weight`,
        (K, F)) as the same function: one-hot codes, W = the tables' deviation from gain 1 / bias 0."""
        table = state_dict.get(prefix + "gain.weight")
        if self.conditional and table is not None and table.shape[0] <= CBN_CODE_DIM:
            k = table.shape[0]
            code = torch.zeros(k, CBN_CODE_DIM, dtype=table.dtype)
            code[:, :k] = torch.eye(k, dtype=table.dtype)
            state_dict[prefix + "embed.weight"] = code
            state_dict[prefix + "gain"] = (table - 1.0).T @ code  # (F, E)
            state_dict[prefix + "bias"] = state_dict.pop(prefix + "bias.weight").T @ code  # (F, E)
            del state_dict[prefix + "gain.weight"]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ClassHead(nn.Module):
    """The conditional part of a discriminator: projection (a logit term) or AC-GAN (class logits)."""

    def __init__(self, features: int, num_classes: int, conditioning: str, sn: bool, groups: int = 1) -> None:
        super().__init__()
        self.conditioning = conditioning
        if conditioning == "projection":
            embed = GroupEmbedding(num_classes, features, groups)
            nn.init.normal_(embed.weight, 0.0, 0.02)  # N(0, 1) would swamp the logit with the projection term
            self.embed = _sn(embed, sn)
        else:
            assert groups == 1, "an AC-GAN head classifies single labels"
            self.classifier = _sn(nn.Linear(features, num_classes), sn)

    def forward(self, pooled: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(projection term (B,), class logits (B, K) | None) from pooled features (B, F)."""
        if self.conditioning == "projection":
            assert labels is not None, "a projection discriminator needs labels"
            return (self.embed(labels) * pooled).sum(1), None
        return torch.zeros((), device=pooled.device), self.classifier(pooled)


def _label_code(num_classes: int, z_dim: int, groups: int = 1) -> nn.Embedding:
    """The class code that a `concat` generator appends to z: N(0, 1 / z_dim) entries, so that it starts with
    norm ~1 like a one-hot label (Mirza & Osindero 2014), a tenth of z's at z_dim 100. An N(0, 1) code, as large
    as z, let the generator draw each class from the label alone and ignore z: one image per class (recall 0)."""
    embed = GroupEmbedding(num_classes, z_dim, groups)
    nn.init.normal_(embed.weight, 0.0, 1.0 / math.sqrt(z_dim))
    return embed


def _dcgan_init(module: nn.Module) -> None:
    """pytorch/examples dcgan's weights_init: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------------------------
# MLP for 2-D data.


class MLPGenerator(nn.Module):
    def __init__(self, *, z_dim: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)  # (B, 2)


class MLPDiscriminator(nn.Module):
    def __init__(
        self,
        *,
        width: int,
        depth: int,
        pack: int,
        sn: bool,
        minibatch_std: bool,
        num_classes: int,
        conditioning: str,
    ) -> None:
        super().__init__()
        self.pack = pack
        self.use_mbstd = minibatch_std
        layers: list[nn.Module] = []
        d = 2 * pack
        for _ in range(depth):
            layers += [_sn(nn.Linear(d, width), sn), nn.LeakyReLU(0.2)]
            d = width
        self.body = nn.Sequential(*layers)
        self.out = _sn(nn.Linear(width + int(minibatch_std), 1), sn)
        self.head = ClassHead(width, num_classes, conditioning, sn) if num_classes else None

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.body(pack_samples(x, self.pack))  # (B', width)
        logits = self.out(minibatch_std(h) if self.use_mbstd else h).squeeze(1)  # (B',)
        aux = None
        if self.head is not None:
            term, aux = self.head(h, labels)
            logits = logits + term
        return logits, h, aux


# ----------------------------------------------------------------------------------------------------------------
# DCGAN.


def _doublings(image_size: int) -> int:
    """How many 2x steps lie between 4x4 and the image: 2 for 16 px ... 5 for 128 px."""
    n = int(math.log2(image_size)) - 2
    if 2**n * 4 != image_size or n < 2:
        raise ValueError(f"model.image_size: {image_size} px is not a power of two of at least 16")
    return n


class DCGANGenerator(_ClusterPick):
    def __init__(
        self,
        *,
        z_dim: int,
        width: int,
        image_size: int,
        channels: int,
        num_classes: int,
        conditioning: str,
        clusters: bool = False,
        label_groups: int = 1,
    ) -> None:
        super().__init__()
        n = _doublings(image_size)
        cbn = self._init_labels(
            z_dim=z_dim, num_classes=num_classes, conditioning=conditioning, clusters=clusters, groups=label_groups
        )
        mult = 2 ** (n - 1)
        in_dim = z_dim * (2 if self.embed is not None else 1)
        self.convs = nn.ModuleList([nn.ConvTranspose2d(in_dim, width * mult, 4, 1, 0, bias=False)])  # 4x4
        self.norms = nn.ModuleList([Norm2d(width * mult, cbn, label_groups)])
        for _ in range(n - 1):
            self.convs.append(nn.ConvTranspose2d(width * mult, width * mult // 2, 4, 2, 1, bias=False))
            self.norms.append(Norm2d(width * mult // 2, cbn, label_groups))
            mult //= 2
        self.out = nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False)
        _dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z, labels = self._inputs(z, labels)  # (B, Z) or (B, 2Z)
        h = z[:, :, None, None]  # (B, Z, 1, 1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = F.relu(norm(conv(h), labels))  # (B, width * mult, 4 * 2^i, 4 * 2^i)
        return torch.tanh(self.out(h))  # (B, C, S, S)


class DCGANDiscriminator(nn.Module):
    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        width: int,
        pack: int,
        sn: bool,
        batchnorm: bool,
        minibatch_std: bool,
        num_classes: int,
        conditioning: str,
        depth: int = 1,
        label_groups: int = 1,
    ) -> None:
        super().__init__()
        n = _doublings(image_size)
        self.pack = pack
        self.use_mbstd = minibatch_std

        def block(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
            conv = _sn(nn.Conv2d(cin, cout, kernel, stride, 1, bias=not batchnorm), sn)
            return [conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)] if batchnorm else [conv, nn.LeakyReLU(0.2)]

        def refine(features: int) -> list[nn.Module]:  # SNGAN's 3x3 stride-1 convolutions at one resolution
            return [m for _ in range(depth - 1) for m in block(features, features, 3, 1)]

        # The first stride-2 convolution, on the image, has neither bias nor norm (DCGAN).
        layers: list[nn.Module] = [_sn(nn.Conv2d(channels * pack, width, 4, 2, 1, bias=False), sn), nn.LeakyReLU(0.2)]
        layers += refine(width)
        mult = 1
        for _ in range(n - 1):
            layers += block(width * mult, width * mult * 2, 4, 2)
            mult *= 2
            layers += refine(width * mult)
        self.body = nn.Sequential(*layers)  # -> (B', width * mult, 4, 4)
        self.out = _sn(nn.Conv2d(width * mult + int(minibatch_std), 1, 4, 1, 0, bias=False), sn)
        self.head = ClassHead(width * mult, num_classes, conditioning, sn, label_groups) if num_classes else None
        _dcgan_init(self)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.body(pack_samples(x, self.pack))  # (B', F, 4, 4)
        logits = self.out(minibatch_std(h) if self.use_mbstd else h).flatten()  # (B',)
        aux = None
        if self.head is not None:
            term, aux = self.head(h.sum((2, 3)), labels)
            logits = logits + term
        return logits, h.flatten(1), aux


# ----------------------------------------------------------------------------------------------------------------
# SNGAN ResNet.


class GBlock(nn.Module):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3 with an upsampled 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, num_classes: int, groups: int = 1) -> None:
        super().__init__()
        self.norm1 = Norm2d(cin, num_classes, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = Norm2d(cout, num_classes, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, labels)), scale_factor=2.0, mode="nearest")  # (B, Cin, 2H, 2W)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))  # (B, Cout, 2H, 2W)
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DBlock(nn.Module):
    """(ReLU)-conv3x3-ReLU-conv3x3-(avgpool) with a 1x1 shortcut; the first block skips the leading ReLU."""

    def __init__(self, cin: int, cout: int, *, down: bool, first: bool, sn: bool) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1), sn)
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1), sn)
        self.shortcut = _sn(nn.Conv2d(cin, cout, 1, 1, 0), sn) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        s = x
        if self.first:  # the optimized first block pools before its shortcut conv
            s = self.shortcut(F.avg_pool2d(s, 2) if self.down else s)
        else:
            s = self.shortcut(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


def _resnet_plan(image_size: int, width: int) -> tuple[list[int], list[int]]:
    """Channel counts of the generator's 4x4 -> S blocks, and of the discriminator's blocks."""
    if image_size == 32:  # SNGAN CIFAR-10: G 256 channels, D 128 for width 64
        return [width * 4] * 4, [width * 2] * 4
    if image_size == 64:
        return [width * 8, width * 8, width * 4, width * 2, width], [width, width * 2, width * 4, width * 8, width * 8]
    raise ValueError(f"model.image_size: resnet supports 32 and 64 px, not {image_size}")


class ResNetGenerator(_ClusterPick):
    def __init__(
        self,
        *,
        z_dim: int,
        width: int,
        image_size: int,
        channels: int,
        num_classes: int,
        conditioning: str,
        clusters: bool = False,
        label_groups: int = 1,
    ) -> None:
        super().__init__()
        g_channels, _ = _resnet_plan(image_size, width)
        cbn = self._init_labels(
            z_dim=z_dim, num_classes=num_classes, conditioning=conditioning, clusters=clusters, groups=label_groups
        )
        self.c0 = g_channels[0]
        self.linear = nn.Linear(z_dim * (2 if self.embed is not None else 1), 4 * 4 * self.c0)
        self.blocks = nn.ModuleList([GBlock(a, b, cbn, label_groups) for a, b in itertools.pairwise(g_channels)])
        self.norm = Norm2d(g_channels[-1], 0)
        self.out = nn.Conv2d(g_channels[-1], channels, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z, labels = self._inputs(z, labels)  # (B, Z) or (B, 2Z)
        h = self.linear(z).reshape(z.shape[0], self.c0, 4, 4)  # (B, C0, 4, 4)
        for block in self.blocks:
            h = block(h, labels)  # doubles H and W
        return torch.tanh(self.out(F.relu(self.norm(h, None))))  # (B, C, S, S)


class ResNetDiscriminator(nn.Module):
    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        width: int,
        pack: int,
        sn: bool,
        minibatch_std: bool,
        num_classes: int,
        conditioning: str,
        label_groups: int = 1,
    ) -> None:
        super().__init__()
        _, d_channels = _resnet_plan(image_size, width)
        self.pack = pack
        self.use_mbstd = minibatch_std
        downs = [True, True, False, False] if image_size == 32 else [True, True, True, True, False]
        blocks = []
        cin = channels * pack
        for i, (cout, down) in enumerate(zip(d_channels, downs, strict=True)):
            blocks.append(DBlock(cin, cout, down=down, first=i == 0, sn=sn))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out = _sn(nn.Linear(cin + int(minibatch_std), 1), sn)
        self.head = ClassHead(cin, num_classes, conditioning, sn, label_groups) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
                nn.init.xavier_uniform_(w)
                nn.init.zeros_(m.bias)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = F.relu(self.blocks(pack_samples(x, self.pack)))  # (B', F, 8, 8) or (B', F, 4, 4)
        if self.use_mbstd:
            h = minibatch_std(h)  # (B', F + 1, H, W)
        pooled = h.sum((2, 3))  # (B', F)
        logits = self.out(pooled).squeeze(1)  # (B',)
        aux = None
        if self.head is not None:
            term, aux = self.head(pooled[:, : pooled.shape[1] - int(self.use_mbstd)], labels)
            logits = logits + term
        return logits, pooled, aux
