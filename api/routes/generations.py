"""Generations (sampling from a run's checkpoint) and scores (anomaly scoring of images against a run).

Both are rows of the generations table (kind "generate" or "score") run by the worker on the `generate`
queue, so that a short job never waits behind a training run. Routes check the request against the
checkpoint it names (its classes, whether it exists) before anything is queued.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.deps import CurrentUser, OwnedRun, SessionDep, SettingsDep
from api.errors import unprocessable
from api.schemas_generations import (
    GenerationCreate,
    GenerationPublic,
    GenerationsPublic,
    ScoreCreate,
    ScoreOptions,
    ScorePublic,
)
from store import layout
from store.models import Dataset, Generation, Run, User, new_id, utcnow
from store.settings import Settings

log = logging.getLogger("ganforge.api.generations")

router = APIRouter(tags=["generations"])

_MEDIA = {"png": "image/png", "zip": "application/zip", "npz": "application/octet-stream"}


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file, read from its JSON header without loading any tensor."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 100_000_000:
            raise ValueError(f"{path.name} is not a safetensors checkpoint")
        header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} is not a safetensors checkpoint")
    metadata: dict[str, str] = header.get("__metadata__") or {}
    return metadata


def resolve_step(run: Run, settings: Settings, step: int | str) -> tuple[int, dict[str, str]]:
    """The checkpoint step a request names and that checkpoint's metadata; 409 without any, 404 when unknown."""
    run_dir = settings.run_dir(run.id)
    steps = layout.checkpoint_steps(run_dir)
    if not steps:
        raise HTTPException(
            status_code=409,
            detail=f"Run has no checkpoint yet: it writes one every {run.config['schedule']['checkpoint_every']} "
            "steps; try again once the first is written",
        )
    chosen = steps[-1] if step == "latest" else int(step)
    if chosen not in steps:
        raise HTTPException(
            status_code=404,
            detail=f"Checkpoint not found: no checkpoint at step {chosen}; "
            f"this run has checkpoints at steps {', '.join(map(str, steps))}",
        )
    try:
        metadata = checkpoint_metadata(layout.checkpoint_path(run_dir, chosen))
    except FileNotFoundError:  # pruned by the trainer between listing and reading
        raise HTTPException(
            status_code=404, detail=f"Checkpoint not found: step {chosen} was just replaced by a newer one"
        ) from None
    except (OSError, ValueError, struct.error):
        raise HTTPException(status_code=409, detail=f"The checkpoint at step {chosen} cannot be read") from None
    return chosen, metadata


def conditional_classes(metadata: dict[str, str]) -> int:
    """How many classes the checkpoint's generator is conditioned on; 0 for an unconditional one."""
    config = json.loads(metadata.get("config") or "{}")
    if not config.get("model", {}).get("conditional"):
        return 0
    return int(json.loads(metadata.get("data") or "{}").get("num_classes") or 0)


def enqueue(task: str, generation: Generation, session: Session, settings: Settings) -> None:
    """Send a committed job to the generate queue; when the broker refuses it, fail the job and answer 503."""
    from worker.celery_app import app

    try:
        app.send_task(task, args=[generation.id], queue=settings.generate_queue)
    except Exception:
        log.exception("could not enqueue %s", generation.id)
        generation.status = "failed"
        generation.error = "The job queue did not answer; nothing was generated. Try again."
        generation.finished_at = utcnow()
        session.commit()
        raise HTTPException(status_code=503, detail="The job queue did not answer; try again") from None


def owned_job(session: Session, user: User, job_id: str, *, kind: str) -> Generation:
    generation = session.get(Generation, job_id)
    if generation is None or generation.owner_id != user.id or generation.kind != kind:
        raise HTTPException(status_code=404, detail="Generation not found" if kind == "generate" else "Score not found")
    return generation


