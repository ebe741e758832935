"""API tokens: admins create them for users."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, SessionDep
from api.schemas import TokenCreate, TokenPublic
from store.tokens import create_user

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenPublic)
def create(body: TokenCreate, session: SessionDep, _admin: AdminUser) -> TokenPublic:
    """Create a user and its token (admins only). The token is shown once; only its hash is stored."""
    user, token = create_user(session=session, name=body.name, is_admin=body.admin)
    session.commit()
    return TokenPublic(id=user.id, name=user.name, is_admin=user.is_admin, token=token)
