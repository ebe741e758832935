"""The reconciler's two halves: what it reads on the real broker, and what it decides in SQL (the job model of
store/jobs.py on SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ganforge.services import start_redis, stop
from store.db import make_engine
from store.jobs import claim_job, create_job, fail_lost_jobs, find_jobs_to_resend, finish_job
from store.models import Base, Generation, Run, User, utcnow
from store.queue import get_app
from store.runs import acquire_lease, create_run, find_lost_runs, finish_run, gave_up_error
from store.settings import get_settings
from tests.conftest import free_port
from worker.reconcile import process_exists


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The settings and the Celery app pointed at a Redis server of this test's own: the session's Redis db has
    the running services' workers on it, which would take the test's messages."""
    port = free_port()
    server = start_redis(directory=tmp_path / "redis", port=port, appendonly=False)
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("GANFORGE_BROKER_URL", url)
    get_settings.cache_clear()
    get_app.cache_clear()
    try:
        yield url
    finally:
        get_settings.cache_clear()
        get_app.cache_clear()
        stop(server)


def test_a_sent_message_is_read_back_waiting_in_its_queue(broker: str) -> None:
    from store.queue import enqueue_job, enqueue_run
    from worker.reconcile import ids_on_broker

    settings = get_settings()
    assert enqueue_run("run_0123456789abcdef")
    assert enqueue_job("gen_0123456789abcdef", "generate")
    try:
        # Checked by membership: a Redis server may hold messages of its own in `unacked`.
        runs_waiting, runs_unacked = ids_on_broker(settings.train_queue)
        jobs_waiting, jobs_unacked = ids_on_broker(settings.generate_queue)
        assert "run_0123456789abcdef" in runs_waiting and "run_0123456789abcdef" not in runs_unacked
        assert "gen_0123456789abcdef" in jobs_waiting and "gen_0123456789abcdef" not in jobs_unacked
        assert "gen_0123456789abcdef" not in runs_waiting
    finally:
        with get_app().connection_for_write() as conn:
            conn.default_channel.client.delete(settings.train_queue, settings.generate_queue)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    Base.metadata.create_all(engine)
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        session.add(User(id=1, name="u", token_hash="0" * 64))
        session.commit()
        yield session
    engine.dispose()


def _run(session: Session) -> Run:
    return create_run(session=session, owner_id=1, config={"train": {"steps": 10}}, name="r", idempotency_key=None)


def test_a_job_is_claimed_once_and_finished_once(session: Session) -> None:
    run = _run(session)
    job = create_job(session=session, run_id=run.id, owner_id=1, kind="generate", request={"n": 1})
    session.commit()
    assert claim_job(session=session, job_id=job.id, kind="score", worker="h:1") is None  # the other kind
    claimed = claim_job(session=session, job_id=job.id, kind="generate", worker="h:1")
    assert claimed is not None and (claimed.status, claimed.worker) == ("running", "h:1")
    assert finish_job(session=session, job_id=job.id, status="succeeded", result_path="x/result.png")
    assert not finish_job(session=session, job_id=job.id, status="failed", error="late")  # final already
    assert claim_job(session=session, job_id=job.id, kind="generate", worker="h:2") is None  # a re-delivery
    session.commit()
    assert session.get(Generation, job.id, populate_existing=True).status == "succeeded"  # type: ignore[union-attr]


def test_lost_jobs_fail_and_unknown_queued_jobs_are_sent_again(session: Session) -> None:
    run = _run(session)
    dead, live, queued = (
        create_job(session=session, run_id=run.id, owner_id=1, kind=kind, request={}) for kind in ("generate",) * 3
    )
    for job, worker in ((dead, "h:dead"), (live, "h:live")):
        claim_job(session=session, job_id=job.id, kind="generate", worker=worker)
    session.commit()
    lost = fail_lost_jobs(
        session=session, worker_alive=lambda worker: worker != "h:dead", started_before=utcnow() - timedelta(hours=1)
    )
    assert lost == [dead.id]
    later = utcnow() + timedelta(seconds=1)
    assert find_jobs_to_resend(session=session, known=set(), created_before=later) == [(queued.id, "generate")]
    assert find_jobs_to_resend(session=session, known={queued.id}, created_before=later) == []


