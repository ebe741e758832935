"""Benchmarks of uploaded datasets, run by hand (results in docs/benchmarks.md, ## Datasets).

    .venv/bin/python bench/upload.py upload --mb 200     # a 200 MB upload: time and the API's peak memory
    .venv/bin/python bench/upload.py train --steps 40    # training throughput: uploaded 64 px RGB vs built-in

`upload` starts the real API (`python -m ganforge api`, SQLite, the machine's Redis db 13 as broker) on a
temporary data folder, builds a ZIP of random JPEG images, posts it with httpx (streamed from disk), and samples
the API process's RSS every 10 ms. `train` runs core.train.train in-process on an uploaded 64 px RGB dataset
and on stacked-digits (the built-in RGB path) at 64 px, same network, alternating, and compares images/s.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from tests.utils.runs import wait_for_http

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_archive(path: Path, *, megabytes: int, size: int, seed: int = 0) -> int:
    """A ZIP of random-ish JPEGs (smooth noise, so they compress like photos) of about `megabytes` MB."""
    rng = np.random.default_rng(seed)
    target = megabytes * 1_000_000
    count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        while path.stat().st_size < target:
            low = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            image = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
            noise = rng.integers(-40, 40, (size, size, 3))
            pixels = np.clip(np.asarray(image, dtype=np.int32) + noise, 0, 255).astype(np.uint8)
            out = io.BytesIO()
            Image.fromarray(pixels).save(out, format="JPEG", quality=92)
            zf.writestr(f"class{count % 4}/{count:06d}.jpg", out.getvalue())
            count += 1
            if count % 200 == 0:
                zf.fp.flush()  # type: ignore[union-attr]
    return count


def bench_upload(megabytes: int, size: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="gf-bench-upload-"))
    archive = work / "upload.zip"
    t0 = time.perf_counter()
    count = build_archive(archive, megabytes=megabytes, size=size)
    print(
        f"archive: {archive.stat().st_size / 1e6:.1f} MB, {count} JPEGs of {size} px ({time.perf_counter() - t0:.1f} s)"
    )

    token = "gf_bench_admin_token_0123456789abcdef"
    env = {
        **os.environ,
        "GANFORGE_DATABASE_URL": f"sqlite:///{work / 'ganforge.db'}",
        "GANFORGE_BROKER_URL": "redis://127.0.0.1:6379/13",
        "GANFORGE_DATA_DIR": str(work / "data"),
        "GANFORGE_ADMIN_TOKEN": token,
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run([sys.executable, "-m", "ganforge", "migrate"], env=env, check=True, cwd=ROOT, capture_output=True)
    port = 18000 + os.getpid() % 1000
    with (work / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "ganforge", "api", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz")
        proc = psutil.Process(api.pid)
        headers = {"Authorization": f"Bearer {token}"}
        httpx.get(f"{url}/datasets", headers=headers)  # warm the route
        time.sleep(1)
        idle = proc.memory_info().rss
        peak = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        with archive.open("rb") as f:
            response = httpx.post(
                f"{url}/datasets",
                headers=headers,
                files={"file": ("upload.zip", f, "application/zip")},
                data={"name": "bench"},
                timeout=600,
            )
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        body = response.json()
        print(
            f"POST /datasets: {response.status_code} in {elapsed:.1f} s",
            {k: body.get(k) for k in ("num_images", "image_size", "channels")},
        )
        print(
            f"API RSS: idle {idle / 2**20:.0f} MiB, peak {peak[0] / 2**20:.0f} MiB, +{(peak[0] - idle) / 2**20:.0f} MiB"
        )
        stored = sum(p.stat().st_size for p in (work / "data" / "datasets").rglob("*") if p.is_file())
        print(f"stored: {stored / 1e6:.1f} MB under data/datasets")
        # The same archive through core.uploads.prepare alone, in this process: the ingest part of the time.
        from core import uploads

        t0 = time.perf_counter()
        prepared = uploads.prepare(archive, datasets_dir=work / "in-process")
        print(f"core.uploads.prepare alone: {time.perf_counter() - t0:.1f} s ({prepared.num_images} images)")
    finally:
        api.terminate()
        api.wait(20)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def bench_train(steps: int, repeats: int, images: int) -> None:
    import torch

    from core import uploads
    from core.config import RunConfig
    from core.train import train

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    work = Path(tempfile.mkdtemp(prefix="gf-bench-train-"))
    archive = work / "rgb64.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(images):
            out = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(out, format="PNG")
            zf.writestr(f"c{i % 2}/{i:05d}.png", out.getvalue())
    datasets_dir = work / "data" / "datasets"
    prepared = uploads.prepare(archive, datasets_dir=datasets_dir)
    with uploads.storage_lock(datasets_dir):
        uploads.place(prepared, datasets_dir)
    dataset_dir = uploads.dataset_dir_for(work / "data", prepared.content_hash)
    print(f"uploaded: {prepared.num_images} images, {prepared.image_size} px, {prepared.channels} channels")

    # The data path alone: fetching a batch of 64 (uint8 → float for uploads; gather for stacked-digits).
    from core.datasets import load_dataset

    t0 = time.perf_counter()
    uploaded_ds = load_dataset("ds_" + prepared.content_hash[:16], image_size=64, dataset_dir=dataset_dir)
    print(f"uploaded: first load with the resize to 64 px and its cache {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    uploaded_ds = load_dataset("ds_" + prepared.content_hash[:16], image_size=64, dataset_dir=dataset_dir)
    print(f"uploaded: load from the cache {time.perf_counter() - t0:.2f} s")
    builtin_ds = load_dataset("stacked-digits", image_size=64)
    gen = torch.Generator().manual_seed(0)
    for name, ds in (("uploaded", uploaded_ds), ("built-in", builtin_ds)):
        batches = [torch.randint(len(ds), (64,), generator=gen) for _ in range(200)]
        t0 = time.perf_counter()
        for indices in batches:
            ds.batch(indices)
        print(f"{name:9s} data path: {(time.perf_counter() - t0) / 200 * 1000:.2f} ms per batch of 64")

    common = {
        "model": {"arch": "dcgan", "image_size": 64, "width": 32},
        "train": {"steps": steps, "batch_size": 64, "precision": "fp32", "device": "cpu"},
        "schedule": {"sample_every": 10**6, "checkpoint_every": 10**6},
    }
    configs = {
        "uploaded": (RunConfig.model_validate({**common, "dataset": "ds_" + prepared.content_hash[:16]}), dataset_dir),
        "built-in": (RunConfig.model_validate({**common, "dataset": "stacked-digits"}), None),
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for attempt in range(repeats + 1):  # the first round warms caches (the uploaded set's resize cache too)
        for name, (cfg, ddir) in configs.items():
            times: list[float] = []

            def on_event(kind: str, data: dict[str, object], times: list[float] = times) -> None:
                if kind == "progress":
                    times.append(time.perf_counter())

            out = work / f"run-{name}-{attempt}"
            t0 = time.perf_counter()
            train(cfg, out_dir=out, on_event=on_event, dataset_dir=ddir)
            total = time.perf_counter() - t0
            rate = steps * 64 / total
            if attempt > 0:
                rates[name].append(rate)
            print(f"{name:9s} round {attempt}: {total:.1f} s for {steps} steps, {rate:.0f} images/s (whole call)")
    up, bi = statistics.median(rates["uploaded"]), statistics.median(rates["built-in"])
    print(f"median images/s: uploaded {up:.0f}, built-in {bi:.0f}, ratio {up / bi:.3f}")
    subprocess.run(["rm", "-rf", str(work)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    up = sub.add_parser("upload")
    up.add_argument("--mb", type=int, default=200)
    up.add_argument("--size", type=int, default=256)
    tr = sub.add_parser("train")
    tr.add_argument("--steps", type=int, default=40)
    tr.add_argument("--repeats", type=int, default=3)
    tr.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    if args.what == "upload":
        bench_upload(args.mb, args.size)
    else:
        bench_train(args.steps, args.repeats, args.images)


if __name__ == "__main__":
    main()
