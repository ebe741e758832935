"""Datasets: upload a ZIP of images or a table (CSV or Parquet), list, inspect, change a table's column types,
preview and delete; the built-ins are listed beside them.

The upload streams to a file inside the data folder with a byte cap (api/uploads.py); its first bytes say what it
is (a ZIP starts with PK, Parquet with PAR1, anything else is read as a CSV); then `core.uploads` checks and
normalises an archive, `core.tabular.upload` a table, off the request thread. Both are stored content-addressed,
in the artifact storage too, where workers fetch them.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.artifacts import serve_artifact
from api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep, find_owned_dataset
from api.errors import unprocessable
from api.offload import offload
from api.quotas import STORAGE_FULL, refuse_over_quota
from api.responses import binary, error, validation_errors
from api.routing import ReleasingRoute
from api.schemas import DatasetPatch, DatasetPublic, DatasetsPublic, DatasetUploaded, SkippedFile, TableRowsPublic
from api.uploads import MAX_FIELD_CHARS, archive_limits, receive_upload
from core import previews, uploads
from core.config import BUILTIN_DATASETS, RunConfig, TableSource, default_class_clusters
from core.tabular import upload as tables
from core.tabular.columns import is_missing
from store import layout
from store.artifacts import Storage, put_folder
from store.datasets import (
    active_run_using,
    create_dataset,
    dataset_with_content,
    is_table,
    owned_dataset,
    set_table_columns,
)
from store.models import Dataset, User
from store.quotas import check_new_dataset
from store.settings import Settings

router = APIRouter(prefix="/datasets", tags=["datasets"], route_class=ReleasingRoute)

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
                            "description": "A ZIP of PNG, JPEG, WebP, BMP or GIF images, in class folders or flat; "
                            "or a table: a CSV (UTF-8, a header row) or a Parquet file.",
                        },
                        "name": {"type": "string", "maxLength": 200, "description": "Default: the file's name."},
                        "target": {"type": "string", "maxLength": 200, "description": "Tables: the target column."},
                        "layout": {
                            "type": "string",
                            "enum": list(uploads.LAYOUTS),
                            "default": "auto",
                            "description": "ZIPs: images (class folders or flat), paired (A/ inputs and B/ targets "
                            "sharing file names), AB (side-by-side pairs: each image twice as wide as tall, input "
                            "left), unpaired (trainA/ and trainB/, testA/ and testB/ held out); auto: unpaired for "
                            "trainA/ and trainB/, paired for exactly A/ and B/, else images.",
                        },
                    },
                }
            }
        },
    }
}


def check_dataset_for_run(session: Session, user: User, cfg: RunConfig) -> RunConfig:
    """Called by POST /runs: an uploaded dataset must exist and be the user's; conditional runs need labels. The
    config to store: for an uploaded table, with its column types and target (`table`) as the dataset holds them."""
    if cfg.dataset in BUILTIN_DATASETS:
        return cfg
    dataset = owned_dataset(session=session, dataset_id=cfg.dataset, owner_id=user.id)
    if dataset is None:
        raise unprocessable("dataset", f"dataset: no dataset {cfg.dataset}; upload one with POST /datasets")
    if is_table(dataset):
        source = TableSource(
            columns=dataset.stats.get("overrides") or {},
            target=dataset.stats.get("target"),
            rows=dataset.stats.get("rows"),
        )
        if cfg.table is not None and cfg.table.model_copy(update={"rows": source.rows}) != source:
            raise unprocessable(
                "table",
                f"table: differs from dataset {cfg.dataset}'s column types and target; leave it out (the run takes "
                "the dataset's) and change them with PATCH /datasets/{id}",
            )
        # Validated again with the table's rows, which resolve a ctgan run's steps from its train.epochs.
        return RunConfig.model_validate(cfg.model_dump() | {"table": source.model_dump()})
    if cfg.model.clusters > dataset.num_images:
        raise unprocessable(
            "model.clusters",
            f"model.clusters: {cfg.model.clusters} clusters need at least as many images; dataset {cfg.dataset} has "
            f"{dataset.num_images}",
        )
    if cfg.model.conditional and len(dataset.classes) < 2:
        raise unprocessable(
            "model.conditional",
            f"model.conditional: dataset {cfg.dataset} has no labels (upload images in one folder per class), "
            "so a run on it cannot be conditional",
        )
    if cfg.model.conditional and cfg.model.arch == "stylegan2":
        return _with_class_clusters(cfg, dataset)
    return cfg


def _with_class_clusters(cfg: RunConfig, dataset: Dataset) -> RunConfig:
    """A conditional stylegan2 run on an uploaded dataset: a model.class_clusters the request left out is chosen from
    the dataset's smallest class (default_class_clusters); a chosen one must leave an image for each cluster of
    every class (a 422 naming the smallest class, rather than a run that fails when it builds its clusters)."""
    per_class: dict[str, int] = (dataset.stats or {}).get("images_per_class") or {}
    if not per_class:
        return cfg
    name, smallest = min(per_class.items(), key=lambda item: item[1])
    if "class_clusters" not in cfg.model.model_fields_set:
        model = cfg.model.model_dump() | {"class_clusters": default_class_clusters(smallest)}
        return RunConfig.model_validate(cfg.model_dump() | {"model": model})
    if cfg.model.class_clusters > smallest:
        k = cfg.model.class_clusters
        raise unprocessable(
            "model.class_clusters",
            f"model.class_clusters: {k} clusters in each class need {k} images in each; class {name!r} of dataset "
            f"{cfg.dataset} has {smallest}",
        )
    return cfg


@router.post(
    "",
    status_code=201,
    response_model=DatasetUploaded,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {
            "model": DatasetUploaded,
            "description": "You had already uploaded these images (or this table): that dataset is returned.",
        },
        **STORAGE_FULL,
        413: error("The upload is over GANFORGE_MAX_UPLOAD_BYTES."),
        422: validation_errors(
            "An unsafe or oversized archive, or no readable image; a table that is not a readable CSV or Parquet "
            "file, has ragged rows, an over-long cell, too few rows or a constant column."
        ),
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
    """Upload a ZIP of images (one folder per class, or flat; or paired or unpaired images for translation, see
    `layout`) or a table (CSV or Parquet): multipart fields `file`, `name`, `layout` and, for a table, `target`."""
    # Over the datasets quota, or with the bytes quota already used, nothing is received (checked again, locked,
    # before the dataset's row is inserted).
    refusal = await run_in_threadpool(
        check_new_dataset, session=session, storage=storage, user=user, settings=settings, lock=False
    )
    refuse_over_quota(refusal)
    await run_in_threadpool(session.commit)  # give the connection back while the upload streams
    datasets_dir = layout.datasets_dir(settings.data_dir)
    made_dir = not datasets_dir.exists()
    datasets_dir.mkdir(parents=True, exist_ok=True)
    await run_in_threadpool(uploads.sweep_stale, datasets_dir)
    upload_path = datasets_dir / f".upload-{uuid.uuid4().hex}.zip"
    prepared: uploads.Prepared | None = None
    table: tables.PreparedTable | None = None
    try:
        received = await receive_upload(
            request,
            upload_path,
            max_bytes=settings.max_upload_bytes,
            fields=("name", "target", "layout"),
            what="the ZIP of images or the table (CSV or Parquet)",
        )
        # Without a name field, the file's name without its suffix, cut to the length a name field may have.
        name = received.fields.get("name") or Path(received.filename).stem[:MAX_FIELD_CHARS] or "upload"
        with upload_path.open("rb") as head:
            source = tables.sniff(head.read(4))
        if source == "csv" and received.filename.lower().endswith(".zip"):  # its name says what was meant
            raise unprocessable("file", "file: not a ZIP archive")
        store: Callable[..., tuple[Dataset, bool]]  # takes session, user, name, datasets_dir, storage, settings
        if source != "zip":
            if received.fields.get("layout"):
                raise unprocessable("layout", "layout: only a ZIP of images has a layout; this is a table")
            target = received.fields.get("target") or None
            table = await _prepare_table(upload_path, source, datasets_dir, target, settings.upload_processes)
            content_hash = table.content_hash
            store = functools.partial(_store_table, table=table, target=target)
        else:
            if received.fields.get("target"):
                raise unprocessable("target", "target: only a table (CSV or Parquet) has a target column")
            arrangement = received.fields.get("layout") or "auto"
            try:
                prepared = await offload(
                    uploads.prepare,
                    upload_path,
                    processes=settings.upload_processes,
                    datasets_dir=datasets_dir,
                    limits=archive_limits(settings),
                    layout=arrangement,
                )
            except uploads.UploadError as exc:  # its messages are about the archive or its layout: "file: reason"
                message = str(exc)
                raise unprocessable("layout" if message.startswith("layout:") else "file", message) from exc
            content_hash = prepared.content_hash
            store = functools.partial(_store_images, prepared=prepared)
        upload_path.unlink()
        dataset, existing = await run_in_threadpool(
            store,
            session=session,
            user=user,
            name=name,
            datasets_dir=datasets_dir,
            storage=storage,
            settings=settings,
        )
        if not settings.artifacts_are_local:  # kept in the storage, where workers fetch it
            await run_in_threadpool(uploads.remove_stored, datasets_dir, content_hash)
    finally:
        upload_path.unlink(missing_ok=True)
        if prepared is not None:
            shutil.rmtree(prepared.tmp_dir, ignore_errors=True)
        if table is not None:
            shutil.rmtree(table.tmp_dir, ignore_errors=True)
        if made_dir:
            with contextlib.suppress(OSError):
                datasets_dir.rmdir()  # only if empty: this upload failed and nothing else is stored
    response.headers["Location"] = f"/datasets/{dataset.id}"
    if existing:
        response.status_code = 200
    public = DatasetPublic.from_row(dataset)
    skipped = [SkippedFile(**s) for s in prepared.skipped] if prepared is not None else []
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
    """A dataset with its statistics: images per class, original sizes, channels; a table's columns (type,
    missing share, statistics) and target."""
    if dataset_id in BUILTIN_DATASETS:
        if BUILTIN_DATASETS[dataset_id]["kind"] == "table":
            info = BUILTIN_DATASETS[dataset_id]
            stats = {**_builtin_table_stats(dataset_id), "description": info["description"]}
            return DatasetPublic.table(dataset_id, dataset_id, stats, builtin=True)
        return DatasetPublic.builtin_dataset(dataset_id)
    return DatasetPublic.from_row(find_owned_dataset(session, user, dataset_id))


@router.patch(
    "/{dataset_id}",
    response_model=DatasetPublic,
    responses={
        404: error("No such dataset of yours."),
        409: error("A built-in, or in use by a queued or running run."),
        422: validation_errors("Not a table, an unknown column, or a type the column's values do not allow."),
    },
)
def patch(
    dataset_id: str, body: DatasetPatch, session: SessionDep, user: CurrentUser, storage: StorageDep
) -> DatasetPublic:
    """Change a table's column types ({"columns": {name: type}}; null puts the inferred type back) or its target
    column ("" clears it); not while a queued or running run uses the table."""
    if dataset_id in BUILTIN_DATASETS:
        raise HTTPException(status_code=409, detail=f"{dataset_id} is a built-in dataset and cannot be changed")
    dataset = find_owned_dataset(session, user, dataset_id)
    if not is_table(dataset):
        raise unprocessable("columns", f"columns: {dataset.id} holds images; only a table's columns have types")
    run = active_run_using(session=session, dataset_id=dataset.id, owner_id=user.id)
    if run is not None:
        raise HTTPException(
            status_code=409,
            detail=f"Dataset is used by run {run.id}, which is {run.status}; cancel it or wait for it to finish",
        )
    stats = dataset.stats
    overrides = dict(stats.get("overrides") or {})
    for column, kind in (body.columns or {}).items():
        if kind is None:
            overrides.pop(column, None)
        else:
            overrides[column] = kind
    target = stats.get("target")
    if "target" in body.model_fields_set:
        target = body.target or None
    names = [c["name"] for c in stats["columns"]]
    if target is not None and target not in names:
        raise unprocessable("target", f"target: no column {target!r}; the table has {', '.join(names)}")
    key = layout.dataset_prefix(dataset.content_hash) + f"table.{stats['source']}"
    data = storage.read_bytes(key)
    try:
        table = tables.read_upload(data, stats["source"])
        columns = tables.check_columns(table, overrides)
    except ValueError as exc:  # "columns.<name>: reason"
        message = str(exc)
        raise unprocessable(message.split(": ", 1)[0], message) from exc
    inferred = tables.check_columns(table)
    # Overrides that match the inferred type are dropped: they change nothing.
    overrides = {c.name: c.kind for c, g in zip(columns, inferred, strict=True) if c.kind != g.kind}
    set_table_columns(
        dataset=dataset, columns=tables.describe(table, columns, inferred), overrides=overrides, target=target
    )
    session.commit()
    return DatasetPublic.from_row(dataset)


@router.get(
    "/{dataset_id}/preview.png",
    response_class=Response,
    responses=binary("image/png", description="A grid of up to 64 images, or a table's per-column histograms."),
)
def preview(
    dataset_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep, storage: StorageDep
) -> Response:
    """A PNG grid of up to 64 of the dataset's images (a few of each class), or a table's per-column histograms."""
    if dataset_id in BUILTIN_DATASETS:
        kind = BUILTIN_DATASETS[dataset_id]["kind"]
        if kind == "table":
            return Response(_builtin_table_preview(dataset_id), media_type="image/png")
        if kind != "images":
            raise HTTPException(status_code=404, detail=f"{dataset_id} is 2-D point data; it has no image preview")
        if dataset_id in previews.LOADED_PREVIEWS:
            return Response(_loaded_preview(dataset_id, settings.upload_processes), media_type="image/png")
        return Response(_builtin_preview(dataset_id), media_type="image/png")
    dataset = find_owned_dataset(session, user, dataset_id)
    key = layout.dataset_prefix(dataset.content_hash) + "preview.png"
    return serve_artifact(storage, settings, key, media_type="image/png", missing="Dataset files are missing")


@router.get("/{dataset_id}/rows", response_model=TableRowsPublic, responses={404: error("No such table of yours.")})
def rows(
    dataset_id: str,
    session: SessionDep,
    user: CurrentUser,
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> TableRowsPublic:
    """The first `limit` rows of a table (built-in or uploaded), as read."""
    if dataset_id in BUILTIN_DATASETS:
        if BUILTIN_DATASETS[dataset_id]["kind"] != "table":
            raise HTTPException(status_code=404, detail=f"{dataset_id} is not a table; it has no rows")
        table = _builtin_table_data(dataset_id)[0]
    else:
        dataset = find_owned_dataset(session, user, dataset_id)
        if not is_table(dataset):
            raise HTTPException(status_code=404, detail=f"{dataset_id} holds images; it has no rows")
        source = dataset.stats["source"]
        table = tables.read_upload(
            storage.read_bytes(layout.dataset_prefix(dataset.content_hash) + f"table.{source}"), source
        )
    names = list(table)
    n = len(table[names[0]])
    cells = [[_cell(v) for v in table[name][:limit].tolist()] for name in names]
    return TableRowsPublic(columns=names, rows=[list(row) for row in zip(*cells, strict=True)], num_rows=n)


def _cell(value: Any) -> str | float | None:
    """A cell as JSON: missing cells (empty, NA, NaN, None, ...: core.tabular.columns.is_missing) as null."""
    if is_missing(value):
        return None
    return value if isinstance(value, str | float) else str(value)


@router.delete("/{dataset_id}", status_code=204, responses={409: error("Built-in, or in use by a run.")})
def delete(
    dataset_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep, storage: StorageDep
) -> Response:
    """Delete an uploaded dataset (not while a queued or running run uses it); built-ins cannot be deleted."""
    if dataset_id in BUILTIN_DATASETS:
        raise HTTPException(status_code=409, detail=f"{dataset_id} is a built-in dataset and cannot be deleted")
    dataset = find_owned_dataset(session, user, dataset_id)
    in_use = active_run_using(session=session, dataset_id=dataset.id, owner_id=user.id)
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
    *,
    session: Session,
    user: User,
    content_hash: str,
    place: Callable[[], bool],
    row: dict[str, Any],
    datasets_dir: Path,
    storage: Storage,
    settings: Settings,
    prepared_dir: Path,
) -> tuple[Dataset, bool]:
    """Place an upload's prepared files (in `prepared_dir`) under their hash (`place`: False when that content is
    already there), in the artifact storage too, and add the user's row (`row`: create_dataset's other fields),
    under the storage lock, so that a concurrent delete of the same content cannot remove the files under a new
    row. A new dataset over the user's quotas is refused before anything is placed (403). (dataset, existed)."""
    with uploads.storage_lock(datasets_dir):
        existing = dataset_with_content(session=session, owner_id=user.id, content_hash=content_hash)
        if existing is None:
            size = sum(f.stat().st_size for f in prepared_dir.rglob("*") if f.is_file())
            # Uploads are already one at a time here (the storage lock), and a row lock held through the copy
            # into the storage below would stop every other write on SQLite.
            refusal = check_new_dataset(
                session=session, storage=storage, user=user, settings=settings, adding_bytes=size, lock=False
            )
            refuse_over_quota(refusal)
        created = place()
        local = layout.dataset_dir(datasets_dir.parent, content_hash)
        put_folder(storage, prefix=layout.dataset_prefix(content_hash), folder=local)
        if existing is not None:
            return existing, True
        dataset = create_dataset(session=session, owner_id=user.id, content_hash=content_hash, **row)
        try:
            session.commit()
        except BaseException:
            session.rollback()
            if created:
                uploads.remove_stored(datasets_dir, content_hash)
            raise
        return dataset, False


