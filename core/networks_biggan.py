"""BigGAN (Brock et al. 2019): the class-conditional residual GAN with self-attention, at 32, 64 and 128 px.

G: a linear layer maps the first chunk of z to a 4×4 map; residual up-blocks double it to the image, each block's
conditional BatchNorms taking their gain and bias from the shared class embedding concatenated with that block's
chunk of z (hierarchical latents: z is split into one chunk for the input and one per block); a self-attention
block (SAGAN, Zhang et al. 2019) after the up-block that reaches `attention_resolution`; then BatchNorm, ReLU, a 3×3
convolution and tanh. D: residual down-blocks, self-attention after the one that reaches `attention_resolution`,
ReLU, sum pooling, a linear logit plus the projection term (the inner product of D's class embedding with the
pooled features, Miyato & Koyama 2018). Spectral norm on every layer of both networks, and orthogonal
initialisation, as in the paper. Without classes (num_classes 0) the BatchNorms see the latent chunks alone and D
has no projection term.

The channel plans follow the paper's 128 px networks (G 16, 16, 8, 4, 2, 1 × width from 4 px up; D 1, 2, 4, 8, 16,
16 × width) and its CIFAR networks at 32 px (4 × width everywhere). Attention goes where both networks have a
feature map of that side: 8 px up to half the image (`attention_resolutions`).

`G(z, labels=None)` maps (B, z_dim) to (B, C, S, S) in [-1, 1]; `D(x, labels=None)` returns `(logits (B,), pooled
features (B, F), None)`, as core.networks' discriminators do.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from core.config import RunConfig


def build_generator(cfg: RunConfig, *, channels: int, num_classes: int) -> BigGANGenerator:
    m = cfg.model
    return BigGANGenerator(
        z_dim=m.z_dim,
        width=m.g_width or m.width,
        image_size=m.image_size,
        channels=channels,
        num_classes=num_classes if m.conditional else 0,
        shared_dim=m.shared_dim,
        attention_resolution=m.attention_resolution,
    )


def build_discriminator(cfg: RunConfig, *, channels: int, num_classes: int) -> BigGANDiscriminator:
    m = cfg.model
    return BigGANDiscriminator(
        image_size=m.image_size,
        channels=channels,
        width=m.width,
        num_classes=num_classes if m.conditional else 0,
        attention_resolution=m.attention_resolution,
    )


def plan(image_size: int, width: int) -> tuple[list[int], list[int], list[bool]]:
    """G's channels at 4 px and after each up-block; D's channels after each down-block, and which of them pool."""
    w = width
    if image_size == 32:
        return [4 * w] * 4, [4 * w] * 4, [True, True, False, False]
    if image_size == 64:
        return [16 * w, 16 * w, 8 * w, 4 * w, 2 * w], [w, 2 * w, 4 * w, 8 * w, 16 * w], [True] * 4 + [False]
    if image_size == 128:
        g = [16 * w, 16 * w, 8 * w, 4 * w, 2 * w, w]
        return g, [w, 2 * w, 4 * w, 8 * w, 16 * w, 16 * w], [True] * 5 + [False]
    raise ValueError(f"model.image_size: biggan supports 32, 64 and 128 px, not {image_size}")


def latent_chunks(z_dim: int, blocks: int) -> list[int]:
    """The sizes z is split into: one chunk for the linear input layer and one per up-block, equal but for the
    first, which takes the remainder (z_dim 100 over 3 blocks: 25 each)."""
    size = z_dim // (blocks + 1)
    if size < 1:
        raise ValueError(f"model.z_dim: biggan splits z into {blocks + 1} chunks, so it needs at least {blocks + 1}")
    return [z_dim - blocks * size] + [size] * blocks


def attention_resolutions(image_size: int) -> list[int]:
    """Where self-attention may go: the sides both networks have a feature map at, 8 px to half the image."""
    return [2**k for k in range(3, int(math.log2(image_size)))]


def _sn(module: nn.Module) -> nn.Module:
    """Orthogonal initialisation, zero biases, then spectral norm (initialised before the power iteration starts,
    so that its vectors belong to the weights it normalises)."""
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return spectral_norm(module)


class SelfAttention(nn.Module):
    """SAGAN's self-attention as BigGAN uses it: 1×1 query and key convolutions to C/8 channels, a value
    convolution to C/2, keys and values max-pooled 2×2 (a quarter of the positions to attend to), the attended
    values mapped back to C channels and added to the input scaled by a learned gamma that starts at 0, so that
    the block starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k, v = max(channels // 8, 1), max(channels // 2, 1)
        self.query = _sn(nn.Conv2d(channels, k, 1, bias=False))
        self.key = _sn(nn.Conv2d(channels, k, 1, bias=False))
        self.value = _sn(nn.Conv2d(channels, v, 1, bias=False))
        self.out = _sn(nn.Conv2d(v, channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2)  # (B, K, HW)
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, K, HW/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, V, HW/4)
        attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, HW, HW/4): each position's weights
        o = (v @ attention.transpose(1, 2)).reshape(b, -1, h, w)  # (B, V, H, W)
        return x + self.gamma * self.out(o)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine, then gain = 1 + W_g c and bias = W_b c from a condition c (B, D): the
    shared class embedding ⊕ the block's latent chunk, or the chunk alone when G has no classes."""

    def __init__(self, features: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(features, affine=False)
        self.gain = _sn(nn.Linear(cond_dim, features, bias=False))
        self.bias = _sn(nn.Linear(cond_dim, features, bias=False))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(cond)  # (B, F)
        bias = self.bias(cond)  # (B, F)
        return self.bn(h) * gain[:, :, None, None] + bias[:, :, None, None]


class GBlock(nn.Module):
    """CBN-ReLU-up-conv3x3-CBN-ReLU-conv3x3 with an upsampled 1×1 shortcut."""

    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm(cin, cond_dim)
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1))
        self.norm2 = ConditionalBatchNorm(cout, cond_dim)
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1))
        self.shortcut = _sn(nn.Conv2d(cin, cout, 1, 1, 0))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, cond)), scale_factor=2.0, mode="nearest")  # (B, Cin, 2H, 2W)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), cond)))  # (B, Cout, 2H, 2W)
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DBlock(nn.Module):
    """(ReLU)-conv3x3-ReLU-conv3x3-(avgpool) with a 1×1 shortcut when the shape changes. The first block, on the
    image, has no leading ReLU and pools before its shortcut convolution; the others convolve first."""

    def __init__(self, cin: int, cout: int, *, down: bool, first: bool) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1))
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1))
        self.shortcut = _sn(nn.Conv2d(cin, cout, 1, 1, 0)) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2) if self.down else x)
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class BigGANGenerator(nn.Module):
    def __init__(
        self,
        *,
        z_dim: int,
        width: int,
        image_size: int,
        channels: int,
        num_classes: int,
        shared_dim: int,
        attention_resolution: int | None,
    ) -> None:
        super().__init__()
        g_channels, _, _ = plan(image_size, width)
        blocks = len(g_channels) - 1
        self.chunks = latent_chunks(z_dim, blocks)
        # The shared class embedding, N(0, 1) so that a class code is as long as a latent chunk or longer and the
        # BatchNorms read the label from the first step.
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        cond_dim = self.chunks[1] + (shared_dim if num_classes else 0)
        self.c0 = g_channels[0]
        self.linear = _sn(nn.Linear(self.chunks[0], 4 * 4 * self.c0))
        self.blocks = nn.ModuleList([GBlock(a, b, cond_dim) for a, b in itertools.pairwise(g_channels)])
        sides = [8 * 2**i for i in range(blocks)]  # each up-block's output side
        self.attention_at = sides.index(attention_resolution) if attention_resolution in sides else -1
        self.attention = SelfAttention(g_channels[self.attention_at + 1]) if self.attention_at >= 0 else None
        self.norm = nn.BatchNorm2d(g_channels[-1])
        self.out = _sn(nn.Conv2d(g_channels[-1], channels, 3, 1, 1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        chunks = torch.split(z, self.chunks, dim=1)  # (B, Z0), then (B, Zc) per block
        code = None
        if self.shared is not None:
            assert labels is not None, "a conditional generator needs labels"
            code = self.shared(labels)  # (B, E)
        h = self.linear(chunks[0]).reshape(z.shape[0], self.c0, 4, 4)  # (B, C0, 4, 4)
        for i, (block, chunk) in enumerate(zip(self.blocks, chunks[1:], strict=True)):
            cond = chunk if code is None else torch.cat([code, chunk], dim=1)  # (B, E + Zc)
            h = block(h, cond)  # doubles H and W
            if i == self.attention_at and self.attention is not None:
                h = self.attention(h)
        return torch.tanh(self.out(F.relu(self.norm(h))))  # (B, C, S, S)


class BigGANDiscriminator(nn.Module):
    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        width: int,
        num_classes: int,
        attention_resolution: int | None,
    ) -> None:
        super().__init__()
        _, d_channels, downs = plan(image_size, width)
        blocks, cin, side = [], channels, image_size
        self.attention_at = -1
        for i, (cout, down) in enumerate(zip(d_channels, downs, strict=True)):
            blocks.append(DBlock(cin, cout, down=down, first=i == 0))
            side //= 2 if down else 1
            if side == attention_resolution and self.attention_at < 0:
                self.attention_at = i
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.attention = SelfAttention(d_channels[self.attention_at]) if self.attention_at >= 0 else None
        self.out = _sn(nn.Linear(cin, 1))
        self.embed = _sn(nn.Embedding(num_classes, cin)) if num_classes else None

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = x  # (B, C, S, S)
        for i, block in enumerate(self.blocks):
            h = block(h)  # halves H and W while it pools
            if i == self.attention_at and self.attention is not None:
                h = self.attention(h)
        pooled = F.relu(h).sum((2, 3))  # (B, F)
        logits = self.out(pooled).squeeze(1)  # (B,)
        if self.embed is not None:
            assert labels is not None, "a projection discriminator needs labels"
            logits = logits + (self.embed(labels) * pooled).sum(1)
        return logits, pooled, None
