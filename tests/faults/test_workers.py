"""Workers under faults, with real processes: kill -9 mid-run, a poison run, two deliveries of one run,
cancel, and SIGTERM (docker stop) of a training worker."""

from __future__ import annotations

import json
import os
import signal
import time

import redis
from celery import Celery

from store.queue import UNACKED_KEY
from tests.conftest import Service
from tests.faults.conftest import checkpoint_steps, run_events, run_row, wait_until
from tests.utils.runs import wait_for_status

# A few seconds of training on this machine: long enough to be killed in the middle.
RING8 = {
    "dataset": "ring8",
    "seed": 3,
    "model": {"width": 32},
    "train": {"steps": 300, "batch_size": 64},
    "schedule": {"sample_every": 100, "checkpoint_every": 25},
}
ENDLESS = {**RING8, "train": {"steps": 1_000_000, "batch_size": 64}}


def _progress_steps(events: list[tuple[str, dict]]) -> list[int]:
    return [int(data["step"]) for kind, data in events if kind == "progress"]


def _statuses(events: list[tuple[str, dict]]) -> list[str]:
    return [data["status"] for kind, data in events if kind == "status"]


def test_kill_9_mid_run_another_worker_resumes_from_the_last_checkpoint(faults: Service) -> None:
    with faults.client() as client:
        run = client.post("/runs", json=RING8).json()
        wait_until(
            lambda: checkpoint_steps(faults, run["id"]) and checkpoint_steps(faults, run["id"])[-1] >= 50,
            what="a checkpoint at step 50 or later",
        )
        faults.kill_worker("train")
        killed_at = checkpoint_steps(faults, run["id"])[-1]
        assert killed_at < RING8["train"]["steps"], "the run ended before the worker could be killed"
        assert run_row(faults, run["id"])["status"] == "running"

        faults.start_worker("train", name="train")  # a new worker process
        run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"))
        assert run["status"] == "succeeded", run["error"]
        assert run["progress"]["step"] == RING8["train"]["steps"]

    # The second worker resumed from the checkpoint the first one left, and trained on from there.
    info = json.loads((faults.data_dir / "runs" / run["id"] / "run_info.json").read_text())
    assert info["resumed_from_step"] == killed_at
    row = run_row(faults, run["id"])
    assert row["attempts"] == 2
    events = run_events(faults, run["id"])
    assert _statuses(events) == ["queued", "running", "running", "succeeded"]
    first_worker, second_worker = [d["worker"] for k, d in events if k == "status" and d["status"] == "running"]
    assert first_worker != second_worker
    second_start = next(i for i, (k, d) in enumerate(events) if k == "status" and d.get("worker") == second_worker)
    resumed = _progress_steps(events[second_start:])
    assert resumed and min(resumed) > killed_at  # it did not start again from 0
    assert resumed == sorted(resumed) and resumed[-1] == RING8["train"]["steps"]
    assert checkpoint_steps(faults, run["id"])[-1] == RING8["train"]["steps"]


def test_a_poison_run_fails_after_max_attempts_with_an_error_that_says_why(faults: Service) -> None:
    with faults.client() as client:
        run = client.post("/runs", json=ENDLESS).json()
        for attempt in (1, 2):  # GANFORGE_MAX_ATTEMPTS=2: killed on each delivery
            wait_until(
                lambda attempt=attempt: (
                    (r := run_row(faults, run["id"]))["status"] == "running" and r["attempts"] == attempt
                ),
                what=f"delivery {attempt}",
            )
            faults.kill_worker("train")
            faults.start_worker("train")
        run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"), timeout=60)
    assert run["status"] == "failed"
    assert run["error"].startswith("Gave up after 2 attempts: the worker running it was lost each time")
    assert "Resume it to try again" in run["error"]
    assert run_row(faults, run["id"])["attempts"] == 2
    # The reconciler does not bring it back: it stays failed.
    assert _statuses(run_events(faults, run["id"]))[-1] == "failed"


def test_two_deliveries_of_one_run_train_it_once(faults: Service) -> None:
    faults.start_worker("train", name="train2")
    celery = Celery("ganforge-test", broker=faults.env["GANFORGE_BROKER_URL"])
    try:
        with faults.client() as client:
            run = client.post("/runs", json=RING8).json()  # delivery 1
            for _ in range(2):  # deliveries 2 and 3, by hand
                celery.send_task("ganforge.train_run", args=[run["id"]], queue="train")
            run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"))
            assert run["status"] == "succeeded", run["error"]
            # Both workers are idle again, so every delivery has been handled.
            wait_until(
                lambda: "not taken" in faults.log("worker-train") + faults.log("worker-train2"),
                what="a dropped delivery in the workers' logs",
            )
    finally:
        celery.close()
    assert run_row(faults, run["id"])["attempts"] == 1
    events = run_events(faults, run["id"])
    assert _statuses(events) == ["queued", "running", "succeeded"]
    steps = _progress_steps(events)
    assert steps == sorted(steps)  # one trainer only: progress never goes back


