"""The worker registry: which workers there are, on which hosts, with which devices, serving which queues."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from api.deps import AdminUser, SessionDep, SettingsDep
from api.routing import ReleasingRoute
from api.schemas import DevicePublic, WorkerPublic, WorkersPublic
from store.models import utcnow
from store.workers import is_live, list_workers

router = APIRouter(prefix="/workers", tags=["workers"], route_class=ReleasingRoute)


@router.get("", response_model=WorkersPublic)
def list_all(session: SessionDep, settings: SettingsDep, _admin: AdminUser) -> WorkersPublic:
    """Every registered worker, live or lost (admins only). A worker that shut down cleanly is not listed."""
    lost_after = timedelta(seconds=settings.worker_heartbeat_interval_seconds * settings.worker_lost_after_intervals)
    now = utcnow()
    return WorkersPublic(
        items=[
            WorkerPublic(
                id=w.id,
                host=w.host,
                pid=w.pid,
                status="live" if is_live(w, lost_after=lost_after, now=now) else "lost",
                devices=[DevicePublic.model_validate(d) for d in w.devices],
                slots=w.slots,
                queues=list(w.queues),
                current_job=w.current_job,
                version=w.version,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
            )
            for w in list_workers(session=session)
        ]
    )
