"""Short jobs on the `generate` queue: sampling from a checkpoint (generations) and anomaly scores.

Both are jobs of store/jobs.py and run the same way (`run_job`, which worker/translations.py shares): claim the job
by its id, and do nothing when it is gone or already finished, so a re-delivered message is harmless; resolve the
checkpoint; do the work; write the result (files are written to a temp name and renamed into place) and mark the
job succeeded. Any error ends the job `failed` with a sentence a user can read, and the task returns normally, so
one bad request never blocks the queue. They read checkpoints that the trainer renames into place, so they work
while the run is still training. Jobs whose worker died are failed by the reconciler (worker/reconcile.py).

Loaded networks stay in an LRU cache in the worker process, keyed by (kind, run, step, ema, checkpoint mtime):
repeated requests against one checkpoint skip loading it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from celery.exceptions import SoftTimeLimitExceeded

from core.device import pick_device
from core.layout import atomic_write
from store import layout
from store.artifacts import ArtifactNotFound, Storage, fetch_folder, get_storage
from store.db import get_sessionmaker
from store.errors import sentence
from store.jobs import JobKind, claim_job, finish_job
from store.settings import Settings, get_settings
from worker.artifacts import fetch_checkpoint, fetch_dataset
from worker.celery_app import app, worker_name

log = logging.getLogger("ganforge.worker.generations")

# Loaded networks kept per worker process. A DCGAN-32 generator is a few MB, so a handful is cheap.
CACHE_SIZE = 4
# Jobs of at most this many samples run their forward passes on one thread: a small batch gains nothing from
# intra-op parallelism, and on a busy machine the extra thread made a 64-image job several times slower.
SMALL_JOB_SAMPLES = 512
# A job that runs longer than this is stopped and failed (anomaly scoring of a large archive is the long one).
SOFT_TIME_LIMIT = 30 * 60

# Table rows (ctgan runs): the formats and their media types.
TABLE_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}

_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
cache_stats = {"hits": 0, "misses": 0}


def cached(kind: str, *, run_id: str, step: int, ema: bool, path: Path) -> Any:
    """The loaded network(s) of a checkpoint, from the cache when that file was loaded before: `kind`
    "generator" gives load_generator's (generator, cfg, data_info), "table" a ctgan TableGenerator, "scorer" a
    core.scoring.Scorer (G and D), "translator" a core.translate.Translator."""
    from core import checkpoint, scoring  # torch-heavy; imported in the worker child, not at module import

    key = (kind, run_id, step, ema, path.stat().st_mtime_ns)
    if key in _cache:
        cache_stats["hits"] += 1
        _cache.move_to_end(key)
        return _cache[key]
    cache_stats["misses"] += 1
    device = str(pick_device("auto"))
    try:
        if kind == "generator":
            value: Any = checkpoint.load_generator(path, ema=ema, device=device)
        elif kind == "translator":
            from core.translate import load_translator

            value = load_translator(path, ema=ema, device=device)
        elif kind == "table":
            from core.families.ctgan import load_table_generator

            value = load_table_generator(path, ema=ema, device=device)
        else:
            value = scoring.load_scorer(path, ema=ema, device=device)
    except ValueError:
        raise
    except Exception as error:  # a cut-off or corrupt file: say which checkpoint, and what the reader said
        raise ValueError(f"The checkpoint at step {step} cannot be read: {type(error).__name__}: {error}") from error
    _cache[key] = value
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return value


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` intra-op threads (None: leave the process's setting)."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_checkpoint(storage: Storage, settings: Settings, run_id: str, request: dict[str, Any]) -> tuple[int, Path]:
    """The checkpoint the request names, as a local file (fetched into the cache from object storage). `latest`
    was resolved when the request was made; if training has pruned that file since, the newest one is taken
    instead."""
    step = int(request["checkpoint_step"])
    keys = [e.key for e in storage.list(f"{layout.run_prefix(run_id)}checkpoints/")]
    steps = layout.steps_of(keys, "checkpoints")
    if step not in steps and request.get("step") == "latest" and steps:
        step = steps[-1]
    if step in steps:
        try:
            return step, fetch_checkpoint(storage, settings, run_id=run_id, step=step)
        except ArtifactNotFound:  # pruned since we listed
            pass
    raise ValueError(
        f"The checkpoint at step {step} no longer exists: the run keeps only its most recent checkpoints "
        f"(now {', '.join(map(str, steps)) or 'none'})"
    )


def readable(error: BaseException) -> str:
    """One sentence for the user: our own ValueErrors as they are, anything else with its type."""
    if isinstance(error, SoftTimeLimitExceeded):
        return f"The job took longer than {SOFT_TIME_LIMIT} s and was stopped"
    if isinstance(error, MemoryError):
        return "The worker ran out of memory; ask for fewer samples"
    return sentence(error, prefix=None if isinstance(error, ValueError) else "The job failed")


@dataclass
class Job:
    """A claimed job: its request (with `checkpoint_step` the step it uses), checkpoint and folder."""

    id: str
    run_id: str
    request: dict[str, Any]
    step: int
    checkpoint: Path
    out_dir: Path
    data_dir: Path


@dataclass
class Done:
    """What a job wrote: the result file (its URL serves it), its media type, and how many items it holds."""

    result: Path
    media_type: str
    count: int


def _claim(job_id: str, kind: JobKind) -> tuple[str, dict[str, Any]] | None:
    """(run id, request) of the job now running here; None when it is gone or already finished."""
    with get_sessionmaker()() as session:
        job = claim_job(session=session, job_id=job_id, kind=kind, worker=worker_name())
        if job is None:
            session.rollback()
            return None
        claimed = (job.run_id, dict(job.request))
        session.commit()
        return claimed


def _finish(job_id: str, **values: Any) -> bool:
    with get_sessionmaker()() as session:
        finished = finish_job(session=session, job_id=job_id, **values)
        session.commit()
        return finished


def run_job(job_id: str, kind: JobKind, work: Callable[[Job], Done]) -> None:
    """Claim the job, resolve its checkpoint, do the work and record how it ended. A job whose row is gone by
    then (its run or the job was deleted meanwhile) leaves no files behind."""
    claimed = _claim(job_id, kind)
    if claimed is None:
        return
    run_id, request = claimed
    settings = get_settings()
    storage = get_storage()
    data_dir = settings.data_dir
    out_dir = layout.job_dir(data_dir, run_id, job_id)
    started = time.perf_counter()
    try:
        step, path = resolve_checkpoint(storage, settings, run_id, request)
        request["checkpoint_step"] = step
        job = Job(
            id=job_id, run_id=run_id, request=request, step=step, checkpoint=path, out_dir=out_dir, data_dir=data_dir
        )
        done = work(job)
        # The result files (not the input a score job was given) go to the storage before the job says so.
        prefix = layout.job_prefix(run_id, job_id)
        for file in sorted(p for p in out_dir.iterdir() if p.is_file()) if out_dir.is_dir() else []:
            storage.put_file(prefix + file.name, file)
    except Exception as error:  # every failure ends the job; none stops the worker
        log.warning("%s job %s failed", kind, job_id, exc_info=True)
        if not _finish(job_id, status="failed", error=readable(error)):
            _discard(settings, storage, run_id, out_dir)
        elif not settings.artifacts_are_local:
            _remove_local(data_dir, run_id, out_dir)
        return
    relative = layout.key_of(data_dir, done.result)  # the result's key in the storage
    if not _finish(job_id, status="succeeded", result_path=relative, media_type=done.media_type, request=request):
        _discard(settings, storage, run_id, out_dir)
        return
    if not settings.artifacts_are_local:
        _remove_local(data_dir, run_id, out_dir)
    log.info("%s job %s: %d items in %.3f s", kind, job_id, done.count, time.perf_counter() - started)


def _discard(settings: Settings, storage: Storage, run_id: str, out_dir: Path) -> None:
    """Remove the files of a job whose row is gone, here and in the storage."""
    if not settings.artifacts_are_local:
        storage.delete_prefix(layout.job_prefix(run_id, out_dir.name))
    _remove_local(settings.data_dir, run_id, out_dir)


def _remove_local(data_dir: Path, run_id: str, out_dir: Path) -> None:
    """Remove a job's local folder, and the run folder if that is all it held."""
    shutil.rmtree(out_dir, ignore_errors=True)
    for folder in (out_dir.parent, layout.run_dir(data_dir, run_id)):
        try:
            folder.rmdir()
        except OSError:
            break


