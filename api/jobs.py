"""What the generation and score routes share: the checkpoint a request names, sending a job to the generate
queue, a finished job's file, and deleting a job. Both are jobs of one model (store/jobs.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastapi import HTTPException
from safetensors import SafetensorError, safe_open
from sqlalchemy.orm import Session

from store import layout
from store.jobs import finish_job
from store.models import Generation, Run
from store.queue import enqueue_job
from store.settings import Settings


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors checkpoint, read from its header without loading any tensor."""
    with safe_open(path, "np") as f:
        metadata: dict[str, str] = f.metadata() or {}
    return metadata


def resolve_step(run: Run, settings: Settings, step: int | str) -> tuple[int, dict[str, str]]:
    """The checkpoint step a request names and that checkpoint's metadata; 409 without any, 404 when unknown."""
    run_dir = layout.run_dir(settings.data_dir, run.id)
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
    except (OSError, SafetensorError):
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


def result_file(settings: Settings, job: Generation, name: str | None = None) -> Path:
    """A finished job's result file (or the file `name` beside it); 409 while the job is not done, 404 when the
    file is gone."""
    if job.status != "succeeded" or job.result_path is None:
        detail = f"Result not ready: the job is {job.status}"
        if job.status == "failed":
            detail = f"The job failed: {job.error}"
        raise HTTPException(status_code=409, detail=detail)
    path = settings.data_dir / job.result_path
    if name is not None:
        path = path.with_name(name)
    if not path.is_file():
        raise HTTPException(status_code=404, detail="Result not found")
    return path


def delete_job(session: Session, settings: Settings, job: Generation) -> None:
    """Delete the job's row, then its files (a running job finds its row gone and discards what it wrote)."""
    folder = layout.job_dir(settings.data_dir, job.run_id, job.id)
    session.delete(job)
    session.commit()
    shutil.rmtree(folder, ignore_errors=True)
