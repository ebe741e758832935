"""What the job routes (generations, scores, translations, projections) share: the checkpoint a request names,
sending a job to the generate queue, the owner's jobs quota at the insert, a finished job's file, and deleting a job.
All are jobs of one model (store/jobs.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.artifacts import checkpoint_metadata, serve_artifact
from api.quotas import refuse_over_quota
from store import layout
from store.artifacts import ArtifactNotFound, Storage, put_folder
from store.jobs import JobKind, create_job, finish_job, new_job_id, result_expires_at
from store.models import Generation, Run, User, utcnow
from store.queue import enqueue_job
from store.quotas import check_new_job
from store.settings import Settings


def resolve_step(run: Run, storage: Storage, step: int | str) -> tuple[int, dict[str, str]]:
    """The checkpoint step a request names and that checkpoint's metadata; 409 without any, 404 when unknown."""
    keys = [e.key for e in storage.list(f"{layout.run_prefix(run.id)}checkpoints/")]
    steps = layout.steps_of(keys, "checkpoints")
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
        metadata = checkpoint_metadata(storage, layout.checkpoint_key(run.id, chosen))
    except ArtifactNotFound:  # pruned by the trainer between listing and reading
        raise HTTPException(
            status_code=404, detail=f"Checkpoint not found: step {chosen} was just replaced by a newer one"
        ) from None
    except (OSError, ValueError):
        raise HTTPException(status_code=409, detail=f"The checkpoint at step {chosen} cannot be read") from None
    return chosen, metadata


def checkpoint_data(metadata: dict[str, str]) -> dict[str, int | str]:
    """The checkpoint's `data` facts: kind, channels, image_size, num_classes."""
    data: dict[str, int | str] = json.loads(metadata.get("data") or "{}")
    return data


def send(session: Session, job: Generation) -> None:
    """Send a committed job to the generate queue; when the broker refuses it, fail the job and answer 503."""
    if enqueue_job(job.id, job.kind):
        return
    finish_job(
        session=session,
        job_id=job.id,
        status="failed",
        error="The job queue did not answer; nothing was generated. Try again.",
    )
    session.commit()
    raise HTTPException(status_code=503, detail="The job queue did not answer; try again")


def result_file(
    storage: Storage,
    settings: Settings,
    job: Generation,
    name: str | None = None,
    *,
    media_type: str,
    filename: str | None = None,
) -> Response:
    """A finished job's result file (or the file `name` beside it) as a response; 409 while the job is not done,
    410 once its result expired, 404 when the file is gone. The job's result_path is the result's key."""
    expires_at = result_expires_at(job, settings.job_result_ttl_seconds)
    if expires_at is not None and expires_at <= utcnow():
        raise HTTPException(
            status_code=410,
            detail=f"Result expired at {expires_at.isoformat()}: results are kept "
            f"{settings.job_result_ttl_seconds:g} s after their job finished; run the job again",
        )
    if job.status != "succeeded" or job.result_path is None:
        detail = f"Result not ready: the job is {job.status}"
        if job.status == "failed":
            detail = f"The job failed: {job.error}"
        raise HTTPException(status_code=409, detail=detail)
    key = job.result_path
    if name is not None:
        key = layout.job_prefix(job.run_id, job.id) + name
    return serve_artifact(storage, settings, key, media_type=media_type, missing="Result not found", filename=filename)


def delete_job(session: Session, settings: Settings, storage: Storage, job: Generation) -> None:
    """Delete the job's row, then its files (a running job finds its row gone and discards what it wrote)."""
    folder = layout.job_dir(settings.data_dir, job.run_id, job.id)
    session.delete(job)
    session.commit()
    storage.delete_prefix(layout.job_prefix(job.run_id, job.id))
    shutil.rmtree(folder, ignore_errors=True)


def create_owned_job(
    *, session: Session, settings: Settings, run: Run, kind: JobKind, request: dict[str, Any], job_id: str | None = None
) -> Generation:
    """The job's row, inserted once its owner's `jobs_in_flight` quota is checked under a lock on the owner
    (store/quotas.py: a check before a job's upload streams in takes no lock, so it is made again here)."""
    owner = session.get(User, run.owner_id)
    if owner is not None:
        refuse_over_quota(check_new_job(session=session, user=owner, settings=settings))
    return create_job(session=session, run_id=run.id, owner_id=run.owner_id, kind=kind, request=request, job_id=job_id)


def create_job_with_input(
    *,
    run: Run,
    kind: JobKind,
    session: Session,
    settings: Settings,
    storage: Storage,
    fill: Callable[[Path], dict[str, Any]],
) -> Generation:
    """Record a job whose input the user uploaded: `fill(job_dir)` checks the upload, writes it to `job_dir/input`
    and returns the job's request; the input goes to the job's artifacts and the job is committed. On any failure
    nothing is left behind, in the folder or the storage. Sync: run in a thread."""
    job_id = new_job_id(kind)
    job_dir = layout.job_dir(settings.data_dir, run.id, job_id)
    job_dir.mkdir(parents=True)
    try:
        request = fill(job_dir)
        put_folder(storage, prefix=layout.job_prefix(run.id, job_id) + "input/", folder=job_dir / "input")
        job = create_owned_job(session=session, settings=settings, run=run, kind=kind, request=request, job_id=job_id)
        session.commit()
    except BaseException:
        storage.delete_prefix(layout.job_prefix(run.id, job_id))
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    if not settings.artifacts_are_local:
        shutil.rmtree(job_dir, ignore_errors=True)  # kept in the storage, where the worker fetches it
    return job