def _generate(job: Job) -> Done:
    from core import generate as gen

    request = job.request
    interpolate = request.get("interpolate")
    total = request["n"] * (interpolate["steps"] if interpolate else 1)
    limit = get_settings().max_generation_n  # this worker's: it may be lower than the API's
    if total > limit:
        raise ValueError(f"n: {total} samples is over this worker's limit of {limit} (GANFORGE_MAX_GENERATION_N)")
    if request["format"] in TABLE_MEDIA_TYPES:
        return _generate_rows(job)
    generator, cfg, data_info = cached(
        "generator", run_id=job.run_id, step=job.step, ema=request["ema"], path=job.checkpoint
    )
    common: dict[str, Any] = {
        "z_dim": cfg.model.z_dim,
        "num_classes": int(data_info.get("num_classes") or 0) if cfg.model.conditional else 0,
        "n": request["n"],
        "seed": request["seed"],
        "truncation": request.get("truncation"),
        "labels": request.get("labels"),
        "device": pick_device("auto"),
    }
    mix = request.get("style_mix")
    with torch_threads(1 if total <= SMALL_JOB_SAMPLES else None):
        if mix:
            del common["n"], common["seed"]
            result = gen.style_mix(
                generator, row_seeds=mix["row_seeds"], col_seeds=mix["col_seeds"], layers=mix["layers"], **common
            )
        elif interpolate:
            result = gen.generate_walks(
                generator,
                steps=interpolate["steps"],
                mode=interpolate.get("mode", "lerp"),
                space=interpolate.get("space", "z"),
                **common,
            )
        else:
            result = gen.generate(generator, **common)
    if interpolate:
        gen.write_gif(result, job.out_dir / "animation.gif")
    fmt = request["format"]
    written = gen.WRITERS[fmt](result, job.out_dir / f"result.{fmt}")
    return Done(result=written, media_type=gen.MEDIA_TYPES[fmt], count=len(result.samples))


