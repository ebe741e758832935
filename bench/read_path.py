"""The read routes against a bare FastAPI handler, on SQLite and PostgreSQL side by side, run by hand (results in
docs/benchmarks.md, ## Reliability).

    .venv/bin/python bench/read_path.py --connections 64 --seconds 10 --rounds 3
    .venv/bin/python bench/read_path.py --connections 64 --seconds 20 --rounds 2 --upload-mb 200 --backends postgres

Starts, as processes with one uvicorn server each (as `ganforge api` runs by default): a bare FastAPI app whose
handlers return each route's JSON from memory (the ceiling of this machine's HTTP stack for that answer), and the
real API on a throwaway SQLite file and on a throwaway PostgreSQL database (on the machine's server), sharing a
redis-server of their own. No workers: the runs stay queued, which is all a read needs. Then wrk (Debian's
`wrk`, over loopback, `--connections` keep-alive clients, every request authenticated as a user) points at
`GET /runs/{id}`, `GET /runs` (a page of 20) and `GET /generations/{id}`, the servers taking turns within each
round so that the machine's other load falls on all of them alike. Prints requests/s, p50 and p99 of each, and
each API route's throughput as a share of the bare handler's for the same JSON.

`--upload-mb N` measures `GET /runs/{id}` twice on each API, idle and while another user uploads an N MB image
dataset (a ZIP of JPEGs, through `POST /datasets` on the same server), for the p99 under upload against idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import wrk  # noqa: E402
from bench.upload import build_archive  # noqa: E402
from store.jobs import new_job_id  # noqa: E402
from store.models import Generation, User  # noqa: E402
from tests.conftest import Service, free_port  # noqa: E402
from tests.faults.conftest import POSTGRES_ADMIN, OwnRedis, new_database  # noqa: E402
from tests.utils.runs import wait_for_http  # noqa: E402

BARE_JSON_ENV = "GANFORGE_BENCH_BARE_JSON"


def bare_app() -> Any:
    """A FastAPI app whose handlers answer each read route's stored JSON: no auth, no database, the same bytes
    as the real route (a run, a page of runs, a generation)."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    folder = Path(os.environ[BARE_JSON_ENV])
    run, runs, generation = ((folder / f"{route}.json").read_bytes() for route in ROUTES)
    app = FastAPI()

    @app.get("/runs/{run_id}")
    def get_run(run_id: str) -> Response:
        return Response(run, media_type="application/json")

    @app.get("/runs")
    def list_runs() -> Response:
        return Response(runs, media_type="application/json")

    @app.get("/generations/{generation_id}")
    def get_generation(generation_id: str) -> Response:
        return Response(generation, media_type="application/json")

    return app


# The read routes measured, and the bare handler's path for each.
ROUTES = ("run", "runs", "generation")
BARE_PATHS = {"run": "/runs/x", "runs": "/runs?limit=20", "generation": "/generations/x"}


def start_bare(workdir: Path, bodies: dict[str, bytes]) -> tuple[subprocess.Popen[bytes], str]:
    folder = workdir / "bare"
    folder.mkdir()
    for route, body in bodies.items():
        (folder / f"{route}.json").write_bytes(body)
    port = free_port()
    code = f"import uvicorn; uvicorn.run('bench.read_path:bare_app', factory=True, port={port}, log_level='warning')"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, BARE_JSON_ENV: str(folder), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/runs/x")
    return process, url


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), robust to what else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def populate(service: Service, token: str) -> dict[str, str]:
    """Twenty queued runs and one finished generation of the user's; the paths to read."""
    with service.client(token) as client:
        ids = [
            client.post("/runs", json={"dataset": "ring8", "name": f"r{i}"}).raise_for_status().json()["id"]
            for i in range(20)
        ]
    engine = sa.create_engine(service.env["GANFORGE_DATABASE_URL"], poolclass=sa.NullPool)
    with engine.begin() as connection:
        owner = connection.execute(sa.select(User.id).where(User.name == "bench")).scalar_one()
        job_id = new_job_id("generate")
        connection.execute(
            sa.insert(Generation).values(
                id=job_id,
                run_id=ids[0],
                owner_id=owner,
                kind="generate",
                status="succeeded",
                request={"n": 16, "seed": 0, "format": "png", "step": 10},
                media_type="image/png",
            )
        )
    engine.dispose()
    return {"run": f"/runs/{ids[0]}", "runs": "/runs?limit=20", "generation": f"/generations/{job_id}"}


