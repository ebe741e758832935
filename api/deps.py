"""Dependencies of the routes, as Annotated aliases: the database session, the signed-in user, and the user's own
runs, jobs and datasets (another user's answers 404, as if absent)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from store.artifacts import Storage, get_storage
from store.datasets import owned_dataset
from store.db import get_sessionmaker
from store.jobs import JobKind, owned_job
from store.models import Dataset, Generation, Run, User, utcnow
from store.settings import Settings, get_settings
from store.tokens import hash_token, token_refusal, touch_last_used, user_for_token

bearer = HTTPBearer(auto_error=False, description="A token from GANFORGE_ADMIN_TOKEN or POST /tokens.")


def get_db() -> Iterator[Session]:
    with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
# The artifact storage (store/artifacts.py): the data folder, or object storage.
StorageDep = Annotated[Storage, Depends(get_storage)]


def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status_code=401, detail="Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    user = user_for_token(session=session, token=credentials.credentials)
    if user is None or not hmac.compare_digest(user.token_hash, hash_token(credentials.credentials)):
        raise HTTPException(status_code=401, detail="Invalid token", headers={"WWW-Authenticate": "Bearer"})
    now = utcnow()
    if (refusal := token_refusal(user, now=now)) is not None:  # revoked or expired
        raise HTTPException(status_code=401, detail=refusal, headers={"WWW-Authenticate": "Bearer"})
    touch_last_used(session=session, user=user, now=now)
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


def _owned_job(session: Session, user: User, job_id: str, kind: JobKind) -> Generation:
    job = owned_job(session=session, job_id=job_id, owner_id=user.id, kind=kind)
    if job is None:
        raise HTTPException(status_code=404, detail="Generation not found" if kind == "generate" else "Score not found")
    session.commit()  # give the connection back before the route waits for a thread (see get_current_user)
    return job


def get_owned_generation(session: SessionDep, user: CurrentUser, generation_id: str) -> Generation:
    return _owned_job(session, user, generation_id, "generate")


OwnedGeneration = Annotated[Generation, Depends(get_owned_generation)]


def get_owned_score(session: SessionDep, user: CurrentUser, score_id: str) -> Generation:
    return _owned_job(session, user, score_id, "score")


OwnedScore = Annotated[Generation, Depends(get_owned_score)]


def find_owned_dataset(session: Session, user: User, dataset_id: str) -> Dataset:
    """The user's uploaded dataset with this id; 404 otherwise. A function, not a dependency: the routes that
    take a dataset id answer the built-in names first."""
    dataset = owned_dataset(session=session, dataset_id=dataset_id, owner_id=user.id)
    if dataset is None:
        raise HTTPException(status_code=404, detail="Dataset not found")
    return dataset
