"""What a run reports while it trains: event rows (the live log the SSE route reads), metric rows (the series)
and the run's latest values. Keyword-only; none commits.

A NaN or an infinity (a diverged statistic, the PSNR of an exact reconstruction) has no place in a series or among
the latest values: JSON cannot spell it (PostgreSQL refuses Python's words for it), SQLite stores a NaN as NULL,
which a metric's value may not be. It is left out of both; its event keeps it as null (store/db.py)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from store.models import Event, Metric, Run


def add_event(*, session: Session, run_id: str, kind: str, data: dict[str, Any]) -> None:
    session.add(Event(run_id=run_id, kind=kind, data=data))


def compact_progress(*, session: Session, run_id: str) -> int:
    """Delete a run's progress events but the newest, once it has ended: one a second while it trained, they
    would make the replay of a finished run long; its metric series, samples, checkpoints, warnings and statuses
    stay. Returns how many went."""
    newest = select(func.max(Event.id)).where(Event.run_id == run_id, Event.kind == "progress").scalar_subquery()
    result = session.execute(
        delete(Event)
        .where(Event.run_id == run_id, Event.kind == "progress", Event.id < newest)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def write_reports(*, session: Session, run_id: str, reports: list[tuple[str, dict[str, Any]]]) -> None:
    """Turn the trainer's events (kind, data) into event rows, metric rows and the run's latest values."""
    run = session.get(Run, run_id)
    if run is None:
        return
    latest = dict(run.latest_metrics or {})
    environment = dict(run.environment or {})
    for kind, data in reports:
        if kind == "progress":
            latest.update({k: float(v) for k, v in data.get("losses", {}).items() if math.isfinite(v)})
            add_event(session=session, run_id=run_id, kind="progress", data=data)
        elif kind == "stats":
            step = int(data["step"])
            for name, value in data["values"].items():
                if math.isfinite(value):
                    session.add(Metric(run_id=run_id, step=step, name=name, value=float(value)))
        elif kind == "metric":
            value = float(data["value"])
            if math.isfinite(value):
                session.add(Metric(run_id=run_id, step=int(data["step"]), name=data["name"], value=value))
                latest[data["name"]] = value
            add_event(session=session, run_id=run_id, kind="metric", data=data)
        elif kind == "sample":
            step = int(data["step"])
            event = {"step": step, "url": f"/runs/{run_id}/samples/{step}.png"}
            add_event(session=session, run_id=run_id, kind="sample", data=event)
        elif kind == "checkpoint":
            step = int(data["step"])
            event = {"step": step, "url": f"/runs/{run_id}/checkpoints/{step}", "size_bytes": data["size_bytes"]}
            add_event(session=session, run_id=run_id, kind="checkpoint", data=event)
            if data.get("best"):
                environment["best_step"] = step
        elif kind == "environment":
            environment.update(data)
        else:  # warning, and kinds added later
            add_event(session=session, run_id=run_id, kind=kind, data=data)
    run.latest_metrics = latest
    run.environment = environment
