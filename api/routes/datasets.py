"""Datasets: upload a ZIP of images, list, inspect, preview and delete; the built-ins are listed beside them.

The upload streams to a file inside the data folder with a byte cap (api/uploads.py), then `core.uploads`
checks and normalises the archive.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.artifacts import serve_artifact
from api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep, find_owned_dataset
from api.errors import unprocessable
from api.responses import binary, error, validation_errors
from api.schemas import DatasetPublic, DatasetsPublic, DatasetUploaded, SkippedFile
from api.uploads import archive_limits, receive_upload
from core import uploads
from core.config import BUILTIN_DATASETS, RunConfig
from store import layout
from store.artifacts import Storage, put_folder
from store.datasets import create_dataset, dataset_with_content, owned_dataset
from store.models import ACTIVE_STATUSES, Dataset, Run, User

router = APIRouter(prefix="/datasets", tags=["datasets"])

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


def check_dataset_for_run(session: Session, user: User, cfg: RunConfig) -> None:
    """Called by POST /runs: an uploaded dataset must exist and be the user's; conditional runs need labels."""
    if cfg.dataset in BUILTIN_DATASETS:
        return
    dataset = owned_dataset(session=session, dataset_id=cfg.dataset, owner_id=user.id)
    if dataset is None:
        raise unprocessable("dataset", f"dataset: no dataset {cfg.dataset}; upload one with POST /datasets")
    if cfg.model.conditional and len(dataset.classes) < 2:
        raise unprocessable(
            "model.conditional",
            f"model.conditional: dataset {cfg.dataset} has no labels (upload images in one folder per class), "
            "so a run on it cannot be conditional",
        )


@router.post(
    "",
    status_code=201,
    response_model=DatasetUploaded,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {
            "model": DatasetUploaded,
            "description": "You had already uploaded these images: that dataset is returned.",
        },
        413: error("The upload is over GANFORGE_MAX_UPLOAD_BYTES."),
        422: validation_errors("Not a ZIP, an unsafe or oversized archive, or no readable image."),
    },
)
async def upload(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    storage: StorageDep,
) -> DatasetUploaded:
    """Upload a ZIP of images (multipart fields `file` and `name`): one folder per class, or flat."""
    datasets_dir = layout.datasets_dir(settings.data_dir)
    made_dir = not datasets_dir.exists()
    datasets_dir.mkdir(parents=True, exist_ok=True)
    await run_in_threadpool(uploads.sweep_stale, datasets_dir)
    upload_path = datasets_dir / f".upload-{uuid.uuid4().hex}.zip"
    prepared: uploads.Prepared | None = None
    try:
        received = await receive_upload(request, upload_path, max_bytes=settings.max_upload_bytes, fields=("name",))
        name = received.fields.get("name") or Path(received.filename).stem or "upload"
        try:
            prepared = await run_in_threadpool(
                uploads.prepare, upload_path, datasets_dir=datasets_dir, limits=archive_limits(settings)
            )
        except uploads.UploadError as exc:  # its messages are about the archive: "file: reason"
            raise unprocessable("file", str(exc)) from exc
        upload_path.unlink()
        dataset, existing = await run_in_threadpool(
            _store, session=session, user=user, prepared=prepared, name=name, datasets_dir=datasets_dir, storage=storage
        )
        if not settings.artifacts_are_local:  # kept in the storage, where workers fetch it
            await run_in_threadpool(uploads.remove_stored, datasets_dir, prepared.content_hash)
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
    return DatasetPublic.from_row(find_owned_dataset(session, user, dataset_id))


@router.get(
    "/{dataset_id}/preview.png",
    response_class=Response,
    responses=binary("image/png", description="A grid of up to 64 images."),
)
def preview(
    dataset_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep, storage: StorageDep
) -> Response:
    """A PNG grid of up to 64 of the dataset's images (a few of each class)."""
    if dataset_id in BUILTIN_DATASETS:
        if BUILTIN_DATASETS[dataset_id]["kind"] != "images":
            raise HTTPException(status_code=404, detail=f"{dataset_id} is 2-D point data; it has no image preview")
        return Response(_builtin_preview(dataset_id), media_type="image/png")
    dataset = find_owned_dataset(session, user, dataset_id)
    key = layout.dataset_prefix(dataset.content_hash) + "preview.png"
    return serve_artifact(storage, settings, key, media_type="image/png", missing="Dataset files are missing")


@router.delete("/{dataset_id}", status_code=204, responses={409: error("Built-in, or in use by a run.")})
def delete(
    dataset_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep, storage: StorageDep
) -> Response:
    """Delete an uploaded dataset (not while a queued or running run uses it); built-ins cannot be deleted."""
    if dataset_id in BUILTIN_DATASETS:
        raise HTTPException(status_code=409, detail=f"{dataset_id} is a built-in dataset and cannot be deleted")
    dataset = find_owned_dataset(session, user, dataset_id)
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
    datasets_dir = layout.datasets_dir(settings.data_dir)
    content_hash = dataset.content_hash
    with uploads.storage_lock(datasets_dir):
        session.delete(dataset)
        session.commit()
        others = session.execute(select(func.count()).where(Dataset.content_hash == content_hash)).scalar_one()
        if others == 0:
            uploads.remove_stored(datasets_dir, content_hash)
            storage.delete_prefix(layout.dataset_prefix(content_hash))
    return Response(status_code=204)


def _store(
    *, session: Session, user: User, prepared: uploads.Prepared, name: str, datasets_dir: Path, storage: Storage
) -> tuple[Dataset, bool]:
    """Place the prepared files under their hash, in the artifact storage too, and add the user's row, under the
    storage lock, so that a concurrent delete of the same content cannot remove the files under a new row.
    (dataset, existed)."""
    with uploads.storage_lock(datasets_dir):
        existing = dataset_with_content(session=session, owner_id=user.id, content_hash=prepared.content_hash)
        created = uploads.place(prepared, datasets_dir)
        local = layout.dataset_dir(datasets_dir.parent, prepared.content_hash)
        put_folder(storage, prefix=layout.dataset_prefix(prepared.content_hash), folder=local)
        if existing is not None:
            return existing, True
        dataset = create_dataset(
            session=session,
            owner_id=user.id,
            name=name,
            content_hash=prepared.content_hash,
            num_images=prepared.num_images,
            classes=prepared.classes,
            image_size=prepared.image_size,
            channels=prepared.channels,
            stats={**prepared.stats, "skipped": prepared.skipped},
        )
        try:
            session.commit()
        except BaseException:
            session.rollback()
            if created:
                uploads.remove_stored(datasets_dir, prepared.content_hash)
            raise
        return dataset, False


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
