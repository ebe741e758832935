"""The answers to the reads that clients and the dashboard poll — `GET /runs/{id}`, `GET /runs` and
`GET /generations/{id}` — made ahead of FastAPI's routing, for a signed-in owner whose row is there.

A poll is the service's most frequent request and its cheapest work: one or two rows by an index. Through FastAPI
it also paid for matching the path against every route, solving the route's dependencies, two middlewares of
FastAPI's own, a hop through the thread pool, and decoding the runs' JSON columns only to encode them again; those
were most of its CPU time (bench/read_path.py). Here a poll is answered by one ASGI layer inside the service's
middleware (request counts, rate limits and CORS apply as to every request): the token checked and the row read by
the prebuilt statements of store/reads.py, the answer serialized by orjson from the same fields as the route's
model (api/schemas.py: run_fields, generation_fields), with the stored JSON of a run's config and environment
passed through unparsed.

Only the plain success is answered here. A missing, unknown, revoked or expired token, an absent or another user's
row, a query the route would refuse (422), a busy SQLite file: the request goes on to the FastAPI route, which
answers it as the API always has. The routes stay the contract and the OpenAPI document.

On SQLite the read runs on the event loop, on one connection the process keeps (a WAL reader never waits for a
writer; a second of busy timeout bounds the rare wait for a checkpoint); on PostgreSQL it goes through a thread, on
a pooled connection in autocommit. The token's last use, when due, is written through a thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
from sqlalchemy import Connection, Engine, Row, event
from sqlalchemy.exc import OperationalError

from api.deps import reading_connection, touch_token
from api.limits import ASGIApp, Receive, Scope, Send, send_json
from api.schemas import generation_fields, run_fields
from store.db import make_engine
from store.models import RUN_STATUSES, utcnow
from store.reads import (
    PASSED_RUN_COLUMNS,
    TokenState,
    decode_cursor,
    job_for_token,
    next_cursor,
    run_for_token,
    runs_page,
    token_state,
)
from store.settings import get_settings
from store.tokens import hash_token, last_use_due, token_refusal

# A read: (connection, token hash) → the answer's fields and the token that may read them, or None when the
# route must answer (no such token or row, a refused token).
Read = Callable[[Connection, str], tuple[dict[str, Any], TokenState] | None]

# GET /runs: the page sizes the route accepts (api/routes/runs.py: list_runs), and its default.
PAGE_LIMITS = range(1, 201)
PAGE_DEFAULT = 50


class PolledReads:
    """The ASGI layer: answers a polled read it can, passes every other request on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            read = _route(scope["path"], scope["query_string"])
            token = _bearer_token(scope["headers"]) if read is not None else None
            if read is not None and token is not None:
                body = await _answer(read, hash_token(token))
                if body is not None:
                    await send_json(send, 200, body)
                    return
        await self.app(scope, receive, send)


def _route(path: str, query_string: bytes) -> Read | None:
    """The read of a polled route's path and query; None for every other request."""
    if path == "/runs":
        return _page_read(query_string)
    for prefix, read in (("/runs/", _run_read), ("/generations/", _generation_read)):
        if path.startswith(prefix):
            row_id = path[len(prefix) :]
            return read(row_id) if row_id and "/" not in row_id else None
    return None


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token, read as FastAPI's HTTPBearer reads the first Authorization header; None without one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token else None
    return None


