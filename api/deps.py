"""Dependencies of the routes, as Annotated aliases: the database session, the signed-in user, and the user's own
runs, jobs and datasets (another user's answers 404, as if absent)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, HTTPException, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from store.artifacts import Storage, get_storage
from store.datasets import owned_dataset
from store.db import get_engine, get_sessionmaker
from store.jobs import JobKind, owned_job
from store.models import Dataset, Generation, Run, User, utcnow
from store.reads import TokenState, token_state
from store.settings import Settings, get_settings
from store.tokens import TokenLike, hash_token, token_refusal, touch_last_used, user_for_token

bearer = HTTPBearer(auto_error=False, description="A token from GANFORGE_ADMIN_TOKEN or POST /tokens.")


# Closing a session that still holds a connection (a route that read without committing) talks to the database,
# so it happens in a thread, under a limiter of its own: it must never wait behind requests that wait for the
# connection it is about to give back.
_CLOSE_LIMITER = anyio.CapacityLimiter(64)


async def get_db() -> AsyncIterator[Session]:
    """A session for the request. Opening one does no I/O, so this runs on the event loop: a synchronous
    dependency would cost the request two hops through the thread pool, in and out."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        if session.in_transaction():
            await anyio.to_thread.run_sync(session.close, limiter=_CLOSE_LIMITER)
        else:
            session.close()


async def settings_dependency() -> Settings:
    return get_settings()


async def storage_dependency() -> Storage:
    return get_storage()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]
# The artifact storage (store/artifacts.py): the data folder, or object storage.
StorageDep = Annotated[Storage, Depends(storage_dependency)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The bearer token of the request; 401 when there is none."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status_code=401, detail="Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


Token = TypeVar("Token", bound=TokenLike)


def _check(token: Token | None) -> Token:
    """The token's row, if the token may be used now; 401 otherwise (unknown, revoked or expired)."""
    if token is None:
        raise HTTPException(status_code=401, detail="Invalid token", headers={"WWW-Authenticate": "Bearer"})
    if (refusal := token_refusal(token, now=utcnow())) is not None:  # revoked or expired
        raise HTTPException(status_code=401, detail=refusal, headers={"WWW-Authenticate": "Bearer"})
    return token


def authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None) -> User:
    """The user of a valid, unrevoked, unexpired bearer token; 401 otherwise."""
    token = _bearer(credentials)
    user = user_for_token(session=session, token=token)
    if user is not None and not hmac.compare_digest(user.token_hash, hash_token(token)):
        user = None
    user = _check(user)
    touch_last_used(session=session, user=user, now=utcnow())
    return user


def get_current_user(session: SessionDep, credentials: Credentials) -> User:
    user = authenticate(session, credentials)
    # Give the connection back to the pool before the route waits for a thread. A request that holds a
    # connection while it waits for one of the thread pool's threads, whose holders all wait for a connection,
    # deadlocks the API (64 clients did it: bench/load.py, bench/read_path.py).
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Admin token required")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


def owned_run(session: Session, user: User, run_id: str) -> Run:
    """The user's run with this id; 404 otherwise (another user's run is as good as absent)."""
    run = session.get(Run, run_id)
    if run is None or run.owner_id != user.id:
        raise HTTPException(status_code=404, detail="Run not found")
    return run


def get_owned_run(session: SessionDep, credentials: Credentials, run_id: str) -> Run:
    """The run with this id if it belongs to the signed-in user; another user's run is as good as absent.
    Authentication and the run's row are read in one hop through the thread pool, and the connection goes
    back before the route runs (see get_current_user)."""
    try:
        return owned_run(session, authenticate(session, credentials), run_id)
    finally:
        session.commit()


OwnedRun = Annotated[Run, Depends(get_owned_run)]


def _admit(connection: Connection, token: TokenState | None) -> TokenState:
    """The token, if it may be used now, its last use recorded when due; 401 otherwise."""
    token = _check(token)
    touch_last_used(session=connection, user=token, now=utcnow())
    return token


def reading_connection() -> Connection:
    """A pooled connection in autocommit: each statement of a polled read is one round trip, with no BEGIN and
    COMMIT around it (PostgreSQL; psycopg and pysqlite switch it on the client). The last-use time of a token,
    when due, is its own committed statement."""
    return get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")


# What a polled route hands read_json: (connection, signed-in token) → the answer's model.
Build = Callable[[Connection, TokenState], BaseModel]


