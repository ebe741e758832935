"""Request and response schemas of every route, named by role (RunCreate is core.config.RunConfig), one section
per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Row

from core.config import BUILTIN_DATASETS, refuse_nul
from store.jobs import result_expires_at
from store.models import Dataset, Generation, Run, User
from store.settings import get_settings


class RequestBody(BaseModel):
    """A request body (JSON or form fields): unknown fields, NaN or infinite numbers and NUL characters are
    validation errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)


# Which checkpoint a job reads: a kept step (0 or more), or the latest.
CheckpointStep = Annotated[int, Field(ge=0)] | Literal["latest"]

# Runs.


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
    def from_run(cls, run: Run | Row[Any]) -> RunPublic:
        return cls(**run_fields(run))


def run_fields(run: Run | Row[Any]) -> dict[str, Any]:
    """RunPublic's fields of a run row, in the model's order. The polled reads (api/polled.py) serialize them as
    they are, with the stored JSON of `config` and `environment` passed through."""
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "config": run.config,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "progress": {
            "step": run.step,
            "total_steps": run.total_steps,
            "images_per_sec": run.images_per_sec,
            "eta_seconds": run.eta_seconds,
        },
        "latest_metrics": run.latest_metrics or {},
        "error": run.error,
        "worker": run.worker,
        "attempts": run.attempts,
        "environment": run.environment or {},
    }


