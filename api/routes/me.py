"""The caller: their token, their usage and their quotas."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from api.routing import ReleasingRoute
from api.schemas import MePublic, QuotaPublic, TokenInfo, UsagePublic
from store.quotas import QUOTAS, artifact_bytes, dataset_bytes, quota_limits
from store.tokens import usage

router = APIRouter(prefix="/me", tags=["tokens"], route_class=ReleasingRoute)


@router.get("", response_model=MePublic)
def me(session: SessionDep, user: CurrentUser, settings: SettingsDep, storage: StorageDep) -> MePublic:
    """Your token, your usage (runs by status, datasets and their bytes, jobs in flight) and
    each of your quotas with your use of it."""
    held = usage(session=session, user_id=user.id)
    limits = quota_limits(user, settings)
    stored = artifact_bytes(session=session, user_id=user.id) if limits is not None else 0
    session.commit()  # give the connection back before the storage is listed
    held_bytes = dataset_bytes(storage, held.dataset_hashes)  # a dataset is a handful of files: one listing each
    quotas: dict[str, QuotaPublic] | None = None
    if limits is not None:
        used = {
            "running_runs": held.runs["running"],
            "queued_runs": held.runs["queued"],
            "datasets": len(held.dataset_hashes),
            "dataset_bytes": held_bytes,
            "artifact_bytes": stored,
            "jobs_in_flight": sum(held.jobs_in_flight.values()),
        }
        quotas = {name: QuotaPublic(limit=limits[name], used=used[name]) for name in QUOTAS}
    token = TokenInfo.of(user).model_dump(include=set(MePublic.model_fields) - {"quotas"})  # as GET /tokens has it
    return MePublic(
        **token,
        usage=UsagePublic(
            runs=held.runs,
            datasets=len(held.dataset_hashes),
            dataset_bytes=held_bytes,
            jobs_in_flight=held.jobs_in_flight,
        ),
        quotas=quotas,
    )
