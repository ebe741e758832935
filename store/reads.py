"""The reads behind the routes that clients and the dashboard poll (`GET /runs/{id}`, `GET /runs`,
`GET /generations/{id}`): the bearer token's state, the token's own row and a page of its runs, as SQL statements
built once and run through SQLAlchemy Core (or, for the polled reads on PostgreSQL, through an asyncpg connection:
api/polled.py).

A request that reads one row is mostly overhead: building a select and computing its cache key costs about
0.15 ms of CPU, loading it as an ORM object about 0.18 ms, against 0.06 ms for a prebuilt statement that checks
the token and loads the row in one round trip (bench/read_path.py). The rows come back as `Row`s, whose
attributes are the columns' names, so the answer models build from them as from the ORM objects.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    or_,
    select,
)
from sqlalchemy.sql import Executable

from store.models import Generation, Run, User

# The token's columns in a joined row, labelled apart from the row's own (both tables have an `id`).
_TOKEN_COLUMNS = (
    User.id.label("token_id"),
    User.is_admin.label("token_is_admin"),
    User.revoked_at.label("token_revoked_at"),
    User.expires_at.label("token_expires_at"),
    User.last_used_at.label("token_last_used_at"),
)

_TOKEN = select(*_TOKEN_COLUMNS).where(User.token_hash == bindparam("token_hash"))

# A run's JSON columns that an answer passes through as they are stored (api/polled.py): decoding them is most of
# the cost of reading a page of runs, and the answer would encode them again unchanged.
PASSED_RUN_COLUMNS = ("config", "latest_metrics", "environment")


def _run_columns(passed: bool) -> list[ColumnElement[Any]]:
    """The runs table's columns; with `passed`, its passed-through JSON columns as their stored text."""
    return [cast(c, Text).label(c.name) if passed and c.name in PASSED_RUN_COLUMNS else c for c in Run.__table__.c]


def _run(passed: bool) -> Select[Any]:
    return (
        select(*_run_columns(passed), *_TOKEN_COLUMNS)
        .join(User, User.id == Run.owner_id)
        .where(Run.id == bindparam("row_id"), User.token_hash == bindparam("token_hash"))
    )


# What the polled page reads of each run: enough to tell whether its answer is held, and to make the cursor.
_POLLED_PAGE_COLUMNS = [Run.__table__.c[name] for name in ("id", "version", "created_at")]


def _page(status: bool, after: bool, polled: bool) -> Select[Any]:
    """A page of an owner's runs, newest first: `limit` rows after the cursor (`created`, `run_id`) if `after`,
    of one `status` if `status`. The owner is `owner_id`; for the polled reads (`polled`) it is the token with the
    hash `token_hash`, whose state each row carries, and a row is the run's id, version and creation time alone
    (the polled reads keep the runs' answers by version, and read the rows they lack with runs_query)."""
    if polled:
        query = (
            select(*_POLLED_PAGE_COLUMNS, *_TOKEN_COLUMNS)
            .join(User, User.id == Run.owner_id)
            .where(User.token_hash == bindparam("token_hash"))
        )
    else:
        query = select(*_run_columns(False)).where(Run.owner_id == bindparam("owner_id"))
    if status:
        query = query.where(Run.status == bindparam("status"))
    if after:
        created = bindparam("created", type_=Run.created_at.type)
        run_id: BindParameter[str] = bindparam("run_id")
        query = query.where(or_(Run.created_at < created, and_(Run.created_at == created, Run.id < run_id)))
    return query.order_by(Run.created_at.desc(), Run.id.desc()).limit(bindparam("limit"))


_RUN = {passed: _run(passed) for passed in (False, True)}
_PAGE = {
    (status, after, polled): _page(status, after, polled)
    for status in (False, True)
    for after in (False, True)
    for polled in (False, True)
}

# The runs with these ids: PostgreSQL's own connection takes the ids as one array (so that the statement is
# compiled once), SQLAlchemy expands them into a list for SQLite.
_RUNS = {
    True: select(*_run_columns(True)).where(Run.id == any_(bindparam("run_ids", type_=ARRAY(String)))),
    False: select(*_run_columns(True)).where(Run.id.in_(bindparam("run_ids", expanding=True))),
}

_JOB = (
    select(Generation.__table__, *_TOKEN_COLUMNS)
    .join(User, User.id == Generation.owner_id)
    .where(
        Generation.id == bindparam("row_id"),
        Generation.kind == bindparam("kind"),
        User.token_hash == bindparam("token_hash"),
    )
)


