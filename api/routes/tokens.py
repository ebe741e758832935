"""API tokens: admins create them; everyone lists and revokes their own, admins any."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from api.deps import AdminUser, CurrentUser, SessionDep
from api.errors import unprocessable
from api.responses import error, validation_errors
from api.routing import ReleasingRoute
from api.schemas import TokenCreate, TokenInfo, TokenPublic, TokensPublic, TokenUpdate
from store.models import User, utcnow
from store.tokens import create_user, list_tokens, revoke_token, set_quotas

router = APIRouter(prefix="/tokens", tags=["tokens"], route_class=ReleasingRoute)

# Token ids are SQL integer keys: bounded as the column is, so that an id past it is a 422, not a database error.
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The token's id, from GET /tokens.")]


@router.post("", status_code=201, response_model=TokenPublic)
def create(body: TokenCreate, session: SessionDep, _admin: AdminUser) -> TokenPublic:
    """Create a user and its token (admins only). The token is shown once; only its hash is stored."""
    now = utcnow()
    expires_at = body.expires_at
    if expires_at is not None and body.expires_in_days is not None:
        raise unprocessable("expires_in_days", "expires_in_days: give expires_at or expires_in_days, not both")
    if body.expires_in_days is not None:
        expires_at = now + timedelta(days=body.expires_in_days)
    if expires_at is not None:
        expires_at = expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None else expires_at.astimezone(UTC)
        if expires_at <= now:
            raise unprocessable("expires_at", "expires_at: must be in the future")
    user, token = create_user(session=session, name=body.name, is_admin=body.admin, expires_at=expires_at)
    session.commit()
    return TokenPublic(**TokenInfo.of(user).model_dump(), token=token)


@router.get("", response_model=TokensPublic)
def list_(session: SessionDep, user: CurrentUser) -> TokensPublic:
    """Tokens, oldest first: every one for an admin, your own for a user. Never a secret."""
    users = list_tokens(session=session, user_id=None if user.is_admin else user.id)
    return TokensPublic(items=[TokenInfo.of(u) for u in users])


@router.delete("/{token_id}", status_code=204, responses={404: error("No such token, or not yours.")})
def revoke(token_id: TokenId, session: SessionDep, user: CurrentUser) -> None:
    """Revoke a token at once: its next request answers 401. Yours, or any for an admin; it stays listed."""
    target = session.get(User, token_id)
    if target is None or (target.id != user.id and not user.is_admin):
        raise HTTPException(status_code=404, detail="Token not found")
    revoke_token(session=session, user=target, now=utcnow())
    session.commit()


@router.patch(
    "/{token_id}",
    response_model=TokenInfo,
    responses={
        403: error("Your own token: only an admin sets quotas."),
        404: error("No such token, or not yours."),
        422: validation_errors("An unknown quota, or a token that is an admin's."),
    },
)
def update(token_id: TokenId, body: TokenUpdate, session: SessionDep, user: CurrentUser) -> TokenInfo:
    """Set one token's quotas (admins only): {"quotas": {name: number}} replaces the server's number for that
    token, null puts the server's back; quotas left out stay as they are. Admin tokens have no quotas."""
    target = session.get(User, token_id)
    if target is None or (target.id != user.id and not user.is_admin):
        raise HTTPException(status_code=404, detail="Token not found")
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Admin token required")
    if target.is_admin:
        raise unprocessable("quotas", "quotas: admin tokens have no quotas; set them on a user's token")
    set_quotas(user=target, changes=body.quotas.model_dump(exclude_unset=True))
    session.commit()
    return TokenInfo.of(target)
