"""Where every artifact lives under the data folder: runs, uploaded datasets, generation and score results.

Paths are built from ids and integers only, never from client text. The files inside a run's folder are named
by core.layout (the trainer writes them), re-exported here so that api/ and worker/ have one place to ask.
"""

from __future__ import annotations

from pathlib import Path

from core.layout import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    checkpoint_path,
    checkpoint_steps,
    sample_path,
    sample_steps,
)
from core.uploads import dataset_dir_for

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_path",
    "checkpoint_steps",
    "dataset_dir",
    "datasets_dir",
    "job_dir",
    "run_dir",
    "runs_dir",
    "sample_path",
    "sample_steps",
    "tmp_dir",
]


def runs_dir(data_dir: Path) -> Path:
    return data_dir / "runs"


def run_dir(data_dir: Path, run_id: str) -> Path:
    """A run's artifact folder, built from its id only."""
    return runs_dir(data_dir) / run_id


def job_dir(data_dir: Path, run_id: str, job_id: str) -> Path:
    """A generation or score job's files: inside its run's folder, so deleting the run removes them."""
    return run_dir(data_dir, run_id) / "generations" / job_id


def datasets_dir(data_dir: Path) -> Path:
    """Uploaded datasets, content-addressed: {datasets_dir}/{content_hash}/."""
    return data_dir / "datasets"


def dataset_dir(data_dir: Path, content_hash: str) -> Path:
    """One uploaded dataset's files (core/uploads.py's format), built from its content hash only."""
    return dataset_dir_for(data_dir, content_hash)


def tmp_dir(data_dir: Path) -> Path:
    """Uploads in transit (on the data disk, not the system temp folder), removed when their request ends."""
    return data_dir / "tmp"
