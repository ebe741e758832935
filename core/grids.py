"""PNG sample grids (Pillow): image mosaics, and scatter plots of 2-D samples over the real modes."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def image_grid(images: torch.Tensor, *, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A mosaic of images (N, C, H, W) in [-1, 1]: 1 channel -> grayscale, 3 -> RGB, 4 -> RGBA, else channel 0."""
    x = images.detach().float().cpu().clamp(-1, 1)
    n, c, h, w = x.shape
    if c not in (1, 3, 4):
        x, c = x[:, :1], 1
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    pixels = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    canvas = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        canvas[top : top + h, left : left + w] = pixels[i]
    return Image.fromarray(canvas[:, :, 0] if c == 1 else canvas)  # L, RGB or RGBA by shape


def scatter_plot(
    points: torch.Tensor, *, modes: torch.Tensor | None = None, size: int = 512, extent: float | None = None
) -> Image.Image:
    """Generated 2-D points (N, 2) as blue dots over the real modes (red rings), on a white square."""
    p = points.detach().float().cpu().numpy()
    centres = modes.detach().float().cpu().numpy() if modes is not None else np.zeros((0, 2), dtype=np.float32)
    if extent is None:
        reach = np.abs(centres).max() if len(centres) else np.abs(p[np.isfinite(p)]).max(initial=1.0)
        extent = float(reach) * 1.5 + 0.1
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)

    def to_pixel(xy: np.ndarray) -> tuple[float, float]:
        return ((xy[0] + extent) / (2 * extent) * (size - 1), (extent - xy[1]) / (2 * extent) * (size - 1))

    # The axes through the origin.
    mid = (size - 1) / 2
    draw.line([(0, mid), (size - 1, mid)], fill=(225, 225, 225))
    draw.line([(mid, 0), (mid, size - 1)], fill=(225, 225, 225))
    # The generated points, then the real modes on top.
    for xy in p[np.isfinite(p).all(1)]:
        u, v = to_pixel(xy)
        if 0 <= u < size and 0 <= v < size:
            draw.ellipse([u - 1.5, v - 1.5, u + 1.5, v + 1.5], fill=(40, 90, 200))
    for xy in centres:
        u, v = to_pixel(xy)
        draw.ellipse([u - 6, v - 6, u + 6, v + 6], outline=(220, 30, 30), width=2)
    return image


def save_png(image: Image.Image, path: Path) -> int:
    """Write a PNG atomically (temp file in the same folder, then rename); returns its size in bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)
