"""Applying a trained translation model to a user's images (translation jobs, worker/translations.py).

    tr = load_translator(path, ema=True)                 # a pix2pix, cyclegan or srgan checkpoint
    x = prepare_inputs(tr, images, direction="AtoB")     # (N, C, S, S) float32 in [-1, 1]
    out = translate(tr, x, direction="AtoB")             # (N, C', H', W') float32 in [-1, 1], on the CPU

A translation family's module (core/families/) exposes `generator(cfg, info) -> nn.Module`: its G as a checkpoint
stores it (`G.*`, `G_ema.*`), built from the checkpoint's config and `data` facts, and may expose
`translator(G, cfg, path) -> nn.Module`, the module it applies around G (srgan's train.detail_blend reads the
checkpoint's pretrained generator too). Calling that module (or, for
cyclegan, its `ab` or `ba`) maps an input batch (B, C_in, H, W) to outputs (B, C_out, H', W'). The input's channels
are the data's `source_channels` (pix2pix), `channels` or `b_channels` (cyclegan AtoB or BtoA), else `channels`.

Inputs are brought to what the generator was trained on: their channels (grey repeated into colour, colour to grey
by ITU-R 601 luma, as Pillow converts), then, for pix2pix and cyclegan, center-cropped to a square and resized
(bilinear, antialiased) to the run's image size; an srgan input keeps its size, so its output is `model.scale`
times that. The generator runs in eval mode (dropout off, batch norm on its running statistics) in float32, in
fixed batches, so the same inputs give the same outputs.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from core.checkpoint import read_generator_state
from core.config import RunConfig
from core.generate import ZIP_DATE_TIME, Samples, to_uint8, write_npz
from core.grids import image_grid, png_bytes
from core.layout import atomic_write, atomic_write_bytes

DIRECTIONS = ("AtoB", "BtoA")
BATCH = 16  # images per forward pass: fixed, so a job's outputs do not depend on how many images it holds
PAIRS_SHOWN = 16  # input → output pairs in pairs.png
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2, Pillow's RGB → L


@dataclass
class Translator:
    """A checkpoint's generator(s) in eval mode, with the config and data facts that say how to feed them."""

    G: nn.Module
    cfg: RunConfig
    data_info: dict[str, Any]

    def route(self, direction: str) -> tuple[nn.Module, int]:
        """The module that translates in `direction`, and the channels its input has."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: {direction!r} is not AtoB or BtoA")
        info, arch = self.data_info, self.cfg.model.arch
        if arch == "cyclegan":
            if direction == "AtoB":
                return self.G.ab, int(info["channels"])  # type: ignore[return-value]
            return self.G.ba, int(info["b_channels"])  # type: ignore[return-value]
        if direction != "AtoB":
            raise ValueError(f"direction: a {arch} run translates one way (AtoB); only cyclegan runs also go BtoA")
        return self.G, int(info.get("source_channels", info["channels"]))

    @property
    def input_size(self) -> int | None:
        """The side inputs are resized to; None when the generator takes any size (srgan)."""
        return None if self.cfg.model.arch == "srgan" else self.cfg.model.image_size


def load_translator(path: Path | str, *, ema: bool = True, device: str | torch.device = "cpu") -> Translator:
    """The translation generator of a checkpoint (its EMA copy when `ema` and present), in eval mode."""
    from core.families import family_of

    state, meta = read_generator_state(Path(path), ema=ema)
    cfg = RunConfig.model_validate_json(meta["config"])
    family = family_of(cfg.model.arch)
    build = getattr(family, "generator", None)
    if build is None:
        raise ValueError(
            f"this run trains {cfg.model.arch}, which samples from noise; translations need a pix2pix, cyclegan or "
            "srgan run"
        )
    data_info = json.loads(meta["data"])
    G = build(cfg, data_info)
    G.load_state_dict(state)
    wrap = getattr(family, "translator", None)  # what the family applies around G, when more than G
    if wrap is not None:
        G = wrap(G, cfg, Path(path))
    G.to(device).eval()
    return Translator(G=G, cfg=cfg, data_info=data_info)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Uploaded images (N, H, W, C) uint8 as (N, C, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def prepare_inputs(tr: Translator, x: torch.Tensor, *, direction: str) -> torch.Tensor:
    """Images (N, C, H, W) float in [-1, 1] with the channels and size the generator takes (module docstring)."""
    _, channels = tr.route(direction)
    x = x.float()
    if x.shape[1] != channels:
        if channels == 1:
            x = (x[:, :3] * LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True) if x.shape[1] >= 3 else x[:, :1]
        else:
            x = x[:, :1].expand(-1, channels, -1, -1)
    size = tr.input_size
    if size is not None and x.shape[-2:] != (size, size):
        h, w = x.shape[-2:]
        short = min(h, w)
        top, left = (h - short) // 2, (w - short) // 2
        x = x[:, :, top : top + short, left : left + short]  # the centre square
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1).contiguous()


@torch.no_grad()
def translate(
    tr: Translator, x: torch.Tensor, *, direction: str, device: str | torch.device = "cpu", seed: int = 0
) -> torch.Tensor:
    """The generator's outputs (N, C', H', W') float32 on the CPU for prepared inputs `x` (N, C, H, W). A cyclegan
    with a latent code (model.latent_dim) translates BtoA input i with the code drawn for it from `seed`
    (core.families.cyclegan.image_latents), so a job's outputs are the same however it is batched."""
    from core.families.cyclegan import image_latents

    G, _ = tr.route(direction)
    latent = tr.cfg.model.latent_dim if tr.cfg.model.arch == "cyclegan" and direction == "BtoA" else 0
    outs = []
    for start in range(0, len(x), BATCH):
        xb = x[start : start + BATCH].to(device)
        if latent:
            z = image_latents(len(xb), latent, seed=seed, start=start).to(device)  # (B, L)
            outs.append(G(xb, z).float().cpu().clamp(-1, 1))
        else:
            outs.append(G(xb).float().cpu().clamp(-1, 1))
    return torch.cat(outs)


