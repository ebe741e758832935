"""Short jobs on the `generate` queue: sampling from a checkpoint (generations) and anomaly scores.

Both take a generation id, re-read it, and do nothing when it is gone or already finished, so a re-delivered
message is harmless. Results are written to a temp name and renamed into place, then the row is marked
succeeded; any error ends the row `failed` with a sentence a user can read, and the task returns normally,
so one bad request never blocks the queue. They read checkpoints that the trainer renames into place, so
they work while the run is still training.

A job whose worker died (killed, out of memory) would stay `running`: the generate worker looks for such jobs
when it starts and every minute, and fails them with a sentence that says so.

Loaded generators stay in an LRU cache in the worker process, keyed by (run, step, ema, checkpoint mtime):
repeated requests against one checkpoint skip loading it.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from sqlalchemy import select, update

from store import layout
from store.db import get_sessionmaker
from store.models import Generation, utcnow
from store.settings import Settings, get_settings
from worker.celery_app import app

log = logging.getLogger("ganforge.worker.generations")

# Loaded networks kept per worker process. A DCGAN-32 generator is a few MB, so a handful is cheap.
CACHE_SIZE = 4
# Jobs of at most this many samples run their forward passes on one thread: a small batch gains nothing from
# intra-op parallelism, and on a busy machine the extra thread made a 64-image job several times slower.
SMALL_JOB_SAMPLES = 512
# A job that runs longer than this is stopped and failed (anomaly scoring of a large archive is the long one).
SOFT_TIME_LIMIT = 30 * 60

_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
cache_stats = {"hits": 0, "misses": 0}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cached(kind: str, *, run_id: str, step: int, ema: bool, path: Path) -> Any:
    """The loaded network(s) of a checkpoint, from the cache when that file was loaded before: `kind`
    "generator" gives load_generator's (generator, cfg, data_info), "scorer" a core.scoring.Scorer (G and D)."""
    from core import checkpoint  # torch-heavy; imported in the worker child, not at module import

    key = (kind, run_id, step, ema, path.stat().st_mtime_ns)
    if key in _cache:
        cache_stats["hits"] += 1
        _cache.move_to_end(key)
        return _cache[key]
    cache_stats["misses"] += 1
    from core import scoring

    try:
        if kind == "generator":
            value: Any = checkpoint.load_generator(path, ema=ema, device=str(device()))
        else:
            value = scoring.load_scorer(path, ema=ema, device=str(device()))
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


def result_dir(settings: Settings, run_id: str, generation_id: str) -> Path:
    """Where a generation's files live: inside its run's folder, so deleting the run removes them."""
    return settings.run_dir(run_id) / "generations" / generation_id


def resolve_checkpoint(run_dir: Path, request: dict[str, Any]) -> tuple[int, Path]:
    """The checkpoint the request names. `latest` was resolved when the request was made; if training has
    pruned that file since, the newest one is taken instead."""
    step = int(request["checkpoint_step"])
    path = layout.checkpoint_path(run_dir, step)
    if path.is_file():
        return step, path
    steps = layout.checkpoint_steps(run_dir)
    if request.get("step") == "latest" and steps:
        return steps[-1], layout.checkpoint_path(run_dir, steps[-1])
    raise ValueError(
        f"The checkpoint at step {step} no longer exists: the run keeps only its most recent checkpoints "
        f"(now {', '.join(map(str, steps)) or 'none'})"
    )


def readable(error: BaseException) -> str:
    """One sentence for the user: our own ValueErrors as they are, anything else with its type."""
    if isinstance(error, SoftTimeLimitExceeded):
        return f"The job took longer than {SOFT_TIME_LIMIT} s and was stopped"
    if isinstance(error, ValueError):
        return str(error)
    if isinstance(error, MemoryError):
        return "The worker ran out of memory; ask for fewer samples"
    return f"The job failed: {type(error).__name__}: {error}"


