"""Artifact storage: where checkpoints, sample grids, run configs, job results and uploaded datasets are kept,
behind one small interface with two backends, chosen by GANFORGE_ARTIFACTS_URL:

- `file:///path` (the default: the data folder, GANFORGE_DATA_DIR): a key is a path under that folder, so the
  layout on disk is the one store/layout.py has always described. Writes go to a temp file renamed into place.
- `s3://bucket/prefix`: S3-compatible object storage through boto3, at GANFORGE_S3_ENDPOINT_URL (unset: AWS)
  with the standard AWS credential variables. Large files go up as multipart uploads; S3 makes an object
  visible only once its PUT or its multipart upload completes, so a half-written upload is never seen.

Keys are relative, `/`-separated and built from ids and integers only (store/layout.py builds them); anything
else is refused. A missing key raises `ArtifactNotFound`.

The trainer (core/) never sees this: it writes into a local run folder, and the worker moves files between
that folder and the storage.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

from core.layout import atomic_path, atomic_write
from store.settings import Settings, get_settings

# A key: segments of letters, digits, `_`, `-` and `.`, none starting with a dot (no `..`, no hidden files).
_SEGMENT = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*"
_KEY = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
# Streams are read and written in pieces of this size.
CHUNK = 1 << 20


class ArtifactNotFound(LookupError):
    """The storage holds nothing under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no artifact at {key}")
        self.key = key


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"not an artifact key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix is a key, or a key ending in `/` (a folder)."""
    check_key(prefix.removesuffix("/"))
    return prefix


@dataclass(frozen=True)
class Entry:
    key: str
    size: int


class Storage(ABC):
    """Put, get as a stream, list and delete by prefix, presigned URLs. Thread-safe; one per process."""

    @abstractmethod
    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        """Store what `stream` yields under `key`; on any error nothing new becomes visible under it."""

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as f:
            self.put_stream(key, f)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """The object as a binary stream to read and close; ArtifactNotFound when there is none."""

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def download(self, key: str, path: Path) -> None:
        """Copy the object to a local file, written to a temp name and renamed into place."""
        with self.open(key) as src, atomic_write(path) as dst:
            shutil.copyfileobj(src, dst, CHUNK)

    @abstractmethod
    def list(self, prefix: str) -> list[Entry]:
        """Every object whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is none."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object (nothing happens when there is none)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; returns how many."""

    def presigned_url(self, key: str, *, expires_seconds: int, filename: str | None = None) -> str | None:
        """A short-lived URL that serves the object without our authentication; None when the backend has none."""
        return None

    def local_path(self, key: str) -> Path | None:
        """The object's file on this machine when the backend keeps it on a local disk, else None."""
        return None

    def close(self) -> None:  # noqa: B027 - files hold no connections; S3Storage closes its client
        """Release connections."""


