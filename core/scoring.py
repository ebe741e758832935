"""Anomaly scores of images against a trained GAN: what the discriminator thinks of them, and how well the
generator can reconstruct them (AnoGAN, Schlegl et al. 2017).

For each image x, higher scores mean more anomalous:
- `discriminator` = −D(x), the negated logit (for a conditional run, of the class D finds most real; for a
  cluster-conditioned run, of the cluster D finds most real, and the `class` column stays −1).
- AnoGAN latent search: z is optimised with Adam for `steps` so that G(z) reconstructs x, minimising
  (1 − λ)·residual + λ·feature, where residual = mean |x − G(z)| over pixels and feature = mean
  |f(x) − f(G(z))| over the discriminator's last features (AnoGAN's discrimination loss, on means rather than
  sums so that λ weighs terms of comparable size at any image size). `anogan` is that loss at the end, and
  `residual` and `feature` are reported too.

Networks are in eval mode (BatchNorm uses its running statistics), so an image's score does not depend on the
other images in its batch; the starting latents come from `seed`, so the same request gives the same scores.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from torch import nn

from core.config import RunConfig
from core.generate import sample_latents
from core.layout import atomic_write_text

BATCH_SIZE = 64
LEARNING_RATE = 0.05
# Conditional runs are scored against the class D finds most real; beyond this many classes that is too slow.
MAX_CLASSES = 100


@dataclass
class Scorer:
    generator: nn.Module
    discriminator: nn.Module
    cfg: RunConfig
    data_info: dict[str, Any]

    @property
    def num_classes(self) -> int:
        """The labels D is conditioned on: the run's clusters (all their combinations, with a cluster per
        channel), the dataset's classes (times the clusters within each, `model.class_clusters`), or 0."""
        m = self.cfg.model
        return m.label_classes(int(self.data_info.get("num_classes") or 0)) ** m.label_groups(
            int(self.data_info.get("channels") or 0)
        )


def load_scorer(path: Path | str, *, ema: bool = True, device: str | torch.device = "cpu") -> Scorer:
    """The generator (its EMA copy when `ema` and present) and the discriminator of a checkpoint, frozen, eval."""
    from core.checkpoint import load_generator
    from core.networks import build_discriminator

    generator, cfg, data_info = load_generator(path, ema=ema, device=device)
    if data_info.get("kind") == "points" or not data_info.get("channels"):
        raise ValueError("Anomaly scoring works on image runs; this run is trained on 2-D points")
    if cfg.model.arch == "stylegan2":
        from core.networks_stylegan2 import build_discriminator as build_style_discriminator

        discriminator: nn.Module = build_style_discriminator(
            cfg, channels=data_info["channels"], num_classes=data_info["num_classes"]
        )
    else:
        discriminator = build_discriminator(cfg, channels=data_info["channels"], num_classes=data_info["num_classes"])
    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {k[2:]: f.get_tensor(k) for k in f.keys() if k.startswith("D.")}
    discriminator.load_state_dict(state)
    discriminator.to(device).eval()
    for net in (generator, discriminator):
        net.requires_grad_(False)
    return Scorer(generator=generator, discriminator=discriminator, cfg=cfg, data_info=data_info)


