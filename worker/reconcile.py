"""The reconciler: SQL is the truth, the broker is only a doorbell.

A queued run whose message is gone from the broker (Redis restarted without persistence, a publish that
failed) is sent again; a running run whose heartbeat went stale (its worker was killed) is sent again so
that another worker resumes it from its last checkpoint, until its attempts run out and it fails with an
error that says why. Sending a run twice is harmless: the lease in SQL lets only one delivery train it.

It runs once when the API and each training worker start, then every `interval` seconds in each worker.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import get_sessionmaker
from store.models import Run, finish_run, utcnow
from store.settings import Settings, get_settings

log = logging.getLogger("ganforge.reconcile")


def _task_run_ids(payload: bytes | str) -> set[str]:
    """The run ids named by one raw kombu message on Redis (JSON envelope, JSON body, base64 encoded)."""
    try:
        envelope = json.loads(payload)
        if isinstance(envelope, list):  # the `unacked` hash stores [message, exchange, routing_key]
            envelope = envelope[0]
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return {str(a) for a in args if isinstance(a, str)}
    except (ValueError, KeyError, IndexError, TypeError):
        return set()


def run_ids_on_broker(settings: Settings, queue: str | None = None) -> tuple[set[str], set[str]] | None:
    """Ids (runs, or jobs) waiting in a queue (the training queue by default), and those delivered and not yet
    acknowledged on any queue; None if unknown."""
    from worker.celery_app import app

    try:
        with app.connection_for_read() as conn:
            channel: Any = conn.default_channel
            client = channel.client
            waiting: set[str] = set()
            for priority in channel.priority_steps:
                for payload in client.lrange(channel._q_for_pri(queue or settings.train_queue, priority), 0, -1):
                    waiting |= _task_run_ids(payload)
            unacked: set[str] = set()
            for payload in client.hvals(channel.unacked_key):
                unacked |= _task_run_ids(payload)
            return waiting, unacked
    except Exception as exc:
        log.warning("cannot read the broker's queue: %s", exc)
        return None


def find_lost_runs(
    *,
    session: Session,
    on_broker: tuple[set[str], set[str]] | None,
    stale_after: timedelta,
    queued_grace: timedelta,
    max_attempts: int,
) -> list[str]:
    """Decide which runs to send again; fail the ones that have used up their attempts. Never commits.

    `on_broker` is (waiting, unacked): the run ids waiting in the queue and those delivered but not
    acknowledged (a dead worker's message stays unacked until the visibility timeout). A stale run already
    waiting in the queue is not sent again: every reconciler pass would otherwise add one more message.
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
                error=(
                    f"Gave up after {run.attempts} attempts: the worker running it stopped answering each time "
                    f"(last: {run.worker}; killed, out of memory, or its machine restarted). Resume it to try again."
                ),
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


def reconcile_once(settings: Settings | None = None) -> list[str]:
    """One pass: find lost runs, commit the failures, then send the others again."""
    from api.queue import enqueue_run

    settings = settings or get_settings()
    on_broker = run_ids_on_broker(settings)
    with get_sessionmaker()() as session:
        resend = find_lost_runs(
            session=session,
            on_broker=on_broker,
            stale_after=timedelta(seconds=settings.heartbeat_timeout_seconds),
            queued_grace=timedelta(seconds=5),
            max_attempts=settings.max_attempts,
        )
        session.commit()
    for run_id in resend:
        enqueue_run(run_id)
    if resend:
        log.warning("reconciler sent %d run(s) again: %s", len(resend), ", ".join(resend))
    return resend


def start_reconciler(interval: float) -> threading.Thread:
    """Reconcile now and then every `interval` seconds on a daemon thread."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                reconcile_once()
            except Exception as exc:  # the database or broker is away: try again next time
                log.warning("reconcile failed: %s", exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="reconciler", daemon=True)
    thread.start()
    return thread
