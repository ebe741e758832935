"""The files of a run's folder: sample grids and checkpoints, named by their step."""

from __future__ import annotations

import re
from pathlib import Path

_SAMPLE = re.compile(r"^(\d{8})\.png$")
_CHECKPOINT = re.compile(r"^(\d{8})\.safetensors$")


def _steps(folder: Path, pattern: re.Pattern[str]) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for name in (p.name for p in folder.iterdir()) if (m := pattern.match(name)))


def sample_steps(run_dir: Path) -> list[int]:
    """Steps that have a sample grid, oldest first (half-written files are temp names and never match)."""
    return _steps(run_dir / "samples", _SAMPLE)


def sample_path(run_dir: Path, step: int) -> Path:
    return run_dir / "samples" / f"{step:08d}.png"


def checkpoint_steps(run_dir: Path) -> list[int]:
    return _steps(run_dir / "checkpoints", _CHECKPOINT)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"{step:08d}.safetensors"
