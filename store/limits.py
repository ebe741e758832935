"""What one run may ask for on this server: the operator's limits (store/settings.py) on a resolved RunConfig.

The API checks them at POST /runs (a 422 per problem, naming the field and the limit) and the worker again when
it takes the run, so that a run queued before a limit was lowered fails saying which limit, instead of filling the
disk or holding a GPU for days. The disk budget counts the checkpoints a run keeps at the size its networks give
(core/footprint.py, torch-free). Sample grids are counted, not weighed: each is one small PNG.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.config import BUILTIN_DATASETS, DATASET_ID_PATTERN, RunConfig
from core.footprint import checkpoint_bytes, network_sizes
from store.models import Dataset
from store.settings import Settings

# A built-in table's columns, for its checkpoint size (the largest of them has 31; ctgan checkpoints are small).
BUILTIN_TABLE_COLUMNS = 32


@dataclass(frozen=True)
class DataFacts:
    """What the networks' sizes depend on: image channels (0 for points and tables), labels, a table's columns."""

    channels: int
    num_classes: int
    columns: int = 0


def data_facts(*, session: Session, cfg: RunConfig) -> DataFacts:
    """The facts of the run's dataset: a built-in's, or the uploaded dataset's row (an unknown id is taken as
    three-channel images, the largest; POST /runs refuses it before, the worker fails it after)."""
    info = BUILTIN_DATASETS.get(cfg.dataset)
    if info is not None:
        columns = BUILTIN_TABLE_COLUMNS if info["kind"] == "table" else 0
        return DataFacts(channels=int(info["channels"]), num_classes=int(info["num_classes"]), columns=columns)
    dataset = session.get(Dataset, cfg.dataset) if DATASET_ID_PATTERN.match(cfg.dataset) else None
    if dataset is None:
        return DataFacts(channels=3, num_classes=0)
    columns = len((dataset.stats or {}).get("columns") or [])
    return DataFacts(channels=dataset.channels, num_classes=len(dataset.classes or []), columns=columns)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def run_limit_problems(
    cfg: RunConfig, settings: Settings, data: DataFacts, *, on_gpu: bool = False
) -> list[tuple[str, str]]:
    """Every limit the config is over, as (field, "field: reason") pairs; empty when it fits. `on_gpu`: the
    caller is a worker with a GPU (train.device cpu is then the operator's choice)."""
    problems: list[tuple[str, str]] = []
    m, train, schedule = cfg.model, cfg.train, cfg.schedule

    def over(field: str, value: int, limit: int, env: str, what: str = "") -> None:
        if value > limit:
            message = f"{field}: {value}{what} is over this server's limit of {limit} (GANFORGE_{env})"
            problems.append((field, message))

    over("train.steps", train.steps, settings.max_steps, "MAX_STEPS")
    over("train.batch_size", train.batch_size, settings.max_batch_size, "MAX_BATCH_SIZE")
    if cfg.data_kind == "images":
        over("model.image_size", m.image_size, settings.max_image_size, "MAX_IMAGE_SIZE", " px")
    over("model.width", m.width, settings.max_width, "MAX_WIDTH")
    if m.g_width is not None:
        over("model.g_width", m.g_width, settings.max_width, "MAX_WIDTH")
    # The grids a run keeps: those it writes, thinned out to schedule.keep_samples as it goes (core/layout.py).
    kept = min(train.steps // schedule.sample_every, schedule.keep_samples)
    if kept > settings.max_sample_grids:
        problems.append(
            (
                "schedule.keep_samples",
                f"schedule.keep_samples: {train.steps} steps with a grid every {schedule.sample_every} keep {kept} "
                f"sample grids, over this server's limit of {settings.max_sample_grids} (GANFORGE_MAX_SAMPLE_GRIDS); "
                f"keep at most {settings.max_sample_grids}",
            )
        )
    if on_gpu and train.device == "cpu" and not settings.allow_cpu_on_gpu:
        problems.append(
            (
                "train.device",
                "train.device: cpu is not allowed on this server's GPU workers (GANFORGE_ALLOW_CPU_ON_GPU); "
                "use auto or cuda",
            )
        )
    if problems:  # the disk budget is about the networks a valid config builds; say the rest first
        return problems
    size = checkpoint_bytes(cfg, channels=data.channels, num_classes=data.num_classes, columns=data.columns)
    kept = min(schedule.keep_checkpoints, train.steps // schedule.checkpoint_every + 1)
    budget = settings.max_run_bytes
    if size > budget:
        g, d = network_sizes(cfg, channels=data.channels, num_classes=data.num_classes, columns=data.columns)
        problems.append(
            (
                "model",
                f"model: one checkpoint of these networks ({(g + d) / 1e6:.3g} M values in G and D, with the EMA "
                f"copy and Adam's moments) takes about {_gb(size)}, over this server's disk budget of {_gb(budget)} "
                "per run (GANFORGE_MAX_RUN_BYTES); use a smaller model.width or model.image_size",
            )
        )
    elif kept * size > budget:
        problems.append(
            (
                "schedule.keep_checkpoints",
                f"schedule.keep_checkpoints: {kept} checkpoints of about {_gb(size)} each need {_gb(kept * size)}, "
                f"over this server's disk budget of {_gb(budget)} per run (GANFORGE_MAX_RUN_BYTES); keep at most "
                f"{budget // size}",
            )
        )
    return problems


def check_run_limits(*, session: Session, cfg: RunConfig, settings: Settings, on_gpu: bool = False) -> None:
    """The worker's check before it trains: a ValueError whose sentence names every limit the run is over."""
    problems = run_limit_problems(cfg, settings, data_facts(session=session, cfg=cfg), on_gpu=on_gpu)
    if problems:
        raise ValueError("Over this server's limits: " + "; ".join(message for _, message in problems))
