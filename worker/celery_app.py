"""The worker process: the shared Celery application (store/queue.py) with the task modules added, and what a
worker does at start (warm up, reconcile) and at shutdown (hand runs back)."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import socket
import sys
import threading
from datetime import timedelta

from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from store.queue import get_app
from store.settings import get_settings

settings = get_settings()

app = get_app()
app.conf.update(include=["worker.tasks", "worker.generations", "worker.translations", "worker.projections"])


def worker_name() -> str:
    """This process as a run's or a job's `worker`: host:pid, so that the reconciler can tell whether it lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def consumed_queues() -> set[str]:
    """The queues this worker consumes (known once the worker is set up: from worker_init on)."""
    consume_from = app.amqp.queues.consume_from
    return {q.name for q in consume_from.values()} if consume_from else set()


def trains(queues: set[str]) -> bool:
    """A worker trains runs when it consumes any queue besides the generate queue: the train queue, or a queue that
    runs are placed on (gpu-a100, ...)."""
    return bool(queues - {settings.generate_queue})


_training_worker = threading.Event()


@worker_init.connect
def _set_registry_id(sender: object = None, **_kwargs: object) -> None:
    """The worker's id in the registry is its Celery node name; its pool children inherit it."""
    from worker import registry

    registry.WORKER_ID = str(getattr(sender, "hostname", None) or worker_name())


@worker_init.connect
def _warm_up_training_worker(**_kwargs: object) -> None:
    """A training worker imports, before its pool forks, what each fresh pool child would otherwise import on its
    first run (max-tasks-per-child=1, see worker/tasks.py: warm_up)."""
    if trains(consumed_queues()):
        _training_worker.set()
        from worker.tasks import warm_up

        warm_up()
    # What is imported now lives as long as the worker. Out of the garbage collector's reach, it is not walked by
    # the full collection Celery's pool runs before each fork (a pool child a run: 0.6 s a fork with torch loaded),
    # nor written to by collections in the children, whose pages then stay shared with the parent's.
    gc.freeze()


@worker_process_init.connect
def _die_with_parent(**_kwargs: object) -> None:
    """A pool child dies with its worker: a killed worker must not leave an orphan training a run."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


@worker_process_init.connect
def _fresh_database_connections(**_kwargs: object) -> None:
    """A pool child must not use the connections it inherited from the worker's main process (whose reconciler
    keeps using them): two processes on one socket corrupt the protocol. Drop them without closing them."""
    from store.db import get_engine

    get_engine().dispose(close=False)


@worker_ready.connect
def _start_reconciler(**_kwargs: object) -> None:
    """Each worker reconciles what its queues carry, at start and then periodically (see worker/reconcile.py)."""
    from worker.reconcile import start_reconciler

    queues = consumed_queues()
    runs, jobs = trains(queues), settings.generate_queue in queues
    if runs or jobs:
        start_reconciler(runs=runs, jobs=jobs, interval=settings.reconcile_interval_seconds)


@worker_ready.connect
def _join_registry(**_kwargs: object) -> None:
    """Register this worker (host, devices, queues) and keep its heartbeat in SQL (GET /workers)."""
    from worker import registry

    if registry.WORKER_ID is not None:
        registry.start_registry(worker_id=registry.WORKER_ID, queues=sorted(consumed_queues()))


@worker_shutdown.connect
def _leave_registry(**_kwargs: object) -> None:
    """A clean shutdown removes the worker's row; a killed worker's stays and is shown as lost."""
    from worker import registry

    if registry.WORKER_ID is not None:
        registry.leave_registry(registry.WORKER_ID)


@task_prerun.connect
def _mark_current_job(args: tuple[object, ...] | None = None, **_kwargs: object) -> None:
    """The run or job id a task was given is the worker's current job while the task runs."""
    from worker import registry

    if args:
        registry.mark_current_job(str(args[0]))


@task_prerun.connect
def _set_torch_threads(sender: object = None, **_kwargs: object) -> None:
    """A training run's intra-op threads: GANFORGE_TORCH_THREADS, or this host's cores shared by its training
    workers (worker/threads.py), set in the pool child before the run starts. The same count bounds the BLAS and
    OpenMP pools of NumPy and scikit-learn (k-means of the clusters, the tables' mixtures, the evaluators'
    read-outs), which oversubscribe a shared host as torch's would: a logistic regression of the unpaired
    evaluator took 4.4 s with two OpenBLAS threads beside another busy process, 0.17 s with one."""
    if getattr(sender, "name", None) != "ganforge.train_run":
        return
    import scipy.linalg  # noqa: F401  # loads SciPy's OpenBLAS (scikit-learn's), so that the limit below reaches it
    import torch
    from threadpoolctl import threadpool_limits

    from worker.threads import torch_threads

    lost_after = timedelta(seconds=settings.worker_heartbeat_interval_seconds * settings.worker_lost_after_intervals)
    count = torch_threads(setting=settings.torch_threads, generate_queue=settings.generate_queue, lost_after=lost_after)
    torch.set_num_threads(count)
    threadpool_limits(limits=count)  # for the rest of this pool child's life (one run per child)


@task_postrun.connect
def _clear_current_job(**_kwargs: object) -> None:
    from worker import registry

    registry.mark_current_job(None)


@worker_shutting_down.connect
def _stop_training_children(**_kwargs: object) -> None:
    """Warm shutdown (SIGTERM, docker stop) of a training worker: ask its pool children to stop at their next
    step with a checkpoint and give their runs back to the queue (worker/tasks.py), instead of waiting for
    runs that may take days."""
    import billiard

    if not _training_worker.is_set():
        return
    for child in billiard.active_children():
        if child.pid:
            os.kill(child.pid, signal.SIGUSR2)