def test_an_exited_process_not_yet_reaped_counts_as_gone() -> None:
    """A killed worker can stay a zombie until its new parent reaps it; its jobs must not wait for that."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_exists(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped: a zombie
        os.kill(child.pid, 0)  # the signal check alone still finds it
        assert not process_exists(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_exists(child.pid)
    assert process_exists(os.getpid())


def test_a_run_whose_worker_is_lost_every_time_fails_with_one_sentence_from_either_side(session: Session) -> None:
    """The reconciler gives up on a stale run at max_attempts; a worker delivered it once more gives up too, and
    takes back the attempt its lease counted: both leave the same error and attempt count."""
    stale = timedelta(seconds=-1)  # every heartbeat is stale at once
    by_reconciler, by_worker = _run(session), _run(session)
    for n in (1, 2):
        assert acquire_lease(session=session, run_id=by_reconciler.id, worker=f"h:{n}", stale_after=stale)
    session.commit()
    find_lost_runs(session=session, on_broker=None, stale_after=stale, queued_grace=timedelta(0), max_attempts=2)
    for n in (1, 2):
        assert acquire_lease(session=session, run_id=by_worker.id, worker=f"h:{n}", stale_after=stale)
    delivered = acquire_lease(session=session, run_id=by_worker.id, worker="h:3", stale_after=stale)
    assert delivered is not None and delivered.attempts == 3
    assert finish_run(
        session=session, run_id=by_worker.id, worker="h:3", status="failed", error=gave_up_error(2), attempted=False
    )
    session.commit()
    for run in (by_reconciler, by_worker):
        row = session.get(Run, run.id, populate_existing=True)
        assert row is not None and (row.status, row.attempts) == ("failed", 2)
        assert row.error is not None and row.error.startswith(gave_up_error(2).split(" (")[0])
    assert "(last: h:2; " in (session.get(Run, by_reconciler.id).error or "")  # type: ignore[union-attr]


def test_a_queued_run_missing_from_the_broker_is_sent_again(session: Session) -> None:
    run = _run(session)
    session.commit()

    def lost(on_broker: tuple[set[str], set[str]] | None) -> list[str]:
        return find_lost_runs(
            session=session,
            on_broker=on_broker,
            stale_after=timedelta(seconds=60),
            queued_grace=timedelta(0),
            max_attempts=3,
        )

    assert lost((set(), set())) == [run.id]
    assert lost(({run.id}, set())) == []  # waiting in the queue
    assert lost((set(), {run.id})) == []  # delivered, not yet acknowledged
    assert lost(None) == []  # the broker could not be read: nothing is sent blindly


def test_a_lost_placed_run_is_sent_again_to_its_own_queue(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciler's resend honours the run's placement: it goes to the queue the run was routed to."""
    from store.db import get_engine, get_sessionmaker
    from worker.reconcile import ids_on_broker, reconcile_runs

    monkeypatch.setenv("GANFORGE_DATABASE_URL", f"sqlite:///{tmp_path / 'reconcile.db'}")
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    try:
        Base.metadata.create_all(get_engine())
        with get_sessionmaker()() as session:
            session.add(User(id=1, name="u", token_hash="0" * 64))
            session.flush()
            run = create_run(
                session=session,
                owner_id=1,
                config={"train": {"steps": 10}},
                name="r",
                idempotency_key=None,
                queue="gpu-x",
            )
            run.status, run.worker, run.heartbeat_at, run.attempts = "running", "h:1", utcnow() - timedelta(hours=1), 1
            session.commit()
        assert reconcile_runs(get_settings()) == [run.id]
        placed, train = ids_on_broker("gpu-x"), ids_on_broker(get_settings().train_queue)
        assert placed is not None and run.id in placed[0]
        assert train is not None and run.id not in train[0]
        assert reconcile_runs(get_settings()) == []  # already waiting in its queue: not sent twice
    finally:
        get_engine().dispose()
        get_settings.cache_clear()
        get_engine.cache_clear()
        get_sessionmaker.cache_clear()
