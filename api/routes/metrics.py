"""A run's metric series (JSON or CSV) and its live event stream (server-sent events).

Events are rows in SQL written by the worker, so any API process can serve any client, and a client that
reconnects with `Last-Event-ID` continues exactly where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func, select

from api.deps import OwnedRun, SessionDep
from api.responses import text
from api.routing import ReleasingRoute
from api.schemas import MetricsPublic
from store.db import get_sessionmaker
from store.models import FINAL_STATUSES, Event, Metric, Run

router = APIRouter(prefix="/runs", tags=["metrics"], route_class=ReleasingRoute)

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
BATCH = 500
# The largest step and event id the database holds (steps: a 32-bit integer column; event ids: 64-bit).
MAX_STEP = 2**31 - 1
MAX_EVENT_ID = 2**63 - 1


@router.get(
    "/{run_id}/metrics",
    response_model=MetricsPublic,
    responses=text("text/csv", description="JSON series, or `step,name,value` rows."),
)
def metrics(
    run: OwnedRun,
    session: SessionDep,
    accept: Annotated[str | None, Header()] = None,
    names: Annotated[str | None, Query(description="Comma-separated metric names; all when absent.")] = None,
    since_step: Annotated[
        int | None, Query(ge=0, le=MAX_STEP, description="Only values at this step or later.")
    ] = None,
) -> Any:
    """The run's metric series: evaluation metrics and downsampled training statistics."""
    query = select(Metric.step, Metric.name, Metric.value).where(Metric.run_id == run.id)
    if names:
        query = query.where(Metric.name.in_([n.strip() for n in names.split(",") if n.strip()]))
    if since_step is not None:
        query = query.where(Metric.step >= since_step)
    rows = session.execute(query.order_by(Metric.name, Metric.step, Metric.id)).tuples().all()
    if accept and "text/csv" in accept:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["step", "name", "value"])
        for step, name, value in sorted(rows, key=lambda r: (r[0], r[1])):
            writer.writerow([step, name, repr(value)])
        return Response(out.getvalue(), media_type="text/csv")
    series: dict[str, list[tuple[int, float]]] = {}
    for step, name, value in rows:
        series.setdefault(name, []).append((step, value))
    return MetricsPublic(series=series)


def _read_events(run_id: str, after: int, skip_progress_before: int) -> tuple[list[Event], str | None]:
    """Events after `after` without the progress ticks older than `skip_progress_before`, and the run's status
    (None when the run is gone)."""
    with get_sessionmaker()() as session:
        status = session.execute(select(Run.status).where(Run.id == run_id)).scalar_one_or_none()
        query = select(Event).where(Event.run_id == run_id, Event.id > after)
        if skip_progress_before:
            query = query.where((Event.kind != "progress") | (Event.id >= skip_progress_before))
        events = list(session.execute(query.order_by(Event.id).limit(BATCH)).scalars())
        return events, status


def _last_progress_id(run_id: str) -> int:
    with get_sessionmaker()() as session:
        last = session.execute(
            select(func.max(Event.id)).where(Event.run_id == run_id, Event.kind == "progress")
        ).scalar_one_or_none()
        return int(last or 0)


def _format(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n"


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses=text("text/event-stream", description="progress, metric, sample, status."),
)
async def events(
    run: OwnedRun,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Live events of the run as server-sent events; reconnect with Last-Event-ID to continue.

    The stream ends after the run reaches a final status and every event has been sent.
    """
    run_id = run.id
    after = event_cursor(last_event_id)

    async def stream() -> AsyncIterator[str]:
        cursor = after
        # A first connection gets the history without its past progress ticks, only the newest one, however many
        # batches the history takes; a reconnection (Last-Event-ID) gets everything after its cursor.
        skip_before = 0 if last_event_id is not None else await anyio.to_thread.run_sync(_last_progress_id, run_id)
        idle = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            batch, status = await anyio.to_thread.run_sync(_read_events, run_id, cursor, skip_before)
            for event in batch:
                cursor = event.id
                yield _format(event)
            if status is None or (status in FINAL_STATUSES and not batch):
                return
            if batch:
                idle = 0.0
                continue
            await anyio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def event_cursor(last_event_id: str | None) -> int:
    """The event id a stream continues after: Last-Event-ID as sent, 0 when it is missing or not a number, and within
    the ids the database can hold (a larger one continues after every event)."""
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError:
        return 0
    return min(max(after, 0), MAX_EVENT_ID)
