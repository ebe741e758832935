"""Projection of images into a style-based generator's latent space (Karras et al. 2020, StyleGAN2 §5 and
appendix D): for each target image x, find w (one for every layer, space "w") or one w per layer (space "w+")
and the per-layer noise maps such that G.synthesis(w, noise) reconstructs x.

The optimisation follows the paper: w starts at the generator's tracked mean w (`mapping.w_avg`) and the noise
maps at N(0, I); Adam (β = 0.9, 0.999) with a learning rate that ramps up over the first 5 % of the steps and down
(cosine) over the last 25 %; during the first 75 % the w given to G is perturbed by Gaussian noise of
0.05 · σ_w · (1 − t / 0.75)², σ_w being the spread of w around w_avg (measured on 1,000 mapped latents); the
noise maps are regularised toward having no spatial autocorrelation at any scale (weight 1e5) and renormalised
to zero mean and unit variance after every step, so that they cannot carry the image. Each image keeps the best
latents and noise maps it reached by the distance alone: its start, any step once w is no longer perturbed (the
step's distance is then that of the latents it started from), and the last; a step size that overshoots late in
a short projection cannot leave an image worse than it was.

The paper's distance is LPIPS on VGG16 features; nothing is downloaded here, so the distance is made of what the
service has (`Distance`):
- `pixel`: the mean squared pixel difference (images in [-1, 1]);
- `discriminator`: the run's own discriminator's activations after fromRGB and after each residual block (before
  the minibatch standard deviation, so an image's distance does not depend on the others in its batch), each
  normalised to unit length over channels at every pixel, as LPIPS does, and compared by their mean squared
  difference (summed over channels), averaged over the layers;
- `digits`: the shipped digits classifier's 128-d features, normalised to unit length (runs on digits and
  stacked-digits; a colour image's channels are compared one by one).
The distance is their sum; its name, e.g. `pixel+discriminator+digits`, is recorded with the result.

Every image is its own problem: its w and noise maps are its own parameters, nothing in the distance mixes
images, and its random draws (the starting noise maps, the perturbations of w) come from a stream of its own,
seeded from `seed` and its index. Images are optimised BATCH_SIZE at a time; a batch of another size rounds
floats differently, which Adam's normalised steps can amplify, so the same latents come from the same request
(images, order, seed, steps) on the same machine, not from any batching of it.

    from core.projection import Distance, project
    result = project(generator, targets, steps=300, space="w", distance=Distance(discriminator=D), seed=0)
    result.ws          # (N, num_ws, W) float32
    result.images      # (N, C, H, W) float32 reconstructions in [-1, 1]
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.generate import ZIP_DATE_TIME, to_uint8
from core.grids import png_bytes
from core.layout import atomic_write

Space = Literal["w", "w+"]

INITIAL_LR = 0.1
LR_RAMPUP = 0.05  # share of the steps over which the learning rate ramps up
LR_RAMPDOWN = 0.25  # share of the steps over which it ramps down
W_NOISE = 0.05  # the perturbation of w at the start, in units of σ_w
W_NOISE_RAMP = 0.75  # share of the steps over which that perturbation fades out
NOISE_REGULARIZE = 1e5
W_STD_SAMPLES = 1000
BATCH_SIZE = 16
MAX_STEPS = 5000


class Distance(nn.Module):
    """A per-image distance between images (B, C, H, W) in [-1, 1]: pixel MSE plus, when given, the
    discriminator's and the digits classifier's feature distances (see the module docstring)."""

    def __init__(self, *, discriminator: nn.Module | None = None, classifier: nn.Module | None = None) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.classifier = classifier

    @property
    def name(self) -> str:
        parts = ["pixel"]
        if self.discriminator is not None:
            parts.append("discriminator")
        if self.classifier is not None:
            parts.append("digits")
        return "+".join(parts)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised feature maps of images x, one tensor per layer, shapes (B, C_l, ...)."""
        out: list[torch.Tensor] = []
        d = self.discriminator
        if d is not None:
            h = d.from_rgb(x)  # type: ignore[operator]
            out.append(_unit(h))
            for block in d.blocks:  # type: ignore[union-attr]
                h = block(h)  # (B, C_r, r, r)
                out.append(_unit(h))
        if self.classifier is not None:
            b, c, hh, ww = x.shape
            feats, _ = self.classifier.features_and_logits(x.reshape(b * c, 1, hh, ww))  # type: ignore[operator]
            out.append(_unit(feats.reshape(b, c, -1).transpose(1, 2)))  # (B, 128, C): unit over the 128 features
        return out

    def forward(
        self, x: torch.Tensor, target: torch.Tensor, target_features: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B,) distances of images x to `target`; `target_features` (its `features`) saves recomputing them."""
        dist = (x - target).square().flatten(1).mean(1)  # (B,)
        mine = self.features(x)
        theirs = target_features if target_features is not None else self.features(target)
        d_layers = len(mine) - (1 if self.classifier is not None else 0)
        if d_layers:
            per_layer = [
                (a - b).square().sum(1).flatten(1).mean(1)
                for a, b in zip(mine[:d_layers], theirs[:d_layers], strict=True)
            ]
            dist = dist + torch.stack(per_layer).mean(0)
        if self.classifier is not None:
            dist = dist + (mine[-1] - theirs[-1]).square().sum(1).mean(1)
        return dist


def _unit(h: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """h scaled to unit length over dim 1 (channels) at every other position."""
    return h / (h.square().sum(1, keepdim=True) + eps).sqrt()


@dataclass
class Projection:
    """What projection found for N images: the latents, the noise maps, the reconstructions and the distances."""

    ws: np.ndarray  # float32 (N, num_ws, W); in space "w" every layer's w is the same
    noise: list[np.ndarray]  # float32 (N, 1, r, r), one per style layer
    images: np.ndarray  # float32 (N, C, H, W) in [-1, 1], G.synthesis(ws, noise)
    start_distance: np.ndarray  # float64 (N,), of the image at the start (mean w, the starting noise)
    final_distance: np.ndarray  # float64 (N,)
    space: Space
    steps: int
    distance: str
    seed: int
    history: list[float] = field(default_factory=list)  # the mean distance at each step


@contextlib.contextmanager
def _frozen(*nets: nn.Module | None) -> Iterator[None]:
    """The networks' parameters without gradients for the block (only the latents are optimised)."""
    params = [p for net in nets if net is not None for p in net.parameters()]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


