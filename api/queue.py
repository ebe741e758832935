"""Enqueueing work on the broker. Called only after the transaction that created the work commits."""

from __future__ import annotations

import logging

from store.settings import get_settings

log = logging.getLogger(__name__)


# The hard time limit comes this long after the soft one, which stops the loop at its next step.
HARD_LIMIT_GRACE_SECONDS = 300.0


def enqueue_run(run_id: str) -> bool:
    """Send a run to the training queue. False when the broker does not take it; the reconciler retries."""
    from worker.celery_app import app

    try:
        settings = get_settings()
        limit = settings.train_time_limit_seconds
        app.send_task(
            "ganforge.train_run",
            args=[run_id],
            queue=settings.train_queue,
            time_limit=limit + HARD_LIMIT_GRACE_SECONDS if limit else None,
        )
    except Exception:  # the broker is down: SQL still says queued, and the reconciler will send it again
        log.exception("could not enqueue run %s", run_id)
        return False
    return True
