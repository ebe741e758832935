"""HTTP load on the read routes, run by hand (results in docs/benchmarks.md, ## Reliability).

    .venv/bin/python bench/load.py --connections 64 --seconds 30

Starts the real service (API, train and generate workers as processes) on a throwaway PostgreSQL database on
the machine's server and a redis-server of its own on a spare port, trains a tiny ring8 run so that it has a
sample grid, then points wrk (Debian's `wrk`, over loopback) at GET /runs/{id} and at
GET /runs/{id}/samples/latest.png with `--connections` concurrent keep-alive clients for `--seconds` each.
Prints requests/sec, p50/p99 latency and the error count (non-2xx answers and socket errors) of each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import Service, start_service  # noqa: E402 - the tests' real-process service
from tests.faults.conftest import POSTGRES_ADMIN, OwnRedis, new_database  # noqa: E402

RING8 = {"dataset": "ring8", "train": {"steps": 20}, "schedule": {"sample_every": 10, "checkpoint_every": 10}}
LUA = """
wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d duration_us=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


@contextmanager
def bench_service(workdir: Path) -> Iterator[Service]:
    redis = OwnRedis(workdir / "redis")
    database_url, drop = new_database(POSTGRES_ADMIN)
    service = start_service(database_url=database_url, broker_url=redis.url, workdir=workdir)
    try:
        yield service
    finally:
        service.stop()
        redis.stop()
        drop()


def wrk(url: str, token: str, *, connections: int, seconds: int, workdir: Path) -> dict[str, float]:
    script = workdir / "auth.lua"
    script.write_text(LUA.replace("{token}", token))
    threads = str(min(2, connections))  # wrk needs a connection per thread at least
    out = subprocess.run(
        ["wrk", "-t", threads, "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (.*)", out)
    if match is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    values = {k: float(v) for k, v in (item.split("=") for item in match.group(1).split())}
    return {
        "requests_per_sec": values["requests"] / (values["duration_us"] / 1e6),
        "p50_ms": values["p50_us"] / 1000,
        "p99_ms": values["p99_us"] / 1000,
        "errors": values["errors"] + values["non2xx"],
        "requests": values["requests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="gf-bench-load-"))
    print(f"load average before: {os.getloadavg()}")
    with bench_service(workdir) as service:
        token = service.new_user_token("bench")
        with service.client(token) as client:
            run_id = client.post("/runs", json=RING8).raise_for_status().json()["id"]
            while client.get(f"/runs/{run_id}").json()["status"] not in ("succeeded", "failed", "canceled"):
                time.sleep(0.5)
            assert client.get(f"/runs/{run_id}/samples/latest.png").status_code == 200
        for path in (f"/runs/{run_id}", f"/runs/{run_id}/samples/latest.png"):
            result = wrk(service.url + path, token, connections=args.connections, seconds=args.seconds, workdir=workdir)
            print(
                f"GET {path.replace(run_id, '{id}')}: {result['requests_per_sec']:.0f} req/s, "
                f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                f"{result['errors']:.0f} errors of {result['requests']:.0f} requests"
            )
    print(f"load average after: {os.getloadavg()}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
