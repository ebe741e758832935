"""Networks of image-to-image translation, architecture only: pix2pix's U-Net generator and PatchGAN discriminator
(Isola et al. 2017, appendix 6.1), and CycleGAN's ResNet generator (Zhu et al. 2017, appendix 7.2, after Johnson et
al. 2016).

U-Net: an encoder of 4x4 stride-2 convolutions halves the image down to 1x1 (log2(size) of them: 8 at 256 px, 5
at 32 px), channels `width` x 1, 2, 4, 8, 8, ... (capped at 8x); BatchNorm on every encoder layer but the first
and the innermost, LeakyReLU 0.2. The decoder mirrors it with 4x4 stride-2 transposed convolutions, BatchNorm,
dropout 0.5 on its three innermost layers (the generator's only noise) and ReLU, and concatenates each encoder
layer's output with the decoder's at the same size (the skips); a last transposed convolution maps to the output
channels, then tanh. Dropout is on in training only: in eval mode a translation is deterministic.

PatchGAN: judges its images concatenated on channels (pix2pix: the input and the output or target; CycleGAN: one
image): `layers` 4x4 stride-2 convolutions, then one 4x4 stride-1 convolution and a 4x4 stride-1 convolution to one
logit per patch. Each logit sees a 16, 34, 70 or 142 px patch for 1, 2, 3 or 4 layers (3 is the papers' 70x70
PatchGAN). BatchNorm (pix2pix) or InstanceNorm (CycleGAN) on all but the first layer, LeakyReLU 0.2; with spectral
norm on every convolution instead of a normalisation. `hidden` returns its hidden layers' activations (pix2pix's
`loss.feature_matching`).

ResNet generator: c7s1-w (7x7 convolution, InstanceNorm, ReLU, reflection padding), two 3x3 stride-2 convolutions
to 2w and 4w channels, `blocks` residual blocks of two 3x3 convolutions at 4w channels (reflection padding,
InstanceNorm, ReLU between), two 3x3 fractionally strided convolutions back to w channels, and c7s1 to the output
channels with tanh. The paper uses 6 blocks at 128 px and 9 at 256 px.

Spatial transformer (CycleGAN's `model.spatial_transform`): a small localisation net predicts a warp of the input
(a scale and a shift, the shift optionally from the content's centroid), applied by resampling before the ResNet
generator; see `SpatialTransformer`. With `residual`, the ResNet generator outputs its input plus a correction.

Rendered generator (CycleGAN's `model.a_render_size`): a generator run on its input average-pooled to a small size,
its output upsampled bilinearly back, so that it draws smooth upscales of small images; see `RenderedGenerator`.
`PooledClassifier` is the small classifier of domain A that CycleGAN's information-maximization term reads;
`SourceClassifier` the convolutional one its semantic-consistency term reads.

Latent code (CycleGAN's `model.latent_dim`): the ResNet generator's residual blocks modulated by a code z (FiLM),
so that one input has many translations; `LatentEncoder` reads the code of an image back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

MAX_MULT = 8  # channels stop growing at width x 8 (512 for width 64), as the paper's
STN_WIDTH, STN_HIDDEN = 8, 32  # the spatial transformer's localisation net: convolution channels, hidden units
# The spatial transformer's bounds: zoom in or out at most 3x, shift by at most half the frame.
STN_MAX_ZOOM, STN_MAX_SHIFT = 3.0, 0.5
DROPOUT_LAYERS = 3  # innermost decoder layers with dropout


def patch_layers(image_size: int, layers: int | None) -> int:
    """The PatchGAN's stride-2 layers: as given, else the paper's 3 at 256 px scaled to the size (2 at 128, 1
    below), so that a patch covers about the same share of the image."""
    return layers if layers is not None else max(1, int(math.log2(image_size)) - 5)


class UNetGenerator(nn.Module):
    """G(x): inputs (B, C_in, S, S) in [-1, 1] -> outputs (B, C_out, S, S) in [-1, 1]; S a power of two >= 8."""

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, width: int) -> None:
        super().__init__()
        depth = int(math.log2(image_size))  # stride-2 layers down to 1x1
        if 2**depth != image_size or depth < 3:
            raise ValueError(f"model.image_size: the U-Net needs a power of two of at least 8 px, not {image_size}")
        chans = [width * min(2**i, MAX_MULT) for i in range(depth)]  # each encoder layer's output channels
        self.down = nn.ModuleList()
        for i, cout in enumerate(chans):
            cin = in_channels if i == 0 else chans[i - 1]
            norm = 0 < i < depth - 1
            layer: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
            if norm:
                layer.append(nn.BatchNorm2d(cout))
            layer.append(nn.LeakyReLU(0.2) if i < depth - 1 else nn.ReLU())
            self.down.append(nn.Sequential(*layer))
        self.up = nn.ModuleList()
        for j, i in enumerate(range(depth - 2, -1, -1)):  # decoder layer j outputs encoder layer i's size
            cin = chans[i + 1] if j == 0 else 2 * chans[i + 1]
            layer = [nn.ConvTranspose2d(cin, chans[i], 4, 2, 1, bias=False), nn.BatchNorm2d(chans[i])]
            if j < DROPOUT_LAYERS:
                layer.append(nn.Dropout(0.5))
            layer.append(nn.ReLU())
            self.up.append(nn.Sequential(*layer))
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * chans[0], out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)  # (B, chans[i], S / 2^(i+1), S / 2^(i+1))
            skips.append(x)
        skips.pop()  # the 1x1 bottleneck feeds the decoder directly
        for layer in self.up:
            x = torch.cat([layer(x), skips.pop()], dim=1)  # (B, 2 chans[i], S / 2^(i+1), S / 2^(i+1))
        return self.out(x)  # (B, C_out, S, S)


class PatchDiscriminator(nn.Module):
    """D(*images): images (B, C_i, S, S) whose channels add up to `in_channels` (pix2pix: an input and an output
    or target) -> logits (B, 1, P, P), one per patch (P = S / 2^layers - 2)."""

    def __init__(
        self, *, in_channels: int, layers: int, width: int, sn: bool = False, norm: str = "batch", classes: int = 0
    ) -> None:
        super().__init__()
        norm_layer = nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d

        def conv(cin: int, cout: int, stride: int, *, bias: bool) -> nn.Module:
            c = nn.Conv2d(cin, cout, 4, stride, 1, bias=bias or sn)
            return spectral_norm(c) if sn else c

        blocks: list[nn.Module] = [conv(in_channels, width, 2, bias=True), nn.LeakyReLU(0.2)]
        cout = width
        for n in range(1, layers + 1):  # layers - 1 more stride-2 convolutions, then one of stride 1
            cin, cout = cout, width * min(2**n, MAX_MULT)
            blocks.append(conv(cin, cout, 2 if n < layers else 1, bias=False))
            if not sn:
                blocks.append(norm_layer(cout))
            blocks.append(nn.LeakyReLU(0.2))
        blocks.append(conv(cout, 1, 1, bias=True))
        self.net = nn.Sequential(*blocks)
        # With `classes`, a projection discriminator (Miyato & Koyama 2018) per patch: each patch's logit also gets
        # the inner product of its last hidden features (averaged over the 2x2 windows the last 4x4 convolution
        # reads at its centre) with an embedding of the image's class, starting at zero.
        self.embed = nn.Embedding(classes, cout) if classes > 0 else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, *images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 1, P, P); with `classes` and labels (B,), conditioned on each image's class."""
        x = torch.cat(images, dim=1)  # (B, in_channels, S, S)
        if self.embed is None or labels is None:
            return self.net(x)  # (B, 1, P, P)
        h = self.net[:-1](x)  # (B, C, P + 1, P + 1)
        feats = F.avg_pool2d(h, 2, stride=1)  # (B, C, P, P)
        return self.net[-1](h) + (feats * self.embed(labels)[:, :, None, None]).sum(1, keepdim=True)

    def hidden(self, *images: torch.Tensor) -> list[torch.Tensor]:
        """The activations of each hidden layer (after its LeakyReLU), first to last: `layers` + 1 maps (B, C_l,
        S_l, S_l), the features pix2pix's feature-matching term compares."""
        x, out = torch.cat(images, dim=1), []
        for block in self.net[:-1]:  # all but the convolution to the logits
            x = block(x)
            if isinstance(block, nn.LeakyReLU):
                out.append(x)
        return out


