"""The training task: take the run's lease, hand the work to core/, report to SQL, end in a final state."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from celery.signals import worker_process_init
from sqlalchemy.orm import Session

from core.config import DATASET_ID_PATTERN, RunConfig
from core.train import TrainingDiverged, train  # imported before the pool forks: children start warm
from store import layout
from store.artifacts import get_storage
from store.db import get_lease_sessionmaker, get_sessionmaker
from store.errors import sentence
from store.limits import check_run_limits
from store.models import Dataset, Run
from store.queue import enqueue_run, settle_delivery
from store.quotas import defer_over_running_quota
from store.reports import add_event, write_reports
from store.runs import acquire_lease, finish_run, gave_up_error, heartbeat, release_lease
from store.settings import get_settings
from worker.artifacts import RunUploader, fetch_checkpoints, fetch_dataset
from worker.celery_app import app, worker_name

log = logging.getLogger("ganforge.worker")


def warm_up() -> None:
    """Import in the training worker's parent, before its pool forks (worker/celery_app.py calls this at
    worker_init), what a run would otherwise import in each fresh pool child (max-tasks-per-child=1): torch's
    optimizers pull in torch._dynamo on first use, the datasets need scikit-learn, every family's module is
    imported to find a run's, and the evaluations bring torchmetrics, SciPy and scikit-learn's models (2 s of a
    run on digits with evaluations, where its steps took 0.3). Nothing here touches CUDA.
    """
    import sklearn.cluster  # the clusters' k-means
    import sklearn.datasets  # noqa: F401
    import torch

    import core.metrics.paired
    import core.metrics.superres
    import core.metrics.unpaired  # noqa: F401
    from core.families import family_of
    from core.metrics import Evaluator  # noqa: F401  # torchmetrics' FID and KID, SciPy

    family_of("dcgan")  # imports every family
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


# Set in a pool child when its worker shuts down (docker stop) or cancels the task (the broker connection was
# lost): the training loop stops at its next step, writes a checkpoint, and the run goes back to the queue for
# another worker. The worker's main process forwards its SIGTERM as SIGUSR2 (see worker/celery_app.py); Celery
# cancels a task with SIGTERM to the child, which counts the same the first time while a run trains.
SHUTDOWN = threading.Event()


def _on_sigusr2(signum: int, _frame: object) -> None:
    SHUTDOWN.set()


@worker_process_init.connect
def _install_shutdown_handler(**_kwargs: object) -> None:
    signal.signal(signal.SIGUSR2, _on_sigusr2)


def _stop_on_first_sigterm() -> None:
    """While a run trains, a first SIGTERM stops it gracefully; the next one goes to the handler it replaced
    (billiard's exit, installed after worker_process_init, which is why this is done at the task's start)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        SHUTDOWN.set()

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (a thread pool): no signals here
        return


# The share of the heartbeat timeout that a worker trusts its last confirmed heartbeat for, before it confirms its
# lease again ahead of a write: the rest covers the clocks of the hosts disagreeing and the time a write takes.
LEASE_MARGIN = 0.8