def upload_in_background(url: str, token: str, archive: Path) -> threading.Thread:
    def upload() -> None:
        with open(archive, "rb") as f:
            response = httpx.post(
                f"{url}/datasets",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": ("upload.zip", f, "application/zip")},
                data={"name": "bench-upload"},
                timeout=600,
            )
        print(f"    (upload answered {response.status_code} after it ran)", flush=True)

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--upload-mb", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, raw.json)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="gf-bench-read-"))
    print(f"load average before: {os.getloadavg()}", flush=True)
    redis = OwnRedis(workdir / "redis")
    services: dict[str, Service] = {}
    drops = []
    bare = None
    try:
        for backend in args.backends.split(","):
            if backend == "postgres":
                database_url, drop = new_database(POSTGRES_ADMIN)
                drops.append(drop)
            else:
                database_url = f"sqlite:///{workdir / 'sqlite' / 'ganforge.db'}"
                (workdir / "sqlite").mkdir()
            service = Service(
                database_url=database_url,
                broker_url=redis.url,
                workdir=workdir / backend,
                # The runs it reads stay queued; the rate limiter counts every request but refuses none.
                extra_env={"GANFORGE_QUOTA_QUEUED_RUNS": "100", "GANFORGE_RATE_LIMIT": "1000000/second"},
            )
            service.start_api()
            services[backend] = service
        tokens = {backend: service.new_user_token("bench") for backend, service in services.items()}
        paths = {backend: populate(service, tokens[backend]) for backend, service in services.items()}
        first = next(iter(services))
        with services[first].client(tokens[first]) as client:
            bodies = {route: client.get(paths[first][route]).content for route in ROUTES}
        bare, bare_url = start_bare(workdir, bodies)
        print(", ".join(f"{route}: {len(body)} bytes of JSON" for route, body in bodies.items()), flush=True)

        def measure(url: str, token: str, pid: int) -> dict[str, float]:
            before = cpu_seconds(pid)
            result = wrk(url, token, connections=args.connections, seconds=args.seconds, workdir=workdir)
            result["cpu_ms_per_request"] = 1000 * (cpu_seconds(pid) - before) / max(result["requests"], 1)
            return result

        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        archive = None
        if args.upload_mb:
            archive = workdir / "upload.zip"
            count = build_archive(archive, megabytes=args.upload_mb, size=256)
            print(f"upload archive: {archive.stat().st_size / 1e6:.0f} MB, {count} JPEGs", flush=True)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}", flush=True)
            for route in ROUTES if archive is None else ("run",):
                results.setdefault(("bare", route), []).append(measure(bare_url + BARE_PATHS[route], "none", bare.pid))
            for backend, service in services.items():
                for route, path in paths[backend].items():
                    if archive is not None and route != "run":
                        continue
                    api_pid = service.api.pid  # type: ignore[union-attr]
                    results.setdefault((backend, route), []).append(
                        measure(service.url + path, tokens[backend], api_pid)
                    )
                    if archive is not None:
                        uploader = tokens[backend]
                        thread = upload_in_background(service.url, uploader, archive)
                        time.sleep(1)  # the upload is streaming in
                        results.setdefault((backend, "run under upload"), []).append(
                            measure(service.url + path, tokens[backend], api_pid)
                        )
                        thread.join()
                        with service.client(uploader) as client:  # the next round uploads it anew
                            for item in client.get("/datasets").json()["items"]:
                                if item["id"].startswith("ds_"):
                                    client.delete(f"/datasets/{item['id']}")
        measured = [route for route in ROUTES if ("bare", route) in results]
        bare_rps = {route: _mean(results[("bare", route)], "requests_per_sec") for route in measured}
        bare_cpu = {route: _mean(results[("bare", route)], "cpu_ms_per_request") for route in bare_rps}
        # Two ratios to the bare handler: of the measured throughput (moves with the machine's other load), and of
        # the server's CPU time per request (what the throughput of an otherwise idle core would be).
        print(
            f"\n{'server':<10} {'route':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'× bare':>7}"
            f" {'CPU ms/req':>11} {'× bare CPU':>11}"
        )
        for (backend, route), rows in results.items():
            rps = sum(r["requests_per_sec"] for r in rows) / len(rows)
            p50 = sum(r["p50_ms"] for r in rows) / len(rows)
            p99 = sum(r["p99_ms"] for r in rows) / len(rows)
            errors = sum(r["errors"] for r in rows)
            cpu = sum(r["cpu_ms_per_request"] for r in rows) / len(rows)
            own = "run" if route == "run under upload" else route  # each route against the bare handler of its JSON
            print(
                f"{backend:<10} {route:<18} {rps:8.0f} {p50:8.1f} {p99:8.1f} {errors:7.0f} {rps / bare_rps[own]:7.2f}"
                f" {cpu:11.3f} {bare_cpu[own] / cpu:11.2f}"
            )
        (workdir / "raw.json").write_text(json.dumps({f"{b}/{r}": rows for (b, r), rows in results.items()}))
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait()
        for service in services.values():
            service.stop()
        redis.stop()
        for drop in drops:
            drop()
    print(f"load average after: {os.getloadavg()}")
    if args.keep:
        print(f"work folder: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
