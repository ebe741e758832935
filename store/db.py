"""The database engine and sessions."""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
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


log = logging.getLogger("ganforge.db")

# How long a fork waits for this process's SQLite transactions to end before it goes ahead anyway.
FORK_WAIT_SECONDS = 30.0


class SQLiteForkGate:
    """Keeps os.fork out of this process's SQLite transactions. SQLite records the locks a process holds in that
    process's memory as well as in the file: a child forked while a thread of its parent holds the write lock
    inherits the record but not the lock, and its own connections then wait out their busy timeout and fail with
    "database is locked" on every write, for the child's whole life. A worker forks a pool child per run while its
    heartbeat and reconciler threads write. So a fork waits until no other thread's connection is inside a
    transaction, and no transaction begins until the fork is done (in the parent; the child starts with none)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: dict[int, int] = {}  # id of each DBAPI connection inside a transaction: the thread it began in
        self._forking = False

    def begin(self, dbapi_connection: Any) -> None:
        with self._cond:
            while self._forking and self._open.get(id(dbapi_connection)) is None:
                self._cond.wait()
            self._open[id(dbapi_connection)] = threading.get_ident()

    def end(self, dbapi_connection: Any) -> None:
        """After SQLite has committed or rolled back, or the connection went back to the pool."""
        with self._cond:
            if self._open.pop(id(dbapi_connection), None) is not None:
                self._cond.notify_all()

    def _busy(self) -> bool:
        me = threading.get_ident()  # the forking thread's own transactions could not end while it waits
        return any(owner != me for owner in self._open.values())

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
            deadline = time.monotonic() + FORK_WAIT_SECONDS
            while self._busy() and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._busy():
                log.warning("forking with %d SQLite transaction(s) of other threads still open", len(self._open))

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]  # the parent's threads and their transactions are not in the child

    def watch(self, engine: Engine) -> None:
        """Follow `engine`'s transactions from their begin; their end comes from GatedSQLiteConnection."""

        def begin(conn: Any) -> None:
            self.begin(conn.connection.dbapi_connection)

        def checkin(dbapi_connection: Any, _record: Any) -> None:
            self.end(dbapi_connection)

        event.listen(engine, "begin", begin)
        event.listen(engine, "checkin", checkin)


SQLITE_FORK_GATE = SQLiteForkGate()


class GatedSQLiteConnection(sqlite3.Connection):
    """sqlite3's connection, telling SQLITE_FORK_GATE when a commit or a rollback has finished (SQLAlchemy's own
    events come before them)."""

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            SQLITE_FORK_GATE.end(self)

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            SQLITE_FORK_GATE.end(self)


os.register_at_fork(
    before=SQLITE_FORK_GATE.before_fork,
    after_in_parent=SQLITE_FORK_GATE.after_fork_in_parent,
    after_in_child=SQLITE_FORK_GATE.after_fork_in_child,
)


def make_engine(url: str, *, pool_size: int = 20, max_overflow: int = 10) -> Engine:
    """An engine with the settings each backend needs to be shared by the API and the worker. The pool opens
    connections as they are needed and keeps `pool_size` of them: connections beyond it (the overflow) are closed
    when given back, which under load is a connection opened and closed per request."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "factory": GatedSQLiteConnection},
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

        SQLITE_FORK_GATE.watch(engine)
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
