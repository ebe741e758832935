"""Request and response schemas of the runs, tokens and health routes, named by role."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from store.models import Run


class Progress(BaseModel):
    step: int
    total_steps: int
    images_per_sec: float | None
    eta_seconds: float | None


class RunPublic(BaseModel):
    id: str
    name: str
    status: str = Field(description="queued, running, succeeded, failed or canceled")
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    latest_metrics: dict[str, float]
    error: str | None
    worker: str | None
    attempts: int = Field(description="How many times a worker has taken this run.")
    environment: dict[str, Any] = Field(description="Library versions, device, precision and seed of the run.")

    @classmethod
    def from_run(cls, run: Run) -> RunPublic:
        return cls(
            id=run.id,
            name=run.name,
            status=run.status,
            config=run.config,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            progress=Progress(
                step=run.step,
                total_steps=run.total_steps,
                images_per_sec=run.images_per_sec,
                eta_seconds=run.eta_seconds,
            ),
            latest_metrics=run.latest_metrics or {},
            error=run.error,
            worker=run.worker,
            attempts=run.attempts,
            environment=run.environment or {},
        )


class RunsPublic(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None


class RunResume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Steps to train past the last checkpoint; null finishes the run's original step count.",
    )


class SamplePublic(BaseModel):
    step: int
    url: str


class SamplesPublic(BaseModel):
    items: list[SamplePublic]


class CheckpointPublic(BaseModel):
    step: int
    url: str
    size_bytes: int
    best: bool = Field(False, description="The best checkpoint by the run's primary metric.")


class CheckpointsPublic(BaseModel):
    items: list[CheckpointPublic]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    admin: bool = Field(False, description="Give the new token admin rights.")


class TokenPublic(BaseModel):
    id: int
    name: str
    is_admin: bool
    token: str = Field(description="Shown once; only its hash is stored.")
