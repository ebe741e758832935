"""Enqueueing work on the broker. Called only after the transaction that created the work commits."""

from __future__ import annotations

import logging

from api.settings import get_settings

log = logging.getLogger(__name__)


def enqueue_run(run_id: str) -> bool:
    """Send a run to the training queue. False when the broker does not take it; the reconciler retries."""
    from worker.celery_app import app

    try:
        app.send_task("ganforge.train_run", args=[run_id], queue=get_settings().train_queue)
    except Exception:  # the broker is down: SQL still says queued, and the reconciler will send it again
        log.exception("could not enqueue run %s", run_id)
        return False
    return True
