"""Sampling from a trained generator: latents, truncation, labels, latent walks, and the result files.

Everything here is a pure function of its arguments. The latents are drawn from a `torch.Generator` seeded on
the CPU, so a request (seed, checkpoint, n, truncation, labels) gives the same samples on any device, and the
writers produce byte-identical files for the same samples (fixed zip timestamps, no wall-clock metadata).
Every file is written atomically (core.layout.atomic_write), so a reader never sees half of one; pictures are
drawn by core.grids, as the training grids are.

Outputs: `samples` are float32 in the generator's output space, (N, C, H, W) in [-1, 1] for images or (N, 2)
for 2-D points; `labels` are int64 (N,) or None.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from core.grids import image_grid, png_bytes, scatter_plot
from core.layout import atomic_write, atomic_write_bytes
from core.style_layers import parse_layers

# Forward passes run in batches of this size. It is fixed (not derived from the device or free memory) so
# that the same request always runs the same batches and so gives the same bits.
BATCH_SIZE = 256
# Rejection rounds of the truncation trick before the few latents left are drawn by inverse CDF.
TRUNCATION_ROUNDS = 64
# 1980-01-01, the zip format's epoch: every entry gets it, so archives do not depend on the clock.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
MAX_INTERPOLATION_STEPS = 64

Mode = Literal["lerp", "slerp"]


@dataclass(frozen=True)
class Samples:
    """What a generation produced. `rows` > 0 for latent walks: samples are row-major, rows = walks."""

    samples: np.ndarray  # float32 (N, C, H, W) or (N, 2)
    labels: np.ndarray | None  # int64 (N,)
    rows: int = 0


# Latents and labels.


def sample_latents(n: int, z_dim: int, *, seed: int, truncation: float | None = None) -> torch.Tensor:
    """`n` standard normal latents drawn on the CPU from `seed`; with `truncation` ψ, every coordinate with
    |z_i| > ψ is resampled until it falls inside (the truncation trick of BigGAN)."""
    if n < 0 or z_dim < 1:
        raise ValueError(f"n must be ≥ 0 and z_dim ≥ 1, not n={n}, z_dim={z_dim}")
    if truncation is not None and not truncation > 0:
        raise ValueError(f"truncation must be > 0, not {truncation}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn(n, z_dim, generator=gen)  # (n, z_dim)
    if truncation is None:
        return z
    psi = float(truncation)
    flat = z.view(-1)  # (n * z_dim,)
    index = (flat.abs() > psi).nonzero().squeeze(1)  # positions outside, in row-major order
    values = flat[index]
    # Rejection costs about 1/p draws per coordinate, p = P(|z| ≤ ψ); when p is small (ψ < 0.67), the inverse
    # CDF below draws the same truncated normal in one pass.
    rounds = TRUNCATION_ROUNDS if math.erf(psi / math.sqrt(2.0)) >= 0.5 else 0
    for _ in range(rounds):
        outside = values.abs() > psi
        count = int(outside.sum())
        if count == 0:
            break
        values[outside] = torch.randn(count, generator=gen)
    # What rejection left outside: drawn from the same truncated normal by inverse CDF, in float64 so that the
    # tails of a large ψ stay finite.
    outside = values.abs() > psi
    count = int(outside.sum())
    if count:
        u = torch.rand(count, generator=gen, dtype=torch.float64)
        lo = _normal_cdf(-psi)
        hi = _normal_cdf(psi)
        tail = math.sqrt(2.0) * torch.erfinv(2.0 * (lo + u * (hi - lo)) - 1.0)
        values[outside] = tail.clamp(-psi, psi).to(values.dtype)
    flat[index] = values
    return z


def truncates_in_w(generator: torch.nn.Module) -> bool:
    """A style-based generator (stylegan2) truncates toward its tracked mean w, w_avg + ψ (w - w_avg), instead of
    resampling z: it takes `truncation` as an argument of its forward pass."""
    return callable(getattr(generator, "truncate", None))


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def cycle_labels(n: int, labels: list[int] | None) -> torch.Tensor | None:
    """The given labels repeated over n samples: [3, 7] for n=5 gives [3, 7, 3, 7, 3]."""
    if not labels:
        return None
    reps = math.ceil(n / len(labels))
    return torch.tensor(labels, dtype=torch.long).repeat(reps)[:n]  # (n,)


def check_labels(labels: list[int] | None, num_classes: int) -> None:
    """Raise ValueError when labels are given to an unconditional generator or fall outside its classes."""
    if not labels:
        return
    if num_classes <= 0:
        raise ValueError("labels: this run is unconditional, so it takes no labels")
    for label in labels:
        if not 0 <= label < num_classes:
            raise ValueError(f"labels: {label} is out of range; this run has classes 0 to {num_classes - 1}")


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, *, steps: int, mode: Mode = "lerp") -> torch.Tensor:
    """Walks from each z0 row to the matching z1 row in `steps` points, both ends included.

    (W, D), (W, D) -> (W * steps, D), row-major: walk 0's points first.
    """
    if steps < 2:
        raise ValueError(f"interpolate.steps must be at least 2, not {steps}")
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64).view(1, steps, 1)  # (1, S, 1)
    a = z0.to(torch.float64).unsqueeze(1)  # (W, 1, D)
    b = z1.to(torch.float64).unsqueeze(1)  # (W, 1, D)
    if mode == "lerp":
        walk = (1.0 - t) * a + t * b  # (W, S, D)
    elif mode == "slerp":
        cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True))
        omega = torch.arccos(cos.clamp(-1.0, 1.0))  # (W, 1, 1)
        sin = torch.sin(omega)
        # Nearly parallel endpoints: slerp degenerates to lerp.
        safe = sin.abs() > 1e-6
        sin_safe = torch.where(safe, sin, torch.ones_like(sin))
        wa = torch.where(safe, torch.sin((1.0 - t) * omega) / sin_safe, 1.0 - t)  # (W, S, 1)
        wb = torch.where(safe, torch.sin(t * omega) / sin_safe, t)
        walk = wa * a + wb * b  # (W, S, D)
    else:
        raise ValueError(f"interpolate.mode must be lerp or slerp, not {mode!r}")
    return walk.reshape(-1, z0.shape[1]).to(z0.dtype)  # (W * S, D)


# Forward passes.


def run_generator(
    generator: torch.nn.Module,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = BATCH_SIZE,
    truncation: float | None = None,
) -> np.ndarray:
    """The generator's outputs for latents `z` (N, D) and labels (N,) as one float32 array, in batches;
    `truncation` ψ is passed on to a generator that truncates in W (see `truncates_in_w`)."""
    if truncation is not None and not truncation > 0:
        raise ValueError(f"truncation must be > 0, not {truncation}")
    psi = {"truncation": float(truncation)} if truncation is not None else {}
    out: np.ndarray | None = None
    with torch.inference_mode():
        for start in range(0, z.shape[0], batch_size):
            zb = z[start : start + batch_size].to(device)  # (B, D)
            lb = None if labels is None else labels[start : start + batch_size].to(device)  # (B,)
            xb = generator(zb, lb, **psi).float().cpu().numpy()  # (B, C, H, W) or (B, 2)
            if out is None:
                out = np.empty((z.shape[0], *xb.shape[1:]), dtype=np.float32)
            out[start : start + xb.shape[0]] = xb
    if out is None:
        raise ValueError("n must be at least 1")
    return out


def _request_labels(n: int, labels: list[int] | None, *, num_classes: int, seed: int) -> torch.Tensor | None:
    """The labels (n,) of a request for `n` samples: the given ones cycled, or, when a conditional generator is
    asked for no label in particular, classes drawn from the request's seed; None for an unconditional one."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    check_labels(labels, num_classes)
    y = cycle_labels(n, labels)
    if y is None and num_classes > 0:
        y = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(int(seed) + 1))
    return y


