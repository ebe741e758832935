"""A training run's thread count: the setting, or the host's cores shared by its live training workers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine
from store.models import Base, Worker, utcnow
from store.workers import register_worker
from worker.threads import threads_for, training_workers_on

LOST_AFTER = timedelta(seconds=30)
CPU = [{"kind": "cpu", "name": "cpu", "memory_gb": 8.0, "cores": 8}]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    Base.metadata.create_all(engine)
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        yield session
    engine.dispose()


def test_training_workers_on_a_host_are_its_live_workers_of_a_training_queue(session: Session) -> None:
    for worker_id, host, queues in [
        ("a", "box", ["train"]),
        ("b", "box", ["gpu-a100", "generate"]),  # trains: it serves a queue runs are placed on
        ("c", "box", ["generate"]),  # samples only
        ("d", "other", ["train"]),
        ("e", "box", ["train"]),  # lost below
    ]:
        register_worker(
            session=session, worker_id=worker_id, host=host, pid=1, devices=CPU, slots=8, queues=queues, version="0"
        )
    session.execute(update(Worker).where(Worker.id == "e").values(heartbeat_at=utcnow() - 2 * LOST_AFTER))
    session.commit()
    count = training_workers_on(session=session, host="box", generate_queue="generate", lost_after=LOST_AFTER)
    assert count == 2
    assert threads_for(setting=None, cores=8, training_workers=count) == 4


def test_the_setting_wins_and_every_worker_keeps_a_thread() -> None:
    assert threads_for(setting=3, cores=2, training_workers=2) == 3
    assert threads_for(setting=None, cores=2, training_workers=2) == 1
    assert threads_for(setting=None, cores=2, training_workers=5) == 1
    assert threads_for(setting=None, cores=6, training_workers=0) == 6
