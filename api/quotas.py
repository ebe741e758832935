"""A quota refusal (store/quotas.py) as an HTTP answer: 429 with Retry-After where waiting helps, 403 where it
does not. The body keeps the one error shape, `{"detail": "..."}`: a sentence that starts with the quota and its
numbers, `"queued_runs quota: 10 of 10 used; ..."`, so that every client shows it as it shows any error."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from api.responses import error
from store.quotas import Refusal

# How long a client should wait before trying again: a queued run starts when a worker frees (runs last minutes
# or more), a generation or score job ends in seconds.
RETRY_AFTER_SECONDS = {"running_runs": 60, "queued_runs": 60, "jobs_in_flight": 10}


def over_quota(refusal: Refusal) -> HTTPException:
    detail = f"{refusal.quota} quota: {refusal.used} of {refusal.limit} used; {refusal.message}"
    if refusal.waiting_helps:
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS[refusal.quota])}
        return HTTPException(status_code=429, detail=detail, headers=retry)
    return HTTPException(status_code=403, detail=detail)


def refuse_over_quota(refusal: Refusal | None) -> None:
    """Raise the answer to a refusal; nothing when there is none."""
    if refusal is not None:
        raise over_quota(refusal)


# The responses a route declares for its quotas.
QUEUE_FULL: dict[int | str, dict[str, Any]] = {
    429: error("Over a quota that frees up by itself (queued runs, jobs in flight): try after Retry-After.")
}
STORAGE_FULL: dict[int | str, dict[str, Any]] = {
    403: error("Over a storage quota (datasets, their bytes, checkpoint bytes): delete something first.")
}