def generate(
    generator: torch.nn.Module,
    *,
    z_dim: int,
    num_classes: int,
    n: int,
    seed: int,
    truncation: float | None = None,
    labels: list[int] | None = None,
    device: str | torch.device = "cpu",
) -> Samples:
    """`n` samples for `seed`; labels (conditional generators only) are cycled over the n samples."""
    y = _request_labels(n, labels, num_classes=num_classes, seed=seed)
    in_w = truncates_in_w(generator)
    z = sample_latents(n, z_dim, seed=seed, truncation=None if in_w else truncation)  # (n, z_dim)
    samples = run_generator(generator, z, y, device=device, truncation=truncation if in_w else None)
    return Samples(samples=samples, labels=None if y is None else y.numpy().astype(np.int64))


def generate_walks(
    generator: torch.nn.Module,
    *,
    z_dim: int,
    num_classes: int,
    n: int,
    steps: int,
    mode: Mode,
    seed: int,
    truncation: float | None = None,
    labels: list[int] | None = None,
    device: str | torch.device = "cpu",
    space: Literal["z", "w"] = "z",
) -> Samples:
    """`n` latent walks of `steps` points each; a walk keeps one label. Samples are (n * steps, ...), row-major.
    `space` w walks between the ends' (truncated) w instead of their z, for a style-based generator."""
    walk_labels = _request_labels(n, labels, num_classes=num_classes, seed=seed)  # one per walk
    if not 2 <= steps <= MAX_INTERPOLATION_STEPS:
        raise ValueError(f"interpolate.steps must be between 2 and {MAX_INTERPOLATION_STEPS}, not {steps}")
    in_w = truncates_in_w(generator)
    ends = sample_latents(2 * n, z_dim, seed=seed, truncation=None if in_w else truncation)  # (2n, z_dim)
    z = interpolate_latents(ends[:n], ends[n:], steps=steps, mode=mode)  # (n * steps, z_dim)
    clustered = walk_labels is None and getattr(generator, "cluster_cdf", None) is not None
    if clustered:  # a cluster-conditioned generator: each walk stays in the cluster of its first latent
        walk_labels = generator.clusters_of(ends[:n]).cpu()  # type: ignore[operator]
    y = None if walk_labels is None else walk_labels.repeat_interleave(steps)  # (n * steps,)
    if space == "w":
        if not in_w:
            raise ValueError("interpolate.space: w needs a style-based generator (stylegan2); use z")
        w_ends = map_latents(generator, ends, None if walk_labels is None else walk_labels.repeat(2), truncation)
        w = interpolate_latents(w_ends[:n], w_ends[n:], steps=steps, mode=mode)  # (n * steps, W)
        samples = synthesize(generator, w[:, None].expand(-1, int(generator.num_ws), -1), device=device)
    else:
        samples = run_generator(generator, z, y, device=device, truncation=truncation if in_w else None)
    shown = None if y is None or clustered else y.numpy().astype(np.int64)  # clusters are not class labels
    return Samples(samples=samples, labels=shown, rows=n)