def w_spread(generator: nn.Module, *, seed: int, device: torch.device) -> float:
    """σ_w: the root mean squared distance of mapped latents (labels drawn uniformly when conditional) to w_avg."""
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(W_STD_SAMPLES, int(generator.z_dim), generator=gen)  # type: ignore[arg-type]
    classes = int(getattr(generator, "num_classes", 0) or 0)
    labels = torch.randint(classes, (W_STD_SAMPLES,), generator=gen).to(device) if classes else None
    with torch.no_grad():
        w = generator.mapping(z.to(device), labels)  # type: ignore[operator]  # (S, W)
        w_avg = generator.mapping.w_avg  # type: ignore[union-attr]
        return float((w - w_avg).square().sum(1).mean().sqrt())


def learning_rate(t: float) -> float:
    """The learning rate at the fraction t ∈ [0, 1] of the steps: ramped up, then down along a cosine."""
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return INITIAL_LR * ramp * min(1.0, t / LR_RAMPUP)


def noise_regularization(maps: list[torch.Tensor]) -> torch.Tensor:
    """(B,) the squared autocorrelations of each noise map (B, 1, r, r) with itself shifted by one pixel, in x and
    y, at every scale down to 8×8 (averaged 2×2 each time)."""
    total = torch.zeros(maps[0].shape[0], device=maps[0].device)
    for n in maps:
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean((1, 2, 3)).square()
            total = total + (n * torch.roll(n, 1, dims=2)).mean((1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _normalize_noise(maps: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for n in maps:
            mean = n.mean((1, 2, 3), keepdim=True)
            std = n.std((1, 2, 3), keepdim=True)
            n.sub_(mean).div_(std)


def project(
    generator: nn.Module,
    targets: torch.Tensor,
    *,
    steps: int = 300,
    space: Space = "w",
    distance: Distance | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = BATCH_SIZE,
) -> Projection:
    """Project `targets` (N, C, H, W) in [-1, 1] into a style-based generator (see the module docstring)."""
    if not callable(getattr(generator, "synthesis", None)) or not hasattr(generator, "mapping"):
        raise ValueError("projection needs a style-based generator (model.arch stylegan2)")
    if space not in ("w", "w+"):
        raise ValueError(f"space must be w or w+, not {space!r}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, not {steps}")
    device = torch.device(device)
    distance = distance if distance is not None else Distance()
    num_ws = int(generator.num_ws)  # type: ignore[arg-type]
    n = targets.shape[0]
    parts: dict[str, list[Any]] = {k: [] for k in ("ws", "noise", "images", "start", "final", "history")}
    with _frozen(generator, distance):
        w_std = w_spread(generator, seed=seed, device=device)
        w_avg = generator.mapping.w_avg.detach().to(device)  # type: ignore[union-attr, operator]  # (W,)
        layers = list(generator.layers)  # type: ignore[arg-type]
        for start in range(0, n, batch_size):
            x = targets[start : start + batch_size].to(device).float()  # (B, C, H, W)
            b = x.shape[0]
            # One random stream per image, from (seed, its index): its result does not depend on the batch.
            gens = [torch.Generator().manual_seed(_stream_seed(seed, start + i)) for i in range(b)]
            ws = w_avg.expand(b, 1 if space == "w" else num_ws, -1).clone().requires_grad_(True)  # (B, 1|L, W)
            maps = [
                torch.stack([torch.randn(1, *layer.noise_const.shape[2:], generator=g) for g in gens])
                .to(device)
                .requires_grad_(True)
                for layer in layers
            ]  # (B, 1, r, r) each
            with torch.no_grad():
                target_features = distance.features(x)
                first = distance(_synthesize(generator, ws, maps, num_ws), x, target_features)
            best = _Best(first, ws, maps)
            optimizer = torch.optim.Adam([ws, *maps], lr=INITIAL_LR, betas=(0.9, 0.999))
            history = []
            for step in range(steps):
                t = step / steps
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(t)
                scale = w_std * W_NOISE * max(0.0, 1.0 - t / W_NOISE_RAMP) ** 2
                w_noise = torch.stack([torch.randn(ws.shape[1:], generator=g) for g in gens]).to(device) * scale
                dist = distance(_synthesize(generator, ws + w_noise, maps, num_ws), x, target_features)  # (B,)
                if scale == 0:  # the distance of the latents as they are, before this step moves them
                    best.offer(dist.detach(), ws, maps)
                loss = (dist + NOISE_REGULARIZE * noise_regularization(maps)).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                _normalize_noise(maps)
                history.append(float(dist.detach().sum()))
            with torch.no_grad():
                best.offer(distance(_synthesize(generator, ws, maps, num_ws), x, target_features), ws, maps)
                images = _synthesize(generator, best.ws, best.maps, num_ws)
            parts["ws"].append(best.ws.expand(b, num_ws, -1).float().cpu())
            parts["noise"].append([m.float().cpu() for m in best.maps])
            parts["images"].append(images.float().cpu())
            parts["start"].append(first.double().cpu())
            parts["final"].append(best.distance.double().cpu())
            parts["history"].append(history)
    totals = np.sum(np.array(parts["history"], dtype=np.float64), axis=0) / max(n, 1) if n else np.zeros(0)
    return Projection(
        ws=torch.cat(parts["ws"]).numpy(),
        noise=[torch.cat([batch[i] for batch in parts["noise"]]).numpy() for i in range(len(layers))],
        images=torch.cat(parts["images"]).numpy(),
        start_distance=torch.cat(parts["start"]).numpy(),
        final_distance=torch.cat(parts["final"]).numpy(),
        space=space,
        steps=steps,
        distance=distance.name,
        seed=seed,
        history=[float(v) for v in totals],
    )


class _Best:
    """Per image of a batch, the lowest distance offered so far and the latents and noise maps that gave it."""

    def __init__(self, distance: torch.Tensor, ws: torch.Tensor, maps: list[torch.Tensor]) -> None:
        self.distance = distance.detach().clone()  # (B,)
        self.ws = ws.detach().clone()  # (B, 1 | L, W)
        self.maps = [m.detach().clone() for m in maps]  # (B, 1, r, r) each

    def offer(self, distance: torch.Tensor, ws: torch.Tensor, maps: list[torch.Tensor]) -> None:
        better = distance < self.distance  # (B,)
        if bool(better.any()):
            self.distance = torch.where(better, distance, self.distance)
            self.ws[better] = ws.detach()[better]
            for kept, now in zip(self.maps, maps, strict=True):
                kept[better] = now.detach()[better]


def _stream_seed(seed: int, index: int) -> int:
    """The seed of image `index`'s random stream in a projection with `seed`."""
    return (int(seed) * 1_000_003 + index) % 2**63


def _synthesize(generator: nn.Module, ws: torch.Tensor, maps: list[torch.Tensor], num_ws: int) -> torch.Tensor:
    """Images (B, C, H, W) of ws (B, 1 | num_ws, W) with the noise maps."""
    return generator.synthesis(ws.expand(-1, num_ws, -1), maps)  # type: ignore[operator, no-any-return]


def output_names(names: list[str]) -> list[str]:
    """Each input's name with the suffix .png (`cats/a.jpg` → `cats/a.png`); a name taken by an earlier one keeps
    its whole input name before the suffix (`a.jpg.png`), then gets the image's index."""
    out: list[str] = []
    taken: set[str] = set()
    for i, name in enumerate(names):
        path = PurePosixPath(name)
        for candidate in (str(path.with_suffix(".png")), f"{name}.png", f"{path.with_suffix('')}-{i}.png"):
            if candidate not in taken:
                break
        taken.add(candidate)
        out.append(candidate)
    return out


def write_result(result: Projection, names: list[str], path: Path, *, extra: dict[str, Any] | None = None) -> Path:
    """A ZIP (written atomically, fixed timestamps) of the reconstructions as PNGs named as the inputs
    (`output_names`), `latents.npz` and `projection.json`.

    latents.npz: `ws` float32 (N, num_ws, W); `w` float32 (N, W) in space w; `noise_<i>` float32 (N, 1, r, r) per
    style layer (G.synthesis(ws, noise) gives the reconstructions; with the generator's own noise the image is
    close but not equal); `start_distance`, `final_distance` float64 (N,); `names` (N,) the input names.
    projection.json: the space, steps, seed, distance and each image's file and distances, plus `extra`.
    """
    files = output_names(names)
    arrays: dict[str, np.ndarray] = {"ws": result.ws}
    if result.space == "w":
        arrays["w"] = result.ws[:, 0]
    for i, n in enumerate(result.noise):
        arrays[f"noise_{i}"] = n
    arrays["start_distance"] = result.start_distance
    arrays["final_distance"] = result.final_distance
    arrays["names"] = np.array(names, dtype=np.str_)
    summary = {
        **(extra or {}),
        "space": result.space,
        "steps": result.steps,
        "seed": result.seed,
        "distance": result.distance,
        "items": [
            {
                "name": name,
                "file": file,
                "start_distance": float(result.start_distance[i]),
                "final_distance": float(result.final_distance[i]),
            }
            for i, (name, file) in enumerate(zip(names, files, strict=True))
        ],
    }
    pixels = to_uint8(result.images)  # (N, H, W, C)
    with atomic_write(path) as f, zipfile.ZipFile(f, "w") as archive:
        for file, image in zip(files, pixels, strict=True):
            _entry(archive, file, png_bytes(_pil(image)), compress=False)
        _entry(archive, "latents.npz", _npz_bytes(arrays), compress=True)
        _entry(archive, "projection.json", json.dumps(summary, indent=1).encode(), compress=True)
    return path


def _pil(pixels: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(pixels[:, :, 0], mode="L") if pixels.shape[2] == 1 else Image.fromarray(pixels, mode="RGB")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (no pickles; fixed timestamps) of the arrays."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, array in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(array), allow_pickle=False)
            _entry(archive, f"{name}.npy", data.getvalue(), compress=False)
    return buf.getvalue()


def _entry(archive: zipfile.ZipFile, name: str, data: bytes, *, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)