def result_file(settings: Settings, generation: Generation, name: str | None = None) -> Path:
    """A finished job's file; 409 while the job is not done, 404 when its file is gone."""
    if generation.status != "succeeded" or generation.result_path is None:
        detail = f"Result not ready: the job is {generation.status}"
        if generation.status == "failed":
            detail = f"The job failed: {generation.error}"
        raise HTTPException(status_code=409, detail=detail)
    path = settings.data_dir / generation.result_path
    if name is not None:
        path = path.with_name(name)
    if not path.is_file():
        raise HTTPException(status_code=404, detail="Result not found")
    return path


# Generations.


@router.post("/runs/{run_id}/generations", status_code=202, response_model=GenerationPublic)
def create_generation(
    run: OwnedRun, body: GenerationCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> GenerationPublic:
    """Queue a sampling job against one of the run's checkpoints (works while the run trains)."""
    limit = settings.max_generation_n
    if body.n > limit:
        raise unprocessable("n", f"n: at most {limit} samples per generation, not {body.n}")
    if body.interpolate is not None and body.n * body.interpolate.steps > limit:
        raise unprocessable(
            "interpolate.steps",
            f"interpolate.steps: n × steps = {body.n * body.interpolate.steps} samples, over the limit of {limit}",
        )
    step, metadata = resolve_step(run, settings, body.step)
    num_classes = conditional_classes(metadata)
    if body.labels is not None:
        if num_classes == 0:
            raise unprocessable("labels", "labels: this run is unconditional, so it takes no labels")
        for label in body.labels:
            if not 0 <= label < num_classes:
                raise unprocessable(
                    "labels", f"labels: {label} is out of range; this run has classes 0 to {num_classes - 1}"
                )
    generation = Generation(
        id=new_id("gen"),
        run_id=run.id,
        owner_id=run.owner_id,
        kind="generate",
        status="queued",
        request={**body.model_dump(mode="json"), "checkpoint_step": step},
    )
    session.add(generation)
    session.commit()
    enqueue("ganforge.generate", generation, session, settings)
    response.headers["Location"] = f"/generations/{generation.id}"
    return GenerationPublic.from_generation(generation)


@router.get("/runs/{run_id}/generations", response_model=GenerationsPublic)
def list_generations(run: OwnedRun, session: SessionDep) -> GenerationsPublic:
    """The run's generations, newest first (the latest 100)."""
    rows = session.execute(
        select(Generation)
        .where(Generation.run_id == run.id, Generation.kind == "generate")
        .order_by(Generation.created_at.desc(), Generation.id)
        .limit(100)
    ).scalars()
    return GenerationsPublic(items=[GenerationPublic.from_generation(g) for g in rows])


@router.get("/generations/{generation_id}", response_model=GenerationPublic)
def get_generation(generation_id: str, session: SessionDep, user: CurrentUser) -> GenerationPublic:
    """A generation's status, and its result_url once it has succeeded."""
    return GenerationPublic.from_generation(owned_job(session, user, generation_id, kind="generate"))


@router.delete("/generations/{generation_id}", status_code=204)
def delete_generation(generation_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> Response:
    """Delete a generation and its files (a running one is dropped when it finishes)."""
    delete_job(session, settings, owned_job(session, user, generation_id, kind="generate"))
    return Response(status_code=204)


def delete_job(session: Session, settings: Settings, generation: Generation) -> None:
    folder = settings.run_dir(generation.run_id) / "generations" / generation.id
    session.delete(generation)
    session.commit()
    shutil.rmtree(folder, ignore_errors=True)


_RESULT: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}, "application/zip": {}, "application/octet-stream": {}},
        "description": "png: one grid; zip: one PNG per sample (+ labels.csv); npz: samples and labels arrays.",
    }
}