def test_a_training_worker_holds_no_message_while_it_trains(faults: Service) -> None:
    """A run acknowledges its message when it starts, so however long it trains, the broker has nothing of it to
    deliver again after the visibility timeout; and the busy worker reserves no next run, which waits in the
    queue for the next free worker instead of behind the current run."""
    broker = redis.Redis.from_url(faults.env["GANFORGE_BROKER_URL"])

    def unacked(run_id: str) -> bool:
        return any(run_id.encode() in message for message in broker.hvals(UNACKED_KEY))

    def waiting(run_id: str) -> bool:
        return any(run_id.encode() in message for message in broker.lrange("train", 0, -1))

    try:
        with faults.client() as client:
            first = client.post("/runs", json=ENDLESS).json()
            wait_until(lambda: checkpoint_steps(faults, first["id"]), what="a first checkpoint")
            assert not unacked(first["id"])  # nothing the broker could restore after its visibility timeout

            second = client.post("/runs", json=RING8).json()
            time.sleep(2)  # the busy worker's consumer has had its chance to take the message
            assert waiting(second["id"]) and not unacked(second["id"]) and not unacked(first["id"])
            assert client.get(f"/runs/{second['id']}").json()["status"] == "queued"

            faults.start_worker("train", name="train2")  # a free worker takes it at once
            done = wait_for_status(client, second["id"], ("succeeded", "failed", "canceled"))
            assert done["status"] == "succeeded", done["error"]
            assert client.get(f"/runs/{first['id']}").json()["status"] == "running"
            client.post(f"/runs/{first['id']}/cancel").raise_for_status()
            assert wait_for_status(client, first["id"], ("canceled", "failed"))["status"] == "canceled"
    finally:
        broker.close()
    assert run_row(faults, first["id"])["attempts"] == 1
    (busy,) = [d["worker"] for k, d in run_events(faults, first["id"]) if k == "status" and d["status"] == "running"]
    (free,) = [d["worker"] for k, d in run_events(faults, second["id"]) if k == "status" and d["status"] == "running"]
    assert busy != free


def test_cancel_a_queued_run_and_a_running_one(faults: Service) -> None:
    with faults.client() as client:
        running = client.post("/runs", json=ENDLESS).json()
        queued = client.post("/runs", json=RING8).json()  # waits behind it: one training worker
        wait_until(lambda: checkpoint_steps(faults, running["id"]), what="a first checkpoint")
        assert client.get(f"/runs/{queued['id']}").json()["status"] == "queued"

        response = client.post(f"/runs/{queued['id']}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "canceled"
        response = client.post(f"/runs/{running['id']}/cancel")
        assert response.status_code == 202
        canceled = wait_for_status(client, running["id"], ("canceled", "failed", "succeeded"), timeout=60)
        assert canceled["status"] == "canceled"

        # The running run stopped at a step and kept a checkpoint of that very step.
        assert checkpoint_steps(faults, running["id"])[-1] == canceled["progress"]["step"]
        assert (
            client.get(f"/runs/{running['id']}/checkpoints").json()["items"][-1]["step"] == canceled["progress"]["step"]
        )
        # The queued one never trained, and nothing is left running.
        assert run_row(faults, queued["id"])["attempts"] == 0
        assert not (faults.data_dir / "runs" / queued["id"] / "checkpoints").exists()
        assert client.get("/runs", params={"status": "running"}).json()["items"] == []
        # The worker is free: the next run trains.
        after = client.post("/runs", json={**RING8, "train": {"steps": 20, "batch_size": 64}}).json()
        assert wait_for_status(client, after["id"], ("succeeded", "failed"))["status"] == "succeeded"
    assert _statuses(run_events(faults, queued["id"])) == ["queued", "canceled"]


def test_sigterm_of_a_training_worker_requeues_its_run_at_a_checkpoint(faults: Service) -> None:
    with faults.client() as client:
        run = client.post("/runs", json=RING8).json()
        wait_until(lambda: checkpoint_steps(faults, run["id"]), what="a first checkpoint")
        worker = faults.workers.pop("train")
        os.kill(worker.pid, signal.SIGTERM)  # what `docker stop` does: the worker's main process only
        assert worker.wait(60) == 0
        row = run_row(faults, run["id"])
        assert row["status"] == "queued" and row["worker"] is None
        stopped_at = checkpoint_steps(faults, run["id"])[-1]
        assert row["step"] == stopped_at  # it stopped at a step and checkpointed it

        faults.start_worker("train")
        run = wait_for_status(client, run["id"], ("succeeded", "failed", "canceled"), timeout=240)
        assert run["status"] == "succeeded", run["error"]
    info = json.loads((faults.data_dir / "runs" / run["id"] / "run_info.json").read_text())
    assert info["resumed_from_step"] == stopped_at
    assert _statuses(run_events(faults, run["id"])) == ["queued", "running", "queued", "running", "succeeded"]
    assert run_row(faults, run["id"])["attempts"] == 1  # a clean hand-over is not a lost attempt