def output_names(names: list[str]) -> list[str]:
    """Each input's archive name with the suffix .png (`photos/cat.jpg` → `photos/cat.png`); when two inputs would
    share a name, the later keeps its whole name plus .png (`cat.jpg.png`)."""
    out: list[str] = []
    taken: set[str] = set()
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        candidate = str(path.with_suffix(".png"))
        if candidate in taken:
            candidate = f"{path}.png"
        taken.add(candidate)
        out.append(candidate)
    return out


def write_zip(outputs: torch.Tensor, names: list[str], path: Path) -> Path:
    """One PNG per output (N, C, H, W), named as its input (`output_names`); fixed timestamps, so the same
    outputs give the same bytes."""
    pixels = to_uint8(outputs.numpy())  # (N, H, W, C)
    with atomic_write(path) as f, zipfile.ZipFile(f, "w") as archive:
        for image, name in zip(pixels, output_names(names), strict=True):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED  # PNG is deflated already
            info.external_attr = 0o644 << 16
            archive.writestr(info, _png(image))
    return path


def write_outputs_npz(outputs: torch.Tensor, path: Path) -> Path:
    """The outputs as an .npz whose `samples` is float32 (N, C, H, W) in [-1, 1], as generations write it."""
    return write_npz(Samples(samples=outputs.numpy(), labels=None), path)


def write_pairs(inputs: torch.Tensor, outputs: torch.Tensor, path: Path) -> Path:
    """A PNG of the first PAIRS_SHOWN input → output pairs, four pairs a row; inputs shown at the outputs' size
    and channels."""
    n = min(PAIRS_SHOWN, len(outputs))
    x, y = inputs[:n].float(), outputs[:n].float()
    if x.shape[-2:] != y.shape[-2:]:
        x = F.interpolate(x, size=y.shape[-2:], mode="nearest")
    c = max(x.shape[1], y.shape[1])
    x, y = (t if t.shape[1] == c else t[:, :1].expand(-1, c, -1, -1) for t in (x, y))
    pairs = torch.stack([x, y], dim=1).flatten(0, 1)  # (2n, C, H, W): input, output, input, output, ...
    atomic_write_bytes(path, png_bytes(image_grid(pairs, nrow=2 * min(4, n))))
    return path


def _png(image: np.ndarray) -> bytes:
    """(H, W, C) uint8, C = 1 or 3, as PNG bytes (mode L or RGB, by shape)."""
    return png_bytes(Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image))
