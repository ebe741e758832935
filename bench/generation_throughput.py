"""Throughput of a large npz generation against a plain loop of forward passes, and the API's memory while it
streams the result; run by hand (results in docs/benchmarks.md, ## Generations).

    .venv/bin/python bench/generation_throughput.py --n 10000 --rounds 3

Starts the real service as bench/generation_latency.py does, trains a short DCGAN-32 digits run, warms the
generate worker, then alternates `--rounds` times: (a) a plain loop in this process, on the same checkpoint
and with the same thread count, of generator forward passes over n latents in batches of 256 under
torch.inference_mode; (b) an `npz` generation of n images through the API, timed on the worker (started_at →
finished_at: latents, forward passes, the npz written and renamed) and end to end (POST → result downloaded).
The result is downloaded streamed while the API process's RSS is sampled every 10 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generation_latency import DCGAN32, bench_service, timed_generation, trained_run  # noqa: E402
from core.checkpoint import load_generator  # noqa: E402
from core.generate import BATCH_SIZE  # noqa: E402


def plain_loop(path: Path, n: int) -> float:
    """Images per second of bare forward passes over n latents in batches of BATCH_SIZE."""
    generator, cfg, _ = load_generator(path)
    z_dim = cfg.model.z_dim
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, BATCH_SIZE):
            generator(torch.randn(min(BATCH_SIZE, n - start), z_dim))
    return n / (time.perf_counter() - t0)


def stream_with_rss(client_get: object, url: str, pid: int) -> tuple[int, float, float]:
    """Download `url` in chunks while sampling the process's RSS: (bytes, RSS before MB, peak RSS MB)."""
    process = psutil.Process(pid)
    before = process.memory_info().rss / 2**20
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss / 2**20)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = 0
    with client_get.stream("GET", url) as response:  # type: ignore[attr-defined]
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 16):
            size += len(chunk)
            time.sleep(0.0005)  # a slowish reader, so the download lasts long enough to be sampled
    done.set()
    sampler.join()
    return size, before, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads of the worker and of the plain loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")
    with bench_service(args.threads) as service, service.client() as client:
        run_id = trained_run(client, DCGAN32)
        checkpoint = sorted((service.data_dir / "runs" / run_id / "checkpoints").glob("*.safetensors"))[-1]
        timed_generation(client, run_id, {"n": 64, "format": "npz"})  # warm the worker and its cache
        plain, job_worker, job_total = [], [], []
        last_id = ""
        for round_ in range(args.rounds):
            plain.append(plain_loop(checkpoint, args.n))
            t0 = time.perf_counter()
            job = client.post(f"/runs/{run_id}/generations", json={"n": args.n, "seed": round_, "format": "npz"}).json()
            while job["status"] not in ("succeeded", "failed"):
                time.sleep(0.02)
                job = client.get(f"/generations/{job['id']}").json()
            assert job["status"] == "succeeded", job["error"]
            client.get(job["result_url"]).raise_for_status()
            job_total.append(args.n / (time.perf_counter() - t0))
            seconds = (
                datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
            ).total_seconds()
            job_worker.append(args.n / seconds)
            last_id = job["id"]
            print(
                f"round {round_}: plain {plain[-1]:.0f} img/s, job on worker {job_worker[-1]:.0f} img/s, "
                f"end to end {job_total[-1]:.0f} img/s"
            )
        assert service.api is not None
        size, before, peak = stream_with_rss(client, f"/generations/{last_id}/result", service.api.pid)
    p, w, t = statistics.median(plain), statistics.median(job_worker), statistics.median(job_total)
    print(f"{args.n}-image DCGAN-32 npz, {args.threads} thread(s), medians of {args.rounds} alternating rounds:")
    print(
        f"  plain forward loop {p:.0f} img/s; job on the worker {w:.0f} img/s ({w / p:.2f}×); "
        f"end to end {t:.0f} img/s ({t / p:.2f}×)"
    )
    print(f"  API RSS while streaming {size / 2**20:.1f} MB: {before:.1f} MB before, peak {peak:.1f} MB")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
