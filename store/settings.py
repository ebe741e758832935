"""The service's one settings object, read from GANFORGE_* environment variables and checked at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANFORGE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    # SQLAlchemy URL; e.g. postgresql+psycopg://user:pass@host/db. Default: SQLite under ./var/.
    database_url: str = "sqlite:///./var/ganforge.db"
    # Celery broker; e.g. redis://host:6379/0, or redis+socket:///path/redis.sock (what `ganforge serve` runs).
    broker_url: str = "redis://127.0.0.1:6379/0"
    # This process's local folder: uploads in transit, the runs a worker trains, its cache of artifacts. With the
    # default artifacts_url it is also where every artifact is kept.
    data_dir: Path = Path("./var/data")
    # Where artifacts (checkpoints, sample grids, run configs, job results, uploaded datasets) are kept:
    # file:///path, or s3://bucket/prefix (with s3_endpoint_url and the standard AWS_* credential variables).
    # Unset: the data folder, file://{data_dir}.
    artifacts_url: str | None = None
    # The S3 endpoint of a self-hosted store (SeaweedFS, MinIO); unset: AWS.
    s3_endpoint_url: str | None = None
    # With an s3 artifacts_url: answer artifact downloads with 307 to a short-lived presigned URL instead of
    # streaming them through the API.
    s3_presign: bool = False
    s3_presign_expires_seconds: int = 300
    # Largest size of a worker's local cache of artifacts fetched from object storage (checkpoints, datasets).
    cache_max_bytes: int = 10_000_000_000
    # The first admin token. Unset: the API generates one on first start, stores its hash and prints it once.
    admin_token: str | None = None
    # Celery queue names: training runs, and short jobs (generations, scores) on a queue of their own.
    train_queue: str = "train"
    generate_queue: str = "generate"
    # A running run whose heartbeat is older than this is considered lost and handed to another worker.
    heartbeat_timeout_seconds: float = 60.0
    # How often each worker looks for runs (training workers) or jobs (generate workers) lost by the broker or by a
    # dead worker (worker/reconcile.py).
    reconcile_interval_seconds: float = 30.0
    # How often each worker renews its row in the workers table (GET /workers), and after how many missed
    # intervals it is shown as lost. The API and every worker must agree on both.
    worker_heartbeat_interval_seconds: float = 10.0
    worker_lost_after_intervals: float = 3.0
    # Longest one attempt of a run may train, in seconds (unset: no limit). At this soft limit the run stops at
    # its next step with a checkpoint and fails saying so; Celery's hard limit, 5 minutes later, kills the task.
    train_time_limit_seconds: float | None = None
    # How many times a run may be delivered before it is failed as a poison run.
    max_attempts: int = 3
    # Largest request body the API accepts outside uploads (bytes).
    max_body_bytes: int = 1_000_000
    # Largest generation job.
    max_generation_n: int = 10_000
    # Largest dataset upload (bytes of the ZIP).
    max_upload_bytes: int = 1_000_000_000
    # Caps on an uploaded archive's contents (zip bombs) and the stored side of its images (see core/uploads.py).
    max_archive_members: int = 100_000
    max_unpacked_bytes: int = 4_000_000_000
    max_member_ratio: float = 200.0
    max_image_pixels: int = 40_000_000
    dataset_max_side: int = 128
    # Limits on what a run may ask for, sized for one GPU box: checked at POST /runs (422 naming the field and the
    # limit) and again by the worker before it trains (store/limits.py).
    max_steps: int = 1_000_000
    max_batch_size: int = 1024
    max_image_size: int = 512
    # model.width and model.g_width, every architecture.
    max_width: int = 512
    # Sample grids one run may keep (train.steps / schedule.sample_every, thinned to schedule.keep_samples).
    max_sample_grids: int = 2000
    # A run's disk budget: schedule.keep_checkpoints checkpoints of the size its networks give (core/footprint.py).
    max_run_bytes: int = 50_000_000_000
    # Whether a worker with a GPU trains a run that asks for train.device "cpu" (it would hold the GPU's slot).
    allow_cpu_on_gpu: bool = False
    # Quotas per user (store/quotas.py); an admin sets other numbers for one token with PATCH /tokens/{id}. Admin
    # tokens have none. Runs training at once: a worker that takes a run beyond it gives it back to the queue.
    quota_running_runs: int = 2
    # Runs waiting in the queue (POST /runs answers 429 over it).
    quota_queued_runs: int = 10
    # Uploaded datasets, and the bytes of their stored files (POST /datasets answers 403 over them).
    quota_datasets: int = 20
    quota_dataset_bytes: int = 20_000_000_000
    # Bytes of the checkpoints a user's runs keep (POST /runs answers 403 over it).
    quota_artifact_bytes: int = 200_000_000_000
    # Generation and score jobs queued or running (429 over it).
    quota_jobs_in_flight: int = 4
    # How long a finished generation, score, translation or projection keeps its result (seconds; unset: for
    # ever). Then its result answers 410 and the generate workers delete its files (store/jobs.py).
    job_result_ttl_seconds: float | None = 7 * 24 * 3600.0
    # Intra-op threads of a training run (torch.set_num_threads); unset: the host's cores divided by the training
    # workers on it (worker/threads.py), so that two CPU workers on one box do not oversubscribe it.
    torch_threads: int | None = None
    # Processes of the API's own that decode uploaded archives and parse tables (api/offload.py), one upload each.
    upload_processes: int = 1
    # Requests one token (or one address, without a token) may make, in the `limits` library's notation
    # ("50/second;1500/minute"), counted in Redis across API processes (api/ratelimit.py); empty: no limit.
    rate_limit: str = "50/second;1500/minute"
    # Where the counts live: a Redis URL; unset, the broker's.
    rate_limit_url: str | None = None
    # Database connections kept open per process, and the API's threads for synchronous routes and dependencies:
    # one number, so that a thread never waits for a connection (api/main.py). The overflow serves the event
    # stream's reads and session closes beyond it.
    db_pool_size: int = 20
    db_max_overflow: int = 10
    # CORS origins allowed to call the API from a browser; empty = CORS off.
    cors_origins: list[str] = []

    @property
    def artifacts_location(self) -> str:
        """artifacts_url, or the data folder as a file URL."""
        return self.artifacts_url or self.data_dir.resolve().as_uri()

    @property
    def artifacts_are_local(self) -> bool:
        """True when artifacts are kept in this process's own data folder (the default): nothing to copy."""
        return self.artifacts_url is None or (
            self.artifacts_url.startswith("file:") and self.artifacts_location == self.data_dir.resolve().as_uri()
        )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        weak = not self.admin_token or len(self.admin_token) < 24 or self.admin_token in {"admin", "changeme"}
        if self.env == "production" and weak:
            raise ValueError(
                "GANFORGE_ADMIN_TOKEN must be set to a random secret of at least 24 characters in production"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    """The settings; a process whose environment is invalid stops here with one line that says why."""
    try:
        return Settings()
    except ValidationError as error:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"ganforge: refusing to start: {reasons}") from None