def claim(generation_id: str, *, kind: str) -> tuple[str, dict[str, Any]] | None:
    """Mark the job running on this worker. None when it is gone or already finished (a re-delivery)."""
    with get_sessionmaker()() as session:
        result = session.execute(
            update(Generation)
            .where(
                Generation.id == generation_id,
                Generation.kind == kind,
                Generation.status.in_(("queued", "running")),
            )
            .values(status="running", worker=worker_name(), started_at=utcnow(), error=None)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return None
        generation = session.get(Generation, generation_id)
        assert generation is not None
        claimed = (generation.run_id, dict(generation.request))
        session.commit()
        return claimed


def finish(
    generation_id: str,
    *,
    status: str,
    error: str | None = None,
    result_path: str | None = None,
    media_type: str | None = None,
    request: dict[str, Any] | None = None,
) -> bool:
    """Write the job's final state. False when the row is gone (its run was deleted meanwhile)."""
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "result_path": result_path,
        "media_type": media_type,
        "finished_at": utcnow(),
    }
    if request is not None:
        values["request"] = request
    with get_sessionmaker()() as session:
        result = session.execute(
            update(Generation)
            .where(Generation.id == generation_id, Generation.status == "running")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def _discard(settings: Settings, run_id: str, out_dir: Path) -> None:
    """Remove the files of a job whose run was deleted while it ran, and the run folder if that is all it held."""
    shutil.rmtree(out_dir, ignore_errors=True)
    for folder in (out_dir.parent, settings.run_dir(run_id)):
        try:
            folder.rmdir()
        except OSError:
            break


@app.task(name="ganforge.generate", soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def generate(generation_id: str) -> None:
    """Sample from a run's checkpoint as the generation's request says, and write the result file."""
    from core import generate as gen

    claimed = claim(generation_id, kind="generate")
    if claimed is None:
        return
    run_id, request = claimed
    settings = get_settings()
    out_dir = result_dir(settings, run_id, generation_id)
    started = time.perf_counter()
    try:
        step, path = resolve_checkpoint(settings.run_dir(run_id), request)
        request["checkpoint_step"] = step
        generator, cfg, data_info = cached("generator", run_id=run_id, step=step, ema=request["ema"], path=path)
        num_classes = int(data_info.get("num_classes") or 0) if cfg.model.conditional else 0
        interpolate = request.get("interpolate")
        total = request["n"] * (interpolate["steps"] if interpolate else 1)
        threads = 1 if total <= SMALL_JOB_SAMPLES else None
        with torch_threads(threads):
            if interpolate:
                result = gen.generate_walks(
                    generator,
                    z_dim=cfg.model.z_dim,
                    num_classes=num_classes,
                    n=request["n"],
                    steps=interpolate["steps"],
                    mode=interpolate.get("mode", "lerp"),
                    seed=request["seed"],
                    truncation=request.get("truncation"),
                    labels=request.get("labels"),
                    device=device(),
                )
            else:
                result = gen.generate(
                    generator,
                    z_dim=cfg.model.z_dim,
                    num_classes=num_classes,
                    n=request["n"],
                    seed=request["seed"],
                    truncation=request.get("truncation"),
                    labels=request.get("labels"),
                    device=device(),
                )
        if interpolate:
            gen.write_gif(result, out_dir / "animation.gif")
        fmt = request["format"]
        written = gen.WRITERS[fmt](result, out_dir / f"result.{fmt}")
    except Exception as error:  # every failure ends the job; none stops the worker
        log.warning("generation %s failed", generation_id, exc_info=True)
        if not finish(generation_id, status="failed", error=readable(error)):
            _discard(settings, run_id, out_dir)
        return
    relative = written.relative_to(settings.data_dir).as_posix()
    if not finish(
        generation_id,
        status="succeeded",
        result_path=relative,
        media_type=gen.MEDIA_TYPES[fmt],
        request=request,
    ):
        _discard(settings, run_id, out_dir)
        return
    log.info("generation %s: %d samples in %.3f s", generation_id, len(result.samples), time.perf_counter() - started)


@app.task(name="ganforge.score", soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def score(generation_id: str) -> None:
    """Score the request's images against a run's checkpoint (discriminator and AnoGAN) into JSON and CSV."""
    import json

    from core import scoring, uploads

    claimed = claim(generation_id, kind="score")
    if claimed is None:
        return
    run_id, request = claimed
    settings = get_settings()
    out_dir = result_dir(settings, run_id, generation_id)
    started = time.perf_counter()
    try:
        step, path = resolve_checkpoint(settings.run_dir(run_id), request)
        request["checkpoint_step"] = step
        scorer = cached("scorer", run_id=run_id, step=step, ema=request["ema"], path=path)
        if request["source"] == "upload":
            images_dir = out_dir / "input"
            names: list[str] | None = json.loads((images_dir / "names.json").read_text()) or None
        else:
            images_dir = uploads.dataset_dir_for(settings.data_dir, request["content_hash"])
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
            device=device(),
        )
        scoring.write_results(
            scores,
            names=names,
            labels=[classes[int(i)] for i in labels] if labels is not None else None,
            json_path=out_dir / "scores.json",
            csv_path=out_dir / "scores.csv",
            extra={
                "id": generation_id,
                "run_id": run_id,
                "checkpoint_step": step,
                "weight": request["weight"],
                "search_steps": request["search_steps"],
                "higher_is_more_anomalous": True,
            },
        )
    except Exception as error:  # every failure ends the job; none stops the worker
        log.warning("score %s failed", generation_id, exc_info=True)
        if not finish(generation_id, status="failed", error=readable(error)):
            _discard(settings, run_id, out_dir)
        return
    relative = (out_dir / "scores.json").relative_to(settings.data_dir).as_posix()
    if not finish(
        generation_id, status="succeeded", result_path=relative, media_type="application/json", request=request
    ):
        _discard(settings, run_id, out_dir)
        return
    log.info("score %s: %d images in %.3f s", generation_id, len(x), time.perf_counter() - started)


# Jobs whose worker died.

LOST_CHECK_SECONDS = 60.0
# A queued job younger than this may still be on its way to the broker.
QUEUED_GRACE_SECONDS = 5.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_lost_jobs() -> list[str]:
    """Fail running jobs whose worker process on this host is gone, or that outlived the hard time limit."""
    host = socket.gethostname()
    overdue = utcnow().timestamp() - (SOFT_TIME_LIMIT + 120)
    lost = []
    with get_sessionmaker()() as session:
        running = session.execute(
            select(Generation.id, Generation.worker, Generation.started_at).where(Generation.status == "running")
        ).all()
        for job_id, worker, started_at in running:
            name, _, pid = (worker or "").rpartition(":")
            dead = name == host and pid.isdigit() and not _pid_alive(int(pid))
            if dead or (started_at is not None and started_at.timestamp() < overdue):
                lost.append(job_id)
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
        session.commit()
    if lost:
        log.warning("failed %d job(s) whose worker stopped: %s", len(lost), ", ".join(lost))
    resend_lost_messages()
    return lost


def resend_lost_messages() -> list[str]:
    """Send again queued jobs whose broker message is gone (Redis restarted without persistence, say).

    Only jobs with no message waiting and none delivered-but-unacknowledged are sent, so a job in hand is
    never sent twice.
    """
    from worker.reconcile import run_ids_on_broker

    settings = get_settings()
    on_broker = run_ids_on_broker(settings, queue=settings.generate_queue)
    if on_broker is None:
        return []
    known = on_broker[0] | on_broker[1]
    grace = utcnow().timestamp() - QUEUED_GRACE_SECONDS
    with get_sessionmaker()() as session:
        queued = session.execute(
            select(Generation.id, Generation.kind, Generation.created_at).where(Generation.status == "queued")
        ).all()
    resend = [(job_id, kind) for job_id, kind, created in queued if job_id not in known and created.timestamp() < grace]
    for job_id, kind in resend:
        app.send_task(f"ganforge.{kind}", args=[job_id], queue=settings.generate_queue)
    if resend:
        log.warning("sent %d queued job(s) again: their broker message was gone", len(resend))
    return [job_id for job_id, _ in resend]


@worker_ready.connect
def _watch_lost_jobs(sender: object = None, **_kwargs: object) -> None:
    """The generate worker fails lost jobs at start and then every minute."""
    queues = {q.name for q in app.amqp.queues.consume_from.values()} if app.amqp.queues.consume_from else set()
    if get_settings().generate_queue not in queues:
        return

    def loop() -> None:
        while True:
            try:
                fail_lost_jobs()
            except Exception as exc:  # the database is away: try again next time
                log.warning("looking for lost generation jobs failed: %s", exc)
            time.sleep(min(LOST_CHECK_SECONDS, get_settings().reconcile_interval_seconds))

    threading.Thread(target=loop, name="lost-generation-jobs", daemon=True).start()
