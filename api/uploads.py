"""Uploads (POST /datasets: a ZIP of images or a table; POST /runs/{id}/scores: a ZIP), received as a stream.

The request body is parsed here rather than by Starlette's form parser, which spools every file part to the
system temp folder, with no size cap of its own, before the route runs: the `file` part goes straight to a
temporary file inside the data folder, its bytes counted against GANFORGE_MAX_UPLOAD_BYTES, and only then is
the archive checked and normalised by `core.uploads` with the archive limits of the settings.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.errors import invalid_body, unprocessable
from core import uploads
from store import layout
from store.settings import Settings

# Text fields beside the file: how many, and how long each may be.
MAX_FIELDS = 20
MAX_FIELD_CHARS = 200
MAX_FIELD_BYTES = 1000
WRITE_BATCH_BYTES = 1 << 20

OptionsT = TypeVar("OptionsT", bound=BaseModel)


@dataclass
class Received:
    """What a multipart upload carried besides the archive: the file's name and the text fields."""

    filename: str
    fields: dict[str, str]


def archive_limits(settings: Settings) -> uploads.Limits:
    """The caps on an uploaded archive's contents (zip bombs) and on the stored side of its images."""
    return uploads.Limits(
        max_members=settings.max_archive_members,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        max_ratio=settings.max_member_ratio,
        max_image_pixels=settings.max_image_pixels,
        max_side=settings.dataset_max_side,
    )


class _Form:
    """The state of a streamed multipart body: the text fields, and where the `file` part's bytes go."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_field = b""
        self.header_value = b""
        self.part: str | None = None  # "file", a text field's name, or None (ignored)
        self.fields: dict[str, bytearray] = {}
        self.filename = ""
        self.files = 0
        self.file_bytes = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.error: tuple[str, str] | None = None  # (field, message)

    def on_part_begin(self) -> None:
        self.headers = []
        self.part = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers.append((self.header_field.lower(), self.header_value))
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        disposition = dict(self.headers).get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if field == "file" and b"filename" in options:
            self.files += 1
            if self.files > 1:
                self.error = ("file", "file: send one archive")
            self.part = "file"
            self.filename = options[b"filename"].decode("utf-8", "replace")
        elif field and field != "file":
            if len(self.fields) >= MAX_FIELDS and field not in self.fields:
                self.error = (field, f"{field}: at most {MAX_FIELDS} fields besides the file")
            self.part = field
            self.fields[field] = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == "file" and self.files == 1:
            chunk = data[start:end]
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
            self.file_bytes += len(chunk)
        elif self.part is not None and self.part != "file":
            value = self.fields[self.part]
            value += data[start:end]
            if len(value) > MAX_FIELD_BYTES:
                self.error = (self.part, f"{self.part}: at most {MAX_FIELD_CHARS} characters")


async def receive_upload(
    request: Request, path: Path, *, max_bytes: int, fields: tuple[str, ...], what: str = "the ZIP archive"
) -> Received:
    """Stream the multipart body: the `file` part into `path`, counted against `max_bytes` (413 beyond), and
    the text fields into memory. `fields` names the fields a client should send and `what` the file, for the
    error messages."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        named = ", ".join(("file", *fields[:-1])) + f" and {fields[-1]}" if fields else "file"
        raise unprocessable("file", f"file: send {what} as multipart/form-data with the fields {named}")
    form = _Form()
    callbacks: Any = {
        "on_part_begin": form.on_part_begin,
        "on_header_field": form.on_header_field,
        "on_header_value": form.on_header_value,
        "on_header_end": form.on_header_end,
        "on_headers_finished": form.on_headers_finished,
        "on_part_data": form.on_part_data,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    with path.open("wb") as out:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart's MultipartParseError and kin
                raise unprocessable("file", f"file: malformed multipart body ({exc})") from exc
            if form.error is not None:
                raise unprocessable(*form.error)
            if form.file_bytes > max_bytes:
                raise HTTPException(status_code=413, detail=f"file: the upload is over the limit of {max_bytes} bytes")
            if form.pending_bytes >= WRITE_BATCH_BYTES:
                await run_in_threadpool(out.write, b"".join(form.pending))
                form.pending, form.pending_bytes = [], 0
        parser.finalize()
        if form.pending:
            await run_in_threadpool(out.write, b"".join(form.pending))
    if form.files == 0:
        raise unprocessable("file", f"file: missing; send {what} as the multipart field file")
    if "\x00" in form.filename:
        raise unprocessable("file", "file: a NUL character in the file's name is not allowed")
    values: dict[str, str] = {}
    for name, raw in form.fields.items():
        try:
            values[name] = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise unprocessable(name, f"{name}: not valid UTF-8") from exc
        if len(values[name]) > MAX_FIELD_CHARS:
            raise unprocessable(name, f"{name}: at most {MAX_FIELD_CHARS} characters")
        if "\x00" in values[name]:
            raise unprocessable(name, f"{name}: a NUL character is not allowed")
    return Received(filename=form.filename, fields=values)


@contextlib.asynccontextmanager
async def received_job_upload(
    request: Request, settings: Settings, options: type[OptionsT], *, what: str = "the ZIP archive"
) -> AsyncIterator[tuple[Path, OptionsT]]:
    """A job's multipart upload: the file streamed into the data folder's tmp/ (capped as `receive_upload` caps it)
    and the text fields validated as `options` (a 422 naming each bad field), given as (path, options) to the block.
    The received file is removed when the block ends, however it ends: a job keeps its own normalised copy."""
    tmp = layout.tmp_dir(settings.data_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f".upload-{uuid.uuid4().hex}.zip"
    try:
        received = await receive_upload(
            request, path, max_bytes=settings.max_upload_bytes, fields=tuple(options.model_fields), what=what
        )
        try:
            parsed = options.model_validate(received.fields)
        except ValidationError as error:
            raise invalid_body(error) from None
        yield path, parsed
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