class RunsPublic(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None


class RunResume(RequestBody):
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


class MetricsPublic(BaseModel):
    series: dict[str, list[tuple[int, float]]]


# Tokens.


class TokenCreate(RequestBody):
    name: str = Field(..., min_length=1, max_length=200)
    admin: bool = Field(False, description="Give the new token admin rights.")
    expires_at: datetime | None = Field(
        None, description="When the token stops working (ISO 8601; UTC when no zone is given). Default: never."
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=36500, description="Or: the token stops working this many days from now."
    )


class TokenInfo(BaseModel):
    """A token as listed: never its secret or its hash. A token is the identity that owns runs and datasets."""

    id: int
    name: str
    is_admin: bool
    bootstrap: bool = Field(description="The admin token from GANFORGE_ADMIN_TOKEN (or generated at first start).")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Recorded at most once a minute.")
    revoked_at: datetime | None = Field(description="Revoked tokens stay listed; what they own stays.")
    quotas: dict[str, int] = Field(
        default_factory=dict, description="Quotas an admin set for this token (PATCH /tokens/{id}) over the server's."
    )

    @classmethod
    def of(cls, user: User) -> TokenInfo:
        return cls(
            id=user.id,
            name=user.name,
            is_admin=user.is_admin,
            bootstrap=bool(user.bootstrap),
            created_at=user.created_at,
            expires_at=user.expires_at,
            last_used_at=user.last_used_at,
            revoked_at=user.revoked_at,
            quotas=user.quotas or {},
        )


class TokenPublic(TokenInfo):
    token: str = Field(description="Shown once; only its hash is stored.")


class TokensPublic(BaseModel):
    items: list[TokenInfo]


class UsagePublic(BaseModel):
    runs: dict[str, int] = Field(description="Runs by status; every status is present.")
    datasets: int = Field(description="Uploaded datasets.")
    dataset_bytes: int = Field(description="Stored bytes of the uploaded datasets.")
    jobs_in_flight: dict[str, int] = Field(description="Queued or running jobs by kind: generate, score.")


class QuotaPublic(BaseModel):
    limit: int = Field(description="The quota: the server's GANFORGE_QUOTA_*, or the number an admin set.")
    used: int


class QuotasUpdate(RequestBody):
    """Quotas of one token that replace the server's (null: the server's again); absent ones stay as they are."""

    running_runs: int | None = Field(None, ge=0, le=1_000_000)
    queued_runs: int | None = Field(None, ge=0, le=1_000_000)
    datasets: int | None = Field(None, ge=0, le=1_000_000)
    dataset_bytes: int | None = Field(None, ge=0, le=10**15)
    artifact_bytes: int | None = Field(None, ge=0, le=10**15)
    jobs_in_flight: int | None = Field(None, ge=0, le=1_000_000)


class TokenUpdate(RequestBody):
    quotas: QuotasUpdate


class MePublic(BaseModel):
    """The caller's token and what it holds."""

    id: int
    name: str
    is_admin: bool
    created_at: datetime
    expires_at: datetime | None
    usage: UsagePublic
    quotas: dict[str, QuotaPublic] | None = Field(
        None,
        description="Each quota (running_runs, queued_runs, datasets, dataset_bytes, artifact_bytes, jobs_in_flight) "
        "with its number and the caller's use of it; null for an admin, who has none.",
    )


# Datasets.


class SkippedFile(BaseModel):
    name: str
    reason: str


class TableColumn(BaseModel):
    """One column of a table: its type (inferred, or as overridden), its share of missing cells and statistics."""

    name: str
    kind: str = Field(description="continuous, discrete, categorical, boolean or datetime")
    inferred: str = Field(description="The type inferred from the values, before any override.")
    missing_share: float = Field(description="The share of rows whose cell is missing.")
    stats: dict[str, Any] = Field(description="count, missing, distinct; min/q25/median/q75/max/mean/std or top.")


# The side of a built-in image dataset's stored images: scikit-learn's 8 x 8 digits and what is made of them; none
# for the photographs (not square) and digits-printed (8 px handwritten, 32 px printed: two sizes).
BUILTIN_IMAGE_SIZES = {"digits": 8, "stacked-digits": 8, "digits-edges": 8}


class DatasetPublic(BaseModel):
    id: str = Field(
        description="A dataset id (ds_... images, tbl_... a table, paired_... or unpaired_... images for "
        "translation) or a built-in dataset's name; runs use it as `dataset`."
    )
    name: str
    builtin: bool
    kind: str = Field(
        "images",
        description="images, points (2-D data), table, or paired (inputs and targets, for pix2pix) or unpaired "
        "(two image domains, for cyclegan)",
    )
    num_images: int | None
    classes: list[str] = Field(description="Class names (the upload's folders); empty when unlabeled.")
    num_classes: int
    image_size: int | None = Field(description="Side in pixels of the stored (square) images.")
    channels: int | None
    stats: dict[str, Any] = Field(
        default_factory=dict, description="Images per class, original sizes, modes and formats, skipped files."
    )
    created_at: datetime | None = None
    num_rows: int | None = Field(default=None, description="Tables: how many rows.")
    columns: list[TableColumn] | None = Field(default=None, description="Tables: each column's type and statistics.")
    target: str | None = Field(default=None, description="Tables: the column machine-learning efficacy predicts.")

    @classmethod
    def from_row(cls, dataset: Dataset) -> DatasetPublic:
        stats = dataset.stats or {}
        if stats.get("kind") == "table":
            return cls.table(dataset.id, dataset.name, stats, builtin=False, created_at=dataset.created_at)
        return cls(
            id=dataset.id,
            name=dataset.name,
            builtin=False,
            kind=str(stats.get("kind") or "images"),
            num_images=dataset.num_images,
            classes=list(dataset.classes),
            num_classes=len(dataset.classes),
            image_size=dataset.image_size,
            channels=dataset.channels,
            stats=dataset.stats or {},
            created_at=dataset.created_at,
        )

    @classmethod
    def builtin_dataset(cls, name: str) -> DatasetPublic:
        info = BUILTIN_DATASETS[name]
        images = info["kind"] == "images"
        classes = [f"{i:0{len(str(info['num_classes'] - 1))}d}" for i in range(info["num_classes"])]
        return cls(
            id=name,
            name=name,
            builtin=True,
            kind=info.get("pairing") or info["kind"],
            num_images=info["num_images"],
            classes=classes,
            num_classes=info["num_classes"],
            image_size=BUILTIN_IMAGE_SIZES.get(name),
            channels=info["channels"] if images else None,
            stats={"description": info["description"]},
        )

    @classmethod
    def table(
        cls, dataset_id: str, name: str, stats: dict[str, Any], *, builtin: bool, created_at: datetime | None = None
    ) -> DatasetPublic:
        """A table dataset from its stats (store/datasets.py: table_stats): columns and target shown on their own."""
        rest = {k: v for k, v in stats.items() if k not in ("columns", "target", "overrides", "kind")}
        return cls(
            id=dataset_id,
            name=name,
            builtin=builtin,
            kind="table",
            num_images=stats.get("rows"),
            classes=[],
            num_classes=0,
            image_size=None,
            channels=None,
            stats=rest,
            created_at=created_at,
            num_rows=stats.get("rows"),
            columns=[TableColumn(**c) for c in stats.get("columns", [])],
            target=stats.get("target"),
        )


class DatasetUploaded(DatasetPublic):
    skipped: list[SkippedFile] = Field(description="Files of the archive that were not images or not readable.")
    existing: bool = Field(description="True when you had already uploaded these images: that dataset is returned.")


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]


