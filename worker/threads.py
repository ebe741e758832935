"""How many intra-op threads a training run uses: GANFORGE_TORCH_THREADS, or by default the cores this worker may
run on divided by the training workers on its host.

Two training workers that each start one OpenMP thread per core on one box oversubscribe it: measured here, a
ring8 run at 6,000 images/s with two 2-thread workers side by side against 57,000 with one thread each. The
registry (store/workers.py) says which live workers share the host; a worker that cannot read it uses all its
cores.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from sqlalchemy.orm import Session

from store.db import get_sessionmaker
from store.workers import live_workers

log = logging.getLogger("ganforge.worker")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def training_workers_on(*, session: Session, host: str, generate_queue: str, lost_after: timedelta) -> int:
    """Live workers on `host` that consume a queue besides the generate queue."""
    workers = live_workers(session=session, lost_after=lost_after)
    return sum(1 for w in workers if w.host == host and set(w.queues) - {generate_queue})


def threads_for(*, setting: int | None, cores: int, training_workers: int) -> int:
    """The setting when there is one, else the cores shared evenly by the host's training workers."""
    if setting is not None:
        return max(1, setting)
    return max(1, cores // max(1, training_workers))


def torch_threads(*, setting: int | None, generate_queue: str, lost_after: timedelta) -> int:
    if setting is not None:
        return max(1, setting)
    try:
        with get_sessionmaker()() as session:
            peers = training_workers_on(
                session=session, host=socket.gethostname(), generate_queue=generate_queue, lost_after=lost_after
            )
    except Exception as exc:  # the database is away: train with the whole host rather than not at all
        log.warning("could not count this host's training workers (%s); using every core", exc)
        peers = 1
    return threads_for(setting=None, cores=available_cores(), training_workers=peers)
