"""Moving artifacts between a worker's local folder and the artifact storage (store/artifacts.py).

The trainer and the job code write and read local files only. With the default storage (the data folder) those
files already are the artifacts and nothing here copies anything. With object storage (or a file URL elsewhere):

- a run starts from an empty local folder holding the checkpoints fetched from the storage, so it resumes on
  any host from the newest one;
- `RunUploader` copies what the trainer writes (config.json, run_info.json, sample grids, checkpoints) to the
  storage on a thread of its own, about once a second, and removes from the storage the checkpoints the trainer
  pruned; the last copy is made before the run's final status is written;
- checkpoints and uploaded datasets that jobs and runs read are fetched into a local cache bounded in bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.layout import CHECKPOINTS, CONFIG, RUN_INFO
from store import layout
from store.artifacts import ArtifactNotFound, Storage, fetch_cached, fetch_folder
from store.errors import sentence
from store.settings import Settings

log = logging.getLogger("ganforge.worker.artifacts")


def fetch_checkpoints(storage: Storage, *, run_id: str, run_dir: Path) -> int:
    """Copy the run's checkpoints from the storage into its local folder; returns how many there are."""
    return fetch_folder(storage, prefix=f"{layout.run_prefix(run_id)}{CHECKPOINTS}/", folder=run_dir / CHECKPOINTS)


def fetch_dataset(storage: Storage, settings: Settings, content_hash: str) -> Path:
    """An uploaded dataset's folder in the local cache, fetched from the storage where missing."""
    prefix = layout.dataset_prefix(content_hash)
    cache = layout.cache_dir(settings.data_dir)
    entries = storage.list(prefix)
    if not entries:
        raise ValueError(f"dataset: the files of dataset {content_hash[:12]}… are missing from the artifact storage")
    for entry in entries:
        fetch_cached(storage, key=entry.key, cache=cache, max_bytes=settings.cache_max_bytes)
    return cache / prefix


def fetch_checkpoint(storage: Storage, settings: Settings, *, run_id: str, step: int) -> Path:
    """A checkpoint as a local file: the storage's own file when it keeps files on this machine, else a copy in
    the local cache. ArtifactNotFound when it is gone (pruned)."""
    key = layout.checkpoint_key(run_id, step)
    local = storage.local_path(key)
    if local is not None:
        if not local.is_file():
            raise ArtifactNotFound(key)
        return local
    return fetch_cached(storage, key=key, cache=layout.cache_dir(settings.data_dir), max_bytes=settings.cache_max_bytes)


class RunUploader:
    """Copies a run's local files to the storage as the trainer writes them, on a thread of its own, so that the
    training loop never waits on the network. A file is copied once it is in place (the trainer renames finished
    files into place; temp names never match) and again if it changes."""

    def __init__(
        self,
        *,
        storage: Storage,
        run_id: str,
        run_dir: Path,
        interval: float = 1.0,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.storage = storage
        # Asked before each pass copies or deletes anything: False once the run's lease went to another worker.
        self.may_write = may_write
        self.run_id = run_id
        self.run_dir = run_dir
        self.interval = interval
        self._sent: dict[str, tuple[int, int]] = {}  # key -> (size, mtime_ns) of the copied file
        prefix = f"{layout.run_prefix(run_id)}{CHECKPOINTS}/"
        # Checkpoints in the storage now: after the fetch at the start, the local folder holds the same ones.
        self._stored_checkpoints = set(layout.steps_of([e.key for e in storage.list(prefix)], CHECKPOINTS))
        # Sample grids this uploader copied: the trainer thins out only the grids of this attempt's folder, so the
        # ones an earlier attempt stored stay as they are.
        self._stored_samples: set[int] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"uploader-{run_id}", daemon=True)
        self._thread.start()

    def holds(self, kind: str, data: dict[str, Any]) -> bool:
        """False while the file a `sample` or `checkpoint` event announces is written here but not yet copied to
        the storage (a file pruned before it was copied counts as held: nothing will come)."""
        if kind == "sample":
            key, path = layout.sample_key(self.run_id, data["step"]), layout.sample_path(self.run_dir, data["step"])
        elif kind == "checkpoint":
            step = data["step"]
            key, path = layout.checkpoint_key(self.run_id, step), layout.checkpoint_path(self.run_dir, step)
        else:
            return True
        return key in self._sent or not path.exists()

    def _loop(self) -> None:
        while not self._closing.wait(self.interval):
            try:
                self.sync()
            except Exception as exc:  # the storage is away: try again on the next tick
                log.warning("run %s: could not copy artifacts to the storage (%s); will retry", self.run_id, exc)

    def _local_files(self) -> list[tuple[str, Path]]:
        files = [(layout.run_file_key(self.run_id, name), self.run_dir / name) for name in (CONFIG, RUN_INFO)]
        for step in layout.sample_steps(self.run_dir):
            files.append((layout.sample_key(self.run_id, step), layout.sample_path(self.run_dir, step)))
        for step in layout.checkpoint_steps(self.run_dir):
            files.append((layout.checkpoint_key(self.run_id, step), layout.checkpoint_path(self.run_dir, step)))
        return files

    def sync(self) -> None:
        """Copy new and changed files, then remove from the storage the checkpoints pruned and the sample grids
        thinned out here."""
        with self._lock:
            if self.may_write is not None and not self.may_write():
                return
            for key, path in self._local_files():
                try:
                    stat = path.stat()
                except FileNotFoundError:  # not written yet, or pruned while we listed
                    continue
                version = (stat.st_size, stat.st_mtime_ns)
                if self._sent.get(key) == version:
                    continue
                try:
                    self.storage.put_file(key, path)
                except FileNotFoundError:
                    continue
                self._sent[key] = version
                if key.endswith(".safetensors"):
                    self._stored_checkpoints.add(int(Path(key).stem))
                elif key.endswith(".png"):
                    self._stored_samples.add(int(Path(key).stem))
            local = set(layout.checkpoint_steps(self.run_dir))
            for step in sorted(self._stored_checkpoints - local):
                self.storage.delete(layout.checkpoint_key(self.run_id, step))
                self._stored_checkpoints.discard(step)
                self._sent.pop(layout.checkpoint_key(self.run_id, step), None)
            local = set(layout.sample_steps(self.run_dir))  # grids thinned out by the trainer
            for step in sorted(self._stored_samples - local):
                self.storage.delete(layout.sample_key(self.run_id, step))
                self._stored_samples.discard(step)
                self._sent.pop(layout.sample_key(self.run_id, step), None)

    def close(self, *, attempts: int = 30) -> str | None:
        """Stop the thread and make the last copy, retrying while the storage is away; None when everything is
        stored, else why not."""
        self._closing.set()
        self._thread.join()
        error = "no attempt"
        for attempt in range(attempts):
            try:
                self.sync()
                return None
            except Exception as exc:
                error = sentence(exc)
                log.warning("run %s: could not copy artifacts (%s), attempt %d", self.run_id, error, attempt)
                time.sleep(1.0)
        return error