@dataclass(frozen=True)
class TokenState:
    """What a read needs of the signed-in token: who it is, and whether it may be used (store/tokens.py:
    token_refusal, touch_last_used take it as they take a User)."""

    id: int
    is_admin: bool
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> TokenState:
        """From a row with the token columns (_TOKEN_COLUMNS), joined or alone."""
        return cls(
            id=row.token_id,
            is_admin=row.token_is_admin,
            revoked_at=row.token_revoked_at,
            expires_at=row.token_expires_at,
            last_used_at=row.token_last_used_at,
        )


# A prebuilt statement and its values. The queries below are run by the functions after them on a SQLAlchemy
# connection, or by api/polled.py on a connection of the driver's own.
Query = tuple[Executable, dict[str, Any]]


def run_query(run_id: str, token_hash: str, *, passed: bool = False) -> Query:
    """The run with this id joined with its owner's token state, if the token with this hash owns it; with
    `passed`, its PASSED_RUN_COLUMNS as their stored JSON text."""
    return _RUN[passed], {"row_id": run_id, "token_hash": token_hash}


def page_query(
    owner_id: int, *, limit: int, status: str | None = None, after: tuple[datetime, str] | None = None
) -> Query:
    """At most `limit` of the owner's runs, newest first, after the cursor (created_at, id) when there is one."""
    return _page_query({"owner_id": owner_id}, limit=limit, status=status, after=after)


def token_page_query(
    token_hash: str, *, limit: int, status: str | None = None, after: tuple[datetime, str] | None = None
) -> Query:
    """page_query's page for the polled reads: the id, version and creation time of each run of the token with this
    hash, joined with the token's state (one round trip). No rows: no such token, or none of its runs on this
    page."""
    return _page_query({"token_hash": token_hash}, limit=limit, status=status, after=after)


def runs_query(run_ids: Sequence[str], *, as_array: bool) -> Query:
    """The runs with these ids, their PASSED_RUN_COLUMNS as their stored JSON text; `as_array` for a PostgreSQL
    connection of asyncpg's."""
    return _RUNS[as_array], {"run_ids": list(run_ids)}


def _page_query(owner: dict[str, Any], *, limit: int, status: str | None, after: tuple[datetime, str] | None) -> Query:
    values: dict[str, Any] = owner | {"limit": limit}
    if status is not None:
        values["status"] = status
    if after is not None:
        values["created"], values["run_id"] = after
    return _PAGE[(status is not None, after is not None, "token_hash" in owner)], values


def job_query(job_id: str, kind: str, token_hash: str) -> Query:
    """The job of this kind with this id joined with its owner's token state, if the token owns it."""
    return _JOB, {"row_id": job_id, "kind": kind, "token_hash": token_hash}


def token_state(connection: Connection, token_hash: str) -> TokenState | None:
    """The token with this hash, revoked and expired ones included; None when there is none."""
    row = connection.execute(_TOKEN, {"token_hash": token_hash}).one_or_none()
    return None if row is None else TokenState.of(row)


def run_for_token(connection: Connection, run_id: str, token_hash: str, *, passed: bool = False) -> Row[Any] | None:
    """run_query's row, or None."""
    return connection.execute(*run_query(run_id, token_hash, passed=passed)).one_or_none()


def runs_page(
    connection: Connection,
    owner_id: int,
    *,
    limit: int,
    status: str | None = None,
    after: tuple[datetime, str] | None = None,
) -> list[Row[Any]]:
    """page_query's rows."""
    return list(connection.execute(*page_query(owner_id, limit=limit, status=status, after=after)))


def job_for_token(connection: Connection, job_id: str, kind: str, token_hash: str) -> Row[Any] | None:
    """job_query's row, or None."""
    return connection.execute(*job_query(job_id, kind, token_hash)).one_or_none()


def next_cursor(runs: Sequence[Any], limit: int) -> str | None:
    """The cursor of the page after these runs, read as `limit + 1` rows (the last shows there is a next page)."""
    if len(runs) <= limit:
        return None
    last = runs[limit - 1]
    return base64.urlsafe_b64encode(json.dumps([last.created_at.isoformat(), last.id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The (created_at, id) a cursor of next_cursor's holds; None for anything else."""
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), str(run_id)
    except (ValueError, TypeError, binascii.Error):
        return None