def map_latents(
    generator: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor | None, truncation: float | None
) -> torch.Tensor:
    """A style-based generator's w (N, W) for latents z (N, Z) and labels (N,), pulled toward w_avg by ψ."""
    with torch.inference_mode():
        device = next(generator.parameters()).device
        w = generator.mapping(z.to(device), None if labels is None else labels.to(device))  # type: ignore[operator]
        return generator.truncate(w, truncation).float().cpu()  # type: ignore[operator, no-any-return]


def synthesize(generator: torch.nn.Module, ws: torch.Tensor, *, device: str | torch.device = "cpu") -> np.ndarray:
    """A style-based generator's images for one w per layer, ws (N, num_ws, W), in batches: (N, C, H, W) float32."""
    out = []
    with torch.inference_mode():
        for start in range(0, ws.shape[0], BATCH_SIZE):
            out.append(generator.synthesis(ws[start : start + BATCH_SIZE].to(device)).float().cpu())  # type: ignore[operator]
    return torch.cat(out).numpy()


def style_mix(
    generator: torch.nn.Module,
    *,
    z_dim: int,
    num_classes: int,
    row_seeds: list[int],
    col_seeds: list[int],
    layers: str,
    truncation: float | None = None,
    labels: list[int] | None = None,
    device: str | torch.device = "cpu",
) -> Samples:
    """The style-mixing grid of a style-based generator (Karras et al. 2019, fig. 3): a blank corner, the column
    seeds' images along the top, the row seeds' down the left, and in each cell the row's w with the `layers` taken
    from the column's. A seed's latent is the one a one-sample generation with that seed draws. One label (the
    first given, else drawn from the first row seed) conditions every image. Samples are row-major,
    (len(row_seeds) + 1) rows of (len(col_seeds) + 1)."""
    if not truncates_in_w(generator):
        raise ValueError("style_mix: style mixing needs a style-based generator (stylegan2)")
    if not row_seeds or not col_seeds:
        raise ValueError("style_mix: give at least one row seed and one column seed")
    num_ws = int(generator.num_ws)  # type: ignore[arg-type]
    chosen = parse_layers(layers, num_ws)
    seeds = [*row_seeds, *col_seeds]
    z = torch.cat([sample_latents(1, z_dim, seed=s) for s in seeds])  # (R + C, Z)
    label = _request_labels(1, labels[:1] if labels else None, num_classes=num_classes, seed=row_seeds[0])
    y = None if label is None else label.repeat(len(seeds))  # (R + C,)
    w = map_latents(generator, z, y, truncation)  # (R + C, W)
    rows, cols = w[: len(row_seeds)], w[len(row_seeds) :]
    mixed = rows[:, None, None].expand(-1, len(col_seeds), num_ws, -1).clone()  # (R, C, L, W)
    mixed[:, :, chosen] = cols[None, :, None]
    ws = torch.cat([w[:, None].expand(-1, num_ws, -1), mixed.flatten(0, 1)])  # (R + C + R·C, L, W)
    images = synthesize(generator, ws, device=device)  # (R + C + R·C, C, H, W)
    r, c = len(row_seeds), len(col_seeds)
    grid = np.full(((r + 1) * (c + 1), *images.shape[1:]), -1.0, dtype=np.float32)
    grid[1 : c + 1] = images[r : r + c]  # the column seeds along the top
    for i in range(r):
        start = (i + 1) * (c + 1)
        grid[start] = images[i]  # the row seed
        grid[start + 1 : start + c + 1] = images[r + c + i * c : r + c + (i + 1) * c]
    return Samples(samples=grid, labels=None, rows=r + 1)


