"""The running_runs quota where a worker takes a run (store.quotas.defer_over_running_quota), on PostgreSQL, where
two workers' transactions interleave: a run let in because another one ended starts after that end, not at the
moment its lease was taken."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from store.db import make_engine
from store.models import Base, Run, User, utcnow
from store.quotas import defer_over_running_quota
from store.runs import acquire_lease, finish_run
from store.settings import Settings

STALE_AFTER = timedelta(minutes=5)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """One user who may train one run at a time: run_1 training on worker a, run_2 queued."""
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        user = User(name="owner", token_hash="h" * 64, quotas={"running_runs": 1})
        session.add(user)
        session.flush()
        now = utcnow()
        first = Run(id="run_1", owner_id=user.id, config={}, status="running", worker="a:1")
        first.started_at = first.heartbeat_at = now
        session.add(first)
        session.add(Run(id="run_2", owner_id=user.id, config={}, status="queued"))
        session.commit()
    yield engine
    engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_run_let_in_by_another_runs_end_starts_after_that_end(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as b:
        run = acquire_lease(session=b, run_id="run_2", worker="b:1", stale_after=STALE_AFTER)
        assert run is not None and run.started_at is not None
        leased_at = run.started_at
        # Worker a ends run_1 after b's lease and before b counts its owner's running runs.
        with Session(engine) as a:
            assert finish_run(session=a, run_id="run_1", worker="a:1", status="succeeded")
            a.commit()
        assert not defer_over_running_quota(session=b, run=run, settings=Settings())
        b.commit()
    with Session(engine) as session:
        first, second = session.get(Run, "run_1"), session.get(Run, "run_2")
        assert first is not None and second is not None
        assert first.finished_at is not None and second.started_at is not None
        assert leased_at < first.finished_at <= second.started_at
        assert second.status == "running"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_run_taken_over_from_a_stale_lease_keeps_its_first_start(engine: Engine) -> None:
    with Session(engine) as session:
        finish_run(session=session, run_id="run_1", worker="a:1", status="succeeded")
        session.commit()
    with Session(engine, expire_on_commit=False) as b:
        run = acquire_lease(session=b, run_id="run_2", worker="b:1", stale_after=STALE_AFTER)
        assert run is not None and not defer_over_running_quota(session=b, run=run, settings=Settings())
        b.commit()
        first_start = run.started_at
    # Worker b went quiet; c takes the run over when its heartbeat is stale.
    with Session(engine, expire_on_commit=False) as c:
        run = acquire_lease(session=c, run_id="run_2", worker="c:1", stale_after=timedelta(0))
        assert run is not None and not defer_over_running_quota(session=c, run=run, settings=Settings())
        c.commit()
        assert run.started_at == first_start
