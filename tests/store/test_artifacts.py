"""The storage contract, once on each backend: files under a folder, and S3 on a real SeaweedFS server."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ganforge.services import SeaweedFS
from store.artifacts import ArtifactNotFound, FileStorage, S3Storage, Storage, fetch_cached, storage_from_url
from tests.conftest import S3_ENV


def make_s3(endpoint_url: str, **options: int) -> S3Storage:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_ENV.items():
            patch.setenv(name, value)
        storage = storage_from_url(f"s3://ganforge-test/{uuid.uuid4().hex[:8]}", endpoint_url=endpoint_url, **options)
    assert isinstance(storage, S3Storage)
    storage.create_bucket()
    return storage


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "file":
        store: Storage = storage_from_url((tmp_path / "artifacts").as_uri())
    else:
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        # A small multipart threshold (S3's smallest part is 5 MiB), so that the tests exercise multipart uploads.
        store = make_s3(server.endpoint_url, multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    yield store
    store.close()


def test_round_trip_of_bytes_and_files(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes("runs/run_1/config.json", b'{"a": 1}')
    assert storage.read_bytes("runs/run_1/config.json") == b'{"a": 1}'
    assert storage.size("runs/run_1/config.json") == 8
    assert storage.exists("runs/run_1/config.json")

    source = tmp_path / "big.bin"
    payload = os.urandom(12 << 20)  # over the multipart threshold
    source.write_bytes(payload)
    storage.put_file("runs/run_1/checkpoints/00000010.safetensors", source)
    assert storage.size("runs/run_1/checkpoints/00000010.safetensors") == len(payload)
    target = tmp_path / "down" / "ckpt.safetensors"
    storage.download("runs/run_1/checkpoints/00000010.safetensors", target)
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.safetensors"]  # no temp file left

    storage.put_bytes("runs/run_1/config.json", b"{}")  # overwriting replaces
    assert storage.read_bytes("runs/run_1/config.json") == b"{}"


def test_get_as_a_stream(storage: Storage) -> None:
    payload = os.urandom(3 << 20)
    storage.put_stream("datasets/" + "a" * 64 + "/images.npy", io.BytesIO(payload))
    with storage.open("datasets/" + "a" * 64 + "/images.npy") as stream:
        first = stream.read(1000)
        rest = b"".join(iter(lambda: stream.read(1 << 16), b""))
    assert first + rest == payload


def test_list_and_delete_by_prefix(storage: Storage) -> None:
    for key in (
        "runs/run_a/samples/00000001.png",
        "runs/run_a/samples/00000002.png",
        "runs/run_a/config.json",
        "runs/run_ab/config.json",
        "runs/run_b/config.json",
    ):
        storage.put_bytes(key, key.encode())
    assert [e.key for e in storage.list("runs/run_a/samples/")] == [
        "runs/run_a/samples/00000001.png",
        "runs/run_a/samples/00000002.png",
    ]
    assert [e.size for e in storage.list("runs/run_a/samples/")] == [31, 31]
    assert [e.key for e in storage.list("runs/run_a/")] == [
        "runs/run_a/config.json",
        "runs/run_a/samples/00000001.png",
        "runs/run_a/samples/00000002.png",
    ]
    assert storage.list("runs/run_zz/") == []

    assert storage.delete_prefix("runs/run_a/") == 3
    assert [e.key for e in storage.list("runs/")] == ["runs/run_ab/config.json", "runs/run_b/config.json"]
    storage.delete("runs/run_b/config.json")
    storage.delete("runs/run_b/config.json")  # deleting what is not there is quiet
    assert [e.key for e in storage.list("runs/")] == ["runs/run_ab/config.json"]


def test_a_missing_key_is_a_clear_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound, match=r"no artifact at runs/run_x/config\.json"):
        storage.open("runs/run_x/config.json")
    with pytest.raises(ArtifactNotFound):
        storage.download("runs/run_x/config.json", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    assert storage.size("runs/run_x/config.json") is None
    assert not storage.exists("runs/run_x/config.json")


@pytest.mark.parametrize("key", ["../etc/passwd", "runs/../x", "/abs", "runs/.hidden", "runs//x", "a b", ""])
def test_keys_are_ids_and_integers_only(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="not an artifact key"):
        storage.put_bytes(key, b"x")


class Failing(io.RawIOBase):
    """A stream that breaks after `good` bytes, like a disk or a connection failing mid-upload."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise OSError("the source broke")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


