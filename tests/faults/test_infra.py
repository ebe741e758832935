"""The infrastructure under faults, with real processes: the broker restarted without persistence, PostgreSQL
unreachable for a while, the API killed and restarted under an SSE client. The Redis and PostgreSQL servers
here are this module's own (spare port, unix socket); the machine's are never touched."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from tests.conftest import Service, start_service
from tests.faults.conftest import FAULT_ENV, OwnPostgres, OwnRedis, checkpoint_steps, run_events, run_row, wait_until
from tests.utils.runs import wait_for_status

RING8 = {
    "dataset": "ring8",
    "seed": 5,
    "model": {"width": 32},
    "train": {"steps": 600, "batch_size": 64},
    "schedule": {"sample_every": 100, "checkpoint_every": 25},
}
TINY = {**RING8, "train": {"steps": 20, "batch_size": 64}}


@dataclass
class Infra:
    service: Service
    redis: OwnRedis
    postgres: OwnPostgres


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """The service on a PostgreSQL server and a Redis server that the tests may stop and start."""
    workdir = tmp_path_factory.mktemp("infra")
    redis = OwnRedis(workdir / "redis")
    postgres = OwnPostgres()
    admin = postgres.server.get_uri("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "ganforge"')
    database_url = postgres.server.get_uri("ganforge").replace("postgresql://", "postgresql+psycopg://", 1)
    # A database outage of a few seconds must not look like a dead worker: the heartbeat window stays long.
    env = {**FAULT_ENV, "GANFORGE_HEARTBEAT_TIMEOUT_SECONDS": "60"}
    service = start_service(database_url=database_url, broker_url=redis.url, workdir=workdir, **env)
    service.database_url = database_url  # type: ignore[attr-defined]
    yield Infra(service, redis, postgres)
    service.stop()
    redis.stop()
    postgres.cleanup()


def test_redis_restarted_without_persistence_loses_no_run(infra: Infra) -> None:
    service = infra.service
    with service.client() as client:
        running = client.post("/runs", json=RING8).json()
        queued = [client.post("/runs", json=TINY).json()["id"] for _ in range(3)]  # behind it: one worker
        wait_until(lambda: checkpoint_steps(service, running["id"]), what="a first checkpoint")

        # Restart the broker: it keeps nothing, so the queued runs' messages are gone.
        infra.redis.stop()
        time.sleep(1)
        infra.redis.start()
        assert run_row(service, queued[0])["status"] == "queued"

        after = client.post("/runs", json=TINY)  # the API sends to the restarted broker
        assert after.status_code == 201
        for run_id in [running["id"], *queued, after.json()["id"]]:
            run = wait_for_status(client, run_id, ("succeeded", "failed", "canceled"))
            assert run["status"] == "succeeded", (run_id, run["error"])
            assert run["progress"]["step"] == run["progress"]["total_steps"]
            assert run_row(service, run_id)["attempts"] == 1  # none was lost, none counted twice
    # The running run was handed back at a checkpoint (a worker cancels its task when the broker connection
    # drops) or went on; either way it trained on from where it was, never from 0.
    events = run_events(service, running["id"])
    last_start = max(i for i, (k, d) in enumerate(events) if k == "status" and d["status"] == "running")
    steps = [int(d["step"]) for k, d in events[last_start:] if k == "progress"]
    info = json.loads((service.data_dir / "runs" / running["id"] / "run_info.json").read_text())
    assert steps == sorted(steps) and steps[-1] == RING8["train"]["steps"]
    assert min(steps) > info.get("resumed_from_step", 0)


def test_redis_restarted_without_persistence_loses_no_generation(infra: Infra) -> None:
    service = infra.service
    with service.client() as client:
        run = client.post("/runs", json=TINY).json()
        assert wait_for_status(client, run["id"], ("succeeded", "failed"))["status"] == "succeeded"
        service.kill_worker("generate")  # the job's message waits in Redis...
        job = client.post(f"/runs/{run['id']}/generations", json={"n": 16, "format": "npz"}).json()
        infra.redis.stop()  # ...and is gone with the restart
        time.sleep(1)
        infra.redis.start()
        service.start_worker("generate")
        done = wait_until(
            lambda: (g := client.get(f"/generations/{job['id']}").json())["status"] in ("succeeded", "failed") and g,
            what="the generation to end",
        )
        assert done["status"] == "succeeded", done["error"]
        assert client.get(f"/generations/{job['id']}/result").status_code == 200


def test_postgres_unreachable_for_a_while_loses_nothing(infra: Infra) -> None:
    service = infra.service
    with service.client() as client:
        run = client.post("/runs", json=RING8).json()
        wait_until(lambda: checkpoint_steps(service, run["id"]), what="a first checkpoint")

        infra.postgres.stop()
        try:
            ready = httpx.get(f"{service.url}/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["detail"].startswith("not ready: database: ")
            assert "broker" not in ready.json()["detail"]
            # The worker trains on without its database, to the end: the last checkpoint is on disk.
            wait_until(
                lambda: RING8["train"]["steps"] in checkpoint_steps(service, run["id"]),
                what="the run's last checkpoint",
                timeout=180,
            )
            time.sleep(2)  # the worker is retrying its final status write now
        finally:
            infra.postgres.start()

        run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"), timeout=120)
        assert run["status"] == "succeeded", run["error"]
        assert run["progress"]["step"] == RING8["train"]["steps"]
        assert httpx.get(f"{service.url}/readyz", timeout=30).status_code == 200
    # Nothing the worker reported during the outage was lost: every checkpoint has its event.
    events = run_events(service, run["id"])
    every = RING8["schedule"]["checkpoint_every"]
    assert [d["step"] for k, d in events if k == "checkpoint"] == list(range(every, RING8["train"]["steps"] + 1, every))
    assert [d["status"] for k, d in events if k == "status"] == ["queued", "running", "succeeded"]
    assert run_row(service, run["id"])["attempts"] == 1


def _read_sse(lines: Iterator[str], into: list[tuple[int, str, dict]], stop_after: int | None = None) -> None:
    """Append (id, kind, data) of each event; return after `stop_after` events, or at the stream's end."""
    event_id, kind = 0, ""
    for line in lines:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            into.append((event_id, kind, json.loads(line[6:])))
            if stop_after is not None and len(into) >= stop_after:
                return


