"""200 runs posted at once to one training worker, run by hand (results in docs/benchmarks.md, ## Reliability).

    .venv/bin/python bench/many_runs.py --runs 200

Starts the real service (API, one train worker, one generate worker as processes) on a throwaway PostgreSQL
database on the machine's server and a redis-server of its own, posts `--runs` tiny ring8 runs at once
(64 concurrent POSTs), waits until none is queued or running, then checks in SQL that every run succeeded,
that none was lost, and that none ran twice: each was leased once (attempts = 1, one `running` status event)
and its progress never went backwards. Prints the wall time and the runs per minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import bench_service  # noqa: E402

TINY = {"dataset": "ring8", "train": {"steps": 5}, "schedule": {"sample_every": 5, "checkpoint_every": 5}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gf-bench-runs-"))
    print(f"load average before: {os.getloadavg()}")
    with bench_service(workdir) as service:
        token = service.new_user_token("bench")
        with service.client(token) as client:
            start = time.monotonic()

            def post(i: int) -> str:
                body = {**TINY, "name": f"bench-{i}", "seed": i}
                return str(client.post("/runs", json=body).raise_for_status().json()["id"])

            with ThreadPoolExecutor(64) as pool:
                ids = list(pool.map(post, range(args.runs)))
            posted = time.monotonic() - start
            print(f"posted {len(ids)} runs in {posted:.1f} s")
            while time.monotonic() - start < args.timeout:
                active = sum(
                    len(client.get("/runs", params={"status": s, "limit": 200}).json()["items"])
                    for s in ("queued", "running")
                )
                if active == 0:
                    break
                time.sleep(2)
            elapsed = time.monotonic() - start

        engine = sa.create_engine(service.env["GANFORGE_DATABASE_URL"], poolclass=sa.NullPool)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, status, attempts FROM runs WHERE id = ANY(:ids)"), {"ids": ids}
            ).all()
            events = conn.execute(
                sa.text("SELECT run_id, kind, data FROM events WHERE run_id = ANY(:ids) ORDER BY id"), {"ids": ids}
            ).all()
        engine.dispose()

    statuses: dict[str, int] = {}
    for _, status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    leases: dict[str, int] = dict.fromkeys(ids, 0)
    steps: dict[str, list[int]] = {run_id: [] for run_id in ids}
    for run_id, kind, data in events:
        data = data if isinstance(data, dict) else json.loads(data)
        if kind == "status" and data.get("status") == "running":
            leases[run_id] += 1
        if kind == "progress":
            steps[run_id].append(int(data["step"]))
    lost = len(ids) - len(rows)
    twice = [run_id for run_id, n in leases.items() if n != 1]
    attempts_not_one = [run_id for run_id, _, attempts in rows if attempts != 1]
    backwards = [run_id for run_id, s in steps.items() if s != sorted(s)]
    print(
        f"statuses: {statuses}; lost: {lost}; leased other than once: {len(twice)}; attempts != 1: "
        f"{len(attempts_not_one)}; progress went backwards: {len(backwards)}"
    )
    print(f"all {len(ids)} done in {elapsed:.0f} s: {len(ids) / elapsed * 60:.1f} runs/min with one worker")
    print(f"load average after: {os.getloadavg()}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
