from __future__ import annotations

import io

import torch
from PIL import Image

from core import grids
from core.datasets import mixture_modes


def _decode(path) -> Image.Image:
    with open(path, "rb") as f:
        image = Image.open(io.BytesIO(f.read()))
        image.load()
    return image


def test_image_grid_writes_a_png_mosaic(tmp_path):
    images = torch.rand(10, 3, 8, 8) * 2 - 1
    size = grids.save_png(grids.image_grid(images, nrow=5), tmp_path / "g.png")
    image = _decode(tmp_path / "g.png")
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == (5 * 10 + 2, 2 * 10 + 2)
    assert size == (tmp_path / "g.png").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_grayscale_grid_is_mode_l_and_maps_minus_one_to_black(tmp_path):
    images = -torch.ones(4, 1, 8, 8)
    images[0] = 1
    grids.save_png(grids.image_grid(images), tmp_path / "g.png")
    image = _decode(tmp_path / "g.png")
    assert image.mode == "L"
    assert image.getpixel((2, 2)) == 255 and image.getpixel((12, 2)) == 0


def test_scatter_plot_draws_points_over_modes(tmp_path):
    modes, _ = mixture_modes("ring8")
    points = modes.repeat(10, 1) + 0.01 * torch.randn(80, 2)
    grids.save_png(grids.scatter_plot(points, modes=modes), tmp_path / "s.png")
    image = _decode(tmp_path / "s.png")
    assert image.size == (512, 512) and image.mode == "RGB"
    colors = {c for _, c in image.getcolors(maxcolors=100_000)}
    assert (40, 90, 200) in colors and (220, 30, 30) in colors
