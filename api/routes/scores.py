"""Scores: anomaly scoring of images (an uploaded ZIP, or a dataset) against one of a run's checkpoints, run by a
worker on the `generate` queue. An uploaded archive takes the same streamed, capped path as a dataset upload
(api/uploads.py) and is normalised into the job's folder before the job is queued."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.deps import CurrentUser, OwnedRun, OwnedScore, SessionDep, SettingsDep, StorageDep, find_owned_dataset
from api.errors import invalid_body, unprocessable
from api.jobs import (
    checkpoint_data,
    create_job_with_input,
    create_owned_job,
    delete_job,
    resolve_step,
    result_file,
    send,
)
from api.quotas import QUEUE_FULL, refuse_over_quota
from api.responses import BINARY_SCHEMA, binary
from api.routing import ReleasingRoute
from api.schemas import ScoreCreate, ScoreOptions, ScorePublic
from api.uploads import archive_limits, received_job_upload
from core import uploads
from store.artifacts import Storage
from store.models import Generation, Run, User
from store.quotas import check_new_job
from store.settings import Settings

router = APIRouter(tags=["scores"], route_class=ReleasingRoute)

SCORE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ScoreCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {**BINARY_SCHEMA, "description": "A ZIP of images."},
                        "step": {"type": "string", "default": "latest"},
                        "ema": {"type": "boolean", "default": True},
                        "weight": {"type": "number", "default": 0.1},
                        "search_steps": {"type": "integer", "default": 100},
                        "seed": {"type": "integer", "default": 0},
                    },
                }
            },
        },
    }
}


def _check_scorable(metadata: dict[str, str]) -> None:
    data = checkpoint_data(metadata)
    if data.get("kind") == "points" or not data.get("channels"):
        raise HTTPException(
            status_code=409, detail="Anomaly scoring works on image runs; this run is trained on 2-D points"
        )


def create_score_from_upload(
    *, run: Run, options: ScoreOptions, upload: Path, session: Session, settings: Settings, storage: Storage
) -> Generation:
    """Check and normalise the uploaded ZIP into the job's folder and store it with the job's artifacts, then
    record the job. Sync: run in a thread."""
    step, metadata = resolve_step(run, storage, options.step)
    _check_scorable(metadata)

    def fill(job_dir: Path) -> dict[str, Any]:
        try:
            prepared = uploads.prepare(upload, datasets_dir=job_dir, limits=archive_limits(settings))
        except uploads.UploadError as error:
            raise unprocessable("file", str(error)) from None
        if prepared.num_images > settings.max_generation_n:
            raise unprocessable(
                "file", f"file: at most {settings.max_generation_n} images per scoring job, not {prepared.num_images}"
            )
        prepared.tmp_dir.rename(job_dir / "input")
        (job_dir / "input" / "names.json").write_text(json.dumps(prepared.names))
        return {
            **options.model_dump(mode="json"),
            "source": "upload",
            "dataset": None,
            "num_images": prepared.num_images,
            "checkpoint_step": step,
        }

    return create_job_with_input(run=run, kind="score", session=session, settings=settings, storage=storage, fill=fill)


def create_score_from_dataset(
    *, run: Run, body: ScoreCreate, user: User, session: Session, settings: Settings, storage: Storage
) -> Generation:
    step, metadata = resolve_step(run, storage, body.step)
    _check_scorable(metadata)
    dataset = find_owned_dataset(session, user, body.dataset)
    if dataset.num_images > settings.max_generation_n:
        raise unprocessable(
            "dataset", f"dataset: at most {settings.max_generation_n} images per scoring job, not {dataset.num_images}"
        )
    request = {
        **body.model_dump(mode="json"),
        "source": "dataset",
        "content_hash": dataset.content_hash,
        "num_images": dataset.num_images,
        "checkpoint_step": step,
    }
    job = create_owned_job(session=session, settings=settings, run=run, kind="score", request=request)
    session.commit()
    return job


@router.post(
    "/runs/{run_id}/scores",
    status_code=202,
    response_model=ScorePublic,
    openapi_extra=SCORE_BODY,
    responses=QUEUE_FULL,
)
async def create_score(
    run: OwnedRun,
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    response: Response,
) -> ScorePublic:
    """Queue anomaly scoring of images (a multipart ZIP as `file`, or JSON {"dataset": id}) against a checkpoint."""
    # Over the jobs quota, nothing is received (checked again, locked, before the job's row is inserted).
    refuse_over_quota(await run_in_threadpool(check_new_job, session=session, user=user, settings=settings, lock=False))
    await run_in_threadpool(session.commit)  # give the connection back while the upload streams
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with received_job_upload(request, settings, ScoreOptions) as (path, options):
            job = await run_in_threadpool(
                create_score_from_upload,
                options=options,
                upload=path,
                run=run,
                session=session,
                settings=settings,
                storage=storage,
            )
    elif content_type.startswith("application/json"):
        try:
            body = ScoreCreate.model_validate_json(await request.body())
        except ValidationError as error:
            raise invalid_body(error) from None
        job = await run_in_threadpool(
            create_score_from_dataset,
            body=body,
            user=user,
            run=run,
            session=session,
            settings=settings,
            storage=storage,
        )
    else:
        raise HTTPException(
            status_code=415,
            detail='Send a ZIP of images as multipart/form-data (field `file`), or JSON {"dataset": id}',
        )
    await run_in_threadpool(send, session, job)
    response.headers["Location"] = f"/scores/{job.id}"
    return ScorePublic.from_job(job)


@router.get("/scores/{score_id}", response_model=ScorePublic)
def get_score(job: OwnedScore) -> ScorePublic:
    """An anomaly scoring job's status, and where its results are once it has succeeded."""
    return ScorePublic.from_job(job)


@router.delete("/scores/{score_id}", status_code=204)
def delete_score(job: OwnedScore, session: SessionDep, settings: SettingsDep, storage: StorageDep) -> Response:
    """Delete an anomaly scoring job, its uploaded images and its results."""
    delete_job(session, settings, storage, job)
    return Response(status_code=204)


@router.get(
    "/scores/{score_id}/result",
    response_class=FileResponse,
    responses={
        200: {
            "description": "One score per image (higher = more anomalous); Accept: text/csv gives CSV.",
            "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": BINARY_SCHEMA}},
        }
    },
)
def score_result(
    job: OwnedScore, settings: SettingsDep, storage: StorageDep, accept: Annotated[str | None, Header()] = None
) -> Response:
    """The scores as JSON {"items": [{index, name, label, discriminator, residual, feature, anogan}]}, or CSV."""
    if accept is not None and "text/csv" in accept:
        return result_file(storage, settings, job, "scores.csv", media_type="text/csv")
    return result_file(storage, settings, job, media_type="application/json")


@router.get(
    "/scores/{score_id}/result.csv",
    response_class=FileResponse,
    responses=binary("text/csv", description="One row per image."),
)
def score_result_csv(job: OwnedScore, settings: SettingsDep, storage: StorageDep) -> Response:
    """The scores as CSV: index,name,label,discriminator,residual,feature,anogan,class."""
    return result_file(storage, settings, job, "scores.csv", media_type="text/csv", filename=f"{job.id}.csv")
