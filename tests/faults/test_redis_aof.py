"""Redis restarted with its append-only file: a message that a worker had taken off the queue and not
acknowledged comes back in Redis's unacked hash, where kombu would leave it until the 6 h visibility timeout. The
reconciler sends the run or job again within seconds instead."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from store.queue import UNACKED_INDEX_KEY, UNACKED_KEY
from tests.conftest import Service
from tests.faults.conftest import FAULT_ENV, OwnRedis, run_row
from tests.utils.runs import post_and_finish, wait_for_job, wait_for_status

TINY = {"dataset": "ring8", "train": {"steps": 20}, "schedule": {"sample_every": 10, "checkpoint_every": 10}}


@pytest.fixture(scope="module")
def aof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, OwnRedis]]:
    workdir = tmp_path_factory.mktemp("aof")
    broker = OwnRedis(workdir / "redis", appendonly=True)
    database_url = f"sqlite:///{workdir / 'ganforge.db'}"
    service = Service(database_url=database_url, broker_url=broker.url, workdir=workdir, extra_env=FAULT_ENV)
    service.database_url = database_url  # type: ignore[attr-defined]  # read by run_row
    try:
        service.start_api()
        yield service, broker
    finally:
        service.stop()
        broker.stop()


def strand_in_unacked(client: redis.Redis, queue: str) -> None:
    """Move the queue's one message into the unacked hash, as a worker's delivery does (kombu's Redis QoS), with a
    delivery time of a minute ago: the state a worker that died mid-delivery leaves behind."""
    payload = client.rpop(queue)
    assert payload is not None, f"no message waiting in {queue}"
    message = json.loads(payload)
    tag = message["properties"]["delivery_tag"]
    delivery = message["properties"]["delivery_info"]
    client.zadd(UNACKED_INDEX_KEY, {tag: time.time() - 60})
    client.hset(UNACKED_KEY, tag, json.dumps([message, delivery["exchange"], delivery["routing_key"]]))
    assert client.llen(queue) == 0


def test_runs_and_jobs_stranded_in_unacked_across_a_restart_are_sent_again(aof: tuple[Service, OwnRedis]) -> None:
    service, broker = aof
    service.start_worker("train")
    service.start_worker("generate")
    with service.client() as client:
        finished, _ = post_and_finish(client, TINY)
    for name in list(service.workers):  # nothing consumes while the messages are stranded
        service.kill_worker(name)

    with service.client() as client:
        run_id = client.post("/runs", json=TINY).json()["id"]
        job_id = client.post(f"/runs/{finished['id']}/generations", json={"n": 4, "seed": 0}).json()["id"]
    direct = redis.Redis.from_url(broker.url)
    strand_in_unacked(direct, "train")
    strand_in_unacked(direct, "generate")
    direct.close()
    broker.stop()  # a clean shutdown writes the append-only file out
    broker.start()
    assert redis.Redis.from_url(broker.url).hlen(UNACKED_KEY) == 2  # both came back, still unacknowledged

    service.start_worker("train")
    service.start_worker("generate")
    with service.client() as client:
        run = wait_for_status(client, run_id, ("succeeded", "failed"), timeout=120)
        assert run["status"] == "succeeded", run["error"]
        job = wait_for_job(client, f"/generations/{job_id}", timeout=120)
        assert job["status"] == "succeeded", job["error"]
    assert run_row(service, run_id)["attempts"] == 1
