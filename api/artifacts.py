"""Answering a request for an artifact: the file itself (file backend), a stream from object storage with the
same authorization as every route, or a 307 to a short-lived presigned URL (GANFORGE_S3_PRESIGN=true)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import IO

from fastapi import HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from store.artifacts import CHUNK, ArtifactNotFound, Storage
from store.settings import Settings

# A safetensors header longer than this is not one of our checkpoints.
MAX_HEADER_BYTES = 100_000_000


def serve_artifact(
    storage: Storage,
    settings: Settings,
    key: str,
    *,
    media_type: str,
    missing: str,
    filename: str | None = None,
) -> Response:
    """The artifact under `key` as a response; 404 with `missing` as its detail when there is none."""
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise HTTPException(status_code=404, detail=missing)
        return FileResponse(path, media_type=media_type, filename=filename)
    if settings.s3_presign:
        if not storage.exists(key):
            raise HTTPException(status_code=404, detail=missing)
        url = storage.presigned_url(key, expires_seconds=settings.s3_presign_expires_seconds, filename=filename)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    try:
        stream = storage.open(key)
    except ArtifactNotFound:
        raise HTTPException(status_code=404, detail=missing) from None
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else None
    return StreamingResponse(_chunks(stream), media_type=media_type, headers=headers)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def checkpoint_metadata(storage: Storage, key: str) -> dict[str, str]:
    """The string metadata of a safetensors checkpoint, read from its header (8 bytes of length, then JSON)
    without reading any tensor. ArtifactNotFound when it is gone; ValueError when it is not safetensors or is
    cut off (its size is not the one its header's tensor offsets add up to)."""
    with storage.open(key) as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("cut off before its header")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES:
            raise ValueError("header too long")
        raw = f.read(length)
    if len(raw) != length:
        raise ValueError("cut off inside its header")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("not a safetensors header")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("no metadata")
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError("not a safetensors header") from None
    if storage.size(key) != 8 + length + max(ends, default=0):
        raise ValueError("cut off, or not one file")
    return {str(k): str(v) for k, v in metadata.items()}
