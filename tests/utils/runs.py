"""Helpers for tests that drive runs through the real API."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_for_status(
    client: httpx.Client, run_id: str, statuses: tuple[str, ...], timeout: float = 180
) -> dict[str, Any]:
    """Poll GET /runs/{id} until the run reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/runs/{run_id}")
        response.raise_for_status()
        run = response.json()
        if run["status"] in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {statuses} within {timeout} s; last seen: {run}")