@pytest.mark.parametrize("good", [pytest.param(1 << 20, id="small"), pytest.param(12 << 20, id="multipart")])
def test_a_failed_upload_leaves_nothing_visible(storage: Storage, good: int) -> None:
    storage.put_bytes("runs/run_f/checkpoints/00000001.safetensors", b"old")
    for key in ("runs/run_f/checkpoints/00000002.safetensors", "runs/run_f/checkpoints/00000001.safetensors"):
        with pytest.raises(OSError, match="the source broke"):
            storage.put_stream(key, io.BufferedReader(Failing(good)))
    # The new key never appears; the old object is intact.
    assert [e.key for e in storage.list("runs/run_f/")] == ["runs/run_f/checkpoints/00000001.safetensors"]
    assert storage.read_bytes("runs/run_f/checkpoints/00000001.safetensors") == b"old"
    if isinstance(storage, FileStorage):
        assert [p.name for p in (storage.root / "runs/run_f/checkpoints").iterdir()] == ["00000001.safetensors"]
    if isinstance(storage, S3Storage):  # the broken multipart upload was aborted, not left half-done
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage.prefix)
        assert uploads.get("Uploads", []) == []


def test_presigned_url_serves_the_object_without_credentials(storage: Storage) -> None:
    storage.put_bytes("runs/run_p/samples/00000001.png", b"png bytes")
    url = storage.presigned_url("runs/run_p/samples/00000001.png", expires_seconds=60, filename="s.png")
    if isinstance(storage, FileStorage):
        assert url is None
        assert storage.local_path("runs/run_p/samples/00000001.png") == storage.root / "runs/run_p/samples/00000001.png"
        return
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"png bytes"
    assert response.headers["content-disposition"] == 'attachment; filename="s.png"'


def test_file_url_and_bad_urls(tmp_path: Path) -> None:
    storage = storage_from_url(tmp_path.as_uri())
    assert isinstance(storage, FileStorage)
    assert storage.root == tmp_path
    for url, reason in (
        ("file://host/x", "a file URL names a local folder"),
        ("s3:///prefix", "an s3 URL names a bucket"),
        ("gs://bucket", "expected file:///path or s3://bucket/prefix"),
    ):
        with pytest.raises(ValueError, match=reason):
            storage_from_url(url)


def test_the_cache_fetches_once_and_stays_within_its_bytes(storage: Storage, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for step in (1, 2, 3):
        storage.put_bytes(f"runs/run_c/checkpoints/{step:08d}.safetensors", bytes([step]) * 1000)
    first = fetch_cached(storage, key="runs/run_c/checkpoints/00000001.safetensors", cache=cache, max_bytes=2500)
    assert first == cache / "runs/run_c/checkpoints/00000001.safetensors"
    assert first.read_bytes() == b"\x01" * 1000
    os.utime(first, (1, first.stat().st_mtime))  # long unused
    mtime = first.stat().st_mtime_ns
    fetch_cached(storage, key="runs/run_c/checkpoints/00000002.safetensors", cache=cache, max_bytes=2500)
    again = fetch_cached(storage, key="runs/run_c/checkpoints/00000001.safetensors", cache=cache, max_bytes=2500)
    assert again.stat().st_mtime_ns == mtime  # not downloaded again (the loaded-network cache keys on mtime) ...
    assert again.stat().st_atime > 1  # ... only marked as used
    os.utime(cache / "runs/run_c/checkpoints/00000002.safetensors", (1, 1))
    fetch_cached(storage, key="runs/run_c/checkpoints/00000003.safetensors", cache=cache, max_bytes=2500)
    # The least recently used file went to make room.
    assert sorted(p.name for p in cache.rglob("*.safetensors")) == ["00000001.safetensors", "00000003.safetensors"]
    with pytest.raises(ArtifactNotFound):
        fetch_cached(storage, key="runs/run_c/checkpoints/00000009.safetensors", cache=cache, max_bytes=2500)
