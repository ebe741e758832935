"""Where a run's files live inside its folder, and the one way to write a file atomically.

Torch-free, so that store/ (which may import core/, never the reverse) builds its artifact layout on it:
the trainer writes these names, the API and the workers read them.

A run folder holds `config.json`, `run_info.json`, `samples/{step:08d}.png` and
`checkpoints/{step:08d}.safetensors`. Names are built from integers only, never from client text.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

CONFIG = "config.json"
RUN_INFO = "run_info.json"
SAMPLES = "samples"
CHECKPOINTS = "checkpoints"

_SAMPLE = re.compile(r"^(\d{8})\.png$")
_CHECKPOINT = re.compile(r"^(\d{8})\.safetensors$")


def _steps(folder: Path, pattern: re.Pattern[str]) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for name in (p.name for p in folder.iterdir()) if (m := pattern.match(name)))


def sample_steps(run_dir: Path) -> list[int]:
    """Steps that have a sample grid, oldest first (half-written files are temp names and never match)."""
    return _steps(run_dir / SAMPLES, _SAMPLE)


def sample_path(run_dir: Path, step: int) -> Path:
    return run_dir / SAMPLES / f"{step:08d}.png"


def thinned(steps: list[int], keep: int) -> list[int]:
    """At most `keep` of the (sorted) steps, spread evenly over them, the first and the last always among them.

    Kept are the steps a stride apart from the first (and the last): the smallest stride, doubling from the
    closest spacing, that leaves at most `keep`. Thinning again after more steps keeps a subset of what was kept,
    so grids written one at a time and thinned each time stay evenly spread.
    """
    if len(steps) <= keep:
        return steps
    first, last = steps[0], steps[-1]
    stride = max(1, min(b - a for a, b in itertools.pairwise(steps)))
    while True:
        kept = [s for s in steps if (s - first) % stride == 0]
        if kept[-1] != last:
            kept.append(last)
        if len(kept) <= keep:
            return kept
        stride *= 2


def prune_samples(run_dir: Path, keep: int) -> list[int]:
    """Delete the sample grids `thinned` leaves out; returns their steps."""
    steps = sample_steps(run_dir)
    kept = set(thinned(steps, keep))
    dropped = [s for s in steps if s not in kept]
    for step in dropped:
        sample_path(run_dir, step).unlink(missing_ok=True)
    return dropped


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps that have a checkpoint, oldest first."""
    return _steps(run_dir / CHECKPOINTS, _CHECKPOINT)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"{step:08d}.safetensors"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp file name beside `path`, for writers that take a name (safetensors); once the block succeeds the
    file is fsynced and renamed into place.

    Readers see the old file or the whole new one, never a part; a failure leaves no temp file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """A binary file opened beside `path`; once the block succeeds it is fsynced and renamed into place
    (see atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
