"""The layers of a style-based generator (core.networks_stylegan2) as users name them, without torch, so that the
API checks a request's `style_mix.layers` against a checkpoint before queueing it.

A generator of side S has one w per synthesis layer: the 4×4 style layer and its toRGB, then two style layers
and a toRGB per doubling up to S, so 2·log2(S) − 2 in all, numbered from 0 (the coarsest).
"""

from __future__ import annotations

import re


def num_ws(image_size: int) -> int:
    """How many ws a style-based generator of side `image_size` (a power of 2, at least 4) takes: 6 at 16 px."""
    log2 = image_size.bit_length() - 1
    if image_size < 4 or image_size != 1 << log2:
        raise ValueError(f"image_size must be a power of 2 of at least 4, not {image_size}")
    return 2 * log2 - 2


def parse_layers(layers: str, count: int) -> list[int]:
    """'0-3' -> [0, 1, 2, 3], '5' -> [5]: the synthesis layers (0 = the coarsest) a style-mixing column sets, of
    `count` layers."""
    match = re.fullmatch(r"\s*(\d{1,4})\s*(?:-\s*(\d{1,4})\s*)?", layers)
    if match is None:
        raise ValueError(f"style_mix.layers: write a layer or a range such as '0-3', not {layers!r}")
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if not first <= last < count:
        raise ValueError(f"style_mix.layers: this generator has layers 0 to {count - 1}; {layers!r} is outside")
    return list(range(first, last + 1))
