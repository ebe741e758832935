"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from kombu.connection import Connection
from sqlalchemy import func, select, text

from api.deps import SettingsDep
from api.limits import REQUEST_COUNTS
from api.responses import error
from api.routing import ReleasingRoute
from store.db import get_sessionmaker
from store.models import RUN_STATUSES, Run

router = APIRouter(tags=["operations"], route_class=ReleasingRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


def _check_database() -> str | None:
    try:
        with get_sessionmaker()() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    return None


def _check_broker(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=2, transport_options={"socket_timeout": 2}) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except Exception as exc:
        return f"broker: {type(exc).__name__}"
    return None


READY_CACHE_SECONDS = 1.0
# The last answer and when it was made: a load balancer polling every few hundred milliseconds from many hosts
# must not open a broker connection per probe. One lock, so that concurrent probes after expiry check once.
_ready_lock = threading.Lock()
_ready: tuple[float, list[str]] | None = None


def _readiness(broker_url: str) -> list[str]:
    global _ready
    with _ready_lock:
        now = time.monotonic()
        if _ready is None or now - _ready[0] >= READY_CACHE_SECONDS:
            problems = [p for p in (_check_database(), _check_broker(broker_url)) if p]
            _ready = (time.monotonic(), problems)
        return _ready[1]


@router.get("/readyz", responses={503: error("The database or the broker does not answer.")})
def readyz(settings: SettingsDep) -> Any:
    """200 when the database and the broker answer, else 503 naming which one does not (the answer is cached for
    a second)."""
    problems = _readiness(settings.broker_url)
    if problems:
        return JSONResponse(status_code=503, content={"detail": "not ready: " + "; ".join(problems)})
    return {"status": "ready"}


def _queue_depth(url: str, queue: str) -> int | None:
    try:
        with Connection(url, connect_timeout=2) as conn:  # type: ignore[no-untyped-call]
            _name, count, _consumers = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(count)
    except Exception:
        return None


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(settings: SettingsDep) -> Response:
    """Prometheus text format: runs by status and queue depth."""
    lines = ["# TYPE ganforge_runs gauge"]
    with get_sessionmaker()() as session:
        counts = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).tuples().all())
    for status in RUN_STATUSES:
        lines.append(f'ganforge_runs{{status="{status}"}} {counts.get(status, 0)}')
    lines.append("# TYPE ganforge_queue_depth gauge")
    for queue in (settings.train_queue, settings.generate_queue):
        depth = _queue_depth(settings.broker_url, queue)
        if depth is not None:
            lines.append(f'ganforge_queue_depth{{queue="{queue}"}} {depth}')
    lines.append("# TYPE ganforge_http_requests_total counter")
    for (method, code), count in sorted(REQUEST_COUNTS.items()):
        lines.append(f'ganforge_http_requests_total{{method="{method}",status="{code}"}} {count}')
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
