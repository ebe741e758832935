"""Moving a run's files between a worker's local folder and the artifact storage (a file store elsewhere on disk,
which follows the same contract as S3: tests/store)."""

from __future__ import annotations

import os
from pathlib import Path

from store.artifacts import FileStorage
from worker.artifacts import RunUploader, fetch_checkpoints


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def keys(storage: FileStorage) -> list[str]:
    return [e.key for e in storage.list("runs/run_u/")]


def test_the_uploader_copies_new_files_and_mirrors_pruning(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "store")
    write(storage.root / "runs/run_u/checkpoints/00000010.safetensors", b"from another host")
    run_dir = tmp_path / "local" / "runs" / "run_u"
    assert fetch_checkpoints(storage, run_id="run_u", run_dir=run_dir) == 1
    assert (run_dir / "checkpoints/00000010.safetensors").read_bytes() == b"from another host"

    uploader = RunUploader(storage=storage, run_id="run_u", run_dir=run_dir, interval=3600)
    try:
        write(run_dir / "config.json", b"{}")
        write(run_dir / "samples/00000020.png", b"png")
        write(run_dir / "checkpoints/00000020.safetensors", b"ckpt 20")
        write(run_dir / "checkpoints/.00000030.safetensors.x.tmp", b"half")  # a checkpoint being written
        uploader.sync()
        assert keys(storage) == [
            "runs/run_u/checkpoints/00000010.safetensors",
            "runs/run_u/checkpoints/00000020.safetensors",
            "runs/run_u/config.json",
            "runs/run_u/samples/00000020.png",
        ]

        # The trainer prunes the old checkpoint and rewrites config.json: the store follows.
        (run_dir / "checkpoints/00000010.safetensors").unlink()
        write(run_dir / "config.json", b'{"changed": true}')
        os.utime(run_dir / "config.json", ns=(1, 1))
        write(run_dir / "run_info.json", b"{}")
        uploader.sync()
        assert keys(storage) == [
            "runs/run_u/checkpoints/00000020.safetensors",
            "runs/run_u/config.json",
            "runs/run_u/run_info.json",
            "runs/run_u/samples/00000020.png",
        ]
        assert storage.read_bytes("runs/run_u/config.json") == b'{"changed": true}'
    finally:
        assert uploader.close() is None


def test_closing_reports_a_storage_that_stays_away(tmp_path: Path) -> None:
    blocker = tmp_path / "store"
    blocker.write_bytes(b"not a folder")  # every write under it fails
    run_dir = tmp_path / "local"
    write(run_dir / "config.json", b"{}")
    uploader = RunUploader(storage=FileStorage(blocker), run_id="run_u", run_dir=run_dir, interval=3600)
    error = uploader.close(attempts=1)
    assert error is not None and error.startswith(("NotADirectoryError", "FileExistsError"))


def test_an_event_is_held_until_its_file_is_stored(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "store")
    run_dir = tmp_path / "local"
    uploader = RunUploader(storage=storage, run_id="run_u", run_dir=run_dir, interval=3600)
    try:
        write(run_dir / "samples/00000002.png", b"png")
        write(run_dir / "checkpoints/00000002.safetensors", b"ckpt")
        assert not uploader.holds("sample", {"step": 2, "path": "..."})
        assert not uploader.holds("checkpoint", {"step": 2, "path": "...", "size_bytes": 4})
        assert uploader.holds("progress", {"step": 2})
        uploader.sync()
        assert uploader.holds("sample", {"step": 2, "path": "..."})
        assert uploader.holds("checkpoint", {"step": 2, "path": "...", "size_bytes": 4})
        assert uploader.holds("checkpoint", {"step": 1, "path": "...", "size_bytes": 4})  # pruned before copied
    finally:
        assert uploader.close() is None
