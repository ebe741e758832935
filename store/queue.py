"""The message side of the shared infrastructure: the one Celery application and its configuration, and the
functions that send work by task name. The API publishes through it without importing a task module; the worker
adds its task modules to the same application (worker/celery_app.py), so there is one broker configuration.

Send only after the transaction that created the work commits. SQL stays the truth: a message that is lost is
sent again by the reconciler (worker/reconcile.py).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from celery import Celery

from store.settings import Settings, get_settings

log = logging.getLogger("ganforge.queue")

# Redis re-delivers a message not acknowledged within the visibility timeout. Jobs acknowledge theirs when they
# end (minutes). A training run settles its delivery as soon as its lease is committed (`settle_delivery`), since
# its lease in SQL, not the message, says who trains it: a run of any length is never delivered twice, and a
# worker that dies is noticed through its heartbeat and the reconciler sends the run again. Set the same for the
# broker and any result backend.
VISIBILITY_TIMEOUT = 6 * 3600
# Kombu's Redis transport keeps one list per priority step; with the one step 0 a queue is exactly one Redis list
# named as the queue, which the reconciler reads. Delivered, unacknowledged messages wait in the hash UNACKED_KEY.
PRIORITY_STEPS = [0]
UNACKED_KEY = "unacked"
# ...and the time each was delivered, in this sorted set (kombu's default name; delivery tag → UNIX time).
UNACKED_INDEX_KEY = "unacked_index"
# The hard time limit of a training attempt comes this long after the soft one, which stops it at its next step.
HARD_LIMIT_GRACE_SECONDS = 300.0


def make_app(settings: Settings) -> Celery:
    """The application, set for long GPU jobs: late acks, one message at a time, JSON only."""
    app = Celery("ganforge", broker=settings.broker_url)
    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "priority_steps": PRIORITY_STEPS,
        "unacked_key": UNACKED_KEY,
        "unacked_index_key": UNACKED_INDEX_KEY,
    }
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # the reconciler, not a re-delivery loop, hands on a lost run
        worker_prefetch_multiplier=1,
        # A busy worker reserves no next message, which would wait behind hours of training while others idle.
        worker_disable_prefetch=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        task_default_queue=settings.train_queue,
        task_routes={"ganforge.train_run": {"queue": settings.train_queue}},
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


@lru_cache
def get_app() -> Celery:
    return make_app(get_settings())


def settle_delivery(task_id: str) -> None:
    """Remove the delivered message of task `task_id` from the Redis transport's unacknowledged hash and its index
    (what an acknowledgement does there), so that the broker never brings it back after the visibility timeout.
    Called by a training task once its lease is committed; Celery's own acknowledgement when the task ends then
    finds nothing left to remove. Best effort: should it fail, a later delivery is refused by the lease."""
    try:
        with get_app().connection_for_write() as conn:
            client = conn.default_channel.client
            for tag, payload in client.hgetall(UNACKED_KEY).items():
                try:
                    delivered_id = json.loads(payload)[0]["headers"]["id"]
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                if delivered_id == task_id:
                    client.pipeline().hdel(UNACKED_KEY, tag).zrem(UNACKED_INDEX_KEY, tag).execute()
    except Exception as exc:
        log.warning("task %s: its delivery stays unacknowledged until it ends (%s)", task_id, exc)


def enqueue_run(run_id: str, queue: str | None = None) -> bool:
    """Send a run to `queue`: the run's own (`Run.queue`, resolved from its placement by store/workers.py), or the
    training queue. False when the broker does not take it; the reconciler retries."""
    try:
        settings = get_settings()
        limit = settings.train_time_limit_seconds
        get_app().send_task(
            "ganforge.train_run",
            args=[run_id],
            queue=queue or settings.train_queue,
            time_limit=limit + HARD_LIMIT_GRACE_SECONDS if limit else None,
        )
    except Exception:  # the broker is down: SQL still says queued, and the reconciler will send it again
        log.exception("could not enqueue run %s", run_id)
        return False
    return True


def enqueue_job(job_id: str, kind: str) -> bool:
    """Send a generation or score job (store/jobs.py) to the generate queue. False when the broker does not
    take it."""
    try:
        get_app().send_task(f"ganforge.{kind}", args=[job_id], queue=get_settings().generate_queue)
    except Exception:
        log.exception("could not enqueue %s job %s", kind, job_id)
        return False
    return True