def test_api_killed_and_restarted_during_a_run_sse_client_reconnects(infra: Infra) -> None:
    service = infra.service
    seen: list[tuple[int, str, dict]] = []
    with service.client() as client:
        run = client.post("/runs", json=RING8).json()
        wait_for_status(client, run["id"], ("running",))
        with client.stream("GET", f"/runs/{run['id']}/events", timeout=60) as response:
            lines = response.iter_lines()
            _read_sse(lines, seen, stop_after=3)
            assert service.api is not None
            os.kill(service.api.pid, signal.SIGKILL)  # the API dies under its client
            service.api.wait()
            service.api = None
            with pytest.raises(httpx.HTTPError):
                _read_sse(lines, seen)
        step_when_killed = run_row(service, run["id"])["step"]
        time.sleep(2)
        assert run_row(service, run["id"])["step"] > step_when_killed  # training went on without the API

        service.start_api()
        last_id = seen[-1][0]
        headers = {"Last-Event-ID": str(last_id)}
        with client.stream("GET", f"/runs/{run['id']}/events", headers=headers, timeout=180) as response:
            assert response.status_code == 200
            rest: list[tuple[int, str, dict]] = []
            _read_sse(response.iter_lines(), rest)
    ids = [event_id for event_id, _, _ in rest]
    assert ids and ids[0] > last_id and ids == sorted(set(ids))  # continued after the last event, no repeats
    assert rest[-1][1:] == ("status", {"status": "succeeded"})
    progress = [d["step"] for _, k, d in rest if k == "progress"]
    assert progress[-1] == RING8["train"]["steps"]
    assert run_row(service, run["id"])["attempts"] == 1