def resnet_blocks(image_size: int, blocks: int | None) -> int:
    """The ResNet generator's residual blocks: as given, else the paper's 9 at 256 px and 6 below."""
    return blocks if blocks is not None else (9 if image_size >= 256 else 6)


class ResidualBlock(nn.Module):
    """x + (reflection pad, 3x3 conv, InstanceNorm, ReLU, reflection pad, 3x3 conv, InstanceNorm)(x). With
    `latent_dim` > 0 each InstanceNorm's output is modulated by a latent code z (B, latent_dim), FiLM / AdaIN-style:
    h * (1 + gamma(z)) + beta(z), gamma and beta linear in z and starting at zero (so the block starts as without
    z); z None reads as zeros."""

    def __init__(self, channels: int, latent_dim: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )
        self.film = nn.Linear(latent_dim, 4 * channels) if latent_dim > 0 else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.film is None or z is None:
            return x + self.body(x)
        g1, b1, g2, b2 = (v[:, :, None, None] for v in self.film(z.to(x.dtype)).chunk(4, dim=1))  # (B, C, 1, 1)
        h = self.body[2](self.body[1](self.body[0](x))) * (1 + g1) + b1
        h = self.body[6](self.body[5](self.body[4](self.body[3](h)))) * (1 + g2) + b2
        return x + h


