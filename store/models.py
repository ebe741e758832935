"""The SQL tables, their ids and their clock. SQL is the truth about every run, job, dataset and token.

The functions that change rows live beside this module, one per resource (store/runs.py, store/jobs.py,
store/tokens.py, store/datasets.py, store/reports.py): keyword-only, taking a session and never committing; the
route or the task that owns the unit of work commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
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
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("succeeded", "failed", "canceled")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random id such as `run_3f2a9c0e4b1d7a65`."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


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
    """A token and the identity it stands for: runs, datasets and jobs are owned by it."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("bootstrap", name="uq_users_bootstrap"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A token past expires_at or with revoked_at set answers 401; its row stays, so its runs stay too.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Written at most once a minute per token (store/tokens.py: touch_last_used).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # True on the one admin that ensure_admin made (GANFORGE_ADMIN_TOKEN, or the generated token), NULL on every
    # other row: the unique constraint allows one True and any number of NULLs, so API processes starting at
    # once cannot make two.
    bootstrap: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Quotas an admin set for this token, {quota name: number} (PATCH /tokens/{id}); the others are the server's
    # (store/quotas.py). NULL: the server's, every one.
    quotas: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)


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
    # Grows by one with every lease taken: a worker writes for the run only while the run still holds the epoch it
    # took (store/runs.py), so one that was paused past its heartbeat and taken over writes nothing more.
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Bumped by the database itself on every update of the row, whichever statement makes it (a trigger:
    # RUN_VERSION_TRIGGERS): the polled page of runs keeps each run's encoded answer by (id, version) and reads
    # only the ids and versions of the rows it has encoded (api/polled.py).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The Celery queue it is sent to, resolved from its placement when it is created or resumed
    # (store/workers.py: route_run); the reconciler sends it there again.
    queue: Mapped[str] = mapped_column(String(100), default="train", server_default="train")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the run was trained with: library versions, device, precision (reproducibility).
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# The triggers behind Run.version, by dialect, as `create_all` makes the table (migration 0007 makes the same).
RUN_VERSION_TRIGGERS = {
    "sqlite": (
        "CREATE TRIGGER runs_version AFTER UPDATE ON runs FOR EACH ROW WHEN NEW.version = OLD.version "
        "BEGIN UPDATE runs SET version = OLD.version + 1 WHERE id = NEW.id; END",
    ),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION runs_version() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$",
        "CREATE TRIGGER runs_version BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runs_version()",
    ),
}
for _dialect, _statements in RUN_VERSION_TRIGGERS.items():
    for _statement in _statements:
        _trigger = DDL(_statement)  # type: ignore[no-untyped-call]  # SQLAlchemy leaves DDL's __init__ unannotated
        event.listen(Run.__table__, "after_create", _trigger.execute_if(dialect=_dialect))


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
    __table_args__ = (
        Index("ix_events_run_id_id", "run_id", "id"),
        # A user's kept checkpoints are summed from their checkpoint events (store/quotas.py: artifact_bytes)
        # without reading every progress tick.
        Index("ix_events_kind_run_id", "kind", "run_id"),
    )

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
    """A job against one of a run's checkpoints (kind "generate": sampling, "score": anomaly scoring), and where
    its result lies. Jobs move queued → running → succeeded | failed (store/jobs.py)."""

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


class Worker(Base):
    """A worker process as it reports itself (store/workers.py): registered at its start, heartbeated while it
    lives, removed when it shuts down cleanly. A row whose heartbeat is old belongs to a lost worker."""

    __tablename__ = "workers"

    # The Celery node name (`queue-pid@host`), unique per worker process.
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    # [{"kind": "cuda" | "cpu", "name", "memory_gb", "cores" (cpu)}]: its GPUs, or its CPU when it has none.
    devices: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The largest train.world_size it runs: its GPU count, or its CPU core count.
    slots: Mapped[int] = mapped_column(Integer, default=1)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The run or job id it is working on, set and cleared around each task.
    current_job: Mapped[str | None] = mapped_column(String(32), nullable=True)
    version: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
