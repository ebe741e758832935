from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import generate as g


class TinyGenerator(torch.nn.Module):
    """A stand-in with the generator interface: (B, z_dim) latents (+ labels) -> (B, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int = 8, channels: int = 1, size: int = 8, num_classes: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shape = (channels, size, size) if channels else (2,)
        self.embed = torch.nn.Embedding(max(num_classes, 1), z_dim)
        self.linear = torch.nn.Linear(z_dim, int(np.prod(self.shape)))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            z = z + self.embed(labels)
        x = self.linear(z)
        if len(self.shape) == 1:
            return x  # (B, 2)
        return torch.tanh(x).view(-1, *self.shape)  # (B, C, H, W)


def test_same_request_gives_byte_identical_npz(tmp_path: Path) -> None:
    gen = TinyGenerator(num_classes=10).eval()
    paths = []
    for name in ("a.npz", "b.npz"):
        result = g.generate(gen, z_dim=8, num_classes=10, n=300, seed=7, truncation=0.7, labels=[1, 4])
        paths.append(g.write_npz(result, tmp_path / name))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = g.generate(gen, z_dim=8, num_classes=10, n=300, seed=8, truncation=0.7, labels=[1, 4])
    g.write_npz(other, tmp_path / "c.npz")
    assert (tmp_path / "c.npz").read_bytes() != paths[0].read_bytes()


def test_npz_holds_float32_samples_and_labels(tmp_path: Path) -> None:
    gen = TinyGenerator(channels=3, num_classes=10).eval()
    result = g.generate(gen, z_dim=8, num_classes=10, n=5, seed=0, labels=[3, 7])
    with np.load(g.write_npz(result, tmp_path / "s.npz"), allow_pickle=False) as data:
        assert data["samples"].dtype == np.float32
        assert data["samples"].shape == (5, 3, 8, 8)
        assert data["labels"].tolist() == [3, 7, 3, 7, 3]


def test_npz_of_points_has_no_labels(tmp_path: Path) -> None:
    gen = TinyGenerator(channels=0).eval()
    result = g.generate(gen, z_dim=8, num_classes=0, n=10, seed=0)
    with np.load(g.write_npz(result, tmp_path / "s.npz"), allow_pickle=False) as data:
        assert data["samples"].shape == (10, 2)
        assert "labels" not in data


@pytest.mark.parametrize("psi", [pytest.param(p, id=f"psi={p}") for p in (0.01, 0.5, 1.0, 2.5)])
def test_truncation_keeps_every_coordinate_within_psi(psi: float) -> None:
    z = g.sample_latents(500, 32, seed=3, truncation=psi)
    assert z.shape == (500, 32)
    assert float(z.abs().max()) <= psi
    assert torch.isfinite(z).all()
    # Still spread out inside the bound, not collapsed to a point.
    assert float(z.std()) > psi / 4


def test_truncation_rejects_zero() -> None:
    with pytest.raises(ValueError, match="truncation must be > 0"):
        g.sample_latents(4, 4, seed=0, truncation=0.0)


def test_latents_depend_only_on_the_seed() -> None:
    assert torch.equal(g.sample_latents(10, 4, seed=5), g.sample_latents(10, 4, seed=5))
    assert not torch.equal(g.sample_latents(10, 4, seed=5), g.sample_latents(10, 4, seed=6))
    truncated = g.sample_latents(10, 4, seed=5, truncation=0.3)
    assert torch.equal(truncated, g.sample_latents(10, 4, seed=5, truncation=0.3))


def test_labels_cycle_over_n() -> None:
    labels = g.cycle_labels(5, [3, 7])
    assert labels is not None
    assert labels.tolist() == [3, 7, 3, 7, 3]
    assert g.cycle_labels(5, None) is None


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        pytest.param([1], 0, "labels: this run is unconditional, so it takes no labels", id="unconditional"),
        pytest.param([10], 10, "labels: 10 is out of range; this run has classes 0 to 9", id="too-big"),
        pytest.param([-1], 10, "labels: -1 is out of range; this run has classes 0 to 9", id="negative"),
    ],
)
def test_bad_labels_are_refused(labels: list[int], num_classes: int, message: str) -> None:
    with pytest.raises(ValueError) as error:
        g.check_labels(labels, num_classes)
    assert str(error.value) == message


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_interpolation_walks_start_and_end_at_their_latents(mode: g.Mode) -> None:
    z0, z1 = torch.randn(3, 6), torch.randn(3, 6)
    walk = g.interpolate_latents(z0, z1, steps=5, mode=mode)
    assert walk.shape == (15, 6)
    walks = walk.view(3, 5, 6)
    torch.testing.assert_close(walks[:, 0], z0)
    torch.testing.assert_close(walks[:, -1], z1)


def test_slerp_keeps_the_norm_between_equal_norm_ends() -> None:
    z0 = torch.tensor([[1.0, 0.0]])
    z1 = torch.tensor([[0.0, 1.0]])
    walk = g.interpolate_latents(z0, z1, steps=7, mode="slerp")
    torch.testing.assert_close(walk.norm(dim=1), torch.ones(7))


def test_walks_give_a_grid_with_rows_of_walks_and_a_gif(tmp_path: Path) -> None:
    gen = TinyGenerator(num_classes=10).eval()
    result = g.generate_walks(gen, z_dim=8, num_classes=10, n=3, steps=4, mode="slerp", seed=0, labels=[2])
    assert result.samples.shape == (12, 1, 8, 8)
    assert result.rows == 3
    assert result.labels is not None and set(result.labels.tolist()) == {2}
    with Image.open(g.write_png(result, tmp_path / "walk.png")) as grid:
        # 4 columns (steps) by 3 rows (walks) of 8-px tiles with 2-px padding.
        assert grid.size == (4 * 10 + 2, 3 * 10 + 2)
    with Image.open(g.write_gif(result, tmp_path / "walk.gif")) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 2 * 4 - 2


def test_walks_of_points_give_a_scatter_and_a_gif(tmp_path: Path) -> None:
    gen = TinyGenerator(channels=0).eval()
    result = g.generate_walks(gen, z_dim=8, num_classes=0, n=2, steps=3, mode="lerp", seed=0)
    assert result.samples.shape == (6, 2)
    with Image.open(g.write_png(result, tmp_path / "walk.png")) as image:
        assert image.format == "PNG"
    with Image.open(g.write_gif(result, tmp_path / "walk.gif")) as gif:
        assert gif.n_frames == 4


def test_zip_has_class_folders_and_labels_csv(tmp_path: Path) -> None:
    gen = TinyGenerator(num_classes=10).eval()
    result = g.generate(gen, z_dim=8, num_classes=10, n=5, seed=0, labels=[3, 7])
    path = g.write_zip(result, tmp_path / "s.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names == ["3/00000.png", "7/00001.png", "3/00002.png", "7/00003.png", "3/00004.png", "labels.csv"]
        rows = list(csv.reader(io.StringIO(archive.read("labels.csv").decode())))
        assert rows[0] == ["file", "label"]
        assert rows[1:] == [[name, name.split("/")[0]] for name in names[:-1]]
        with Image.open(io.BytesIO(archive.read("7/00001.png"))) as image:
            assert image.size == (8, 8)
            assert image.mode == "L"
    again = g.write_zip(result, tmp_path / "t.zip")
    assert again.read_bytes() == path.read_bytes()


def test_zip_without_labels_is_flat(tmp_path: Path) -> None:
    gen = TinyGenerator(channels=3).eval()
    result = g.generate(gen, z_dim=8, num_classes=0, n=3, seed=0)
    with zipfile.ZipFile(g.write_zip(result, tmp_path / "s.zip")) as archive:
        assert archive.namelist() == ["00000.png", "00001.png", "00002.png"]
        with Image.open(io.BytesIO(archive.read("00002.png"))) as image:
            assert image.mode == "RGB"


def test_png_is_one_grid(tmp_path: Path) -> None:
    gen = TinyGenerator(channels=3).eval()
    result = g.generate(gen, z_dim=8, num_classes=0, n=10, seed=0)
    with Image.open(g.write_png(result, tmp_path / "s.png")) as grid:
        # ceil(sqrt(10)) = 4 columns, 3 rows.
        assert grid.size == (4 * 10 + 2, 3 * 10 + 2)
        assert grid.mode == "RGB"


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    # Fewer labels than samples: the writer fails half-way through the archive.
    bad = g.Samples(samples=np.zeros((3, 1, 4, 4), dtype=np.float32), labels=np.array([1]), rows=0)
    with pytest.raises(IndexError):
        g.write_zip(bad, tmp_path / "x.zip")
    assert list(tmp_path.iterdir()) == []
