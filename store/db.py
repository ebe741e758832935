"""The database engine and sessions."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from store.settings import get_settings


def _compact_json(value: Any) -> str:
    """A JSON column's text, without the spaces of json.dumps's default separators: the polled reads pass a run's
    stored JSON into their answers as it is (api/polled.py). A NaN or an infinity, which JSON cannot spell and
    PostgreSQL refuses in Python's spelling, is stored as null, as the API answers it."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the rare case pays for a second pass
        return json.dumps(_finite(value), separators=(",", ":"))


def _finite(value: Any) -> Any:
    """The value with its non-finite floats replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def make_engine(url: str, *, pool_size: int = 20, max_overflow: int = 10) -> Engine:
    """An engine with the settings each backend needs to be shared by the API and the worker. The pool opens
    connections as they are needed and keeps `pool_size` of them: connections beyond it (the overflow) are closed
    when given back, which under load is a connection opened and closed per request."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=max_overflow,
            json_serializer=_compact_json,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, json_serializer=_compact_json
    )


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def lease_sessionmaker(engine: Engine, *, idle_timeout_s: float) -> sessionmaker[Session]:
    """Sessions for the writes a worker makes under a run's lease. On PostgreSQL the server ends each of their
    transactions whose client goes quiet inside it for `idle_timeout_s` (idle_in_transaction_session_timeout, set for
    that transaction alone): a worker paused mid-transaction (SIGSTOP, a long GC, a network split) would otherwise
    hold the run's row lock, and the worker taking the run over would wait on it for as long as the pause lasts.
    SQLite has no such bound: there a writer paused inside a transaction holds the database's write lock until it
    resumes, and every other writer waits."""
    maker = sessionmaker(bind=engine, expire_on_commit=False)
    if engine.dialect.name == "postgresql":
        statement = f"SET LOCAL idle_in_transaction_session_timeout = {max(1, round(idle_timeout_s * 1000))}"

        @event.listens_for(maker, "after_begin")
        def _bound_idle(_session: Session, _transaction: Any, connection: Any) -> None:
            connection.exec_driver_sql(statement)

    return maker


@lru_cache
def get_lease_sessionmaker() -> sessionmaker[Session]:
    """The worker's lease sessions, bounded by the heartbeat timeout: past it the lease is another worker's to
    take anyway."""
    return lease_sessionmaker(get_engine(), idle_timeout_s=get_settings().heartbeat_timeout_seconds)
