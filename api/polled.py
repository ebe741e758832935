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

The read runs on the event loop, on one connection the loop keeps, in autocommit: on SQLite through SQLAlchemy (a
WAL reader never waits for a writer; a second of busy timeout bounds the rare wait for a checkpoint), on PostgreSQL
on an asyncpg connection with the statements compiled once. asyncpg's protocol is compiled: a read costs half the
CPU of psycopg's async connection (0.05 against 0.11 ms for a page's 21 rows, 0.03 against 0.08 ms for one row),
itself a fifth of a pooled SQLAlchemy read through a thread (bench/read_path.py). The token's last use, when due,
is written through a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import namedtuple
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import anyio
import asyncpg
import orjson
from sqlalchemy import ClauseElement, Connection, Engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from api.deps import touch_token
from api.limits import ASGIApp, Receive, Scope, Send, send_json
from api.schemas import generation_fields, run_fields
from store.db import make_engine
from store.models import RUN_STATUSES, utcnow
from store.reads import (
    PASSED_RUN_COLUMNS,
    Query,
    TokenState,
    decode_cursor,
    job_query,
    next_cursor,
    run_query,
    runs_query,
    token_page_query,
)
from store.settings import get_settings
from store.tokens import hash_token, last_use_due, token_refusal

# A statement's rows as named tuples, read on the connection this event loop keeps (SQLite: through SQLAlchemy;
# PostgreSQL: asyncpg, the statement compiled once).
Fetch = Callable[[Query], Awaitable[Sequence[Any]]]
# A read: (fetch, token hash) → the answer's fields and the token that may read them, or None when the route must
# answer (no such token or row, a refused token).
Read = Callable[[Fetch, str], Awaitable[tuple[dict[str, Any], TokenState] | None]]

