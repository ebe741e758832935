"""Request and response schemas of generations (sampling jobs) and scores (anomaly scoring jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from store.models import Generation


class InterpolateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(8, ge=2, le=64, description="Points along each walk, both ends included.")
    mode: Literal["lerp", "slerp"] = Field("lerp", description="Straight lines, or great circles (slerp).")


class GenerationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(64, ge=1, description="Samples to generate (latent walks when interpolating); the server caps it.")
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of the latents: the same request gives the same samples."
    )
    step: int | Literal["latest"] = Field("latest", description="A kept checkpoint's step, or latest.")
    ema: bool = Field(True, description="Sample from the EMA generator when the run keeps one.")
    truncation: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="ψ: latent coordinates beyond ±ψ are resampled (truncation trick)."
    )
    labels: list[int] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="Classes to generate, cycled over the n samples (conditional runs only).",
    )
    format: Literal["png", "zip", "npz"] = Field(
        "png",
        description="png: one grid; zip: one PNG per sample in class folders plus labels.csv; npz: float32 samples.",
    )
    interpolate: InterpolateRequest | None = Field(
        None, description="n latent walks of `steps` points: a grid with one walk per row, and an animated GIF."
    )


class GenerationPublic(BaseModel):
    id: str
    run_id: str
    status: str = Field(description="queued, running, succeeded or failed")
    error: str | None
    result_url: str | None = Field(description="Where the result is, once the generation has succeeded.")
    animation_url: str | None = Field(None, description="The animated GIF of latent walks (interpolate only).")
    media_type: str | None
    request: dict[str, Any] = Field(description="The request, with checkpoint_step: the checkpoint it used.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_generation(cls, generation: Generation) -> GenerationPublic:
        done = generation.status == "succeeded"
        walks = bool(generation.request.get("interpolate"))
        return cls(
            id=generation.id,
            run_id=generation.run_id,
            status=generation.status,
            error=generation.error,
            result_url=f"/generations/{generation.id}/result" if done else None,
            animation_url=f"/generations/{generation.id}/animation.gif" if done and walks else None,
            media_type=generation.media_type,
            request=generation.request,
            created_at=generation.created_at,
            started_at=generation.started_at,
            finished_at=generation.finished_at,
        )


class GenerationsPublic(BaseModel):
    items: list[GenerationPublic]


class ScoreOptions(BaseModel):
    """How to score: the fields of POST /runs/{id}/scores besides the images (form fields of a ZIP upload)."""

    model_config = ConfigDict(extra="forbid")

    step: int | Literal["latest"] = Field("latest", description="A kept checkpoint's step, or latest.")
    ema: bool = Field(True, description="Reconstruct with the EMA generator when the run keeps one.")
    weight: float = Field(
        0.1, ge=0, le=1, description="λ of the AnoGAN score: (1 − λ)·residual + λ·discriminator-feature loss."
    )
    search_steps: int = Field(100, ge=0, le=2000, description="Adam steps of the latent search per image.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the starting latents of the search.")


class ScoreCreate(ScoreOptions):
    """The JSON body of POST /runs/{id}/scores: score the images of an uploaded dataset."""

    dataset: str = Field(..., description="The id of an uploaded dataset (POST /datasets) whose images are scored.")


class ScorePublic(BaseModel):
    id: str
    run_id: str
    status: str = Field(description="queued, running, succeeded or failed")
    error: str | None
    result_url: str | None = Field(description="The scores as JSON, once the job has succeeded.")
    csv_url: str | None = Field(description="The scores as CSV: file,label,discriminator,reconstruction,anogan.")
    request: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_generation(cls, generation: Generation) -> ScorePublic:
        done = generation.status == "succeeded"
        return cls(
            id=generation.id,
            run_id=generation.run_id,
            status=generation.status,
            error=generation.error,
            result_url=f"/scores/{generation.id}/result" if done else None,
            csv_url=f"/scores/{generation.id}/result.csv" if done else None,
            request=generation.request,
            created_at=generation.created_at,
            started_at=generation.started_at,
            finished_at=generation.finished_at,
        )