class TableRowsPublic(BaseModel):
    """The first rows of a table, as read (CSV cells as text, Parquet numbers as numbers; missing cells null)."""

    columns: list[str]
    rows: list[list[str | float | None]]
    num_rows: int = Field(description="How many rows the table has in all.")


class DatasetPatch(RequestBody):
    """PATCH /datasets/{id} on a table: column types to override and the target column."""

    columns: dict[str, Literal["continuous", "discrete", "categorical", "boolean", "datetime"] | None] | None = Field(
        None, description="Column name -> type; null for a column puts its inferred type back. Others are kept."
    )
    target: str | None = Field(None, description='The target column; "" clears it. Omitted: unchanged.')


# Generations and scores.


class InterpolateRequest(RequestBody):
    steps: int = Field(8, ge=2, le=64, description="Points along each walk, both ends included.")
    mode: Literal["lerp", "slerp"] = Field("lerp", description="Straight lines, or great circles (slerp).")
    space: Literal["z", "w"] = Field(
        "z",
        description="Walk between the ends' latents z, or between their w (style-based runs, model.arch stylegan2, "
        "only): a walk in W is what the mapping network made smooth.",
    )


# Bounds of a style-mixing grid: (rows + 1) × (columns + 1) images.
MAX_STYLE_MIX_SEEDS = 16
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


class StyleMixRequest(RequestBody):
    row_seeds: list[Seed] = Field(
        ...,
        min_length=1,
        max_length=MAX_STYLE_MIX_SEEDS,
        description="Seeds of the rows' sources (down the left): each cell keeps its row's w outside `layers`.",
    )
    col_seeds: list[Seed] = Field(
        ...,
        min_length=1,
        max_length=MAX_STYLE_MIX_SEEDS,
        description="Seeds of the columns' sources (along the top): each cell takes its column's w at `layers`.",
    )
    layers: str = Field(
        "0-3",
        max_length=20,
        description="The synthesis layers the column sets, as '0-3' or '5' (0 = the coarsest, 4×4; a run of side "
        "S has 2·log2(S) − 2 layers): coarse layers carry pose and shape, fine ones colour and texture.",
    )


