"""Dependencies of the routes, as Annotated aliases: the database session and the signed-in user."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import get_sessionmaker
from store.models import Run, User, hash_token
from store.settings import Settings, get_settings

bearer = HTTPBearer(auto_error=False, description="A token from GANFORGE_ADMIN_TOKEN or POST /tokens.")


def get_db() -> Iterator[Session]:
    with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status_code=401, detail="Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_token(credentials.credentials)
    user = session.execute(select(User).where(User.token_hash == digest)).scalar_one_or_none()
    if user is None or not hmac.compare_digest(user.token_hash, digest):
        raise HTTPException(status_code=401, detail="Invalid token", headers={"WWW-Authenticate": "Bearer"})
    # Give the connection back to the pool before the next dependency waits for a thread. A request that holds
    # a connection while it waits for one of the threadpool's 40 threads, whose holders all wait for a
    # connection, deadlocks the API until the pool's 30 s timeout (64 clients did it: bench/load.py).
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Admin token required")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


def get_owned_run(session: SessionDep, user: CurrentUser, run_id: str) -> Run:
    """The run with this id if it belongs to the user; another user's run is as good as absent."""
    run = session.get(Run, run_id)
    if run is None or run.owner_id != user.id:
        raise HTTPException(status_code=404, detail="Run not found")
    session.commit()  # give the connection back before the route waits for a thread (see get_current_user)
    return run


OwnedRun = Annotated[Run, Depends(get_owned_run)]