def _run_read(run_id: str) -> Read:
    def read(connection: Connection, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
        row = run_for_token(connection, run_id, token_hash, passed=True)
        token = None if row is None else _usable(TokenState.of(row))
        return None if row is None or token is None else (_run_fields(row), token)

    return read


def _generation_read(generation_id: str) -> Read:
    def read(connection: Connection, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
        row = job_for_token(connection, generation_id, "generate", token_hash)
        token = None if row is None else _usable(TokenState.of(row))
        return None if row is None or token is None else (generation_fields(row), token)

    return read


def _page_read(query_string: bytes) -> Read | None:
    """The read of `GET /runs?status=&limit=&cursor=`; None for a query the route would refuse (its 422)."""
    query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))  # the last of a repeated key
    status = query.get("status")
    limit_text = query.get("limit", str(PAGE_DEFAULT))
    cursor = query.get("cursor")
    after = None if cursor is None else decode_cursor(cursor)
    if (status is not None and status not in RUN_STATUSES) or (cursor is not None and after is None):
        return None
    if not limit_text.isascii() or not limit_text.isdigit() or int(limit_text) not in PAGE_LIMITS:
        return None
    limit = int(limit_text)

    def read(connection: Connection, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
        token = token_state(connection, token_hash)
        token = None if token is None else _usable(token)
        if token is None:
            return None
        runs = runs_page(connection, token.id, limit=limit + 1, status=status, after=after, passed=True)
        return {"items": [_run_fields(r) for r in runs[:limit]], "next_cursor": next_cursor(runs, limit)}, token

    return read


def _usable(token: TokenState) -> TokenState | None:
    return token if token_refusal(token, now=utcnow()) is None else None


def _run_fields(row: Row[Any]) -> dict[str, Any]:
    """run_fields of a row whose PASSED_RUN_COLUMNS are their stored JSON text (or NULL: an empty object)."""
    fields = run_fields(row)
    for name in PASSED_RUN_COLUMNS:
        text = getattr(row, name)
        fields[name] = {} if text is None else _stored(text)
    return fields


def _stored(text: str) -> Any:
    """Stored JSON text, to be written into the answer as it is. Python's json, which wrote it, spells a NaN or an
    infinity as a bare word that is not JSON; such a text is parsed, and orjson writes those numbers as null, as
    the route's pydantic models do."""
    if "NaN" in text or "Infinity" in text:
        return json.loads(text)
    return orjson.Fragment(text)


async def _answer(read: Read, token_hash: str) -> bytes | None:
    result = await _read(read, token_hash)
    if result is None:
        return None
    fields, token = result
    if last_use_due(token, now=utcnow()):
        await anyio.to_thread.run_sync(touch_token, token)
    return orjson.dumps(fields, option=orjson.OPT_UTC_Z)


async def _read(read: Read, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
    """The read's result; None when the route must answer (SQLite busy: the route reads through a thread)."""
    connection = _loop_connection()
    if connection is not None:  # SQLite
        try:
            return read(connection, token_hash)
        except OperationalError:  # busy past its timeout, or the file went away
            _drop_loop_connection()
            return None
    return await anyio.to_thread.run_sync(_read_in_thread, read, token_hash)  # PostgreSQL: a pooled connection


def _read_in_thread(read: Read, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
    with reading_connection() as connection:
        return read(connection, token_hash)


@lru_cache
def _loop_engine() -> Engine | None:
    """SQLite only: the engine of the connections the event loops read on (a process has one loop; tests may
    run several, each in a thread of its own)."""
    settings = get_settings()
    if not settings.database_url.startswith("sqlite"):
        return None
    engine = make_engine(settings.database_url, pool_size=4, max_overflow=4)

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:  # after make_engine's pragmas
        dbapi_connection.execute("PRAGMA busy_timeout=1000")

    return engine.execution_options(isolation_level="AUTOCOMMIT")


# The connection each event loop's thread keeps, by thread id.
_held: dict[int, Connection] = {}


def _loop_connection() -> Connection | None:
    """The SQLite connection of this thread's event loop, opened on first use and kept; None on PostgreSQL. In
    autocommit each read is a transaction of its own that ends with its rows: a kept connection holds no snapshot."""
    engine = _loop_engine()
    if engine is None:
        return None
    thread = threading.get_ident()
    if thread not in _held:
        _held[thread] = engine.connect()
    return _held[thread]


def _drop_loop_connection() -> None:
    connection = _held.pop(threading.get_ident(), None)
    if connection is not None:
        connection.invalidate()


def close_connections() -> None:
    """Close the kept SQLite connections and forget their engine, so that the next read opens them from the
    settings of then (a test that points the settings at another database)."""
    for thread in list(_held):
        _held.pop(thread).close()
    engine = _loop_engine()
    if engine is not None:
        engine.dispose()
    _loop_engine.cache_clear()
