"""Datasets: upload a ZIP of images, list, inspect, preview and delete; the built-ins are listed beside them.

The upload's request body is parsed here, as a stream, rather than by Starlette's form parser (which spools
every file part to the system temp folder, with no size cap of its own, before the route runs): the `file`
part goes straight to a temporary file inside the data folder, its bytes counted against
GANFORGE_MAX_UPLOAD_BYTES, and only then is the archive checked and normalised by `core.uploads`.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, SessionDep, SettingsDep
from core import uploads
from core.config import BUILTIN_DATASETS, DATASET_ID_PATTERN, RunConfig
from store.models import ACTIVE_STATUSES, Dataset, Run, User, new_id
from store.settings import Settings

router = APIRouter(prefix="/datasets", tags=["datasets"])

BUILTIN_INFO: dict[str, dict[str, Any]] = {
    "ring8": {"description": "8 Gaussians on a ring: 2-D points, the mode-collapse benchmark"},
    "grid25": {"description": "25 Gaussians on a 5×5 grid: 2-D points, the mode-collapse benchmark"},
    "digits": {"description": "scikit-learn's 1,797 real 8×8 handwritten digits, 10 classes", "num_images": 1797},
    "stacked-digits": {"description": "three digits stacked as the R, G and B channels: 1,000 classes"},
}
MAX_NAME_BYTES = 1000
WRITE_BATCH_BYTES = 1 << 20

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A ZIP of PNG, JPEG, WebP, BMP or GIF images, in class folders or flat.",
                        },
                        "name": {"type": "string", "maxLength": 200, "description": "Default: the file's name."},
                    },
                }
            }
        },
    }
}


class SkippedFile(BaseModel):
    name: str
    reason: str


class DatasetPublic(BaseModel):
    id: str = Field(description="A dataset id (ds_...) or a built-in dataset's name; runs use it as `dataset`.")
    name: str
    builtin: bool
    kind: str = Field("images", description="images, or points (2-D data)")
    num_images: int | None
    classes: list[str] = Field(description="Class names (the upload's folders); empty when unlabeled.")
    num_classes: int
    image_size: int | None = Field(description="Side in pixels of the stored (square) images.")
    channels: int | None
    stats: dict[str, Any] = Field(
        default_factory=dict, description="Images per class, original sizes, modes and formats, skipped files."
    )
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, dataset: Dataset) -> DatasetPublic:
        return cls(
            id=dataset.id,
            name=dataset.name,
            builtin=False,
            kind="images",
            num_images=dataset.num_images,
            classes=list(dataset.classes),
            num_classes=len(dataset.classes),
            image_size=dataset.image_size,
            channels=dataset.channels,
            stats=dataset.stats or {},
            created_at=dataset.created_at,
        )

    @classmethod
    def builtin_dataset(cls, name: str) -> DatasetPublic:
        info = BUILTIN_DATASETS[name]
        images = info["kind"] == "images"
        classes = [f"{i:0{len(str(info['num_classes'] - 1))}d}" for i in range(info["num_classes"])]
        return cls(
            id=name,
            name=name,
            builtin=True,
            kind=info["kind"],
            num_images=BUILTIN_INFO[name].get("num_images"),
            classes=classes,
            num_classes=info["num_classes"],
            image_size=8 if images else None,
            channels=info["channels"] if images else None,
            stats={"description": BUILTIN_INFO[name]["description"]},
        )


class DatasetUploaded(DatasetPublic):
    skipped: list[SkippedFile] = Field(description="Files of the archive that were not images or not readable.")
    existing: bool = Field(description="True when you had already uploaded these images: that dataset is returned.")


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]


def check_dataset_for_run(session: Session, user: User, cfg: RunConfig) -> None:
    """Called by POST /runs: an uploaded dataset must exist and be the user's; conditional runs need labels."""
    if not DATASET_ID_PATTERN.match(cfg.dataset):
        return
    dataset = session.get(Dataset, cfg.dataset)
    if dataset is None or dataset.owner_id != user.id:
        raise HTTPException(
            status_code=422, detail=f"dataset: no dataset {cfg.dataset}; upload one with POST /datasets"
        )
    if cfg.model.conditional and len(dataset.classes) < 2:
        raise HTTPException(
            status_code=422,
            detail=(
                f"model.conditional: dataset {cfg.dataset} has no labels (upload images in one folder per class), "
                "so a run on it cannot be conditional"
            ),
        )


