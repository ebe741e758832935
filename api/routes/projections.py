"""Projections: a user's images projected into a stylegan2 run's W space (core/projection.py), as a job on the
`generate` queue. The upload (a ZIP of images at the run's size or larger) takes the same streamed, capped path and
archive checks as a dataset upload (api/uploads.py); it is normalised into the job's folder before the job is
queued (worker/projections.py runs it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from api.deps import CurrentUser, OwnedRun, SessionDep, SettingsDep, StorageDep
from api.errors import unprocessable
from api.jobs import create_job_with_input, delete_job, resolve_step, result_file, send
from api.quotas import QUEUE_FULL, refuse_over_quota
from api.responses import BINARY_SCHEMA, binary, error, validation_errors
from api.routing import ReleasingRoute
from api.schemas import ProjectionOptions, ProjectionPublic
from api.uploads import archive_limits, received_job_upload
from core import uploads
from store.artifacts import Storage
from store.jobs import owned_job
from store.models import Generation, Run
from store.quotas import check_new_job
from store.settings import Settings

router = APIRouter(tags=["projections"], route_class=ReleasingRoute)

# Each image costs `steps` forward and backward passes of G and D: far more than a sample, so fewer per job.
MAX_PROJECTION_IMAGES = 256

PROJECTION_BODY: dict[str, Any] = {
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
                            "description": "A ZIP of PNG, JPEG, WebP, BMP or GIF images at the run's size or larger "
                            "(center-cropped to a square and resized to the run's size).",
                        },
                        "steps": {"type": "integer", "default": 300, "minimum": 1, "maximum": 2000},
                        "space": {"type": "string", "enum": ["w", "w+"], "default": "w"},
                        "seed": {"type": "integer", "default": 0},
                        "step": {"type": "string", "default": "latest"},
                        "ema": {"type": "boolean", "default": True},
                    },
                }
            },
        },
    }
}


def get_owned_projection(session: SessionDep, user: CurrentUser, projection_id: str) -> Generation:
    """The projection job with this id if it belongs to the user; another user's is as good as absent."""
    job = owned_job(session=session, job_id=projection_id, owner_id=user.id, kind="project")
    if job is None:
        raise HTTPException(status_code=404, detail="Projection not found")
    session.commit()  # give the connection back before the route waits for a thread (api/deps.py)
    return job


OwnedProjection = Annotated[Generation, Depends(get_owned_projection)]


def check_projectable(run: Run) -> None:
    """409 for a run without a W space to project into."""
    arch = str(run.config.get("model", {}).get("arch"))
    if arch != "stylegan2":
        raise HTTPException(
            status_code=409,
            detail=f"Projection needs a style-based run (model.arch stylegan2); this run trains {arch}, which has "
            "no W space (POST /runs/{id}/scores searches z for any image run)",
        )


def create_projection(
    *, run: Run, options: ProjectionOptions, upload: Path, session: Session, settings: Settings, storage: Storage
) -> Generation:
    """Check and normalise the upload into the job's `input/` folder, store it with the job's artifacts, and record
    the job. Sync: run in a thread."""
    step, _ = resolve_step(run, storage, options.step)
    size = int(run.config["model"]["image_size"])
    # Images are stored at up to the run's own size, so that a large run is not fed inputs scaled up.
    limits = archive_limits(settings)
    limits = dataclasses.replace(limits, max_side=max(limits.max_side, size))

    def fill(job_dir: Path) -> dict[str, Any]:
        try:
            prepared = uploads.prepare(upload, datasets_dir=job_dir, limits=limits)
        except uploads.UploadError as exc:
            raise unprocessable("file", str(exc)) from None
        smallest = min(prepared.stats["original_sizes"]["min"])
        if prepared.image_size < size or smallest < size:
            raise unprocessable(
                "file",
                f"file: images must be at least the run's size, {size}×{size} px; the smallest is "
                f"{'×'.join(map(str, prepared.stats['original_sizes']['min']))}",
            )
        limit = min(settings.max_generation_n, MAX_PROJECTION_IMAGES)
        if prepared.num_images > limit:
            raise unprocessable("file", f"file: at most {limit} images per projection, not {prepared.num_images}")
        prepared.tmp_dir.rename(job_dir / "input")
        (job_dir / "input" / "names.json").write_text(json.dumps(prepared.names))
        return {
            **options.model_dump(mode="json"),
            "num_images": prepared.num_images,
            "skipped": prepared.skipped,
            "checkpoint_step": step,
        }

    return create_job_with_input(
        run=run, kind="project", session=session, settings=settings, storage=storage, fill=fill
    )


@router.post(
    "/runs/{run_id}/projections",
    status_code=202,
    response_model=ProjectionPublic,
    openapi_extra=PROJECTION_BODY,
    responses={
        **QUEUE_FULL,
        409: error("The run has no W space (not stylegan2), or no checkpoint yet."),
        413: error("The upload is over GANFORGE_MAX_UPLOAD_BYTES."),
        422: validation_errors("An unsafe archive, no readable image, images smaller than the run's, bad options."),
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
) -> ProjectionPublic:
    """Queue a projection of your images into the run's W space (multipart: `file` a ZIP of images; `steps`,
    `space` w or w+, `seed`, `step`, `ema`): each image's latent and its reconstruction."""
    # Over the jobs quota, nothing is received (checked again, locked, before the job's row is inserted).
    refuse_over_quota(await run_in_threadpool(check_new_job, session=session, user=user, settings=settings, lock=False))
    await run_in_threadpool(session.commit)  # give the connection back while the upload streams
    async with received_job_upload(request, settings, ProjectionOptions) as (path, options):
        check_projectable(run)
        job = await run_in_threadpool(
            create_projection,
            run=run,
            options=options,
            upload=path,
            session=session,
            settings=settings,
            storage=storage,
        )
    await run_in_threadpool(send, session, job)
    response.headers["Location"] = f"/projections/{job.id}"
    return ProjectionPublic.from_job(job)


@router.get("/projections/{projection_id}", response_model=ProjectionPublic)
def get_projection(job: OwnedProjection) -> ProjectionPublic:
    """A projection's status, and its result_url once it has succeeded."""
    return ProjectionPublic.from_job(job)


@router.get(
    "/projections/{projection_id}/result",
    response_class=FileResponse,
    responses=binary(
        "application/zip",
        description="The reconstructions as PNGs named as the inputs (photos/cat.jpg → photos/cat.png), latents.npz "
        "(ws (N, num_ws, W), w (N, W) in space w, noise_<i> per style layer, start_distance, final_distance, names) "
        "and projection.json (space, steps, seed, the distance used, each image's distances).",
    ),
)
def projection_result(job: OwnedProjection, settings: SettingsDep, storage: StorageDep) -> Response:
    """The reconstructions and latents as a ZIP."""
    return result_file(storage, settings, job, media_type="application/zip", filename=f"{job.id}.zip")


@router.delete("/projections/{projection_id}", status_code=204)
def delete_projection(
    job: OwnedProjection, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> Response:
    """Delete a projection, its uploaded images and its results (a running one is dropped when it finishes)."""
    delete_job(session, settings, storage, job)
    return Response(status_code=204)
