"""Networks of super-resolution, architecture only: SRGAN's generator (SRResNet) and discriminator (Ledig et al. 2017,
figure 4), and VGG-19's convolutional features for the paper's perceptual loss.

SRResNet: a 9x9 convolution to `width` channels and PReLU; `blocks` residual blocks (3x3 convolution, BatchNorm,
PReLU, 3x3 convolution, BatchNorm, plus the block's input); a 3x3 convolution and BatchNorm, plus the first
convolution's output (the long skip); then one upsampling stage per factor of two of `scale` (a 3x3 convolution to
4·width channels, a sub-pixel shuffle that trades them for twice the height and width, PReLU); a 9x9 convolution to
the image's channels and tanh, so that outputs are in [-1, 1] as every image in ganforge is. The paper has width 64
and 16 blocks. With `bicubic_skip` (not in the paper: the global residual of VDSR, Kim et al. 2016) the last
convolution has no tanh and its output is added to the input's bicubic upsampling, so the network learns only what
bicubic misses and starts as bicubic (the last convolution starts at zero); eval-mode outputs are then clamped to
[-1, 1]. Without `batchnorm` (EDSR, Lim et al. 2017, and ESRGAN drop it) the convolutions of the residual blocks and
the one after them have biases and nothing normalises them: a regression then keeps the range of its features, and
training and eval mode compute the same function. Fully convolutional: a low-resolution input of any size h x w comes
out scale·h x scale·w; BatchNorm uses its running statistics in eval mode, so a translation is then deterministic.

Discriminator: a 3x3 convolution to `width` channels and LeakyReLU 0.2, then seven 3x3 convolutions with BatchNorm
and LeakyReLU 0.2, alternately of stride 2 and 1, doubling the channels every second one (width x 1, 2, 2, 4, 4, 8,
8), so four stride-2 convolutions take the image to 1/16 of its side; a dense layer of 16·width units (1,024 for the
paper's width 64), LeakyReLU 0.2, and a dense layer to one logit. The paper's 96 px images end at 6 x 6 before the
dense head; other sizes are average-pooled to min(side / 16, 6) per side, so the head stays the paper's size at 96
px and above and 32 px images (2 x 2) still fit. It also returns the activations of its eight convolutional blocks,
which the discriminator feature loss compares.

VGG-19 features (Simonyan & Zisserman 2015, configuration E): the convolutional part up to the fourth convolution
of the fifth block after its ReLU (the paper's phi_5,4), with torchvision's module indices (`features.0` ...
`features.34`), so that torchvision's `vgg19-dcbb9e9d.pth` loads into it. Nothing is downloaded: the operator points
`GANFORGE_VGG19_WEIGHTS` at a local copy, whose SHA-256 must begin with the `dcbb9e9d` of its name (torchvision's
convention, which torch.hub checks); only then are the bytes read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VGG19_ENV_VAR = "GANFORGE_VGG19_WEIGHTS"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"
# Configuration E's convolutions up to conv5_4; "M" is a 2x2 max pool.
VGG19_LAYERS: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")
VGG19_LAYERS += (512, 512, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_norm(channels: int, batchnorm: bool) -> list[nn.Module]:
    """A 3x3 convolution keeping `channels`, and BatchNorm after it (no bias then) when `batchnorm`."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(channels)] if batchnorm else [conv]


class ResidualBlock(nn.Module):
    """x + (3x3 conv, BatchNorm, PReLU, 3x3 conv, BatchNorm)(x); without `batchnorm`, x + (conv, PReLU, conv)(x)."""

    def __init__(self, channels: int, batchnorm: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_norm(channels, batchnorm), nn.PReLU(channels), *conv_norm(channels, batchnorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """G(x): low-resolution images (B, C, h, w) in [-1, 1] -> (B, C, scale·h, scale·w) in [-1, 1]."""

    def __init__(
        self, *, channels: int, width: int, blocks: int, scale: int, bicubic_skip: bool = False, batchnorm: bool = True
    ) -> None:
        super().__init__()
        stages = int(math.log2(scale))
        if 2**stages != scale or stages < 1:
            raise ValueError(f"model.scale: SRResNet upsamples by a power of two (2, 4, 8), not {scale}")
        self.scale, self.bicubic_skip = scale, bicubic_skip
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU(width))
        self.body = nn.Sequential(
            *[ResidualBlock(width, batchnorm) for _ in range(blocks)], *conv_norm(width, batchnorm)
        )
        upsample: list[nn.Module] = []
        for _ in range(stages):
            upsample += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(width)]
        self.upsample = nn.Sequential(*upsample)
        last = nn.Conv2d(width, channels, 9, padding=4)
        if bicubic_skip:  # start as bicubic exactly
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.tail = nn.Sequential(last) if bicubic_skip else nn.Sequential(last, nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)  # (B, W, h, w)
        h = h + self.body(h)  # the long skip
        out = self.tail(self.upsample(h))  # (B, W, scale·h, scale·w) -> (B, C, scale·h, scale·w)
        if not self.bicubic_skip:
            return out  # type: ignore[no-any-return]
        out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out if self.training else out.clamp(-1, 1)