@router.post(
    "",
    status_code=201,
    response_model=DatasetUploaded,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {"description": "You had already uploaded these images: that dataset is returned."},
        413: {"description": "The upload is over GANFORGE_MAX_UPLOAD_BYTES."},
        422: {"description": "Not a ZIP, an unsafe or oversized archive, or no readable image."},
    },
)
async def upload(
    request: Request, response: Response, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> DatasetUploaded:
    """Upload a ZIP of images (multipart fields `file` and `name`): one folder per class, or flat."""
    datasets_dir = settings.data_dir / "datasets"
    made_dir = not datasets_dir.exists()
    datasets_dir.mkdir(parents=True, exist_ok=True)
    await run_in_threadpool(uploads.sweep_stale, datasets_dir)
    upload_path = datasets_dir / f".upload-{uuid.uuid4().hex}.zip"
    prepared: uploads.Prepared | None = None
    try:
        name = await _receive(request, upload_path, max_bytes=settings.max_upload_bytes)
        try:
            prepared = await run_in_threadpool(
                uploads.prepare, upload_path, datasets_dir=datasets_dir, limits=_limits(settings)
            )
        except uploads.UploadError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        upload_path.unlink()
        dataset, existing = await run_in_threadpool(
            _store, session=session, user=user, prepared=prepared, name=name, datasets_dir=datasets_dir
        )
    finally:
        upload_path.unlink(missing_ok=True)
        if prepared is not None:
            shutil.rmtree(prepared.tmp_dir, ignore_errors=True)
        if made_dir:
            with contextlib.suppress(OSError):
                datasets_dir.rmdir()  # only if empty: this upload failed and nothing else is stored
    response.headers["Location"] = f"/datasets/{dataset.id}"
    if existing:
        response.status_code = 200
    public = DatasetPublic.from_row(dataset)
    skipped = [SkippedFile(**s) for s in prepared.skipped]
    return DatasetUploaded(**public.model_dump(), skipped=skipped, existing=existing)


@router.get("", response_model=DatasetsPublic)
def list_datasets(session: SessionDep, user: CurrentUser) -> DatasetsPublic:
    """The built-in datasets, then your uploaded ones, newest first (without the lists of skipped files)."""
    rows = session.execute(
        select(Dataset).where(Dataset.owner_id == user.id).order_by(Dataset.created_at.desc(), Dataset.id)
    ).scalars()
    items = [DatasetPublic.builtin_dataset(name) for name in BUILTIN_DATASETS]
    for row in rows:
        item = DatasetPublic.from_row(row)
        item.stats = {k: v for k, v in item.stats.items() if k != "skipped"}  # the list stays small; GET has them
        items.append(item)
    return DatasetsPublic(items=items)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get(dataset_id: str, session: SessionDep, user: CurrentUser) -> DatasetPublic:
    """A dataset with its statistics: images per class, original sizes, channels."""
    if dataset_id in BUILTIN_DATASETS:
        return DatasetPublic.builtin_dataset(dataset_id)
    return DatasetPublic.from_row(_owned(session, user, dataset_id))


@router.get(
    "/{dataset_id}/preview.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "A grid of up to 64 images."}},
)
def preview(dataset_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> Response:
    """A PNG grid of up to 64 of the dataset's images (a few of each class)."""
    if dataset_id in BUILTIN_DATASETS:
        if BUILTIN_DATASETS[dataset_id]["kind"] != "images":
            raise HTTPException(status_code=404, detail=f"{dataset_id} is 2-D point data; it has no image preview")
        return Response(_builtin_preview(dataset_id), media_type="image/png")
    dataset = _owned(session, user, dataset_id)
    path = uploads.dataset_dir_for(settings.data_dir, dataset.content_hash) / "preview.png"
    if not path.is_file():
        raise HTTPException(status_code=404, detail="Dataset files are missing")
    return FileResponse(path, media_type="image/png")


@router.delete("/{dataset_id}", status_code=204, responses={409: {"description": "Built-in, or in use by a run."}})
def delete(dataset_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> Response:
    """Delete an uploaded dataset (not while a queued or running run uses it); built-ins cannot be deleted."""
    if dataset_id in BUILTIN_DATASETS:
        raise HTTPException(status_code=409, detail=f"{dataset_id} is a built-in dataset and cannot be deleted")
    dataset = _owned(session, user, dataset_id)
    in_use = session.execute(
        select(Run.id, Run.status)
        .where(
            Run.owner_id == user.id,
            Run.status.in_(ACTIVE_STATUSES),
            Run.config["dataset"].as_string() == dataset.id,
        )
        .limit(1)
    ).first()
    if in_use is not None:
        raise HTTPException(
            status_code=409,
            detail=f"Dataset is used by run {in_use.id}, which is {in_use.status}; cancel it or wait for it to finish",
        )
    datasets_dir = settings.data_dir / "datasets"
    content_hash = dataset.content_hash
    with uploads.storage_lock(datasets_dir):
        session.delete(dataset)
        session.commit()
        others = session.execute(select(func.count()).where(Dataset.content_hash == content_hash)).scalar_one()
        if others == 0:
            uploads.remove_stored(datasets_dir, content_hash)
    return Response(status_code=204)


def _owned(session: Session, user: User, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id) if DATASET_ID_PATTERN.match(dataset_id) else None
    if dataset is None or dataset.owner_id != user.id:
        raise HTTPException(status_code=404, detail="Dataset not found")
    return dataset


def _limits(settings: Settings) -> uploads.Limits:
    return uploads.Limits(
        max_members=settings.max_archive_members,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        max_ratio=settings.max_member_ratio,
        max_image_pixels=settings.max_image_pixels,
        max_side=settings.dataset_max_side,
    )


def _store(
    *, session: Session, user: User, prepared: uploads.Prepared, name: str, datasets_dir: Path
) -> tuple[Dataset, bool]:
    """Place the prepared files under their hash and add the user's row, under the storage lock, so that a
    concurrent delete of the same content cannot remove the files under a new row. (dataset, existed)."""
    with uploads.storage_lock(datasets_dir):
        existing = session.execute(
            select(Dataset).where(Dataset.owner_id == user.id, Dataset.content_hash == prepared.content_hash)
        ).scalar_one_or_none()
        created = uploads.place(prepared, datasets_dir)
        if existing is not None:
            return existing, True
        stats = {**prepared.stats, "skipped": prepared.skipped}
        dataset = Dataset(
            id=new_id("ds"),
            owner_id=user.id,
            name=name,
            content_hash=prepared.content_hash,
            num_images=prepared.num_images,
            classes=prepared.classes,
            image_size=prepared.image_size,
            channels=prepared.channels,
            stats=stats,
        )
        session.add(dataset)
        try:
            session.commit()
        except BaseException:
            session.rollback()
            if created:
                uploads.remove_stored(datasets_dir, prepared.content_hash)
            raise
        return dataset, False


class _Form:
    """The state of a streamed multipart body: the `name` field, and where the `file` part's bytes go."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_field = b""
        self.header_value = b""
        self.part: str | None = None  # "file", "name" or None (ignored)
        self.name = bytearray()
        self.filename = ""
        self.files = 0
        self.file_bytes = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.error: str | None = None

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
        field = options.get(b"name", b"")
        if field == b"file" and b"filename" in options:
            self.files += 1
            if self.files > 1:
                self.error = "file: send one archive"
            self.part = "file"
            self.filename = options[b"filename"].decode("utf-8", "replace")
        elif field == b"name":
            self.part = "name"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == "file" and self.files == 1:
            chunk = data[start:end]
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
            self.file_bytes += len(chunk)
        elif self.part == "name":
            self.name += data[start:end]
            if len(self.name) > MAX_NAME_BYTES:
                self.error = "name: at most 200 characters"


async def _receive(request: Request, path: Path, *, max_bytes: int) -> str:
    """Stream the multipart body: the `file` part into `path`, counted against `max_bytes`. Returns the name."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(
            status_code=422, detail="file: send the ZIP archive as multipart/form-data with the fields file and name"
        )
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
                raise HTTPException(status_code=422, detail=f"file: malformed multipart body ({exc})") from exc
            if form.error is not None:
                raise HTTPException(status_code=422, detail=form.error)
            if form.file_bytes > max_bytes:
                raise HTTPException(status_code=413, detail=f"file: the upload is over the limit of {max_bytes} bytes")
            if form.pending_bytes >= WRITE_BATCH_BYTES:
                await run_in_threadpool(out.write, b"".join(form.pending))
                form.pending, form.pending_bytes = [], 0
        parser.finalize()
        if form.pending:
            await run_in_threadpool(out.write, b"".join(form.pending))
    if form.files == 0:
        raise HTTPException(status_code=422, detail="file: missing; send the ZIP archive as the multipart field file")
    try:
        name = form.name.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise HTTPException(status_code=422, detail="name: not valid UTF-8") from exc
    name = name or Path(form.filename).stem or "upload"
    if len(name) > 200:
        raise HTTPException(status_code=422, detail="name: at most 200 characters")
    return name


@lru_cache(maxsize=2)
def _builtin_preview(name: str) -> bytes:
    """A preview grid of digits or stacked-digits from scikit-learn's bundled digits (no download)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)[:, :, :, None]  # (N, 8, 8, 1)
    labels = digits.target.astype(np.int64)
    if name == "stacked-digits":
        rng = np.random.default_rng(0)
        triples = rng.integers(0, len(images), (64, 3))  # (64, 3): the R, G and B digits
        images = np.concatenate([images[triples[:, k]] for k in range(3)], axis=3)  # (64, 8, 8, 3)
        return uploads.preview_png(images, None)
    return uploads.preview_png(images, labels)
