"""Translations: a pix2pix, cyclegan or srgan run applied to the user's own images, as a job on the `generate` queue.
The upload (a ZIP of images, or an .npz) takes the same streamed, capped path and archive checks as a dataset
upload (api/uploads.py); it is normalised into the job's folder before the job is queued (worker/translations.py
runs it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentUser, OwnedRun, SessionDep, SettingsDep, StorageDep
from api.errors import unprocessable
from api.jobs import create_job_with_input, delete_job, resolve_step, result_file, send
from api.quotas import QUEUE_FULL, refuse_over_quota
from api.responses import BINARY_SCHEMA, binary, error, validation_errors
from api.routing import ReleasingRoute
from api.schemas import TranslationOptions, TranslationPublic, TranslationsPublic
from api.uploads import archive_limits, received_job_upload
from core import uploads
from store.artifacts import Storage
from store.jobs import owned_job
from store.models import Generation, Run
from store.quotas import check_new_job
from store.settings import Settings

router = APIRouter(tags=["translations"], route_class=ReleasingRoute)

# What translates an input image; any other architecture samples from noise (or makes table rows).
TRANSLATING_ARCHS = ("pix2pix", "cyclegan", "srgan")

TRANSLATION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            **BINARY_SCHEMA,
                            "description": "A ZIP of PNG, JPEG, WebP, BMP or GIF images, or an .npz whose array "
                            "`samples` (or `images`) is float (N, C, H, W) in [-1, 1].",
                        },
                        "direction": {"type": "string", "enum": ["AtoB", "BtoA"], "default": "AtoB"},
                        "step": {"type": "string", "default": "latest"},
                        "ema": {"type": "boolean", "default": True},
                        "seed": {"type": "integer", "default": 0},
                    },
                }
            },
        },
    }
}


def get_owned_translation(session: SessionDep, user: CurrentUser, translation_id: str) -> Generation:
    """The translation job with this id if it belongs to the user; another user's is as good as absent."""
    job = owned_job(session=session, job_id=translation_id, owner_id=user.id, kind="translate")
    if job is None:
        raise HTTPException(status_code=404, detail="Translation not found")
    session.commit()  # give the connection back before the route waits for a thread (api/deps.py)
    return job


OwnedTranslation = Annotated[Generation, Depends(get_owned_translation)]


def check_translatable(run: Run, options: TranslationOptions) -> None:
    """409 for a run that does not translate images; 422 for a direction it does not have."""
    arch = str(run.config.get("model", {}).get("arch"))
    if arch not in TRANSLATING_ARCHS:
        raise HTTPException(
            status_code=409,
            detail=f"Translations need a pix2pix, cyclegan or srgan run; this run trains {arch}, which does not "
            "translate images (use POST /runs/{id}/generations)",
        )
    if options.direction == "BtoA" and arch != "cyclegan":
        raise unprocessable(
            "direction", f"direction: a {arch} run translates one way (AtoB); only cyclegan runs also go BtoA"
        )


def create_translation(
    *, run: Run, options: TranslationOptions, upload: Path, session: Session, settings: Settings, storage: Storage
) -> Generation:
    """Check and normalise the upload into the job's `input/` folder, store it with the job's artifacts, and record
    the job. Sync: run in a thread."""
    step, _ = resolve_step(run, storage, options.step)
    # Images are stored at up to the run's own size, so a 256 px run is not fed 128 px inputs scaled up.
    limits = archive_limits(settings)
    limits = dataclasses.replace(limits, max_side=max(limits.max_side, int(run.config["model"]["image_size"])))

    def fill(job_dir: Path) -> dict[str, Any]:
        if uploads.is_npz(upload):
            source = "npz"
            try:
                images = uploads.read_npz_images(upload, limits=limits, max_images=settings.max_generation_n)
            except uploads.UploadError as exc:
                raise unprocessable("file", str(exc)) from None
            (job_dir / "input").mkdir()
            np.save(job_dir / "input" / "inputs.npy", images, allow_pickle=False)
            count = len(images)
        else:
            source = "zip"
            try:
                prepared = uploads.prepare(upload, datasets_dir=job_dir, limits=limits)
            except uploads.UploadError as exc:
                raise unprocessable("file", str(exc)) from None
            count = prepared.num_images
            if count > settings.max_generation_n:
                raise unprocessable(
                    "file", f"file: at most {settings.max_generation_n} images per translation, not {count}"
                )
            prepared.tmp_dir.rename(job_dir / "input")
            (job_dir / "input" / "names.json").write_text(json.dumps(prepared.names))
        return {**options.model_dump(mode="json"), "source": source, "num_images": count, "checkpoint_step": step}

    return create_job_with_input(
        run=run, kind="translate", session=session, settings=settings, storage=storage, fill=fill
    )