class ResnetGenerator(nn.Module):
    """G(x): images (B, C_in, S, S) in [-1, 1] -> (B, C_out, S, S) in [-1, 1]; S a multiple of 4. With `residual`
    (C_in = C_out), G(x) = clamp(x + net(x), -1, 1) in place of tanh(net(x)), its last convolution starting at zero:
    it starts as the identity and learns a correction of its input."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        width: int,
        blocks: int,
        residual: bool = False,
        latent_dim: int = 0,
    ) -> None:
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError(f"a residual generator needs as many output channels as input, not {out_channels}")
        self.residual = residual
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, w, 7),
            nn.InstanceNorm2d(w),
            nn.ReLU(),
        ]
        for cin, cout in ((w, 2 * w), (2 * w, 4 * w)):  # S -> S/2 -> S/4
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.InstanceNorm2d(cout), nn.ReLU()]
        layers += [ResidualBlock(4 * w, latent_dim) for _ in range(blocks)]
        for cin, cout in ((4 * w, 2 * w), (2 * w, w)):  # S/4 -> S/2 -> S
            layers += [nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(cout), nn.ReLU()]
        last = nn.Conv2d(w, out_channels, 7)
        if residual:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers += [nn.ReflectionPad2d(3), last] + ([] if residual else [nn.Tanh()])
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim): the latent code the residual blocks are modulated by (`latent_dim` > 0; None reads
        as zeros, the prior's mean)."""
        h = x
        for layer in self.net:
            h = layer(h, z) if isinstance(layer, ResidualBlock) else layer(h)
        if self.residual:
            return (x + h).clamp(-1, 1)  # (B, C, S, S)
        return h  # (B, C_in, S, S) -> (B, C_out, S, S)