def _read(credentials: HTTPAuthorizationCredentials | None, build: Build) -> bytes:
    token_hash = hash_token(_bearer(credentials))
    with reading_connection() as connection:
        model = build(connection, _admit(connection, token_state(connection, token_hash)))
    return model.__pydantic_serializer__.to_json(model)


def _read_owned(
    credentials: HTTPAuthorizationCredentials | None,
    load: Callable[[Connection, str], Row[Any] | None],
    build: Callable[[Row[Any]], BaseModel],
    missing: str,
) -> bytes:
    token_hash = hash_token(_bearer(credentials))
    with reading_connection() as connection:
        row = load(connection, token_hash)
        if row is None:  # an unknown token (401), or a row that is absent or another user's (404)
            _admit(connection, token_state(connection, token_hash))
            raise HTTPException(status_code=404, detail=missing)
        body, token = _answer(row, build)
        touch_last_used(session=connection, user=token, now=utcnow())
    return body


def _answer(row: Row[Any], build: Callable[[Row[Any]], BaseModel]) -> tuple[bytes, TokenState]:
    """The JSON answer of a joined row (store/reads.py) and its token, once the token is checked; 401 otherwise."""
    token = _check(TokenState.of(row))
    model = build(row)
    return model.__pydantic_serializer__.to_json(model), token


async def read_json(credentials: HTTPAuthorizationCredentials | None, build: Build) -> Response:
    """The answer of a read route that clients poll, in one hop through the thread pool: authenticate, read,
    build the model and serialize it, with the connection given back before the thread is. The dependency
    route (a session dependency, the user's, the row's, the route's thread and the answer's validation) costs
    several hops and most of the time of a request that reads two rows (bench/read_path.py)."""
    body = await anyio.to_thread.run_sync(_read, credentials, build)
    return Response(body, media_type="application/json")


async def read_owned_json(
    credentials: HTTPAuthorizationCredentials | None,
    load: Callable[[Connection, str], Row[Any] | None],
    build: Callable[[Row[Any]], BaseModel],
    *,
    missing: str,
) -> Response:
    """read_json for one row of the token's own: `load(connection, token hash)` checks the token and reads the
    row in one statement (store/reads.py); no row answers 401 for a bad token, else 404 with `missing`. A row
    that is there is answered before the route by api/polled.py; this answers the rest."""
    body = await anyio.to_thread.run_sync(_read_owned, credentials, load, build, missing)
    return Response(body, media_type="application/json")


def touch_token(token: TokenState) -> None:
    """Record the token's last use, on a connection of its own (api/polled.py, when last_use_due)."""
    with reading_connection() as connection:
        touch_last_used(session=connection, user=token, now=utcnow())


def owned(session: Session, user: User, job_id: str, kind: JobKind) -> Generation:
    """The user's job of this kind with this id; 404 otherwise."""
    job = owned_job(session=session, job_id=job_id, owner_id=user.id, kind=kind)
    if job is None:
        raise HTTPException(status_code=404, detail="Generation not found" if kind == "generate" else "Score not found")
    return job


def owned_generation(session: Session, user: User, generation_id: str) -> Generation:
    return owned(session, user, generation_id, "generate")


def _owned_job(
    session: Session, credentials: HTTPAuthorizationCredentials | None, job_id: str, kind: JobKind
) -> Generation:
    try:
        return owned(session, authenticate(session, credentials), job_id, kind)
    finally:
        session.commit()  # give the connection back before the route waits for a thread (see get_current_user)


def get_owned_generation(session: SessionDep, credentials: Credentials, generation_id: str) -> Generation:
    return _owned_job(session, credentials, generation_id, "generate")


OwnedGeneration = Annotated[Generation, Depends(get_owned_generation)]


def get_owned_score(session: SessionDep, credentials: Credentials, score_id: str) -> Generation:
    return _owned_job(session, credentials, score_id, "score")


OwnedScore = Annotated[Generation, Depends(get_owned_score)]


def find_owned_dataset(session: Session, user: User, dataset_id: str) -> Dataset:
    """The user's uploaded dataset with this id; 404 otherwise. A function, not a dependency: the routes that
    take a dataset id answer the built-in names first."""
    dataset = owned_dataset(session=session, dataset_id=dataset_id, owner_id=user.id)
    if dataset is None:
        raise HTTPException(status_code=404, detail="Dataset not found")
    return dataset
