"""A training run's thread count: the setting, or the host's cores shared by its live training workers, for torch
and for the BLAS libraries alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine
from store.models import Base, Worker, utcnow
from store.workers import register_worker
from tests.conftest import ROOT
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


HOOK = """
import json, sys, types
import numpy, scipy.linalg  # NumPy's and SciPy's OpenBLAS, loaded before the run as a warm worker has them
from core.device import blas_threads
before = blas_threads()
from worker.celery_app import _set_torch_threads
_set_torch_threads(sender=types.SimpleNamespace(name=sys.argv[1]))
import torch
print(json.dumps({"before": before, "blas": blas_threads(), "torch": torch.get_num_threads()}))
"""


@pytest.mark.parametrize("task", ["ganforge.train_run", "ganforge.generate"])
def test_a_training_run_bounds_blas_threads_as_torch_threads(task: str, tmp_path: Path) -> None:
    """OMP_NUM_THREADS=2 would give NumPy's and SciPy's OpenBLAS two threads each; a run's pool child takes
    GANFORGE_TORCH_THREADS for both pools (another task leaves the process as it is)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "2",
        "GANFORGE_TORCH_THREADS": "1",
        "GANFORGE_DATA_DIR": str(tmp_path),
        "GANFORGE_DATABASE_URL": f"sqlite:///{tmp_path / 'ganforge.db'}",
    }
    env.pop("OPENBLAS_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", HOOK, task], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    threads = json.loads(out.strip().splitlines()[-1])
    assert threads["before"] == 2
    if task == "ganforge.train_run":
        assert (threads["blas"], threads["torch"]) == (1, 1)
    else:
        assert threads["blas"] == 2
