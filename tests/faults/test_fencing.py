"""Fenced workers: a worker paused past its heartbeat (SIGSTOP: a long GC, a network split) whose run another
worker took over writes nothing when it comes back: no sample grid, no checkpoint, no event, no status.

On PostgreSQL, the database of a fleet: the pause may land anywhere, inside a transaction that holds the run's row
too (the server ends that transaction, store/db.py: lease_sessionmaker). On SQLite a writer paused inside a
transaction holds the whole database's write lock until it resumes, and no takeover can be written meanwhile."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Service
from tests.faults.conftest import (
    FAULT_ENV,
    OwnRedis,
    checkpoint_steps,
    fault_database,
    run_events,
    run_row,
    wait_until,
)
from tests.utils.runs import wait_for_status

RUN = {"dataset": "ring8", "train": {"steps": 600}, "schedule": {"sample_every": 40, "checkpoint_every": 100}}


@pytest.fixture(scope="module")
def fenced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("fencing")
    broker = OwnRedis(workdir / "redis")
    database_url, drop = fault_database()
    service = Service(database_url=database_url, broker_url=broker.url, workdir=workdir, extra_env=FAULT_ENV)
    service.database_url = database_url  # type: ignore[attr-defined]  # read by run_row
    try:
        service.start_api()
        yield service
    finally:
        service.stop()
        broker.stop()
        drop()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def test_a_paused_worker_taken_over_writes_nothing_when_it_comes_back(fenced: Service) -> None:
    service = fenced
    service.start_worker("train", name="a")
    service.start_worker("train", name="b")  # either takes the run; the other, already up, takes it over
    with service.client() as client:
        run_id = client.post("/runs", json=RUN).json()["id"]
        wait_until(lambda: checkpoint_steps(service, run_id), what="a first checkpoint", every=0.05)
        holder = run_row(service, run_id)["worker"]
        paused = int(holder.rpartition(":")[2])  # the pool child that trains it
        os.kill(paused, signal.SIGSTOP)
        try:
            taken = wait_until(
                lambda: (row := run_row(service, run_id))["worker"] not in (None, holder) and row, what="a takeover"
            )
            assert taken["lease_epoch"] == 2
            done = wait_for_status(client, run_id, ("succeeded", "failed"), timeout=240)
            assert done["status"] == "succeeded", done["error"]
            run_dir = service.data_dir / "runs" / run_id
            before, events_before = snapshot(run_dir), run_events(service, run_id)
        finally:
            os.kill(paused, signal.SIGCONT)
        # The paused child wakes up mid-step, with a sample grid due within 40 steps: it must find its lease gone
        # and stop without writing. Its task then ends, and the child with it (one task per child).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(paused, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        time.sleep(2)
        assert snapshot(run_dir) == before
        assert run_events(service, run_id) == events_before
        row = run_row(service, run_id)
        assert (row["status"], row["worker"], row["lease_epoch"]) == ("succeeded", taken["worker"], 2)
    statuses = [d["status"] for k, d in events_before if k == "status"]
    assert statuses == ["queued", "running", "running", "succeeded"]
