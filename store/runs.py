"""The states of a training run and the functions that move it between them. Keyword-only; none commits.

Run states: queued → running → succeeded | failed | canceled. A run that is running holds a lease: the worker
id and a heartbeat timestamp, renewed while it trains; a stale heartbeat lets the reconciler hand it on.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import ACTIVE_STATUSES, FINAL_STATUSES, Run, new_id, utcnow
from store.reports import add_event, compact_progress

log = logging.getLogger("ganforge.store.runs")


def run_for_key(*, session: Session, owner_id: int, idempotency_key: str | None) -> Run | None:
    """The run this owner already created with this Idempotency-Key, if any."""
    if idempotency_key is None:
        return None
    return session.execute(
        select(Run).where(Run.owner_id == owner_id, Run.idempotency_key == idempotency_key)
    ).scalar_one_or_none()


def create_run(
    *,
    session: Session,
    owner_id: int,
    config: dict[str, Any],
    name: str,
    idempotency_key: str | None,
    queue: str = "train",
) -> Run:
    run = Run(
        id=new_id("run"),
        owner_id=owner_id,
        name=name,
        status="queued",
        queue=queue,
        config=config,
        idempotency_key=idempotency_key,
        total_steps=int(config["train"]["steps"]),
        latest_metrics={},
        environment={},
    )
    session.add(run)
    session.flush()
    add_event(session=session, run_id=run.id, kind="status", data={"status": "queued"})
    return run


def acquire_lease(*, session: Session, run_id: str, worker: str, stale_after: timedelta) -> Run | None:
    """Take the run for this worker, atomically: a queued run, or a running one whose heartbeat is stale.

    Returns the run when this worker now holds it, None when it is finished, canceled, gone, or live
    elsewhere. One UPDATE ... WHERE decides, so two workers delivered the same run cannot both win.
    """
    now = utcnow()
    stale = now - stale_after
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            (Run.status == "queued")
            | ((Run.status == "running") & ((Run.heartbeat_at.is_(None)) | (Run.heartbeat_at < stale))),
        )
        .values(
            status="running",
            worker=worker,
            heartbeat_at=now,
            attempts=Run.attempts + 1,
            lease_epoch=Run.lease_epoch + 1,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    run = session.get(Run, run_id, populate_existing=True)
    if run is not None and run.started_at is None:
        run.started_at = now
    return run


def heartbeat(
    *, session: Session, run_id: str, worker: str, progress: dict[str, Any] | None = None, epoch: int | None = None
) -> tuple[bool, bool]:
    """Renew this worker's lease (the one of `epoch`, when given) and write progress. Returns (still_ours,
    cancel_requested)."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values.update(
            step=int(progress["step"]),
            total_steps=int(progress["total_steps"]),
            images_per_sec=progress.get("images_per_sec"),
            eta_seconds=progress.get("eta_seconds"),
        )
    query = update(Run).where(Run.id == run_id, Run.worker == worker, Run.status == "running")
    if epoch is not None:
        query = query.where(Run.lease_epoch == epoch)
    result = session.execute(query.values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False, True
    cancel = session.execute(select(Run.cancel_requested).where(Run.id == run_id)).scalar_one()
    return True, bool(cancel)


def finish_run(
    *,
    session: Session,
    run_id: str,
    worker: str | None,
    status: str,
    error: str | None = None,
    epoch: int | None = None,
    attempted: bool = True,
) -> bool:
    """Move a running run held by `worker` (under the lease of `epoch`, when given; any run, when worker is None)
    to a final status. `attempted` False takes back the attempt its lease counted: the delivery only ended it."""
    assert status in FINAL_STATUSES
    query = update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_STATUSES))
    if worker is not None:
        query = query.where(Run.worker == worker)
    if epoch is not None:
        query = query.where(Run.lease_epoch == epoch)
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(), "heartbeat_at": None}
    if not attempted:
        values["attempts"] = Run.attempts - 1
    result = session.execute(query.values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    event: dict[str, Any] = {"status": status}
    if error:
        event["error"] = error
    add_event(session=session, run_id=run_id, kind="status", data=event)
    compact_progress(session=session, run_id=run_id)
    return True


def release_lease(*, session: Session, run_id: str, worker: str, epoch: int | None = None) -> bool:
    """Give a run back to the queue because its worker is shutting down; the attempt does not count."""
    query = update(Run).where(Run.id == run_id, Run.worker == worker, Run.status == "running")
    if epoch is not None:
        query = query.where(Run.lease_epoch == epoch)
    result = session.execute(
        query.values(status="queued", worker=None, heartbeat_at=None, attempts=Run.attempts - 1).execution_options(
            synchronize_session=False
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    add_event(session=session, run_id=run_id, kind="status", data={"status": "queued", "reason": "worker shutdown"})
    return True


def request_cancel(*, session: Session, run: Run) -> None:
    """Cancel a queued run at once; ask a running one to stop at its next step."""
    if run.status == "queued":
        finish_run(session=session, run_id=run.id, worker=None, status="canceled")
    elif run.status == "running":
        run.cancel_requested = True


def requeue_run(*, session: Session, run: Run, total_steps: int | None, queue: str | None = None) -> None:
    """Put a finished or canceled run back in the queue (`queue`, when given: its placement resolved again) to
    continue from its last checkpoint."""
    if queue is not None:
        run.queue = queue
    config = dict(run.config)
    if total_steps is not None:
        config["train"] = {**config["train"], "steps": total_steps}
        run.config = config
        run.total_steps = total_steps
    run.status = "queued"
    run.cancel_requested = False
    run.finished_at = None
    run.error = None
    run.worker = None
    run.attempts = 0
    add_event(session=session, run_id=run.id, kind="status", data={"status": "queued"})


def gave_up_error(attempts: int, last_worker: str | None = None) -> str:
    """Why a run failed once its worker was lost on every attempt. One sentence whichever side gives up first: the
    reconciler on a stale heartbeat, or the worker that is delivered the run once more."""
    last = f"last: {last_worker}; " if last_worker else ""
    return (
        f"Gave up after {attempts} attempts: the worker running it was lost each time "
        f"({last}killed, out of memory, or its machine restarted). Resume it to try again."
    )


def find_lost_runs(
    *,
    session: Session,
    on_broker: tuple[set[str], set[str]] | None,
    stale_after: timedelta,
    queued_grace: timedelta,
    max_attempts: int,
) -> list[str]:
    """Decide which runs to send again; fail the ones that have used up their attempts.

    `on_broker` is (waiting, unacked): the run ids waiting in the queue and those delivered but not
    acknowledged (a dead worker's message stays unacked until the visibility timeout); None when the broker
    could not be read. A stale run already waiting in the queue is not sent again: every reconciler pass would
    otherwise add one more message.
    """
    waiting = on_broker[0] if on_broker is not None else set()
    now = utcnow()
    resend: list[str] = []
    stale_running = session.execute(
        select(Run).where(
            Run.status == "running", (Run.heartbeat_at.is_(None)) | (Run.heartbeat_at < now - stale_after)
        )
    ).scalars()
    for run in stale_running:
        if run.attempts >= max_attempts:
            finish_run(
                session=session,
                run_id=run.id,
                worker=None,
                status="failed",
                error=gave_up_error(run.attempts, run.worker),
            )
        elif run.id not in waiting:
            log.warning("run %s: worker %s stopped answering; sending the run again", run.id, run.worker)
            resend.append(run.id)
    if on_broker is not None:
        queued = session.execute(
            select(Run.id).where(Run.status == "queued", Run.created_at < now - queued_grace)
        ).scalars()
        known = on_broker[0] | on_broker[1]
        resend += [run_id for run_id in queued if run_id not in known]
    return resend


def run_queues(*, session: Session) -> set[str]:
    """The queues that queued and running runs are sent to (the reconciler reads them on the broker)."""
    return set(session.execute(select(Run.queue).where(Run.status.in_(ACTIVE_STATUSES)).distinct()).scalars())