class RunReporter:
    """Writes a run's progress, events and metrics to SQL about once a second and renews its lease.

    It runs on a thread of its own, so the training loop never waits on the database, and a database that
    is away for a while only delays the writes: what could not be written is kept and written on the next
    tick. `stop` is set when the run is canceled or its lease is lost; the loop checks it each step.
    """

    def __init__(
        self,
        *,
        run_id: str,
        worker: str,
        run_dir: Path,
        epoch: int | None = None,
        lease_seconds: float = 60.0,
        time_limit: float | None = None,
        interval: float = 1.0,
    ) -> None:
        self.run_id = run_id
        # The lease this worker took (store/runs.py: lease_epoch), and until when (monotonic) it is surely still
        # ours: no other worker may take it before the heartbeat we last wrote is `lease_seconds` old.
        self.epoch = epoch
        self.lease_seconds = lease_seconds
        self._lease_until = time.monotonic() + lease_seconds * LEASE_MARGIN
        # Library versions, device, precision: written by the trainer.
        self.run_info: Path | None = run_dir / "run_info.json"
        self.worker = worker
        self.interval = interval
        self.stop = threading.Event()
        self.canceled = False
        self.lost = False
        # The soft time limit: the loop stops at its next step (and checkpoints) once it has passed.
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.timed_out = False
        self._lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._progress: dict[str, Any] | None = None
        self._closing = threading.Event()
        # With object storage: the thread that copies the run's files there. An event announcing a sample grid
        # or a checkpoint waits (with the events after it) until the storage holds that file.
        self.uploader: RunUploader | None = None
        self._thread = threading.Thread(target=self._loop, name=f"reporter-{run_id}", daemon=True)
        self._thread.start()

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """Called by the trainer; only queues the event."""
        with self._lock:
            if kind == "progress":
                self._progress = data
            self._pending.append((kind, data))

    def may_write(self) -> bool:
        """Whether the run's files may be written now: the lease is ours and was confirmed recently enough that no
        other worker can have taken it. Past that (a pause: SIGSTOP, a long GC, a network split) it is confirmed
        in SQL first; a run taken over meanwhile is lost, and this worker writes nothing more."""
        if self.lost:
            return False
        if time.monotonic() < self._lease_until:
            return True
        started = time.monotonic()
        try:
            with get_lease_sessionmaker()() as session:
                ours, _cancel = heartbeat(session=session, run_id=self.run_id, worker=self.worker, epoch=self.epoch)
                session.commit()
        except Exception as exc:
            log.warning("run %s: could not confirm the lease before a write (%s)", self.run_id, exc)
            return False
        if not ours:
            self.lost = True
            self.stop.set()
            return False
        self._lease_until = started + self.lease_seconds * LEASE_MARGIN
        return True

    def should_stop(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        return self.stop.is_set() or SHUTDOWN.is_set() or self.timed_out

    def close(self, *, attempts: int = 60) -> None:
        """Stop the thread and write what is left, retrying while the database is away."""
        self._closing.set()
        self._thread.join()
        for _ in range(attempts):
            if self._flush(final=True):
                return
            time.sleep(1.0)
        log.error("run %s: gave up writing %d reports", self.run_id, len(self._pending))

    def _loop(self) -> None:
        while not self._closing.wait(self.interval):
            self._flush()

    def _flush(self, *, final: bool = False) -> bool:
        with self._lock:
            pending, self._pending = self._pending, []
            progress = self._progress
        held: list[tuple[str, dict[str, Any]]] = []
        if self.uploader is not None and not final:
            for i, (kind, data) in enumerate(pending):
                if not self.uploader.holds(kind, data):
                    pending, held = pending[:i], pending[i:]
                    break
        if self.run_info is not None and self.run_info.exists():
            try:
                pending.insert(0, ("environment", json.loads(self.run_info.read_text())))
                self.run_info = None
            except (OSError, ValueError):
                pass  # being written: next tick
        started = time.monotonic()
        try:
            with get_lease_sessionmaker()() as session:
                ours, cancel = heartbeat(
                    session=session, run_id=self.run_id, worker=self.worker, progress=progress, epoch=self.epoch
                )
                if ours:
                    write_reports(session=session, run_id=self.run_id, reports=pending)
                session.commit()
        except Exception as exc:
            log.warning("run %s: could not write progress (%s); will retry", self.run_id, exc)
            with self._lock:
                self._pending = pending + held + self._pending
            return False
        if held:
            with self._lock:
                self._pending = held + self._pending
        if not ours:
            self.lost = True
            self.stop.set()
        else:
            self._lease_until = started + self.lease_seconds * LEASE_MARGIN
        if ours and cancel:
            self.canceled = True
            self.stop.set()
        return True


def _dataset_hash(session: Session, cfg: RunConfig) -> str | None:
    """The content hash of the run's uploaded dataset; None for a built-in."""
    if not DATASET_ID_PATTERN.match(cfg.dataset):
        return None
    dataset = session.get(Dataset, cfg.dataset)
    if dataset is None:
        raise ValueError(f"dataset: dataset {cfg.dataset} was deleted")
    return dataset.content_hash


def _finish(*, run_id: str, worker: str, status: str, error: str | None = None, epoch: int | None = None) -> None:
    """Write the final state, retrying while the database is away: a run must never be left `running`."""
    for attempt in range(60):
        try:
            with get_lease_sessionmaker()() as session:
                finish_run(session=session, run_id=run_id, worker=worker, status=status, error=error, epoch=epoch)
                session.commit()
            return
        except Exception as exc:
            log.warning("run %s: could not write final status %s (%s), attempt %d", run_id, status, exc, attempt)
            time.sleep(1.0)
    log.error("run %s: gave up writing final status %s; the reconciler will take it", run_id, status)


def _remove_run_dir(run_id: str, run_dir: Path) -> None:
    """Remove the run's local folder, and log what is left of it when something could not be removed (or was
    written there meanwhile)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    if run_dir.exists():
        left = sorted(str(path.relative_to(run_dir)) for path in run_dir.rglob("*"))
        log.warning("run %s: its folder could not be removed whole: %s left", run_id, left[:20])


def _release(*, run_id: str, worker: str, queue: str, epoch: int | None = None) -> None:
    """Our worker is shutting down: put the run back in the queue, to resume from the checkpoint just written."""
    for attempt in range(10):
        try:
            with get_lease_sessionmaker()() as session:
                released = release_lease(session=session, run_id=run_id, worker=worker, epoch=epoch)
                session.commit()
            break
        except Exception as exc:
            log.warning("run %s: could not give the run back (%s), attempt %d", run_id, exc, attempt)
            time.sleep(1.0)
    else:
        log.error("run %s: could not give the run back; the reconciler takes it when its heartbeat is stale", run_id)
        return
    if released:
        log.warning("run %s: worker shutting down; the run is queued again from its last checkpoint", run_id)
        enqueue_run(run_id, queue)


@app.task(name="ganforge.train_run", acks_late=True)
def train_run(run_id: str) -> None:
    """Train one run to its end. Idempotent: a run finished, canceled, gone or live elsewhere is left alone."""
    _stop_on_first_sigterm()
    settings = get_settings()
    storage = get_storage()
    worker = worker_name()
    stale_after = timedelta(seconds=settings.heartbeat_timeout_seconds)
    with get_lease_sessionmaker()() as session:
        run = acquire_lease(session=session, run_id=run_id, worker=worker, stale_after=stale_after)
        if run is None:
            session.rollback()
            log.info("run %s: not taken (finished, canceled, gone or running elsewhere)", run_id)
            return
        if run.attempts > settings.max_attempts:
            gave_up = gave_up_error(run.attempts - 1)
            finish_run(session=session, run_id=run_id, worker=worker, status="failed", error=gave_up, attempted=False)
            session.commit()
            return
        if defer_over_running_quota(session=session, run=run, settings=settings):
            session.commit()  # queued again: its owner's other runs fill their quota; the reconciler sends it again
            log.info("run %s: its owner has running_runs runs training; back to the queue", run_id)
            return
        add_event(session=session, run_id=run_id, kind="status", data={"status": "running", "worker": worker})
        queue, epoch = run.queue, run.lease_epoch
        try:
            cfg = RunConfig.model_validate(run.config)
            check_run_limits(session=session, cfg=cfg, settings=settings, on_gpu=torch.cuda.is_available())
            content_hash = _dataset_hash(session, cfg)
        except ValueError as exc:
            finish_run(session=session, run_id=run_id, worker=worker, status="failed", error=sentence(exc))
            session.commit()
            return
        session.commit()
    # The lease holds the run from here on: its message must not come back after the broker's visibility timeout,
    # however long the run trains (a lost worker is found by its heartbeat instead).
    if train_run.request.id:
        settle_delivery(train_run.request.id)

    run_dir = layout.run_dir(settings.data_dir, run_id)
    limit = settings.train_time_limit_seconds
    # Started before any download, so that the run's heartbeat goes on while its files are fetched.
    reporter = RunReporter(
        run_id=run_id,
        worker=worker,
        run_dir=run_dir,
        epoch=epoch,
        lease_seconds=stale_after.total_seconds(),
        time_limit=limit,
    )
    uploader = None
    if settings.artifacts_are_local:
        dataset_dir = layout.dataset_dir(settings.data_dir, content_hash) if content_hash else None
    else:
        # The local folder is scratch: start from the checkpoints in the storage, whichever host wrote them, and
        # the dataset in the local cache. Fetched after the lease is committed: no transaction waits on a download.
        _remove_run_dir(run_id, run_dir)
        try:
            dataset_dir = fetch_dataset(storage, settings, content_hash) if content_hash else None
            fetch_checkpoints(storage, run_id=run_id, run_dir=run_dir)
            uploader = reporter.uploader = RunUploader(
                storage=storage, run_id=run_id, run_dir=run_dir, may_write=reporter.may_write
            )
        except Exception as exc:
            log.error("run %s: could not fetch its artifacts:\n%s", run_id, traceback.format_exc())
            fetching = "Could not fetch the run's files from the artifact storage"
            reason = sentence(exc, prefix=None if isinstance(exc, ValueError) else fetching)
            reporter.close()
            if not reporter.lost:
                _finish(run_id=run_id, worker=worker, status="failed", error=reason, epoch=epoch)
            return
    status, error = "succeeded", None
    try:
        result = train(
            cfg,
            out_dir=run_dir,
            on_event=reporter.on_event,
            should_stop=reporter.should_stop,
            dataset_dir=dataset_dir,
            may_write=reporter.may_write,
        )
        if result.status == "stopped" and reporter.timed_out and not reporter.canceled:
            status = "failed"
            error = (
                f"Stopped at the time limit ({limit:g} s, GANFORGE_TRAIN_TIME_LIMIT_SECONDS) at step "
                f"{result.step}; its last checkpoint is kept: resume it to continue"
            )
        elif result.status == "diverged":
            status, error = "failed", result.message
        elif result.status == "stopped":
            status = "canceled"
    except (ValueError, TrainingDiverged) as exc:
        status, error = "failed", sentence(exc)
    except Exception as exc:
        log.error("run %s failed:\n%s", run_id, traceback.format_exc())
        status, error = "failed", sentence(exc, prefix="Training failed")
    finally:
        # The artifacts are in the storage before the events announce them and the final status is written.
        not_stored = uploader.close() if uploader is not None else None
        reporter.close()
    if uploader is not None:
        if not_stored is None:
            _remove_run_dir(run_id, run_dir)
        elif not reporter.lost and not (status == "canceled" and SHUTDOWN.is_set()):
            log.error("run %s: artifacts not stored: %s", run_id, not_stored)
            status = "failed"
            error = (
                f"The run's artifacts could not be copied to the artifact storage ({not_stored}); "
                "resume it to continue from its last stored checkpoint"
            )

    if reporter.lost:
        # Deleted, or taken over after our heartbeat went stale: nothing of ours to finish.
        with get_sessionmaker()() as session:
            gone = session.get(Run, run_id) is None
        if gone:
            _remove_run_dir(run_id, run_dir)
            if uploader is not None:  # what we copied after the API deleted the run's artifacts
                storage.delete_prefix(layout.run_prefix(run_id))
        return
    if status == "canceled" and SHUTDOWN.is_set() and not reporter.canceled:
        _release(run_id=run_id, worker=worker, queue=queue, epoch=epoch)
        return
    _finish(run_id=run_id, worker=worker, status=status, error=error, epoch=epoch)
