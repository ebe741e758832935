"""Short jobs against a run's checkpoint: generations (kind "generate"), anomaly scores (kind "score"),
translations of a user's images (kind "translate") and projections of a user's images into a style-based generator
(kind "project").

One model for both: a row of the generations table holding the request, moved queued → running → succeeded |
failed by the functions here. A job runs on the `generate` queue; its files live in `store.layout.job_dir`.
Keyword-only; none commits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from store.models import ACTIVE_STATUSES, Generation, new_id, utcnow

JobKind = Literal["generate", "score", "translate", "project"]
# Ids read gen_…, score_…, tr_… and proj_…, so that a log line says which kind it names.
ID_PREFIXES: dict[str, str] = {"generate": "gen", "score": "score", "translate": "tr", "project": "proj"}


def new_job_id(kind: JobKind) -> str:
    """An id for a job whose files are written before its row (an uploaded archive to score or translate)."""
    return new_id(ID_PREFIXES[kind])


def create_job(
    *, session: Session, run_id: str, owner_id: int, kind: JobKind, request: dict[str, Any], job_id: str | None = None
) -> Generation:
    """A queued job; enqueue it only after the transaction commits."""
    job = Generation(
        id=job_id or new_job_id(kind), run_id=run_id, owner_id=owner_id, kind=kind, status="queued", request=request
    )
    session.add(job)
    session.flush()
    return job


def owned_job(*, session: Session, job_id: str, owner_id: int, kind: JobKind) -> Generation | None:
    """The job of this kind with this id if it belongs to the owner, else None."""
    job = session.get(Generation, job_id)
    if job is None or job.owner_id != owner_id or job.kind != kind:
        return None
    return job


def claim_job(*, session: Session, job_id: str, kind: JobKind, worker: str) -> Generation | None:
    """Mark the job running on `worker`. None when it is gone or already finished (a re-delivered message)."""
    result = session.execute(
        update(Generation)
        .where(Generation.id == job_id, Generation.kind == kind, Generation.status.in_(ACTIVE_STATUSES))
        .values(status="running", worker=worker, started_at=utcnow(), error=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Generation, job_id, populate_existing=True)


def finish_job(
    *,
    session: Session,
    job_id: str,
    status: Literal["succeeded", "failed"],
    error: str | None = None,
    result_path: str | None = None,
    media_type: str | None = None,
    request: dict[str, Any] | None = None,
) -> bool:
    """Write a queued or running job's final state (`request` replaces the stored one: the checkpoint it used).
    False when the row is gone (its run or the job was deleted meanwhile) or already final."""
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "result_path": result_path,
        "media_type": media_type,
        "finished_at": utcnow(),
    }
    if request is not None:
        values["request"] = request
    result = session.execute(
        update(Generation)
        .where(Generation.id == job_id, Generation.status.in_(ACTIVE_STATUSES))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def fail_lost_jobs(
    *, session: Session, worker_alive: Callable[[str | None], bool], started_before: datetime
) -> list[str]:
    """Fail running jobs whose worker is no longer alive, or that started before `started_before` (past any time
    limit). Returns their ids."""
    running = session.execute(
        select(Generation.id, Generation.worker, Generation.started_at).where(Generation.status == "running")
    ).all()
    lost = [
        job_id
        for job_id, worker, started_at in running
        if not worker_alive(worker) or (started_at is not None and started_at < started_before)
    ]
    for job_id in lost:
        session.execute(
            update(Generation)
            .where(Generation.id == job_id, Generation.status == "running")
            .values(
                status="failed",
                finished_at=utcnow(),
                error="The worker running this job stopped (killed, out of memory, or restarted); submit it again",
            )
            .execution_options(synchronize_session=False)
        )
    return lost


def find_jobs_to_resend(*, session: Session, known: set[str], created_before: datetime) -> list[tuple[str, str]]:
    """(id, kind) of queued jobs that the broker does not know (`known`: the ids waiting or delivered there),
    created before `created_before` (a younger one may still be on its way to the broker)."""
    queued = session.execute(
        select(Generation.id, Generation.kind).where(
            Generation.status == "queued", Generation.created_at < created_before
        )
    ).all()
    return [(job_id, kind) for job_id, kind in queued if job_id not in known]


def result_expires_at(job: Generation | Row[Any], ttl_seconds: float | None) -> datetime | None:
    """When a finished job's result is deleted: its finish time plus the operator's time to live; None while the
    job has no result, or when results are kept for ever."""
    if ttl_seconds is None or job.status != "succeeded" or job.finished_at is None:
        return None
    return job.finished_at + timedelta(seconds=ttl_seconds)


def expired_results(*, session: Session, ttl_seconds: float, now: datetime, limit: int = 100) -> list[Generation]:
    """Succeeded jobs whose results outlived their time and still have files to delete."""
    return list(
        session.execute(
            select(Generation)
            .where(
                Generation.status == "succeeded",
                Generation.result_path.is_not(None),
                Generation.finished_at < now - timedelta(seconds=ttl_seconds),
            )
            .limit(limit)
        ).scalars()
    )