def _store_images(
    *,
    session: Session,
    user: User,
    prepared: uploads.Prepared,
    name: str,
    datasets_dir: Path,
    storage: Storage,
    settings: Settings,
) -> tuple[Dataset, bool]:
    """`_store` for a ZIP of images."""
    row = {
        "name": name,
        "num_images": prepared.num_images,
        "classes": prepared.classes,
        "image_size": prepared.image_size,
        "channels": prepared.channels,
        "stats": {**prepared.stats, "skipped": prepared.skipped},
    }
    return _store(
        session=session,
        user=user,
        content_hash=prepared.content_hash,
        place=lambda: uploads.place(prepared, datasets_dir),
        row=row,
        datasets_dir=datasets_dir,
        storage=storage,
        settings=settings,
        prepared_dir=prepared.tmp_dir,
    )


async def _prepare_table(
    path: Path, source: str, datasets_dir: Path, target: str | None, processes: int
) -> tables.PreparedTable:
    """Check the uploaded table in an upload process; 422 naming the problem (nothing is left behind)."""
    try:
        table = await offload(tables.prepare_table, path, source=source, datasets_dir=datasets_dir, processes=processes)
    except ValueError as exc:  # its messages are about the file: "file: reason"
        raise unprocessable("file", str(exc)) from exc
    names = [c.name for c in table.columns]
    if target is not None and target not in names:
        shutil.rmtree(table.tmp_dir, ignore_errors=True)
        raise unprocessable("target", f"target: no column {target!r}; the table has {', '.join(names)}")
    return table


