"""A run's reports on both databases: a NaN or an infinity reaches neither the series nor the latest values, and
every JSON column stores it as null (PostgreSQL refuses Python's spelling of it, SQLite's metric rows a NULL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.schemas import RunPublic
from store.db import make_engine
from store.models import Base, Event, Metric, Run, User
from store.reports import write_reports


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The test's database (SQLite, then PostgreSQL) with its tables."""
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _add_run(engine: Engine, config: dict[str, Any]) -> None:
    with Session(engine) as session:
        user = User(name="owner", token_hash="h" * 64)
        session.add(user)
        session.flush()
        session.add(Run(id="run_1", owner_id=user.id, config=config))
        session.commit()


def test_non_finite_values_are_left_out_of_the_series_and_the_latest_values(engine: Engine) -> None:
    _add_run(engine, {"train": {"lr_g": float("nan")}})
    with Session(engine) as session:
        write_reports(
            session=session,
            run_id="run_1",
            reports=[
                ("progress", {"step": 10, "losses": {"loss_d": float("nan"), "loss_g": 1.5}}),
                ("stats", {"step": 10, "values": {"grad_norm": float("inf"), "d_real": 0.25}}),
                ("metric", {"step": 10, "name": "psnr", "value": float("inf")}),
                ("metric", {"step": 10, "name": "fid", "value": 0.5}),
            ],
        )
        session.commit()
    with Session(engine) as session:
        run = session.get(Run, "run_1")
        assert run is not None
        assert run.latest_metrics == {"loss_g": 1.5, "fid": 0.5}
        assert run.config == {"train": {"lr_g": None}}  # any JSON column: null
        assert json.loads(RunPublic.from_run(run).model_dump_json())["latest_metrics"] == run.latest_metrics
        series = session.execute(select(Metric.name, Metric.value).order_by(Metric.name)).all()
        assert [tuple(row) for row in series] == [("d_real", 0.25), ("fid", 0.5)]
        metric_events = session.scalars(select(Event.data).where(Event.kind == "metric")).all()
        assert {"name": "psnr", "step": 10, "value": None} in metric_events
        assert {e["name"] for e in metric_events} == {"psnr", "fid"}


def test_json_columns_are_stored_compact(engine: Engine) -> None:
    """The polled reads pass a run's stored JSON into their answers as it is (api/polled.py)."""
    _add_run(engine, {"a": [1, 2.5], "b": {"c": "d"}})
    with engine.connect() as connection:
        text = connection.exec_driver_sql("SELECT CAST(config AS TEXT) FROM runs").scalar_one()
    assert text == '{"a":[1,2.5],"b":{"c":"d"}}'