# How long a read may take before it is left to the route (a poll reads a few rows by an index: milliseconds).
READ_TIMEOUT_S = 5.0

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
    async def read(fetch: Fetch, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
        rows = await fetch(run_query(run_id, token_hash, passed=True))
        token = _usable(TokenState.of(rows[0])) if rows else None
        return None if token is None else (_run_fields(rows[0]), token)

    return read


def _generation_read(generation_id: str) -> Read:
    async def read(fetch: Fetch, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
        rows = await fetch(job_query(generation_id, "generate", token_hash))
        token = _usable(TokenState.of(rows[0])) if rows else None
        return None if token is None else (generation_fields(rows[0]), token)

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

    async def read(fetch: Fetch, token_hash: str) -> tuple[dict[str, Any], TokenState] | None:
        # The page's ids and versions and its token in one statement; an empty page (or no such token) is the
        # route's to answer.
        runs = await fetch(token_page_query(token_hash, limit=limit + 1, status=status, after=after))
        token = _usable(TokenState.of(runs[0])) if runs else None
        if token is None:
            return None
        items = await encoded_runs(fetch, runs[:limit])
        if items is None:
            return None
        return {"items": items, "next_cursor": next_cursor(runs, limit)}, token

    return read


# Each run's answer as orjson wrote it, with the version of the row it was made from, by run id. A page of runs is
# mostly rows that have not changed since the last poll (finished runs; a running one changes with its heartbeat):
# reading and encoding 20 full rows, their JSON columns a kilobyte and more each, was most of a page's CPU time,
# where reading their ids and versions is a fraction of it. Past _ENCODED_MAX runs the table starts over.
_encoded: dict[str, tuple[int, bytes]] = {}
_ENCODED_MAX = 10_000


async def encoded_runs(fetch: Fetch, page: Sequence[Any]) -> list[orjson.Fragment] | None:
    """The answers of a page's runs (rows of their id and version): those encoded at the row's version as they
    are, the others read in one statement and encoded. None when a run was deleted meanwhile (the route answers)."""
    answers: dict[str, bytes] = {}
    stale: list[str] = []
    for row in page:
        held = _encoded.get(row.id)
        if held is not None and held[0] == row.version:
            answers[row.id] = held[1]
        else:
            stale.append(row.id)
    if stale:
        for run in await fetch(runs_query(stale, as_array=_database()[0] == "postgresql")):
            answers[run.id] = _encode(run)
    try:
        return [orjson.Fragment(answers[row.id]) for row in page]
    except KeyError:
        return None


def _encode(run: Any) -> bytes:
    """A run's answer (a row of runs_query's), kept by its version for the next page."""
    body = orjson.dumps(_run_fields(run), option=orjson.OPT_UTC_Z)
    if len(_encoded) >= _ENCODED_MAX:
        _encoded.clear()
    _encoded[run.id] = (run.version, body)
    return body


def _usable(token: TokenState) -> TokenState | None:
    return token if token_refusal(token, now=utcnow()) is None else None


def _run_fields(row: Any) -> dict[str, Any]:
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
    # A one-letter test first: it is a memchr, where looking for the words costs a microsecond and more per kilobyte,
    # which over a page's 60 texts was a sixth of its CPU time.
    if ("N" in text and "NaN" in text) or ("I" in text and "Infinity" in text):
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
    """The read's result; None when the route must answer: on a database error (SQLite busy past its timeout, a
    connection lost) or a read that takes over READ_TIMEOUT_S (a PostgreSQL server that stopped answering, whose
    connection every read of the loop waits for), the route reads through a pooled connection of its own, and the
    next read here opens another connection."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await read(await _loop_fetch(), token_hash)
    except (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        _drop_loop_connection()
        return None


@lru_cache
def _database() -> tuple[str, str]:
    """(the backend, the URL) of the settings' database: "sqlite" and SQLAlchemy's URL, or "postgresql" and the
    connection string of asyncpg's connections."""
    url = get_settings().database_url
    if url.startswith("sqlite"):
        return "sqlite", url
    return "postgresql", make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@lru_cache
def _sqlite_engine() -> Engine:
    """The engine of the SQLite connections the event loops read on (a process has one loop; tests may run
    several, each in a thread of its own)."""
    engine = make_engine(_database()[1], pool_size=4, max_overflow=4)

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:  # after make_engine's pragmas
        dbapi_connection.execute("PRAGMA busy_timeout=1000")

    return engine.execution_options(isolation_level="AUTOCOMMIT")


# SQLite: the connection each event loop's thread keeps, by thread id. In autocommit each read is a transaction of
# its own that ends with its rows: a kept connection holds no snapshot.
_held: dict[int, Connection] = {}


class _Postgres:
    """An asyncpg connection and the lock that has a loop's reads take turns on it (asyncpg refuses a second
    statement while one is in flight). Each read is a round trip of about a tenth of a millisecond: one connection
    serves many times what a process answers."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.turn = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> _Postgres:
        connection = await asyncpg.connect(url)
        # JSON columns decoded as SQLAlchemy's engine decodes them (the runs' passed columns are read as text).
        for name in ("json", "jsonb"):
            await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        return cls(connection)


# PostgreSQL: the connection each event loop keeps, by its thread, as the task that opens it (so that the first
# reads on a loop share one connection). An async connection waits on the loop it was opened on: a thread that runs
# another loop (a test's) opens another.
_held_postgres: dict[int, asyncio.Task[_Postgres]] = {}


async def _loop_fetch() -> Fetch:
    backend, url = _database()
    if backend == "sqlite":
        thread = threading.get_ident()
        if thread not in _held:
            _held[thread] = _sqlite_engine().connect()
        connection = _held[thread]

        async def fetch_sqlite(query: Query) -> Sequence[Any]:
            result = connection.execute(*query)
            as_tuple = _named_tuple(tuple(result.keys()))
            return [as_tuple._make(row) for row in result.all()]

        return fetch_sqlite

    loop, thread = asyncio.get_running_loop(), threading.get_ident()
    opening = _held_postgres.get(thread)
    if opening is None or opening.get_loop() is not loop:
        _close_postgres(_held_postgres.pop(thread, None))
        opening = _held_postgres[thread] = loop.create_task(_Postgres.open(url))
    postgres = await opening

    async def fetch_postgres(query: Query) -> Sequence[Any]:
        statement, values = query
        sql, names = _postgres_sql(statement)
        async with postgres.turn:
            records = await postgres.connection.fetch(sql, *[values[name] for name in names])
        if not records:
            return []
        as_tuple = _named_tuple(tuple(records[0].keys()))
        return [as_tuple._make(record) for record in records]

    return fetch_postgres


@lru_cache(maxsize=64)
def _named_tuple(columns: tuple[str, ...]) -> Any:
    """A named tuple of these columns. A page's fields are read column by column from each of its rows, and a named
    tuple's attribute costs a third of a SQLAlchemy Row's (an asyncpg record is read by key alone)."""
    return namedtuple("PolledRow", columns)


# SQLAlchemy's dialect for asyncpg, which compiles the statements with asyncpg's numbered parameters ($1, $2...).
_POSTGRES = make_url("postgresql+asyncpg://").get_dialect()()


@lru_cache(maxsize=64)
def _postgres_sql(statement: Executable) -> tuple[str, tuple[str, ...]]:
    """A prebuilt statement of store/reads.py as asyncpg takes it, and the names of its parameters in their order.
    asyncpg prepares it on the server once per connection, so a read is one round trip that PostgreSQL does not
    parse."""
    assert isinstance(statement, ClauseElement)  # the Selects of store/reads.py
    compiled = statement.compile(dialect=_POSTGRES)
    assert isinstance(compiled, SQLCompiler)
    return str(compiled), tuple(compiled.positiontup or ())


def _drop_loop_connection() -> None:
    """Forget this loop's connection after an error; the next read opens another."""
    held = _held.pop(threading.get_ident(), None)
    if held is not None:
        held.invalidate()
    _close_postgres(_held_postgres.pop(threading.get_ident(), None))


def _close_postgres(opening: asyncio.Task[_Postgres] | None) -> None:
    """Close a kept PostgreSQL connection at once, without waiting on its loop. Its socket belongs to its loop: once
    the loop has ended it cannot be closed here (close_loop_connection closes it before)."""
    if opening is not None and opening.done() and not opening.cancelled() and opening.exception() is None:
        with contextlib.suppress(RuntimeError):  # the loop has ended
            opening.result().connection.terminate()


async def close_loop_connection() -> None:
    """Close the connections the running event loop's reads keep (the app's lifespan, as its loop ends)."""
    held = _held.pop(threading.get_ident(), None)
    if held is not None:
        held.close()
    opening = _held_postgres.get(threading.get_ident())
    if opening is not None and opening.get_loop() is asyncio.get_running_loop():
        del _held_postgres[threading.get_ident()]
        try:
            postgres = await opening
            await postgres.connection.close(timeout=1.0)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):  # ended at once instead
            _close_postgres(opening)


def close_connections() -> None:
    """Close the kept connections and forget their engine and the runs' answers, so that the next read opens them
    from the settings of then (a test that points the settings at another database)."""
    _encoded.clear()
    for thread in list(_held):
        _held.pop(thread).close()
    for thread in list(_held_postgres):
        _close_postgres(_held_postgres.pop(thread))
    if _sqlite_engine.cache_info().currsize:
        _sqlite_engine().dispose()
    _sqlite_engine.cache_clear()
    _database.cache_clear()