# Pictures.


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] -> (N, H, W, C) uint8."""
    pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1)  # (N, H, W, C)


def _pil(pixels: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 with C = 1 or 3 -> a Pillow image (L or RGB)."""
    if pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], mode="L")
    return Image.fromarray(pixels[:, :, :3], mode="RGB")


def preview(result: Samples) -> Image.Image:
    """The one picture of a result: an image grid (rows = walks for latent walks) or a scatter plot."""
    if result.samples.ndim == 4:
        cols = result.samples.shape[0] // result.rows if result.rows else None
        return image_grid(result.samples, nrow=cols)
    groups = result.labels
    if result.rows:
        groups = np.repeat(np.arange(result.rows), result.samples.shape[0] // result.rows)
    return scatter_plot(result.samples, groups=groups)


def animation_frames(result: Samples) -> list[Image.Image]:
    """One frame per step of a latent walk: every walk at that step, side by side (or a scatter of points)."""
    if not result.rows:
        raise ValueError("an animation needs latent walks (interpolate)")
    steps = result.samples.shape[0] // result.rows
    walks = result.samples.reshape(result.rows, steps, *result.samples.shape[1:])  # (W, S, ...)
    frames = []
    if walks.ndim == 5:
        for s in range(steps):
            frames.append(image_grid(walks[:, s], nrow=math.ceil(math.sqrt(result.rows))))
    else:
        extent = max(float(np.abs(walks).max()) * 1.1, 1e-6) if walks.size else 1.0
        for s in range(steps):
            frames.append(scatter_plot(walks[:, s], groups=np.arange(result.rows), extent=extent))
    return frames


# Writers. Each writes `path` atomically and returns it.


def write_png(result: Samples, path: Path) -> Path:
    """One picture: the image grid, or a scatter plot of 2-D points."""
    atomic_write_bytes(path, png_bytes(preview(result)))
    return path


def write_gif(result: Samples, path: Path, *, frame_ms: int = 120) -> Path:
    """An animated GIF of latent walks that goes there and back, looping forever."""
    frames = animation_frames(result)
    frames = frames + frames[-2:0:-1]  # there and back
    frames = [frame.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT) for frame in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _zip_entry(archive: zipfile.ZipFile, name: str, data: bytes, *, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def write_zip(result: Samples, path: Path) -> Path:
    """One PNG per sample, in class folders (`3/00017.png`) when labels exist, plus `labels.csv`
    (`file,label`): a ready synthetic dataset. 2-D points go into one `samples.csv` (`x,y[,label]`)."""
    with atomic_write(path) as f, zipfile.ZipFile(f, "w") as archive:
        if result.samples.ndim == 2:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["x", "y", "label"] if result.labels is not None else ["x", "y"])
            for i, (x, y) in enumerate(result.samples):
                row = [repr(float(x)), repr(float(y))]
                writer.writerow([*row, int(result.labels[i])] if result.labels is not None else row)
            _zip_entry(archive, "samples.csv", text.getvalue().encode(), compress=True)
            return path
        pixels = to_uint8(result.samples)  # (N, H, W, C)
        width = max(5, len(str(len(pixels) - 1)))
        rows = []
        for i, image in enumerate(pixels):
            name = f"{i:0{width}d}.png"
            if result.labels is not None:
                name = f"{int(result.labels[i])}/{name}"
                rows.append((name, int(result.labels[i])))
            # PNG is already deflated: storing it again compressed only costs time.
            _zip_entry(archive, name, png_bytes(_pil(image)), compress=False)
        if result.labels is not None:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["file", "label"])
            writer.writerows(rows)
            _zip_entry(archive, "labels.csv", text.getvalue().encode(), compress=True)
    return path


def write_npz(result: Samples, path: Path) -> Path:
    """`samples` (float32) and `labels` (int64, when they exist) as an .npz that np.load reads. Written entry
    by entry with a fixed timestamp, so the same samples give the same bytes (np.savez stamps the clock)."""
    arrays: dict[str, np.ndarray] = {"samples": np.ascontiguousarray(result.samples, dtype=np.float32)}
    if result.labels is not None:
        arrays["labels"] = np.ascontiguousarray(result.labels, dtype=np.int64)
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
    return path


WRITERS: dict[str, Callable[[Samples, Path], Path]] = {"png": write_png, "zip": write_zip, "npz": write_npz}
MEDIA_TYPES = {"png": "image/png", "zip": "application/zip", "npz": "application/octet-stream", "gif": "image/gif"}
