"""Where every artifact lives under the data folder: runs, uploaded datasets, job results.

Paths are built from ids and integers only, never from client text. The files inside a run's folder are named
by core.layout (the trainer writes them), re-exported here so that api/ and worker/ have one place to ask.

The same layout names artifacts in the storage (store/artifacts.py): an artifact's key is its path relative to
the data folder (`runs/{run_id}/checkpoints/{step:08d}.safetensors`), so with the default file backend the keys
are today's files.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.layout import (
    CHECKPOINTS,
    CONFIG,
    RUN_INFO,
    SAMPLES,
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
    "cache_dir",
    "checkpoint_key",
    "checkpoint_path",
    "checkpoint_steps",
    "dataset_dir",
    "dataset_prefix",
    "datasets_dir",
    "job_dir",
    "job_prefix",
    "key_of",
    "run_dir",
    "run_file_key",
    "run_prefix",
    "runs_dir",
    "sample_key",
    "sample_path",
    "sample_steps",
    "steps_of",
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


def cache_dir(data_dir: Path) -> Path:
    """A worker's cache of artifacts fetched from object storage, by key: {cache_dir}/{key}."""
    return data_dir / "cache"


# Keys in the artifact storage (store/artifacts.py): paths relative to the data folder.
def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def run_file_key(run_id: str, name: str) -> str:
    """config.json or run_info.json of a run."""
    if name not in (CONFIG, RUN_INFO):
        raise ValueError(f"not a run file: {name!r}")
    return f"runs/{run_id}/{name}"


def sample_key(run_id: str, step: int) -> str:
    return f"runs/{run_id}/{SAMPLES}/{int(step):08d}.png"


def checkpoint_key(run_id: str, step: int) -> str:
    return f"runs/{run_id}/{CHECKPOINTS}/{int(step):08d}.safetensors"


def job_prefix(run_id: str, job_id: str) -> str:
    """A generation or score job's files: inside its run's prefix, so deleting the run removes them."""
    return f"runs/{run_id}/generations/{job_id}/"


def dataset_prefix(content_hash: str) -> str:
    """One uploaded dataset's files, by content hash."""
    return dataset_dir(Path("."), content_hash).as_posix() + "/"


def key_of(data_dir: Path, path: Path) -> str:
    """The key of a file inside the data folder: its relative path."""
    return path.relative_to(data_dir).as_posix()


_STEP_FILE = {
    SAMPLES: re.compile(r"/samples/(\d{8})\.png$"),
    CHECKPOINTS: re.compile(r"/checkpoints/(\d{8})\.safetensors$"),
}


def steps_of(keys: list[str], kind: str) -> list[int]:
    """The steps of listed sample (`kind` "samples") or checkpoint ("checkpoints") keys, oldest first."""
    pattern = _STEP_FILE[kind]
    return sorted(int(m.group(1)) for key in keys if (m := pattern.search(key)))
