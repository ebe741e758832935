"""PNG pictures of samples (Pillow), for training grids and generations alike: image mosaics, and scatter plots of
2-D samples, over the real modes or coloured by group."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from core.layout import atomic_write_bytes

# Distinct colours for the groups (classes or walks) of a scatter plot; ungrouped points are POINT_COLOUR.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip
POINT_COLOUR = (40, 90, 200)
MODE_COLOUR = (220, 30, 30)


def image_grid(images: torch.Tensor | np.ndarray, *, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A mosaic of images (N, C, H, W) in [-1, 1], `nrow` per row (default: a square): 1 channel -> grayscale,
    3 -> RGB, 4 -> RGBA, else channel 0."""
    x = torch.as_tensor(images).detach().float().cpu().clamp(-1, 1)
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
    points: torch.Tensor | np.ndarray,
    *,
    modes: torch.Tensor | None = None,
    groups: np.ndarray | None = None,
    size: int = 512,
    extent: float | None = None,
) -> Image.Image:
    """2-D points (N, 2) as dots on a white square, over the real modes (red rings) when given; `groups` (N,)
    colours the dots from PALETTE. The axes span ±`extent`: by default the modes' reach × 1.5 + 0.1 (the same
    frame on every grid of a run), else 1.1 × the farthest finite point."""
    p = torch.as_tensor(points).detach().float().cpu().numpy()  # (N, 2)
    centres = modes.detach().float().cpu().numpy() if modes is not None else np.zeros((0, 2), np.float32)  # (M, 2)
    if extent is None:
        if len(centres):
            extent = float(np.abs(centres).max()) * 1.5 + 0.1
        else:
            extent = max(float(np.abs(p[np.isfinite(p)]).max(initial=1.0)) * 1.1, 1e-6)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)

    def to_pixel(xy: np.ndarray) -> tuple[float, float]:
        return ((xy[0] + extent) / (2 * extent) * (size - 1), (extent - xy[1]) / (2 * extent) * (size - 1))

    # The axes through the origin.
    mid = (size - 1) / 2
    draw.line([(0, mid), (size - 1, mid)], fill=(225, 225, 225))
    draw.line([(mid, 0), (mid, size - 1)], fill=(225, 225, 225))
    # The points, then the real modes on top.
    for i in np.flatnonzero(np.isfinite(p).all(1)):
        u, v = to_pixel(p[i])
        if 0 <= u < size and 0 <= v < size:
            colour = PALETTE[int(groups[i]) % len(PALETTE)] if groups is not None else POINT_COLOUR
            draw.ellipse([u - 1.5, v - 1.5, u + 1.5, v + 1.5], fill=colour)
    for xy in centres:
        u, v = to_pixel(xy)
        draw.ellipse([u - 6, v - 6, u + 6, v + 6], outline=MODE_COLOUR, width=2)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image: Image.Image, path: Path) -> int:
    """Write a PNG atomically (core.layout.atomic_write); returns its size in bytes."""
    data = png_bytes(image)
    atomic_write_bytes(path, data)
    return len(data)
