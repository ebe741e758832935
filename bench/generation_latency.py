"""End-to-end latency of a generation, run by hand (results in docs/benchmarks.md, ## Generations).

    .venv/bin/python bench/generation_latency.py --requests 50

Starts the real service (the API, a `train` worker and a `generate` worker as processes, as `ganforge` runs
them) on the machine's PostgreSQL (a throwaway database) and Redis (db 12, which must be empty), trains a
short DCGAN-32 run on digits to get a checkpoint, warms the generate worker, then times `--requests`
sequential 64-image png generations: POST /runs/{id}/generations, poll GET /generations/{id} every 5 ms
until it has succeeded, GET the result. Reports p50/p95 of the whole, and of the worker's own share
(started_at → finished_at).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import Service, start_service  # noqa: E402 - the tests' real-process service
from tests.faults.conftest import POSTGRES_ADMIN, new_database  # noqa: E402

REDIS_DB = 12
DCGAN32 = {
    "name": "bench-dcgan32",
    "dataset": "digits",
    "model": {"arch": "dcgan", "image_size": 32, "width": 32, "z_dim": 100},
    "train": {"steps": 20, "batch_size": 64},
    "schedule": {"sample_every": 20, "checkpoint_every": 20},
}


@contextmanager
def bench_service(threads: int = 2) -> Iterator[Service]:
    """The service on a fresh PostgreSQL database and an empty Redis db, torn down afterwards."""
    import redis

    broker = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    if broker.dbsize():
        raise SystemExit(f"Redis db {REDIS_DB} is not empty; it is someone else's")
    database_url, drop = new_database(POSTGRES_ADMIN)
    workdir = Path(tempfile.mkdtemp(prefix="gf-bench-gen-"))
    service = start_service(
        database_url=database_url,
        broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
        workdir=workdir,
        OMP_NUM_THREADS=str(threads),
    )
    try:
        yield service
    finally:
        service.stop()
        broker.flushdb()
        drop()


def trained_run(client: httpx.Client, config: dict[str, Any]) -> str:
    run_id = str(client.post("/runs", json=config).raise_for_status().json()["id"])
    while (run := client.get(f"/runs/{run_id}").json())["status"] not in ("succeeded", "failed", "canceled"):
        time.sleep(0.5)
    if run["status"] != "succeeded":
        raise SystemExit(f"the bench run did not train: {run['error']}")
    return run_id


def timed_generation(client: httpx.Client, run_id: str, body: dict[str, Any], poll: float = 0.005) -> dict[str, Any]:
    """One generation, end to end: seconds in total and on the worker, and the result's size."""
    t0 = time.perf_counter()
    job = client.post(f"/runs/{run_id}/generations", json=body).raise_for_status().json()
    while job["status"] not in ("succeeded", "failed"):
        time.sleep(poll)
        job = client.get(f"/generations/{job['id']}").json()
    if job["status"] != "succeeded":
        raise SystemExit(f"generation failed: {job['error']}")
    content = client.get(job["result_url"]).raise_for_status().content
    total = time.perf_counter() - t0
    worker = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
    queued = (datetime.fromisoformat(job["started_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()
    return {"total": total, "worker": worker, "queued": queued, "bytes": len(content)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the service's processes")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with bench_service(args.threads) as service, service.client() as client:
        run_id = trained_run(client, DCGAN32)
        body = {"n": args.n, "format": "png"}
        for seed in range(5):  # warm the worker: imports, the generator cache, allocator
            timed_generation(client, run_id, {**body, "seed": seed})
        samples = [timed_generation(client, run_id, {**body, "seed": 100 + i}) for i in range(args.requests)]
    totals = [s["total"] for s in samples]
    workers = [s["worker"] for s in samples]
    queued = [s["queued"] for s in samples]
    print(f"{args.requests} × {args.n}-image DCGAN-32 png generations (warm worker, sequential):")
    print(f"  end to end: p50 {statistics.median(totals):.3f} s, p95 {percentile(totals, 0.95):.3f} s")
    print(f"  on the worker: p50 {statistics.median(workers):.3f} s, p95 {percentile(workers, 0.95):.3f} s")
    print(f"  queued (created → started): p50 {statistics.median(queued):.3f} s")
    print(f"  result: {samples[0]['bytes']} bytes")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
