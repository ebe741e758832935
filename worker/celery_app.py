"""The Celery application, set for long GPU jobs: late acks, one message at a time, JSON only."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from store.settings import get_settings

settings = get_settings()

# Redis re-delivers a message not acknowledged within the visibility timeout. Training holds its message for
# the whole run, so the timeout is long; a worker that dies is noticed sooner through its heartbeat in SQL,
# and the reconciler hands the run on. It is set the same for the broker and any result backend.
VISIBILITY_TIMEOUT = 6 * 3600

app = Celery("ganforge", broker=settings.broker_url, include=["worker.tasks", "worker.generations"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=False,  # the reconciler, not a re-delivery loop, hands on a lost run
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    task_default_queue=settings.train_queue,
    task_routes={"ganforge.train_run": {"queue": settings.train_queue}},
    worker_hijack_root_logger=False,
    enable_utc=True,
)


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
def _start_reconciler(sender: object = None, **_kwargs: object) -> None:
    """Training workers look for lost runs at start and then periodically (see worker/reconcile.py)."""
    from worker.reconcile import start_reconciler

    queues = {q.name for q in app.amqp.queues.consume_from.values()} if app.amqp.queues.consume_from else set()
    if settings.train_queue in queues:
        _training_worker.set()
        start_reconciler(settings.reconcile_interval_seconds)


_training_worker = threading.Event()


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
