"""Helpers for tests that drive runs through the real API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_for_http(url: str, *, timeout: float = 60, alive: Callable[[], None] | None = None) -> None:
    """Poll `url` until it answers 200; `alive()` may raise to stop early (the server process exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


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


def wait_for_job(client: httpx.Client, url: str, timeout: float = 120) -> dict[str, Any]:
    """Poll a generation or score until it is succeeded or failed."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(url)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{url} did not finish within {timeout} s; last seen: {job}")


def post_and_finish(client: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST /runs with `body` (a 201) and wait for the run to succeed. Returns the posted run and the finished one."""
    response = client.post("/runs", json=body)
    assert response.status_code == 201, response.text
    run = wait_for_status(client, response.json()["id"], ("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    return response.json(), run


def assert_trained_to(
    client: httpx.Client, run_id: str, step: int, metrics: tuple[str, ...] = (), evaluated_at: tuple[int, ...] = ()
) -> None:
    """A finished run has a latest grid, its last checkpoint at `step`, and each of `metrics` evaluated at the
    steps `evaluated_at`, and only at those."""
    assert client.get(f"/runs/{run_id}/samples/latest.png").status_code == 200
    assert [c["step"] for c in client.get(f"/runs/{run_id}/checkpoints").json()["items"]][-1] == step
    series = client.get(f"/runs/{run_id}/metrics").json()["series"]
    for name in metrics:
        assert [s for s, _ in series[name]] == list(evaluated_at), name
