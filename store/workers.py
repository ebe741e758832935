"""The worker registry and routing by hardware. Keyword-only; none commits.

Each worker process keeps one row (store/models.py: Worker): written at its start, its heartbeat renewed from a
thread, its current run or job set around each task, removed when it shuts down cleanly. A row whose heartbeat is
older than `lost_after` is a lost worker (killed, or its machine is gone); it stays listed, so an admin sees it,
until it has been silent for a day.

Routing: a run's `placement` (core/config.py: PlacementConfig) names the queue it goes to, or the GPU memory it
needs, which picks a queue served by a live worker with such a GPU; `train.world_size` needs a live worker of that
queue with as many slots (GPUs, or CPU cores on a CPU worker).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from store.models import Worker, utcnow

# A lost worker's row is removed after this long without a heartbeat.
FORGET_AFTER = timedelta(days=1)


class PlacementError(ValueError):
    """No live worker can take the run; the message names the field and the largest that is available."""


def register_worker(
    *,
    session: Session,
    worker_id: str,
    host: str,
    pid: int,
    devices: list[dict[str, Any]],
    slots: int,
    queues: list[str],
    version: str,
) -> Worker:
    """Insert or replace this worker's row (a restarted worker with a reused name starts afresh)."""
    now = utcnow()
    worker = session.get(Worker, worker_id)
    if worker is None:
        worker = Worker(id=worker_id)
        session.add(worker)
    worker.host, worker.pid, worker.devices, worker.slots = host, pid, devices, slots
    worker.queues, worker.version, worker.current_job = queues, version, None
    worker.started_at = worker.heartbeat_at = now
    session.flush()
    return worker


def heartbeat_worker(*, session: Session, worker_id: str) -> bool:
    """Renew the worker's heartbeat and forget workers silent for a day. False when its row is gone."""
    now = utcnow()
    result = session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Worker).where(Worker.heartbeat_at < now - FORGET_AFTER))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def set_current_job(*, session: Session, worker_id: str, job_id: str | None) -> None:
    """The run or job the worker is working on; None when it is idle."""
    session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(current_job=job_id)
        .execution_options(synchronize_session=False)
    )


def remove_worker(*, session: Session, worker_id: str) -> None:
    """A worker that shuts down cleanly leaves the registry."""
    session.execute(delete(Worker).where(Worker.id == worker_id))


def list_workers(*, session: Session) -> list[Worker]:
    return list(session.execute(select(Worker).order_by(Worker.host, Worker.id)).scalars())


def is_live(worker: Worker, *, lost_after: timedelta, now: datetime | None = None) -> bool:
    return worker.heartbeat_at >= (now or utcnow()) - lost_after


def live_workers(*, session: Session, lost_after: timedelta) -> list[Worker]:
    since = utcnow() - lost_after
    return list(session.execute(select(Worker).where(Worker.heartbeat_at >= since)).scalars())


def served_queues(*, session: Session) -> set[str]:
    """Every queue a registered worker (live or lost) consumes."""
    return {q for queues in session.execute(select(Worker.queues)).scalars() for q in queues}


def gpu_memory_gb(worker: Worker) -> float:
    """The memory of the worker's smallest GPU (a run's processes each take one); 0 without a GPU."""
    gpus = [float(d.get("memory_gb") or 0.0) for d in worker.devices if d.get("kind") == "cuda"]
    return min(gpus) if gpus else 0.0


def route_run(
    *,
    session: Session,
    placement: dict[str, Any] | None,
    world_size: int,
    default_queue: str,
    generate_queue: str,
    lost_after: timedelta,
) -> str:
    """The queue a run goes to, from its placement and world size; PlacementError when no live worker can take it.

    `{"queue": q}` sends it to q whether or not a worker serves q right now (a GPU box may be on its way), unless
    it also asks for GPU memory or several processes. `{"min_gpu_memory_gb": m}` picks the queue of a live worker
    whose every GPU has at least m GB (the fewest-slot one that fits, so that big boxes stay free for big runs).
    A world size above 1 needs a live worker of the queue with that many slots.
    """
    placement = placement or {}
    queue = placement.get("queue")
    min_memory = placement.get("min_gpu_memory_gb")
    if queue is None and min_memory is None and world_size == 1:
        return str(default_queue)
    live = [w for w in live_workers(session=session, lost_after=lost_after) if w.queues]
    candidates = [(w, q) for w in live for q in w.queues if q != generate_queue]
    if queue is not None:
        candidates = [(w, q) for w, q in candidates if q == queue]
    elif min_memory is None:
        candidates = [(w, q) for w, q in candidates if q == default_queue]
    where = (
        f"queue {queue}" if queue is not None else ("any queue" if min_memory is not None else f"queue {default_queue}")
    )
    if min_memory is not None:
        largest = max((gpu_memory_gb(w) for w, _ in candidates), default=0.0)
        if largest < float(min_memory):
            raise PlacementError(
                f"placement.min_gpu_memory_gb: no live worker on {where} has GPUs of {min_memory:g} GB; "
                f"the largest available is {largest:g} GB"
            )
        candidates = [(w, q) for w, q in candidates if gpu_memory_gb(w) >= float(min_memory)]
    if world_size > 1:
        most = max((w.slots for w, _ in candidates), default=0)
        if most < world_size:
            raise PlacementError(
                f"train.world_size: {world_size} processes need a live worker on {where} with {world_size} "
                f"devices; the largest available has {most}"
            )
        candidates = [(w, q) for w, q in candidates if w.slots >= world_size]
    if not candidates:
        return str(queue or default_queue)
    return min(candidates, key=lambda c: (c[0].slots, gpu_memory_gb(c[0]), c[1]))[1]