def prepare_images(images: np.ndarray, *, channels: int, image_size: int) -> torch.Tensor:
    """uint8 images (N, H, W, C) -> float32 (N, channels, S, S) in [-1, 1]: center-cropped to a square,
    resized (Pillow BILINEAR, as the trainer resizes uploads), converted to gray or RGB as the run needs."""
    out = np.empty((len(images), image_size, image_size, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        h, w, c = image.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = image[top : top + side, left : left + side]
        pil = Image.fromarray(square[:, :, 0] if c == 1 else square[:, :, :3])
        pil = pil.convert("L" if channels == 1 else "RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(pil).reshape(image_size, image_size, channels)
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float()  # (N, C, S, S) in 0..255
    return x / 127.5 - 1.0


def _discriminate(scorer: Scorer, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits (B,) and features (B, F) for each image; a packed D sees `pack` copies of the image."""
    pack = scorer.cfg.model.pack
    xp = x.repeat_interleave(pack, 0) if pack > 1 else x  # (B * pack, C, H, W)
    logits, features, _ = scorer.discriminator(xp, labels)
    return logits, features  # (B,), (B, F)


def _best_classes(scorer: Scorer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's logit (B,) for each image and the class it was judged as (B,), or None for an unconditional run."""
    k = scorer.num_classes
    if k == 0:
        return _discriminate(scorer, x, None)[0], None
    if scorer.cfg.model.d_conditioning == "acgan":
        logits, _, class_logits = scorer.discriminator(x, None)
        return logits, class_logits.argmax(1)
    if k > MAX_CLASSES:
        what = "clusters" if scorer.cfg.model.clusters else "classes"
        raise ValueError(f"Anomaly scoring of a conditional run with more than {MAX_CLASSES} {what} is not supported")
    per_class = []
    for c in range(k):
        label = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)  # (B,)
        per_class.append(_discriminate(scorer, x, label)[0])
    best, classes = torch.stack(per_class, dim=1).max(1)  # (B, K) -> (B,), (B,)
    return best, classes


def score_images(
    scorer: Scorer,
    images: torch.Tensor,
    *,
    steps: int = 100,
    weight: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Scores of `images` (N, C, H, W) in [-1, 1]: arrays (N,) named discriminator, residual, feature, anogan,
    and `class` (the class each image was judged as; −1 for unconditional runs)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 and 1, not {weight}")
    n = images.shape[0]
    z_all = sample_latents(n, scorer.cfg.model.z_dim, seed=seed)  # (N, Z) starting latents
    columns = {name: np.empty(n, dtype=np.float64) for name in ("discriminator", "residual", "feature", "anogan")}
    classes = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size].to(device)  # (B, C, H, W)
        stop = start + x.shape[0]
        with torch.no_grad():
            logits, labels = _best_classes(scorer, x)
            target = _discriminate(scorer, x, labels)[1]  # (B, F)
        columns["discriminator"][start:stop] = (-logits).double().cpu().numpy()
        if labels is not None and not scorer.cfg.model.clusters:  # D's label id: the class, or class · k + cluster
            classes[start:stop] = labels.cpu().numpy() // (scorer.cfg.model.class_clusters or 1)

        # The latent search: one z per image, optimised together (each image's loss depends on its z only).
        z = z_all[start:stop].clone().to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=LEARNING_RATE)
        for _ in range(steps):
            with torch.enable_grad():
                residual, feature = _reconstruction(scorer, x, z, labels, target)  # (B,), (B,)
                loss = ((1.0 - weight) * residual + weight * feature).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
        with torch.no_grad():
            residual, feature = _reconstruction(scorer, x, z, labels, target)
        columns["residual"][start:stop] = residual.double().cpu().numpy()
        columns["feature"][start:stop] = feature.double().cpu().numpy()
        columns["anogan"][start:stop] = ((1.0 - weight) * residual + weight * feature).double().cpu().numpy()
    return {**columns, "class": classes}


def _reconstruction(
    scorer: Scorer, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: mean |x − G(z)| (B,) and mean |f(x) − f(G(z))| (B,), G given D's label ids `labels`."""
    # With clusters within classes D's ids name the class's cluster too, and G is given the id as it is.
    within = scorer.cfg.model.class_clusters
    fake = scorer.generator(z, None, ids=labels) if within else scorer.generator(z, labels)  # (B, C, H, W)
    residual = (x - fake).abs().flatten(1).mean(1)  # (B,)
    features = _discriminate(scorer, fake, labels)[1]  # (B, F)
    return residual, (target - features).abs().mean(1)


def write_results(
    scores: dict[str, np.ndarray],
    *,
    names: list[str] | None,
    labels: list[str] | None,
    json_path: Path,
    csv_path: Path,
    extra: dict[str, Any],
) -> None:
    """The scores as JSON `{"items": [{index, name, label, discriminator, residual, feature, anogan, class}],
    ...extra}` and as CSV with the same columns; each written atomically."""
    n = len(scores["anogan"])
    header = ["index", "name", "label", "discriminator", "residual", "feature", "anogan", "class"]
    items = [
        {
            "index": i,
            "name": names[i] if names else None,
            "label": labels[i] if labels else None,
            "discriminator": float(scores["discriminator"][i]),
            "residual": float(scores["residual"][i]),
            "feature": float(scores["feature"][i]),
            "anogan": float(scores["anogan"][i]),
            "class": int(scores["class"][i]),
        }
        for i in range(n)
    ]
    atomic_write_text(json_path, json.dumps({**extra, "count": n, "items": items}))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for item in items:
        writer.writerow(["" if item[key] is None else item[key] for key in header])
    atomic_write_text(csv_path, text.getvalue())