class GenerationCreate(RequestBody):
    n: int = Field(64, ge=1, description="Samples to generate (latent walks when interpolating); the server caps it.")
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of the latents: the same request gives the same samples."
    )
    step: CheckpointStep = Field("latest", description="A kept checkpoint's step, or latest.")
    ema: bool = Field(True, description="Sample from the EMA generator when the run keeps one.")
    truncation: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="ψ, the truncation trick: style-based runs (stylegan2) pull each w toward the run's mean w, "
        "w_avg + ψ·(w − w_avg) (ψ < 1: typical, less varied images; 1: none); other runs resample every latent "
        "coordinate beyond ±ψ (BigGAN's trick; smaller ψ, less variety).",
    )
    labels: list[int] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="Classes to generate, cycled over the n samples (conditional runs only).",
    )
    format: Literal["png", "zip", "npz", "csv", "parquet"] | None = Field(
        None,
        description="png: one grid; zip: one PNG per sample in class folders plus labels.csv; npz: float32 samples; "
        "csv or parquet: table rows (ctgan runs). Default: png, or csv for a table.",
    )
    conditions: dict[str, str | int | float | bool | None] | None = Field(
        None,
        max_length=100,
        description="Tables: {column: value} that every row must have (categorical, boolean or discrete columns); "
        "the job's `made` says how many rows it could make.",
    )
    interpolate: InterpolateRequest | None = Field(
        None, description="n latent walks of `steps` points: a grid with one walk per row, and an animated GIF."
    )
    style_mix: StyleMixRequest | None = Field(
        None,
        description="Style-based runs (stylegan2): the style-mixing grid (png), the column sources along the top, "
        "the row sources down the left, and in each cell the row's w with `layers` from the column's; n is ignored.",
    )


class JobPublic(BaseModel):
    """What generations and scores share: they are jobs of one model (store/jobs.py)."""

    id: str
    run_id: str
    status: str = Field(description="queued, running, succeeded or failed")
    error: str | None
    request: dict[str, Any] = Field(description="The request, with checkpoint_step: the checkpoint it used.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None = Field(
        None,
        description="When the result is deleted (GANFORGE_JOB_RESULT_TTL_SECONDS after the job finished); after it "
        "the result answers 410. None while there is no result, or when results are kept for ever.",
    )


def job_fields(job: Generation | Row[Any]) -> dict[str, Any]:
    """JobPublic's fields of a job row."""
    return {
        "id": job.id,
        "run_id": job.run_id,
        "status": job.status,
        "error": job.error,
        "request": job.request,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "expires_at": result_expires_at(job, get_settings().job_result_ttl_seconds),
    }


class GenerationPublic(JobPublic):
    result_url: str | None = Field(description="Where the result is, once the generation has succeeded.")
    animation_url: str | None = Field(None, description="The animated GIF of latent walks (interpolate only).")
    media_type: str | None
    made: int | None = Field(
        None, description="Tables: how many rows were made (fewer than n when conditions were too rare to meet)."
    )

    @classmethod
    def from_job(cls, job: Generation | Row[Any]) -> GenerationPublic:
        return cls(**generation_fields(job))


def generation_fields(job: Generation | Row[Any]) -> dict[str, Any]:
    """GenerationPublic's fields of a job row, in the model's order (serialized as they are by api/polled.py)."""
    done = job.status == "succeeded"
    walks = bool(job.request.get("interpolate"))
    return {
        **job_fields(job),
        "result_url": f"/generations/{job.id}/result" if done else None,
        "animation_url": f"/generations/{job.id}/animation.gif" if done and walks else None,
        "media_type": job.media_type,
        "made": job.request.get("made"),
    }


class GenerationsPublic(BaseModel):
    items: list[GenerationPublic]


class ScoreOptions(RequestBody):
    """How to score: the fields of POST /runs/{id}/scores besides the images (form fields of a ZIP upload)."""

    step: CheckpointStep = Field("latest", description="A kept checkpoint's step, or latest.")
    ema: bool = Field(True, description="Reconstruct with the EMA generator when the run keeps one.")
    weight: float = Field(
        0.1, ge=0, le=1, description="λ of the AnoGAN score: (1 − λ)·residual + λ·discriminator-feature loss."
    )
    search_steps: int = Field(100, ge=0, le=2000, description="Adam steps of the latent search per image.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the starting latents of the search.")


class ScoreCreate(ScoreOptions):
    """The JSON body of POST /runs/{id}/scores: score the images of an uploaded dataset."""

    dataset: str = Field(..., description="The id of an uploaded dataset (POST /datasets) whose images are scored.")


