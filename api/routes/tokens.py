"""API tokens: admins create them for users."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, SessionDep
from api.schemas import TokenCreate, TokenPublic
from store.models import User, hash_token, new_token

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenPublic)
def create(body: TokenCreate, session: SessionDep, _admin: AdminUser) -> TokenPublic:
    """Create a user and its token (admins only). The token is shown once; only its hash is stored."""
    token = new_token()
    user = User(name=body.name, token_hash=hash_token(token), is_admin=body.admin)
    session.add(user)
    session.commit()
    return TokenPublic(id=user.id, name=user.name, is_admin=user.is_admin, token=token)
