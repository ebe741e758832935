"""The reconciler: SQL is the truth, the broker is only a doorbell. It runs in the workers, never in the API.

Runs (training workers): a queued run whose message is gone from the broker (Redis restarted without
persistence, a publish that failed) is sent again; a running run whose heartbeat went stale (its worker was
killed) is sent again so that another worker resumes it from its last checkpoint, until its attempts run out
and it fails with an error that says why. Sending a run twice is harmless: the lease in SQL lets only one
delivery train it.

Jobs (generate workers): a running job whose worker process on this host is gone (killed, out of memory), or
that outlived its hard time limit, fails with a sentence that says so; a queued job whose message is gone is
sent again. Only jobs with no message waiting and none delivered-but-unacknowledged are sent, so a job in hand
is never sent twice.

Each worker runs the part for the queues it consumes, once at start and then every `interval` seconds.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy import select

from store import layout
from store.artifacts import get_storage
from store.db import get_sessionmaker
from store.jobs import expired_results, fail_lost_jobs, find_jobs_to_resend
from store.models import Run, utcnow
from store.queue import UNACKED_INDEX_KEY, UNACKED_KEY, enqueue_job, enqueue_run, get_app
from store.runs import find_lost_runs, run_queues
from store.settings import Settings, get_settings
from worker.generations import SOFT_TIME_LIMIT

log = logging.getLogger("ganforge.reconcile")

# A queued run or job younger than this may still be on its way to the broker.
QUEUED_GRACE = timedelta(seconds=5)
# A job running this long is past its hard time limit: its worker is gone or stuck.
JOB_OVERDUE = timedelta(seconds=SOFT_TIME_LIMIT + 120)


def _task_ids(payload: bytes | str) -> set[str]:
    """The ids (runs or jobs) named by one raw kombu message on Redis (JSON envelope, JSON body, base64)."""
    try:
        envelope = json.loads(payload)
        if isinstance(envelope, list):  # the unacked hash stores [message, exchange, routing_key]
            envelope = envelope[0]
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return {str(a) for a in args if isinstance(a, str)}
    except (ValueError, KeyError, IndexError, TypeError):
        return set()


def unacked_grace(settings: Settings) -> float:
    """Seconds a delivered message may stay unacknowledged while its run or job is still queued in SQL: a worker
    that received it takes the lease or claim within seconds. Past this, the delivery is taken as lost (its worker
    died, or Redis came back from its append-only file with the message in the unacked hash, where it would wait
    for the 6 h visibility timeout) and the reconciler sends the run or job again."""
    return max(2 * settings.reconcile_interval_seconds, 5.0)


def ids_on_broker(*queues: str, unacked_within: float | None = None) -> tuple[set[str], set[str]] | None:
    """Ids waiting in any of `queues`, and those delivered and not yet acknowledged on any queue (only the ones
    delivered within the last `unacked_within` seconds, when given); None if unknown.

    The queue is one Redis list named as the queue and the unacknowledged messages one hash, with their delivery
    times in a sorted set (store/queue.py configures kombu's Redis transport so: one priority step, fixed keys).
    """
    try:
        with get_app().connection_for_read() as conn:
            client = conn.default_channel.client
            waiting: set[str] = set()
            for queue in queues:
                for payload in client.lrange(queue, 0, -1):
                    waiting |= _task_ids(payload)
            unacked: set[str] = set()
            delivered = dict(client.zrange(UNACKED_INDEX_KEY, 0, -1, withscores=True))
            oldest = time.time() - unacked_within if unacked_within is not None else None
            for tag, payload in client.hgetall(UNACKED_KEY).items():
                if oldest is None or delivered.get(tag, 0.0) >= oldest:
                    unacked |= _task_ids(payload)
            return waiting, unacked
    except Exception as exc:
        log.warning("cannot read the broker's queues %s: %s", ", ".join(queues), exc)
        return None


def reconcile_runs(settings: Settings) -> list[str]:
    """Fail the runs out of attempts, commit, then send the lost ones again, each to its own queue (its placement).
    Returns the ids sent."""
    with get_sessionmaker()() as session:
        queues = run_queues(session=session) | {settings.train_queue}
    on_broker = ids_on_broker(*sorted(queues), unacked_within=unacked_grace(settings))
    with get_sessionmaker()() as session:
        resend = find_lost_runs(
            session=session,
            on_broker=on_broker,
            stale_after=timedelta(seconds=settings.heartbeat_timeout_seconds),
            queued_grace=QUEUED_GRACE,
            max_attempts=settings.max_attempts,
        )
        session.commit()
        queue_of = {
            run_id: queue for run_id, queue in session.execute(select(Run.id, Run.queue).where(Run.id.in_(resend)))
        }
    for run_id in resend:
        enqueue_run(run_id, queue_of.get(run_id))
    if resend:
        log.warning("reconciler sent %d run(s) again: %s", len(resend), ", ".join(resend))
    return resend


def _alive_here(worker: str | None) -> bool:
    """False when `worker` (host:pid) is a process of this host that is gone; a worker elsewhere is presumed alive."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return process_exists(int(pid))


def process_exists(pid: int) -> bool:
    """True while `pid` is a process that can still run. A zombie (state Z or X in /proc/PID/stat) has exited and
    only waits to be reaped: a worker killed with its parent is reparented to PID 1, which may reap it much later,
    and `kill(pid, 0)` succeeds on it all that while."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    # The state follows the command name in parentheses, which may itself hold spaces and parentheses.
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def reconcile_jobs(settings: Settings) -> list[str]:
    """Fail the jobs whose worker stopped, commit, then send the queued ones whose message is gone. Returns the
    ids sent."""
    with get_sessionmaker()() as session:
        lost = fail_lost_jobs(session=session, worker_alive=_alive_here, started_before=utcnow() - JOB_OVERDUE)
        session.commit()
    if lost:
        log.warning("failed %d job(s) whose worker stopped: %s", len(lost), ", ".join(lost))
    on_broker = ids_on_broker(settings.generate_queue, unacked_within=unacked_grace(settings))
    if on_broker is None:
        return []
    known = on_broker[0] | on_broker[1]
    with get_sessionmaker()() as session:
        resend = find_jobs_to_resend(session=session, known=known, created_before=utcnow() - QUEUED_GRACE)
    for job_id, kind in resend:
        enqueue_job(job_id, kind)
    if resend:
        log.warning("sent %d queued job(s) again: their broker message was gone", len(resend))
    return [job_id for job_id, _ in resend]


def delete_expired_results(settings: Settings) -> list[str]:
    """Delete the files of job results past GANFORGE_JOB_RESULT_TTL_SECONDS (their routes already answer 410) and
    forget where they were. Returns the job ids."""
    if settings.job_result_ttl_seconds is None:
        return []
    with get_sessionmaker()() as session:
        expired = expired_results(session=session, ttl_seconds=settings.job_result_ttl_seconds, now=utcnow())
        done = []
        for job in expired:
            get_storage().delete_prefix(layout.job_prefix(job.run_id, job.id))
            shutil.rmtree(layout.job_dir(settings.data_dir, job.run_id, job.id), ignore_errors=True)
            job.result_path = None
            done.append(job.id)
        session.commit()
    if done:
        log.info("deleted the expired results of %d job(s)", len(done))
    return done


def reconcile_once(*, runs: bool, jobs: bool, settings: Settings | None = None) -> None:
    """One pass over runs (training workers) and jobs (generate workers)."""
    settings = settings or get_settings()
    if runs:
        reconcile_runs(settings)
    if jobs:
        reconcile_jobs(settings)
        delete_expired_results(settings)


def start_reconciler(*, runs: bool, jobs: bool, interval: float) -> threading.Thread:
    """Reconcile now and then every `interval` seconds on a daemon thread."""

    def loop() -> None:
        while True:
            try:
                reconcile_once(runs=runs, jobs=jobs)
            except Exception as exc:  # the database or broker is away: try again next time
                log.warning("reconcile failed: %s", exc)
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="reconciler", daemon=True)
    thread.start()
    return thread