class RenderedGenerator(nn.Module):
    """G(x) = upsample(net(avg_pool(x))): a generator that draws at `size` px and shows its drawing at the input's
    size, bilinearly (align_corners False, as torch's and Pillow's BILINEAR upscaling of scikit-learn's 8x8 digits to
    32 px agree). Its outputs lie on the manifold of smooth upscales of small images, where a generator at the full
    size lands only approximately, and the net is cheaper by the square of the factor."""

    def __init__(self, net: nn.Module, *, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        small = F.adaptive_avg_pool2d(x, self.size)  # (B, C_in, size, size)
        out = self.net(small, z)  # (B, C_out, size, size)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, C_out, S, S)


def pooled_mlp(channels: int, out: int, *, size: int, hidden: int, activation: nn.Module) -> nn.Sequential:
    """Images (B, channels, S, S) average-pooled to `size` px, flattened, one hidden layer of `hidden` units with
    `activation`, then `out` values: (B, out)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(size),
        nn.Flatten(),
        nn.Linear(channels * size * size, hidden),
        activation,
        nn.Linear(hidden, out),
    )


class PooledClassifier(nn.Module):
    """C(x): images (B, C, S, S) -> class logits (B, classes), read from the images average-pooled to `size` px by
    an MLP with one hidden layer of `hidden` units (CycleGAN's `loss.info_max_weight`: a classifier of domain A)."""

    def __init__(self, *, channels: int, classes: int, size: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.net = pooled_mlp(channels, classes, size=size, hidden=hidden, activation=nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())  # (B, C, S, S) -> (B, classes)


class SourceClassifier(nn.Module):
    """S(x): images (B, C, H, W) -> class logits (B, classes): three blocks of a 3x3 convolution, BatchNorm, ReLU and
    2x2 max pooling at `width` x 1, 2, 4 channels, global average pooling, a hidden layer of `hidden` units and the
    logits (the layout of the shipped digits classifier, core/metrics/classifier.py). CycleGAN's
    `loss.semantic_weight`: a classifier of domain A trained before the run and frozen."""

    def __init__(self, *, channels: int, classes: int, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((channels, width), (width, 2 * width), (2 * width, 4 * width)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, hidden), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())  # (B, C, S, S) -> (B, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's activations (B, hidden), after its ReLU; `logits` reads the classes from them."""
        return self.net[:-1](x.float())

    def activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each convolutional block's output averaged over space ((B, width), (B, 2 width), (B, 4 width)) and the
        hidden layer's activations (B, hidden), as `features` gives them, from one pass."""
        h = x.float()
        pooled = []
        for block in range(3):
            h = self.net[4 * block : 4 * block + 4](h)  # convolution, BatchNorm, ReLU, pooling
            pooled.append(h.mean((2, 3)))
        return pooled, self.net[12:-1](h)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The class logits (B, classes) of hidden activations (B, hidden) from `features`."""
        return self.net[-1](features)


class LatentEncoder(nn.Module):
    """E(x): images (B, C, S, S) -> the mean and log variance (B, latent_dim) each of a Gaussian over the latent
    code that a generator with `latent_dim` would draw x from, read by an MLP with one hidden layer of `hidden`
    units from the images average-pooled to `size` px (CycleGAN's `model.latent_dim`: the style of a domain-A
    image, so that A→B→A can reconstruct it, Almahairi et al. 2018; and the code read back from a translation,
    BicycleGAN's latent regression)."""

    def __init__(self, *, channels: int, latent_dim: int, size: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = pooled_mlp(channels, 2 * latent_dim, size=size, hidden=hidden, activation=nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x.float()).chunk(2, dim=1)  # (B, latent_dim) each
        return mu, logvar.clamp(-10, 4)


class SpatialTransformer(nn.Module):
    """A spatial transformer (Jaderberg et al. 2015) for CycleGAN's generators: a localisation net reads the image
    (two 3x3 stride-2 convolutions with ReLU, averaged down to 4x4, two linear layers) and predicts three numbers, a
    log scale and a shift in x and y, each bounded by a tanh (STN_MAX_ZOOM, and STN_MAX_SHIFT in half-image units),
    from which `F.affine_grid` builds the sampling grid of a warp of the image (bilinear). A scale below 1 samples a
    smaller region, enlarging the content. One scale for both axes, and no rotation: a warp that can squeeze one
    axis alone meets a discriminator's size statistics by flattening the image, and one that can turn turns digits
    by 20-30 degrees, which costs more of their legibility than it brings. What comes in from outside the frame is
    the median colour of the image's outermost pixels (black for digits): repeating the border pixels instead would
    smear a digit that touches the frame into streaks when the warp shrinks it, and their mean would be grey. The
    last layer starts at zero, so the warp starts as the identity; it learns through whatever loss follows the
    warped image.

    With `centred`, the shift is measured from the centroid of the image's content (its absolute difference from
    the frame colour, averaged over channels) instead of from the frame's centre: the warp starts by moving that
    centroid to the centre, and its net learns only corrections. A localisation net of this size, pooled to 4x4,
    does not learn to read a content's position well enough to follow it (its shift moved digits 0.0-0.9x as far
    as their centroids lie off centre, not at all in y), while a digit's centroid is where the warp must zoom."""

    def __init__(
        self, *, channels: int, width: int = STN_WIDTH, hidden: int = STN_HIDDEN, centred: bool = False
    ) -> None:
        super().__init__()
        self.centred = centred
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Linear(2 * width * 16, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The affine matrices (B, 2, 3) mapping each output pixel's coordinates (in [-1, 1]) to where it samples."""
        p = self.head(self.features(x).flatten(1)).float().tanh()  # (B, 3) in (-1, 1)
        scale = (p[:, 0] * math.log(STN_MAX_ZOOM)).exp()  # (B,)
        shift = p[:, 1:] * STN_MAX_SHIFT  # (B, 2): x, y
        if self.centred:
            shift = shift + content_centroid(x)
        zero = torch.zeros_like(scale)
        rows = [torch.stack([scale, zero, shift[:, 0]], 1), torch.stack([zero, scale, shift[:, 1]], 1)]  # (B, 3)
        return torch.stack(rows, 1)  # (B, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(self.theta(x), list(x.shape), align_corners=False)  # (B, S, S, 2)
        fill = frame_fill(x)  # (B, C, 1, 1)
        out = F.grid_sample(x - fill, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        return out + fill


def frame_fill(x: torch.Tensor) -> torch.Tensor:
    """The median colour (B, C, 1, 1) of the outermost pixels of images x (B, C, H, W)."""
    frame = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], -1)  # (B, C, 4S - 4)
    return frame.median(-1).values[..., None, None]


def content_centroid(x: torch.Tensor) -> torch.Tensor:
    """The centroid (B, 2), x then y in [-1, 1] coordinates (affine_grid's), of the content of images x
    (B, C, H, W): each pixel weighed by its absolute difference from the frame colour, averaged over channels.
    The centre (0, 0) for an image with no content."""
    mass = (x.float() - frame_fill(x).float()).abs().mean(1)  # (B, H, W)
    h, w = x.shape[-2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=x.device)[:, None]  # (H, 1) pixel centres
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=x.device)[None, :]  # (1, W)
    total = mass.sum((1, 2)).clamp_min(1e-6)  # (B,)
    return torch.stack([(mass * xs).sum((1, 2)) / total, (mass * ys).sum((1, 2)) / total], 1)


class WarpedGenerator(nn.Module):
    """G(x) = net(warp(x)): a spatial transformer in front of a generator, so that the geometric part of a
    translation (a digit's size and position) is a warp the generator does not have to draw."""

    def __init__(self, warp: SpatialTransformer, net: nn.Module) -> None:
        super().__init__()
        self.warp, self.net = warp, net

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.warp(x), z)  # (B, C_in, S, S) -> (B, C_out, S, S)
