"""Users and their API tokens. Tokens are stored as their SHA-256 only; the secret is shown once.

Keyword-only functions taking a session; none commits.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import User


def hash_token(token: str) -> str:
    """Tokens are stored as their SHA-256: they are long random strings, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "gf_" + secrets.token_urlsafe(32)


def user_for_token(*, session: Session, token: str) -> User | None:
    """The user whose token this is, or None."""
    return session.execute(select(User).where(User.token_hash == hash_token(token))).scalar_one_or_none()


def create_user(*, session: Session, name: str, is_admin: bool) -> tuple[User, str]:
    """A new user and its token; returns (user, token), the token in clear this once."""
    token = new_token()
    user = User(name=name, token_hash=hash_token(token), is_admin=is_admin)
    session.add(user)
    session.flush()
    return user, token


def ensure_admin(*, session: Session, admin_token: str | None) -> str | None:
    """Make sure an admin token exists: `admin_token` (GANFORGE_ADMIN_TOKEN) when set, else a generated one on
    the first start. Returns the generated token (to print once), else None."""
    if admin_token:
        if user_for_token(session=session, token=admin_token) is None:
            session.add(User(name="admin", token_hash=hash_token(admin_token), is_admin=True))
        return None
    if session.execute(select(User.id).where(User.is_admin.is_(True)).limit(1)).first() is not None:
        return None
    _user, token = create_user(session=session, name="admin", is_admin=True)
    return token