class SRDiscriminator(nn.Module):
    """D(x): images (B, C, S, S) -> (logits (B,), the eight convolutional blocks' activations, None), as
    core.losses calls a discriminator."""

    def __init__(self, *, channels: int, width: int, image_size: int) -> None:
        super().__init__()
        mults = (1, 1, 2, 2, 4, 4, 8, 8)
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2))]
        for i in range(1, len(mults)):
            cin, cout, stride = width * mults[i - 1], width * mults[i], 2 if i % 2 else 1
            blocks.append(
                nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))
            )
        self.blocks = nn.ModuleList(blocks)
        side = max(1, min(image_size // 16, 6))
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * width * side * side, 16 * width),
            nn.LeakyReLU(0.2),
            nn.Linear(16 * width, 1),
        )

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], None]:
        features = []
        for block in self.blocks:
            x = block(x)  # (B, width·m, S / 2^k, S / 2^k)
            features.append(x)
        return self.head(self.pool(x)).flatten(), features, None  # (B,)


class VGG19Features(nn.Module):
    """VGG-19's phi_5,4: images (B, 1 | 3, H, W) in [-1, 1] -> (B, 512, H/16, W/16), after ImageNet's
    normalisation (grey images repeated into RGB)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for spec in VGG19_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(spec, int)
                layers += [nn.Conv2d(cin, spec, 3, padding=1), nn.ReLU()]
                cin = spec
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x + 1) / 2 - self.mean) / self.std  # [-1, 1] -> ImageNet's normalised RGB
        return self.features(x)  # type: ignore[no-any-return]


def vgg19_weights_path(environ: dict[str, str] | None = None) -> Path | None:
    """The configured VGG-19 weights file (not yet checked), or None when GANFORGE_VGG19_WEIGHTS is not set."""
    raw = (os.environ if environ is None else environ).get(VGG19_ENV_VAR, "")
    return Path(raw) if raw else None


def load_vgg19_features(path: Path | None, device: str | torch.device = "cpu") -> VGG19Features:
    """VGG19Features with torchvision's weights from `path`, frozen and in eval mode; ValueError naming the problem
    (no file configured, not a file, another file's hash, not VGG-19's layout)."""
    if path is None:
        raise ValueError(
            f"loss.feature_net: vgg19 needs torchvision's {VGG19_FILE}, and this service has none: set "
            f"{VGG19_ENV_VAR} to a local copy (nothing is downloaded), or use feature_net discriminator"
        )
    if not path.is_file():
        raise ValueError(f"loss.feature_net: {VGG19_ENV_VAR}: {path} is not a file")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(VGG19_SHA256_PREFIX):
        raise ValueError(
            f"loss.feature_net: {VGG19_ENV_VAR}: {path} has SHA-256 {digest}, which does not begin with the "
            f"{VGG19_SHA256_PREFIX} of torchvision's {VGG19_FILE}"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # a file with the right hash always loads; anything else is reported, not raised
        raise ValueError(f"loss.feature_net: {path} could not be read as a PyTorch state dict: {err}") from err
    net = VGG19Features()
    wanted = set(net.state_dict())
    if not isinstance(state, dict) or not wanted <= set(state):
        raise ValueError(f"loss.feature_net: {path} does not hold VGG-19's convolutional weights (features.*)")
    try:
        net.load_state_dict({k: state[k] for k in wanted}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"loss.feature_net: {path} does not fit VGG-19's layout: {err}") from err
    return net.eval().requires_grad_(False).to(device)