def _store_table(
    *,
    session: Session,
    user: User,
    table: tables.PreparedTable,
    name: str,
    target: str | None,
    datasets_dir: Path,
    storage: Storage,
    settings: Settings,
) -> tuple[Dataset, bool]:
    """`_store` for a table: the row's stats describe it (store/datasets.py)."""

    def place() -> bool:  # as core.uploads.place does for an archive
        local = layout.dataset_dir(datasets_dir.parent, table.content_hash)
        if local.exists():
            shutil.rmtree(table.tmp_dir, ignore_errors=True)
            return False
        table.tmp_dir.rename(local)
        return True

    stats = {**table.stats, "overrides": {}, "target": target}
    row = {"name": name, "num_images": table.rows, "classes": [], "image_size": 0, "channels": 0, "stats": stats}
    return _store(
        session=session,
        user=user,
        content_hash=table.content_hash,
        place=place,
        row=row,
        datasets_dir=datasets_dir,
        storage=storage,
        settings=settings,
        prepared_dir=table.tmp_dir,
    )


@lru_cache(maxsize=4)
def _builtin_table_data(name: str) -> tuple[Any, Any]:
    """A built-in table as read, and its inferred columns."""
    from core.tabular.columns import infer_columns
    from core.tabular.io import builtin_table

    table = builtin_table(name)
    return table, infer_columns(table)


def _builtin_table_stats(name: str) -> dict[str, Any]:
    """What a table dataset's row would hold, for a built-in table: rows, columns and the `target` column."""
    from core.tabular.io import TARGET

    table, columns = _builtin_table_data(name)
    return {"kind": "table", "rows": len(table[TARGET]), "columns": tables.describe(table, columns), "target": TARGET}


@lru_cache(maxsize=2)
def _builtin_table_preview(name: str) -> bytes:
    table, columns = _builtin_table_data(name)
    return tables.preview_png(table, columns)


@lru_cache(maxsize=len(previews.LOADED_PREVIEWS))
def _loaded_preview(name: str, processes: int) -> bytes:
    """A built-in translation or super-resolution dataset's preview, made once in an upload process (it loads the
    dataset with torch, which the API process does not import)."""
    return anyio.from_thread.run(functools.partial(offload, previews.builtin_preview_png, name, processes=processes))


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