def _generate_rows(job: Job) -> Done:
    """Table rows from a ctgan checkpoint, in the table's own columns, as CSV or Parquet; the request records how
    many rows were made (`made`: fewer than n when its conditions were too rare to meet)."""
    from core.families.ctgan import sample_rows
    from core.tabular.io import write_csv, write_parquet

    request = job.request
    tg = cached("table", run_id=job.run_id, step=job.step, ema=request["ema"], path=job.checkpoint)
    with torch_threads(1 if request["n"] <= SMALL_JOB_SAMPLES else None):
        rows, made = sample_rows(tg, request["n"], seed=request["seed"], conditions=request.get("conditions"))
    fmt = request["format"]
    writer = write_csv if fmt == "csv" else write_parquet
    path = job.out_dir / f"result.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        out.write(writer(rows, tg.transformer.columns))
    request["made"] = made
    return Done(result=path, media_type=TABLE_MEDIA_TYPES[fmt], count=made)


def _score(job: Job) -> Done:
    from core import scoring, uploads

    request = job.request
    scorer = cached("scorer", run_id=job.run_id, step=job.step, ema=request["ema"], path=job.checkpoint)
    settings, storage = get_settings(), get_storage()
    if request["source"] == "upload":
        images_dir = job.out_dir / "input"
        if not settings.artifacts_are_local:  # the API stored the normalised upload with the job's files
            fetch_folder(storage, prefix=layout.job_prefix(job.run_id, job.id) + "input/", folder=images_dir)
        names: list[str] | None = json.loads((images_dir / "names.json").read_text()) or None
    elif settings.artifacts_are_local:
        images_dir = layout.dataset_dir(job.data_dir, request["content_hash"])
        names = None
    else:
        images_dir = fetch_dataset(storage, settings, request["content_hash"])
        names = None
    images, labels, classes = uploads.read_images(images_dir)  # (N, S, S, C) uint8
    x = scoring.prepare_images(
        images, channels=int(scorer.data_info["channels"]), image_size=scorer.cfg.model.image_size
    )  # (N, C, H, W) in [-1, 1]
    scores = scoring.score_images(
        scorer,
        x,
        steps=request["search_steps"],
        weight=request["weight"],
        seed=request["seed"],
        device=pick_device("auto"),
    )
    scoring.write_results(
        scores,
        names=names,
        labels=[classes[int(i)] for i in labels] if labels is not None else None,
        json_path=job.out_dir / "scores.json",
        csv_path=job.out_dir / "scores.csv",
        extra={
            "id": job.id,
            "run_id": job.run_id,
            "checkpoint_step": job.step,
            "weight": request["weight"],
            "search_steps": request["search_steps"],
            "higher_is_more_anomalous": True,
        },
    )
    return Done(result=job.out_dir / "scores.json", media_type="application/json", count=len(x))


@app.task(name="ganforge.generate", soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def generate(generation_id: str) -> None:
    """Sample from a run's checkpoint as the generation's request says, and write the result file."""
    run_job(generation_id, "generate", _generate)


@app.task(name="ganforge.score", soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def score(score_id: str) -> None:
    """Score the request's images against a run's checkpoint (discriminator and AnoGAN) into JSON and CSV."""
    run_job(score_id, "score", _score)