@router.get("/generations/{generation_id}/result", response_class=FileResponse, responses=_RESULT)
def generation_result(
    generation_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> FileResponse:
    """The result file: png grid, zip of PNGs with labels.csv, or npz of float32 samples (streamed)."""
    generation = owned_job(session, user, generation_id, kind="generate")
    path = result_file(settings, generation)
    fmt = generation.request["format"]
    return FileResponse(path, media_type=_MEDIA[fmt], filename=f"{generation.id}.{fmt}")


@router.get(
    "/generations/{generation_id}/animation.gif",
    response_class=FileResponse,
    responses={200: {"content": {"image/gif": {}}, "description": "An animated GIF of the latent walks."}},
)
def generation_animation(
    generation_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> FileResponse:
    """The animated GIF of a generation's latent walks (interpolate only)."""
    generation = owned_job(session, user, generation_id, kind="generate")
    if not generation.request.get("interpolate"):
        raise HTTPException(status_code=404, detail="No animation: this generation has no interpolate")
    return FileResponse(result_file(settings, generation, "animation.gif"), media_type="image/gif")


# Scores.

_SCORE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ScoreCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "A ZIP of images."},
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


def _validation_422(error: ValidationError) -> HTTPException:
    return HTTPException(
        status_code=422,
        detail=[
            {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ],
    )


def _check_scorable(metadata: dict[str, str]) -> None:
    data = json.loads(metadata.get("data") or "{}")
    if data.get("kind") == "points" or not data.get("channels"):
        raise HTTPException(
            status_code=409, detail="Anomaly scoring works on image runs; this run is trained on 2-D points"
        )


def create_score_from_upload(
    *, run: Run, options: ScoreOptions, upload: Path, session: Session, settings: Settings
) -> Generation:
    """Check and normalise the uploaded ZIP into the job's folder, then record the job. Sync: run in a thread."""
    from core import uploads

    step, metadata = resolve_step(run, settings, options.step)
    _check_scorable(metadata)
    job_id = new_id("score")
    job_dir = settings.run_dir(run.id) / "generations" / job_id
    job_dir.mkdir(parents=True)
    try:
        try:
            prepared = uploads.prepare(upload, datasets_dir=job_dir)
        except uploads.UploadError as error:
            raise unprocessable("file", str(error)) from None
        if prepared.num_images > settings.max_generation_n:
            raise unprocessable(
                "file", f"file: at most {settings.max_generation_n} images per scoring job, not {prepared.num_images}"
            )
        prepared.tmp_dir.rename(job_dir / "input")
        names = member_names(upload, prepared.skipped, prepared.num_images)
        (job_dir / "input" / "names.json").write_text(json.dumps(names))
        generation = Generation(
            id=job_id,
            run_id=run.id,
            owner_id=run.owner_id,
            kind="score",
            status="queued",
            request={
                **options.model_dump(mode="json"),
                "source": "upload",
                "dataset": None,
                "num_images": prepared.num_images,
                "checkpoint_step": step,
            },
        )
        session.add(generation)
        session.commit()
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return generation


def member_names(upload: Path, skipped: list[dict[str, str]], count: int) -> list[str]:
    """The archive names of the images in the order uploads.prepare stored them; [] if that cannot be told."""
    import zipfile

    from core import uploads

    try:
        with zipfile.ZipFile(upload) as archive:
            candidates, _ = uploads._layout(archive.infolist(), [])
    except Exception:
        return []
    dropped = {s["name"] for s in skipped}
    names = [c.info.filename for c in candidates if c.info.filename not in dropped]
    return names if len(names) == count else []


def create_score_from_dataset(*, run: Run, body: ScoreCreate, session: Session, settings: Settings) -> Generation:
    step, metadata = resolve_step(run, settings, body.step)
    _check_scorable(metadata)
    dataset = session.get(Dataset, body.dataset)
    if dataset is None or dataset.owner_id != run.owner_id:
        raise HTTPException(status_code=404, detail="Dataset not found")
    if dataset.num_images > settings.max_generation_n:
        raise unprocessable(
            "dataset", f"dataset: at most {settings.max_generation_n} images per scoring job, not {dataset.num_images}"
        )
    generation = Generation(
        id=new_id("score"),
        run_id=run.id,
        owner_id=run.owner_id,
        kind="score",
        status="queued",
        request={
            **body.model_dump(mode="json"),
            "source": "dataset",
            "content_hash": dataset.content_hash,
            "num_images": dataset.num_images,
            "checkpoint_step": step,
        },
    )
    session.add(generation)
    session.commit()
    return generation


@router.post("/runs/{run_id}/scores", status_code=202, response_model=ScorePublic, openapi_extra=_SCORE_BODY)
async def create_score(
    run: OwnedRun, request: Request, session: SessionDep, settings: SettingsDep, response: Response
) -> ScorePublic:
    """Queue anomaly scoring of images (a multipart ZIP as `file`, or JSON {"dataset": id}) against a checkpoint."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise unprocessable("file", "file: send the images as a ZIP archive in the form field `file`")
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
            try:
                options = ScoreOptions.model_validate(fields)
            except ValidationError as error:
                raise _validation_422(error) from None
            with tempfile_in(settings.data_dir) as path:
                with path.open("wb") as out:
                    while chunk := await upload.read(1 << 20):
                        out.write(chunk)
                generation = await run_in_threadpool(
                    create_score_from_upload, run=run, options=options, upload=path, session=session, settings=settings
                )
    elif content_type.startswith("application/json"):
        try:
            body = ScoreCreate.model_validate_json(await request.body())
        except ValidationError as error:
            raise _validation_422(error) from None
        generation = await run_in_threadpool(
            create_score_from_dataset, run=run, body=body, session=session, settings=settings
        )
    else:
        raise HTTPException(
            status_code=415,
            detail='Send a ZIP of images as multipart/form-data (field `file`), or JSON {"dataset": id}',
        )
    await run_in_threadpool(enqueue, "ganforge.score", generation, session, settings)
    response.headers["Location"] = f"/scores/{generation.id}"
    return ScorePublic.from_generation(generation)


@contextmanager
def tempfile_in(folder: Path) -> Iterator[Path]:
    """A temporary file path under `folder` (on the data disk, not /tmp), removed afterwards."""
    tmp = folder / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp, suffix=".zip")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@router.get("/scores/{score_id}", response_model=ScorePublic)
def get_score(score_id: str, session: SessionDep, user: CurrentUser) -> ScorePublic:
    """An anomaly scoring job's status, and where its results are once it has succeeded."""
    return ScorePublic.from_generation(owned_job(session, user, score_id, kind="score"))


@router.delete("/scores/{score_id}", status_code=204)
def delete_score(score_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> Response:
    """Delete an anomaly scoring job, its uploaded images and its results."""
    delete_job(session, settings, owned_job(session, user, score_id, kind="score"))
    return Response(status_code=204)


_SCORES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/json": {}, "text/csv": {}},
        "description": "One score per image (higher = more anomalous); Accept: text/csv gives CSV.",
    }
}


@router.get("/scores/{score_id}/result", response_class=FileResponse, responses=_SCORES)
def score_result(
    score_id: str,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    accept: Annotated[str | None, Header()] = None,
) -> FileResponse:
    """The scores as JSON {"items": [{index, name, label, discriminator, residual, feature, anogan}]}, or CSV."""
    generation = owned_job(session, user, score_id, kind="score")
    if accept is not None and "text/csv" in accept:
        return FileResponse(result_file(settings, generation, "scores.csv"), media_type="text/csv")
    return FileResponse(result_file(settings, generation), media_type="application/json")


@router.get(
    "/scores/{score_id}/result.csv",
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per image."}},
)
def score_result_csv(score_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> FileResponse:
    """The scores as CSV: index,name,label,discriminator,residual,feature,anogan,class."""
    generation = owned_job(session, user, score_id, kind="score")
    return FileResponse(
        result_file(settings, generation, "scores.csv"), media_type="text/csv", filename=f"{generation.id}.csv"
    )
