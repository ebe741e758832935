"""The caller: their token and their usage."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, StorageDep
from api.schemas import MePublic, TokenInfo, UsagePublic
from store.layout import dataset_prefix
from store.tokens import usage

router = APIRouter(prefix="/me", tags=["tokens"])


@router.get("", response_model=MePublic)
def me(session: SessionDep, user: CurrentUser, storage: StorageDep) -> MePublic:
    """Your token and your usage: runs by status, datasets and their bytes, generation and score jobs in flight."""
    held = usage(session=session, user_id=user.id)
    session.commit()  # give the connection back before the storage is listed
    # A dataset is a handful of files: one listing each.
    dataset_bytes = sum(entry.size for h in held.dataset_hashes for entry in storage.list(dataset_prefix(h)))
    token = TokenInfo.of(user).model_dump(include=set(MePublic.model_fields))  # the token as GET /tokens has it
    return MePublic(
        **token,
        usage=UsagePublic(
            runs=held.runs,
            datasets=len(held.dataset_hashes),
            dataset_bytes=dataset_bytes,
            jobs_in_flight=held.jobs_in_flight,
        ),
        quotas=None,
    )
