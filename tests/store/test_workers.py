"""The worker registry and routing by hardware in SQL (SQLite): live and lost workers, and the queue a run's
placement and world size pick, or the 422 sentence naming what is available."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine
from store.models import Base, Worker, utcnow
from store.workers import (
    PlacementError,
    heartbeat_worker,
    is_live,
    list_workers,
    register_worker,
    remove_worker,
    route_run,
    set_current_job,
)

LOST_AFTER = timedelta(seconds=30)
CPU = [{"kind": "cpu", "name": "cpu", "memory_gb": 8.0, "cores": 4}]


def gpus(n: int, memory_gb: float) -> list[dict[str, Any]]:
    return [{"kind": "cuda", "name": "NVIDIA A100-SXM4-80GB", "memory_gb": memory_gb}] * n


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    Base.metadata.create_all(engine)
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        yield session
    engine.dispose()


def add(session: Session, worker_id: str, queues: list[str], devices: list[dict[str, Any]], slots: int) -> Worker:
    return register_worker(
        session=session,
        worker_id=worker_id,
        host="h",
        pid=1,
        devices=devices,
        slots=slots,
        queues=queues,
        version="0.1.0",
    )


def route(session: Session, placement: dict[str, Any] | None, world_size: int = 1) -> str:
    return route_run(
        session=session,
        placement=placement,
        world_size=world_size,
        default_queue="train",
        generate_queue="generate",
        lost_after=LOST_AFTER,
    )


def test_a_worker_registers_heartbeats_takes_a_job_and_leaves(session: Session) -> None:
    worker = add(session, "train-1@h", ["train"], CPU, 4)
    set_current_job(session=session, worker_id=worker.id, job_id="run_0123456789abcdef")
    session.commit()
    session.expire_all()
    (listed,) = list_workers(session=session)
    assert (listed.current_job, listed.queues, listed.slots) == ("run_0123456789abcdef", ["train"], 4)
    assert is_live(listed, lost_after=LOST_AFTER)
    assert not is_live(listed, lost_after=LOST_AFTER, now=utcnow() + 2 * LOST_AFTER)
    assert heartbeat_worker(session=session, worker_id=worker.id)
    remove_worker(session=session, worker_id=worker.id)
    session.commit()
    assert list_workers(session=session) == []
    assert not heartbeat_worker(session=session, worker_id=worker.id)  # gone: the worker registers again


def test_placement_picks_a_queue_of_a_live_worker_that_fits(session: Session) -> None:
    add(session, "cpu@h", ["train", "generate"], CPU, 4)
    add(session, "small@h", ["gpu-t4"], gpus(1, 16.0), 1)
    add(session, "big@h", ["gpu-a100"], gpus(8, 80.0), 8)
    lost = add(session, "lost@h", ["gpu-h200"], gpus(8, 141.0), 8)
    lost.heartbeat_at = utcnow() - 2 * LOST_AFTER
    session.commit()

    assert route(session, None) == "train"
    assert route(session, {"queue": "gpu-a100"}) == "gpu-a100"
    assert route(session, {"queue": "nobody-serves-it"}) == "nobody-serves-it"  # waits for its workers to come
    assert route(session, {"min_gpu_memory_gb": 12}) == "gpu-t4"  # the smallest that fits
    assert route(session, {"min_gpu_memory_gb": 40}) == "gpu-a100"
    assert route(session, {"min_gpu_memory_gb": 12}, world_size=4) == "gpu-a100"
    assert route(session, None, world_size=4) == "train"  # a CPU worker's slots are its cores
    with pytest.raises(PlacementError, match=r"^placement.min_gpu_memory_gb: .* the largest available is 80 GB$"):
        route(session, {"min_gpu_memory_gb": 100})  # the lost H200 box does not count
    with pytest.raises(PlacementError, match=r"^train.world_size: 16 processes .* the largest available has 8$"):
        route(session, {"min_gpu_memory_gb": 40}, world_size=16)
    with pytest.raises(PlacementError, match=r"^train.world_size: 5 .* on queue train .* the largest available has 4$"):
        route(session, None, world_size=5)
    with pytest.raises(PlacementError, match=r"on queue gpu-t4 .* the largest available has 1$"):
        route(session, {"queue": "gpu-t4"}, world_size=2)
    with pytest.raises(PlacementError, match=r"^placement.min_gpu_memory_gb: .* on queue train .* 0 GB$"):
        route(session, {"queue": "train", "min_gpu_memory_gb": 1})