class ScorePublic(JobPublic):
    result_url: str | None = Field(description="The scores as JSON, once the job has succeeded.")
    csv_url: str | None = Field(description="The scores as CSV: file,label,discriminator,reconstruction,anogan.")

    @classmethod
    def from_job(cls, job: Generation) -> ScorePublic:
        done = job.status == "succeeded"
        return cls(
            **job_fields(job),
            result_url=f"/scores/{job.id}/result" if done else None,
            csv_url=f"/scores/{job.id}/result.csv" if done else None,
        )


# Workers.


class DevicePublic(BaseModel):
    kind: Literal["cuda", "cpu"]
    name: str
    memory_gb: float | None = Field(description="GPU memory, or the host's memory for a CPU")
    cores: int | None = Field(None, description="CPU cores (a CPU device only)")


class WorkerPublic(BaseModel):
    id: str = Field(description="The worker's Celery node name")
    host: str
    pid: int
    status: Literal["live", "lost"] = Field(description="lost: no heartbeat for GANFORGE_WORKER_LOST_AFTER_INTERVALS")
    devices: list[DevicePublic] = Field(description="Its GPUs, or its CPU when it has none")
    slots: int = Field(description="The largest train.world_size it runs: its GPUs, or its CPU cores")
    queues: list[str]
    current_job: str | None = Field(description="The run or job id it is working on")
    version: str
    started_at: datetime
    heartbeat_at: datetime


class WorkersPublic(BaseModel):
    items: list[WorkerPublic]


# Translations.


class TranslationOptions(RequestBody):
    """How to translate: the form fields of POST /runs/{id}/translations besides the images."""

    direction: Literal["AtoB", "BtoA"] = Field(
        "AtoB", description="cyclegan runs: domain A into B, or B into A. pix2pix and srgan runs translate AtoB only."
    )
    step: CheckpointStep = Field("latest", description="A kept checkpoint's step, or latest.")
    ema: bool = Field(True, description="Translate with the EMA generator when the run keeps one.")
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="cyclegan runs with a latent code (model.latent_dim), BtoA: input i is translated with the code "
        "drawn from seed + i, so another seed gives another rendering of the same inputs. Other runs ignore it.",
    )


class TranslationPublic(JobPublic):
    result_url: str | None = Field(
        description="Once succeeded: a ZIP of PNGs named as the inputs, or an .npz when the input was one."
    )
    pairs_url: str | None = Field(description="Once succeeded: a PNG of the first 16 input → output pairs.")
    media_type: str | None

    @classmethod
    def from_job(cls, job: Generation) -> TranslationPublic:
        done = job.status == "succeeded"
        return cls(
            **job_fields(job),
            result_url=f"/translations/{job.id}/result" if done else None,
            pairs_url=f"/translations/{job.id}/pairs.png" if done else None,
            media_type=job.media_type,
        )


class TranslationsPublic(BaseModel):
    items: list[TranslationPublic]


class ProjectionOptions(RequestBody):
    """How to project: the form fields of POST /runs/{id}/projections besides the images."""

    steps: int = Field(300, ge=1, le=2000, description="Optimisation steps per image (the paper uses 1,000).")
    space: Literal["w", "w+"] = Field(
        "w", description="One w for every layer (w), or one w per layer (w+: closer reconstructions, less editable)."
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the starting noise maps and of w's perturbation.")
    step: CheckpointStep = Field("latest", description="A kept checkpoint's step, or latest.")
    ema: bool = Field(True, description="Project into the EMA generator when the run keeps one.")


class ProjectionPublic(JobPublic):
    result_url: str | None = Field(
        description="Once succeeded: a ZIP of the reconstructions as PNGs named as the inputs, latents.npz (ws, w, "
        "the noise maps, the distances) and projection.json."
    )

    @classmethod
    def from_job(cls, job: Generation) -> ProjectionPublic:
        done = job.status == "succeeded"
        return cls(**job_fields(job), result_url=f"/projections/{job.id}/result" if done else None)