@router.post(
    "/runs/{run_id}/translations",
    status_code=202,
    response_model=TranslationPublic,
    openapi_extra=TRANSLATION_BODY,
    responses={
        **QUEUE_FULL,
        409: error("The run does not translate images (a noise or table run), or has no checkpoint yet."),
        413: error("The upload is over GANFORGE_MAX_UPLOAD_BYTES."),
        422: validation_errors("An unsafe archive, no readable image, a bad .npz, or a direction the run lacks."),
    },
)
async def create(
    run: OwnedRun,
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    response: Response,
) -> TranslationPublic:
    """Queue a translation of your images (multipart: `file` a ZIP of images or an .npz; `direction` AtoB or BtoA
    for cyclegan; `step`; `ema`; `seed`, of a cyclegan's latent codes) by one of the run's checkpoints."""
    # Over the jobs quota, nothing is received (checked again, locked, before the job's row is inserted).
    refuse_over_quota(await run_in_threadpool(check_new_job, session=session, user=user, settings=settings, lock=False))
    await run_in_threadpool(session.commit)  # give the connection back while the upload streams
    async with received_job_upload(request, settings, TranslationOptions, what="a ZIP of images or an .npz") as (
        path,
        options,
    ):
        check_translatable(run, options)
        job = await run_in_threadpool(
            create_translation,
            run=run,
            options=options,
            upload=path,
            session=session,
            settings=settings,
            storage=storage,
        )
    await run_in_threadpool(send, session, job)
    response.headers["Location"] = f"/translations/{job.id}"
    return TranslationPublic.from_job(job)


@router.get("/runs/{run_id}/translations", response_model=TranslationsPublic)
def list_translations(run: OwnedRun, session: SessionDep) -> TranslationsPublic:
    """The run's translations, newest first (the latest 100)."""
    rows = session.execute(
        select(Generation)
        .where(Generation.run_id == run.id, Generation.kind == "translate")
        .order_by(Generation.created_at.desc(), Generation.id)
        .limit(100)
    ).scalars()
    return TranslationsPublic(items=[TranslationPublic.from_job(job) for job in rows])


@router.get("/translations/{translation_id}", response_model=TranslationPublic)
def get_translation(job: OwnedTranslation) -> TranslationPublic:
    """A translation's status, and its result_url and pairs_url once it has succeeded."""
    return TranslationPublic.from_job(job)


@router.get(
    "/translations/{translation_id}/result",
    response_class=FileResponse,
    responses=binary(
        "application/zip",
        "application/octet-stream",
        description="A ZIP of PNGs named as the inputs (photos/cat.jpg → photos/cat.png), or an .npz whose `samples` "
        "are float32 (N, C, H, W) in [-1, 1] when the input was an .npz.",
    ),
)
def translation_result(job: OwnedTranslation, settings: SettingsDep, storage: StorageDep) -> Response:
    """The translated images: a ZIP of PNGs named as the inputs, or an .npz when the input was one."""
    filename = f"{job.id}.{job.request['source']}"
    media_type = job.media_type or "application/octet-stream"
    return result_file(storage, settings, job, media_type=media_type, filename=filename)


@router.get(
    "/translations/{translation_id}/pairs.png",
    response_class=FileResponse,
    responses=binary("image/png", description="The first 16 input → output pairs, four pairs a row."),
)
def translation_pairs(job: OwnedTranslation, settings: SettingsDep, storage: StorageDep) -> Response:
    """A PNG of the first 16 input → output pairs (input left, output right)."""
    return result_file(storage, settings, job, "pairs.png", media_type="image/png")


@router.delete("/translations/{translation_id}", status_code=204)
def delete_translation(
    job: OwnedTranslation, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> Response:
    """Delete a translation, its uploaded images and its results (a running one is dropped when it finishes)."""
    delete_job(session, settings, storage, job)
    return Response(status_code=204)
