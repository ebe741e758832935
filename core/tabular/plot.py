"""A table's sample picture: one small histogram per column, real rows (grey) beside synthetic rows (blue)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from core.tabular.columns import Column, Table

PANEL = (200, 120)  # width, height of one column's histogram, in pixels
PER_ROW = 4
MAX_PANELS = 32  # a wider table shows its first columns
BINS = 16  # numeric columns; categorical ones show their MAX_BARS most frequent real categories
MAX_BARS = 12
REAL, SYNTHETIC = (150, 150, 150), (40, 90, 200)


def _shares(real: np.ndarray, fake: np.ndarray, column: Column) -> tuple[np.ndarray, np.ndarray]:
    """Each set's share of rows per bar: numeric bins over the real range, or categories, then missing last."""
    if column.kind in ("continuous", "discrete", "datetime"):
        r, f = real[~np.isnan(real)], fake[~np.isnan(fake)]
        lo, hi = (float(r.min()), float(r.max())) if len(r) else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1)
        counts_r = np.histogram(np.clip(r, edges[0], edges[-1]), edges)[0]
        counts_f = np.histogram(np.clip(f, edges[0], edges[-1]), edges)[0]
        missing_r, missing_f = len(real) - len(r), len(fake) - len(f)
    else:
        names, counts = np.unique(np.array([v for v in real if v is not None], dtype=str), return_counts=True)
        top = [str(n) for n in names[np.argsort(-counts, kind="stable")][:MAX_BARS]]
        counts_r = np.array([sum(1 for v in real if v == t) for t in top])
        counts_f = np.array([sum(1 for v in fake if v == t) for t in top])
        missing_r, missing_f = sum(v is None for v in real), sum(v is None for v in fake)
    counts_r, counts_f = np.append(counts_r, missing_r), np.append(counts_f, missing_f)
    return counts_r / max(len(real), 1), counts_f / max(len(fake), 1)


def histograms(real: Table, fake: Table, columns: list[Column]) -> Image.Image:
    """One panel per column (at most MAX_PANELS): its name and the two sets' bars side by side."""
    shown = columns[:MAX_PANELS]
    rows = max(1, math.ceil(len(shown) / PER_ROW))
    w, h = PANEL
    image = Image.new("RGB", (w * min(PER_ROW, max(len(shown), 1)), h * rows), "white")
    draw = ImageDraw.Draw(image)
    for i, column in enumerate(shown):
        left, top = (i % PER_ROW) * w, (i // PER_ROW) * h
        draw.text((left + 4, top + 2), f"{column.name[:28]} ({column.kind})", fill=(0, 0, 0))
        share_r, share_f = _shares(real[column.name], fake[column.name], column)
        tallest = max(float(share_r.max()), float(share_f.max()), 1e-9)
        bar = (w - 8) / len(share_r)
        base, room = top + h - 4, h - 22
        for j, (a, b) in enumerate(zip(share_r, share_f, strict=True)):
            x = left + 4 + j * bar
            draw.rectangle([x, base - room * a / tallest, x + bar / 2 - 1, base], fill=REAL)
            draw.rectangle([x + bar / 2, base - room * b / tallest, x + bar - 1, base], fill=SYNTHETIC)
        draw.rectangle([left, top, left + w - 1, top + h - 1], outline=(220, 220, 220))
    return image
