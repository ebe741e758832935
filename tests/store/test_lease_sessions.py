"""The sessions a worker writes under a run's lease: on PostgreSQL a transaction whose client went quiet (a paused
worker) is ended by the server, so the row it locked is free for the worker that takes the run over."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from store.db import lease_sessionmaker, make_engine
from store.models import Base, Run, User


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        user = User(name="owner", token_hash="h" * 64)
        session.add(user)
        session.flush()
        session.add(Run(id="run_1", owner_id=user.id, config={}, status="running", worker="a:1"))
        session.commit()
    yield engine
    engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_quiet_lease_transaction_is_ended_and_its_row_lock_released(engine: Engine) -> None:
    paused = lease_sessionmaker(engine, idle_timeout_s=0.3)()
    paused.execute(update(Run).where(Run.id == "run_1").values(worker="a:1", step=5))  # holds the row's lock
    time.sleep(1.0)  # the paused worker
    with Session(engine) as other, other.begin():
        other.execute(text("SET LOCAL lock_timeout = '5s'"))  # a lock still held fails the test instead of hanging it
        other.execute(update(Run).where(Run.id == "run_1").values(worker="b:2"))
    with pytest.raises(DBAPIError, match="idle-in-transaction"):
        paused.execute(select(Run.worker).where(Run.id == "run_1"))
    paused.close()
    with Session(engine) as session:
        assert session.execute(select(Run.worker, Run.step).where(Run.id == "run_1")).one() == ("b:2", 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_busy_lease_transaction_commits(engine: Engine) -> None:
    with lease_sessionmaker(engine, idle_timeout_s=0.3)() as session:
        for step in range(1, 6):
            session.execute(update(Run).where(Run.id == "run_1").values(step=step))
            time.sleep(0.1)
        session.commit()
    with Session(engine) as session:
        assert session.execute(select(Run.step).where(Run.id == "run_1")).scalar_one() == 5
