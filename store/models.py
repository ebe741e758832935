"""SQL models and the functions that move runs between states; the API and the worker both import this.

SQL is the truth about every run. The functions here take a session and never commit: the route or the task
that owns the unit of work does.

Run states: queued → running → succeeded | failed | canceled. A run that is running holds a lease: the worker
id and a heartbeat timestamp, renewed while it trains; a stale heartbeat lets the reconciler hand it on.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("succeeded", "failed", "canceled")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random id such as `run_3f2a9c0e4b1d7a65`."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def hash_token(token: str) -> str:
    """Tokens are stored as their SHA-256: they are long random strings, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "gf_" + secrets.token_urlsafe(32)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored timezone-aware and returned as UTC on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key", name="uq_runs_owner_idempotency_key"),
        Index("ix_runs_owner_created", "owner_id", "created_at"),
        Index("ix_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Progress, written by the worker about once a second.
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    images_per_sec: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    latest_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The lease: which worker runs it, and when it last said so.
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the run was trained with: library versions, device, precision (reproducibility).
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Metric(Base):
    """One value of a series: evaluation metrics and downsampled training statistics."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class Event(Base):
    """The live event log of a run (progress, metric, sample, status, warning), read by the SSE route."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Dataset(Base):
    """An uploaded dataset. Its files live content-addressed under {data_dir}/datasets/{content_hash}/."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "content_hash", name="uq_datasets_owner_hash"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    num_images: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    image_size: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Generation(Base):
    """A sampling job: a request against one of a run's checkpoints, and where its result lies."""

    __tablename__ = "generations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="generate")  # generate | score
    status: Mapped[str] = mapped_column(String(16), default="queued")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    media_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# State transitions of runs. Keyword-only; none of them commits.


def create_run(
    *, session: Session, owner_id: int, config: dict[str, Any], name: str, idempotency_key: str | None
) -> Run:
    run = Run(
        id=new_id("run"),
        owner_id=owner_id,
        name=name,
        status="queued",
        config=config,
        idempotency_key=idempotency_key,
        total_steps=int(config["train"]["steps"]),
        latest_metrics={},
        environment={},
    )
    session.add(run)
    session.flush()
    add_event(session=session, run_id=run.id, kind="status", data={"status": "queued"})
    return run


def add_event(*, session: Session, run_id: str, kind: str, data: dict[str, Any]) -> None:
    session.add(Event(run_id=run_id, kind=kind, data=data))


def acquire_lease(*, session: Session, run_id: str, worker: str, stale_after: timedelta) -> Run | None:
    """Take the run for this worker, atomically: a queued run, or a running one whose heartbeat is stale.

    Returns the run when this worker now holds it, None when it is finished, canceled, gone, or live
    elsewhere. One UPDATE ... WHERE decides, so two workers delivered the same run cannot both win.
    """
    now = utcnow()
    stale = now - stale_after
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            (Run.status == "queued")
            | ((Run.status == "running") & ((Run.heartbeat_at.is_(None)) | (Run.heartbeat_at < stale))),
        )
        .values(status="running", worker=worker, heartbeat_at=now, attempts=Run.attempts + 1, error=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    run = session.get(Run, run_id, populate_existing=True)
    if run is not None and run.started_at is None:
        run.started_at = now
    return run


def heartbeat(
    *, session: Session, run_id: str, worker: str, progress: dict[str, Any] | None = None
) -> tuple[bool, bool]:
    """Renew this worker's lease and write progress. Returns (still_ours, cancel_requested)."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values.update(
            step=int(progress["step"]),
            total_steps=int(progress["total_steps"]),
            images_per_sec=progress.get("images_per_sec"),
            eta_seconds=progress.get("eta_seconds"),
        )
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False, True
    cancel = session.execute(select(Run.cancel_requested).where(Run.id == run_id)).scalar_one()
    return True, bool(cancel)


def finish_run(*, session: Session, run_id: str, worker: str | None, status: str, error: str | None = None) -> bool:
    """Move a running run held by `worker` (or any run, when worker is None) to a final status."""
    assert status in FINAL_STATUSES
    query = update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_STATUSES))
    if worker is not None:
        query = query.where(Run.worker == worker)
    result = session.execute(
        query.values(status=status, error=error, finished_at=utcnow(), heartbeat_at=None).execution_options(
            synchronize_session=False
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    event: dict[str, Any] = {"status": status}
    if error:
        event["error"] = error
    add_event(session=session, run_id=run_id, kind="status", data=event)
    return True


def release_lease(*, session: Session, run_id: str, worker: str) -> bool:
    """Give a run back to the queue because its worker is shutting down; the attempt does not count."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
        .values(status="queued", worker=None, heartbeat_at=None, attempts=Run.attempts - 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    add_event(session=session, run_id=run_id, kind="status", data={"status": "queued", "reason": "worker shutdown"})
    return True


def request_cancel(*, session: Session, run: Run) -> None:
    """Cancel a queued run at once; ask a running one to stop at its next step."""
    if run.status == "queued":
        finish_run(session=session, run_id=run.id, worker=None, status="canceled")
    elif run.status == "running":
        run.cancel_requested = True


def requeue_run(*, session: Session, run: Run, total_steps: int | None) -> None:
    """Put a finished or canceled run back in the queue to continue from its last checkpoint."""
    config = dict(run.config)
    if total_steps is not None:
        config["train"] = {**config["train"], "steps": total_steps}
        run.config = config
        run.total_steps = total_steps
    run.status = "queued"
    run.cancel_requested = False
    run.finished_at = None
    run.error = None
    run.worker = None
    run.attempts = 0
    add_event(session=session, run_id=run.id, kind="status", data={"status": "queued"})
