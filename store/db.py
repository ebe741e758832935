"""The database engine and sessions."""

from __future__ import annotations

import json
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from store.settings import get_settings

# JSON columns are stored without the spaces of json.dumps's default separators: the polled reads pass a run's
# stored JSON into their answers as it is (api/polled.py).
_compact_json = partial(json.dumps, separators=(",", ":"))


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