class FileStorage(Storage):
    """Objects as files under one folder: `{root}/{key}`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        with atomic_write(self._path(key)) as f:
            shutil.copyfileobj(stream, f, CHUNK)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(path, target):  # the writer's file is already in place (the default layout)
                return
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(key) from None

    def download(self, key: str, path: Path) -> None:
        source = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(source, path):
                return
        super().download(key, path)

    def list(self, prefix: str) -> list[Entry]:
        check_prefix(prefix)
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        entries = []
        for dirpath, _dirnames, filenames in os.walk(folder):
            for name in filenames:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or not _KEY.match(key):  # temp files start with a dot
                    continue
                with contextlib.suppress(FileNotFoundError):  # removed while we listed
                    entries.append(Entry(key=key, size=path.stat().st_size))
        return sorted(entries, key=lambda e: e.key)

    def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            return path.stat().st_size if path.is_file() else None
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        entries = self.list(prefix)
        for entry in entries:
            self._path(entry.key).unlink(missing_ok=True)
        if prefix.endswith("/"):
            shutil.rmtree(self.root / prefix, ignore_errors=True)  # the folder and the temp files left in it
        return len(entries)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class _Body(io.RawIOBase):
    """boto3's StreamingBody as a raw binary file (wrapped in a BufferedReader by `S3Storage.open`)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data: bytes = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage(Storage):
    """Objects in an S3 bucket under a prefix: `s3://{bucket}/{prefix}/{key}`."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        multipart_threshold: int = 64 << 20,
        multipart_chunksize: int = 64 << 20,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        session = boto3.session.Session()
        self.client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            # Path-style addressing for self-hosted servers (SeaweedFS, MinIO), whose buckets are not hostnames.
            config=Config(
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                signature_version="s3v4",
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize, use_threads=True
        )

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def create_bucket(self) -> None:
        """Create the bucket unless it exists (development and tests; production creates its own)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        # upload_fileobj goes multipart above the threshold and aborts the multipart upload when a part fails.
        self.client.upload_fileobj(stream, self.bucket, self._name(key), Config=self.transfer)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._name(key), Config=self.transfer)

    def open(self, key: str) -> IO[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFound(key) from None
            raise
        return io.BufferedReader(_Body(response["Body"]), CHUNK)

    def download(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            with atomic_path(path) as tmp:
                self.client.download_file(self.bucket, self._name(key), str(tmp), Config=self.transfer)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFound(key) from None
            raise

    def list(self, prefix: str) -> list[Entry]:
        check_prefix(prefix)
        entries = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])[len(self.prefix) :]
                if _KEY.match(key):
                    entries.append(Entry(key=key, size=int(item["Size"])))
        return sorted(entries, key=lambda e: e.key)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return int(response["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [e.key for e in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self._name(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def presigned_url(self, key: str, *, expires_seconds: int, filename: str | None = None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._name(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)
        return url

    def close(self) -> None:
        self.client.close()


def storage_from_url(url: str, *, endpoint_url: str | None = None, **options: Any) -> Storage:
    """The backend a GANFORGE_ARTIFACTS_URL names: `file:///path` or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"artifacts_url: a file URL names a local folder (file:///path), not {url!r}")
        return FileStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"artifacts_url: an s3 URL names a bucket (s3://bucket/prefix), not {url!r}")
        return S3Storage(bucket=parsed.netloc, prefix=parsed.path, endpoint_url=endpoint_url, **options)
    raise ValueError(f"artifacts_url: expected file:///path or s3://bucket/prefix, not {url!r}")


def storage_for(settings: Settings) -> Storage:
    return storage_from_url(settings.artifacts_location, endpoint_url=settings.s3_endpoint_url)


@lru_cache
def _storage_of_process(pid: int) -> Storage:
    return storage_for(get_settings())


def get_storage() -> Storage:
    """This process's storage, built from the settings (one per process: a forked child builds its own, since
    connection pools must not cross a fork)."""
    return _storage_of_process(os.getpid())


def put_folder(storage: Storage, *, prefix: str, folder: Path) -> list[str]:
    """Store every file under a local folder at `prefix` + its relative path (files a key cannot name, such as
    temp files, are left out); returns the keys."""
    check_prefix(prefix)
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(folder).as_posix()
        if _KEY.match(key):
            storage.put_file(key, path)
            keys.append(key)
    return keys


def fetch_folder(storage: Storage, *, prefix: str, folder: Path) -> int:
    """Copy every object under `prefix` into a local folder by its relative key, skipping files already there
    with the same size; returns how many objects there are (0: none under that prefix)."""
    entries = storage.list(check_prefix(prefix))
    for entry in entries:
        path = folder / entry.key[len(prefix) :]
        if not (path.is_file() and path.stat().st_size == entry.size):
            storage.download(entry.key, path)
    return len(entries)


def fetch_cached(storage: Storage, *, key: str, cache: Path, max_bytes: int) -> Path:
    """The object as a file in a local cache keyed by its key ({cache}/{key}): downloaded unless a file of the
    same size is there; then the cache is trimmed to `max_bytes`, least recently used first, never this file.
    Objects are written once under their key (checkpoints by step, datasets by content hash), so a file of the
    right size is the object."""
    path = cache / check_key(key)
    size = storage.size(key)
    if size is None:
        raise ArtifactNotFound(key)
    if not (path.is_file() and path.stat().st_size == size):
        storage.download(key, path)
    else:  # recently used: its access time, set here (mounts may not record reads); its mtime stays the version
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    trim_cache(cache, max_bytes=max_bytes, keep=path)
    return path


def trim_cache(cache: Path, *, max_bytes: int, keep: Path | None = None) -> None:
    """Remove the least recently used files (by access time) of a cache folder until it holds at most
    `max_bytes`."""
    files = []
    for path in cache.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                stat = path.stat()
                files.append((stat.st_atime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
