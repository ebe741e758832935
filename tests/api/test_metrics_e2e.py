"""Metric series and the live event stream of a real run."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from store.models import Event
from tests.conftest import Service
from tests.utils.runs import wait_for_status


@pytest.fixture
def service(any_service: Service) -> Service:
    """This module's tests run on PostgreSQL and SQLite with the artifacts on disk, and on PostgreSQL with them
    in object storage (tests/conftest.py: s3_service)."""
    return any_service


RING8 = {"dataset": "ring8", "train": {"steps": 400}, "schedule": {"sample_every": 200, "checkpoint_every": 200}}


def read_events(client: httpx.Client, run_id: str, last_event_id: str | None = None) -> list[dict]:
    """Read the SSE stream to its end (it ends once the run is final and everything was sent)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict] = []
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
    return events


def test_event_stream_delivers_progress_samples_and_final_status(user_client: httpx.Client) -> None:
    run = user_client.post("/runs", json=RING8).json()
    events = read_events(user_client, run["id"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and events[0]["data"]["status"] == "queued"
    assert "progress" in kinds and "sample" in kinds
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "succeeded"
    sample = next(e for e in events if e["event"] == "sample")
    assert user_client.get(sample["data"]["url"]).status_code == 200

    # Reconnecting with Last-Event-ID continues after that event, with nothing repeated. The run has ended, so
    # its progress ticks were compacted to the newest one; every other event is still there.
    middle = events[len(events) // 2]
    rest = read_events(user_client, run["id"], last_event_id=middle["id"])
    after = [e for e in events if int(e["id"]) > int(middle["id"])]
    assert [e["id"] for e in rest if e["event"] != "progress"] == [e["id"] for e in after if e["event"] != "progress"]
    ticks = [e["id"] for e in after if e["event"] == "progress"]
    assert [e["id"] for e in rest if e["event"] == "progress"] == ticks[-1:]
    assert rest[-1]["data"]["status"] == "succeeded"


def test_metrics_series_as_json_and_csv(user_client: httpx.Client) -> None:
    run = user_client.post("/runs", json=RING8).json()
    run = wait_for_status(user_client, run["id"], ("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    series = user_client.get(f"/runs/{run['id']}/metrics").json()["series"]
    assert "loss_d" in series and "loss_g" in series
    steps = [step for step, _ in series["loss_d"]]
    assert steps == sorted(steps) and 0 < len(steps) <= 400

    only = user_client.get(f"/runs/{run['id']}/metrics", params={"names": "loss_g", "since_step": 200}).json()
    assert list(only["series"]) == ["loss_g"] and all(step >= 200 for step, _ in only["series"]["loss_g"])

    csv = user_client.get(f"/runs/{run['id']}/metrics", headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "step,name,value" and len(lines) > 2
    assert run["environment"].get("torch"), run["environment"]


def test_a_first_connection_skips_old_progress_ticks_however_long_the_history(
    service: Service, user_client: httpx.Client
) -> None:
    """The replay of a finished run carries one progress tick, the newest, even when its history is longer than
    one batch of the stream's reads (500 events)."""
    run = user_client.post("/runs", json={**RING8, "train": {"steps": 20}}).json()
    assert wait_for_status(user_client, run["id"], ("succeeded", "failed"))["status"] == "succeeded"
    engine = sa.create_engine(service.env["GANFORGE_DATABASE_URL"], poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Event), [{"run_id": run["id"], "kind": "progress", "data": {"step": i}} for i in range(1200)]
        )
    engine.dispose()
    events = read_events(user_client, run["id"])
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["data"] for e in progress] == [{"step": 1199}]
    assert events[-1]["event"] == "progress"  # inserted after the final status, so last; the stream still ended
    # A reconnection gets everything after its cursor, old ticks included.
    rest = read_events(user_client, run["id"], last_event_id=events[0]["id"])
    assert sum(e["event"] == "progress" for e in rest) >= 1200


def test_prometheus_page_counts_requests_by_known_method(service: Service) -> None:
    """A method other than the API's own is counted as "other": the page cannot be grown by clients. (A made-up
    method never reaches the app: the HTTP parser answers 400.)"""
    with httpx.Client(base_url=service.url) as client:
        for method in ("PROPFIND", "MKCOL"):
            assert client.request(method, "/healthz").status_code == 405
        page = client.get("/metrics").text
    assert 'method="other",status="405"' in page
    assert "PROPFIND" not in page and "MKCOL" not in page
    assert "ganforge_runs{" in page
