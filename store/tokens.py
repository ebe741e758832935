"""Users and their API tokens. Tokens are stored as their SHA-256 only; the secret is shown once.

A user row is a token and the identity it stands for (runs, datasets and jobs are owned by it). A token can
expire (`expires_at`) and be revoked (`revoked_at`): both answer 401, and the row stays, so that what it owns
stays in the database. Keyword-only functions taking a session; none commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.orm import Session

from store.models import ACTIVE_STATUSES, RUN_STATUSES, Dataset, Generation, Run, User, utcnow

# last_used_at is written at most this often per token, so that reading with a token stays a read.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(token: str) -> str:
    """Tokens are stored as their SHA-256: they are long random strings, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "gf_" + secrets.token_urlsafe(32)


def user_for_token(*, session: Session, token: str) -> User | None:
    """The user whose token this is, or None (revoked and expired ones too: see `token_refusal`)."""
    return session.execute(select(User).where(User.token_hash == hash_token(token))).scalar_one_or_none()


class TokenLike(Protocol):
    """A token's row as the checks below read it: a User, or store/reads.py's TokenState."""

    @property
    def id(self) -> int: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def last_used_at(self) -> datetime | None: ...


def token_refusal(user: TokenLike, *, now: datetime) -> str | None:
    """Why this token may not be used now ("Token revoked", "Token expired"), or None when it may."""
    if user.revoked_at is not None:
        return "Token revoked"
    if user.expires_at is not None and user.expires_at <= now:
        return "Token expired"
    return None


def last_use_due(user: TokenLike, *, now: datetime) -> bool:
    """Whether the token's last use is older than LAST_USED_RESOLUTION (or unrecorded): time to write it."""
    return user.last_used_at is None or user.last_used_at < now - LAST_USED_RESOLUTION


def touch_last_used(*, session: Session | Connection, user: TokenLike, now: datetime) -> None:
    """Record that the token was used, at most once per LAST_USED_RESOLUTION: most requests only compare the
    loaded row's time, and the UPDATE's own condition keeps concurrent requests to one write."""
    if not last_use_due(user, now=now):
        return
    stale = now - LAST_USED_RESOLUTION
    session.execute(
        update(User)
        .where(User.id == user.id, or_(User.last_used_at.is_(None), User.last_used_at < stale))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def create_user(*, session: Session, name: str, is_admin: bool, expires_at: datetime | None = None) -> tuple[User, str]:
    """A new user and its token; returns (user, token), the token in clear this once."""
    token = new_token()
    user = User(name=name, token_hash=hash_token(token), is_admin=is_admin, expires_at=expires_at)
    session.add(user)
    session.flush()
    return user, token


def list_tokens(*, session: Session, user_id: int | None) -> list[User]:
    """Every token (user_id None, for an admin) or the one of this user, oldest first."""
    query = select(User).order_by(User.id)
    if user_id is not None:
        query = query.where(User.id == user_id)
    return list(session.execute(query).scalars())


def revoke_token(*, session: Session, user: User, now: datetime) -> User:
    """Revoke the token at once (its next request is 401). Revoking twice keeps the first time."""
    if user.revoked_at is None:
        user.revoked_at = now
    return user


def ensure_admin(*, session: Session, admin_token: str | None) -> str | None:
    """Make sure the bootstrap admin exists: with `admin_token` (GANFORGE_ADMIN_TOKEN), the row marked
    `bootstrap` holds that token, so a changed GANFORGE_ADMIN_TOKEN replaces the previous one (the same admin,
    so its runs stay its own); without it, a token is generated when no admin can sign in. Returns the
    generated token (to print once), else None.

    Two API processes may run this at once: the row is changed only where it still holds the token it was
    read with, and the unique `bootstrap` mark refuses a second insert (IntegrityError: the caller rolls back
    and calls again, and then finds the other's row).
    """
    now = utcnow()
    boot = session.execute(select(User).where(User.bootstrap.is_(True))).scalar_one_or_none()
    if admin_token:
        wanted = hash_token(admin_token)
        holder = session.execute(select(User).where(User.token_hash == wanted)).scalar_one_or_none()
        if holder is not None and holder is boot:
            return None  # unchanged (and still revoked, if an admin revoked it: set a new one)
        if holder is not None:
            # A database from before the bootstrap mark, whose GANFORGE_ADMIN_TOKEN row is not the first
            # admin: that row becomes the bootstrap admin, and the previous bootstrap token stops working.
            if not holder.is_admin:
                raise ValueError("GANFORGE_ADMIN_TOKEN is the token of a user who is not an admin; choose another")
            if boot is not None:
                _rotate(session=session, boot=boot, token_hash=None, now=now)
            holder.bootstrap = True
            holder.revoked_at = None
            return None
        if boot is not None:
            _rotate(session=session, boot=boot, token_hash=wanted, now=now)
        else:
            session.add(User(name="admin", token_hash=wanted, is_admin=True, bootstrap=True))
        session.flush()
        return None
    usable = select(User.id).where(
        User.is_admin.is_(True),
        User.revoked_at.is_(None),
        or_(User.expires_at.is_(None), User.expires_at > now),
    )
    if session.execute(usable.limit(1)).first() is not None:
        return None
    token = new_token()
    if boot is not None:
        if not _rotate(session=session, boot=boot, token_hash=hash_token(token), now=now):
            return None  # another process rotated it first, and prints its own
    else:
        session.add(User(name="admin", token_hash=hash_token(token), is_admin=True, bootstrap=True))
    session.flush()
    return token


def _rotate(*, session: Session, boot: User, token_hash: str | None, now: datetime) -> bool:
    """Give the bootstrap admin a new token (usable again), or with None revoke it and take its mark away;
    only while it still holds the token it was read with. True when this call changed it."""
    values: dict[str, object]
    if token_hash is None:
        values = {"revoked_at": now, "bootstrap": None}
    else:
        values = {"token_hash": token_hash, "revoked_at": None, "expires_at": None, "last_used_at": None}
    result = session.execute(
        update(User)
        .where(User.id == boot.id, User.token_hash == boot.token_hash)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    session.expire(boot)
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class Usage:
    """What a user holds: runs by status (every status), datasets and their content hashes, and generation and
    score jobs queued or running by kind."""

    runs: dict[str, int]
    dataset_hashes: list[str]
    jobs_in_flight: dict[str, int]


def usage(*, session: Session, user_id: int) -> Usage:
    """The user's usage, in three grouped queries."""
    runs = dict.fromkeys(RUN_STATUSES, 0)
    for status, count in session.execute(
        select(Run.status, func.count()).where(Run.owner_id == user_id).group_by(Run.status)
    ).tuples():
        runs[status] = count
    hashes = list(session.execute(select(Dataset.content_hash).where(Dataset.owner_id == user_id)).scalars())
    jobs = {"generate": 0, "score": 0}
    for kind, count in session.execute(
        select(Generation.kind, func.count())
        .where(Generation.owner_id == user_id, Generation.status.in_(ACTIVE_STATUSES))
        .group_by(Generation.kind)
    ).tuples():
        jobs[kind] = count
    return Usage(runs=runs, dataset_hashes=hashes, jobs_in_flight=jobs)


def set_quotas(*, user: User, changes: dict[str, int | None]) -> None:
    """Set the token's own quotas: a number replaces the server's, None puts the server's back (store/quotas.py).
    A new dict: a JSON column changes only when assigned."""
    quotas = dict(user.quotas or {})
    for name, value in changes.items():
        if value is None:
            quotas.pop(name, None)
        else:
            quotas[name] = value
    user.quotas = quotas or None
