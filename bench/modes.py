"""Mode coverage on ring8 / grid25: the PacGAN/VEEGAN metric over several seeds, for a plain GAN and for
ganforge's recommended configuration (the dataset's default).

    .venv/bin/python bench/modes.py --dataset ring8 --seeds 10
    .venv/bin/python bench/modes.py --dataset grid25 --seeds 10 --only recommended
    .venv/bin/python bench/modes.py --dataset ring8 --seeds 3 --config '{"model": {"pack": 1}}' --label "no pack"

A sample is high quality when it lies within 3 standard deviations of its nearest mode; a mode is captured when
it is the nearest mode of at least one high-quality sample. 2,500 samples per seed, drawn from the EMA generator
when the configuration has one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_generator
from core.config import RunConfig
from core.datasets import mixture_modes
from core.train import train

# The plain GAN of the literature's tables: the same MLP, steps and nonsaturating loss, without the recommended
# stabilizers (no EMA, constant lr, batch 256, no packing).
PLAIN = {
    "model": {"pack": 1, "minibatch_std": False},
    "train": {"ema": None, "lr_schedule": "constant", "lr_g": 1e-3, "lr_d": 1e-3, "batch_size": 256},
}


def measure(dataset: str, override: dict, seed: int, n: int = 2500) -> dict[str, float]:
    """Train one run and count its modes and high-quality samples."""
    cfg = RunConfig.model_validate({"dataset": dataset, "seed": seed, **override})
    cfg = cfg.model_copy(update={"schedule": cfg.schedule.model_copy(update={"sample_every": 10**6})})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(cfg, out_dir=Path(tmp))
        minutes = (time.perf_counter() - t0) / 60
        ckpt = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))[-1]
        G, _, _ = load_generator(ckpt, ema=True)
    gen = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        points = G(torch.randn(n, cfg.model.z_dim, generator=gen))  # (n, 2)
    modes, std = mixture_modes(dataset)
    d = torch.cdist(points.double(), modes.double())  # (n, M)
    nearest_d, nearest = d.min(dim=1)
    good = nearest_d <= 3 * std
    return {
        "modes": float(torch.unique(nearest[good]).numel()),
        "high_quality": float(good.double().mean() * 100),
        "minutes": minutes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=["ring8", "grid25"], default="ring8")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--only", choices=["plain", "recommended", "both"], default="both")
    parser.add_argument("--config", default=None, help="JSON override instead of the two standard configurations")
    parser.add_argument("--label", default="custom")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = []
    if args.config:
        runs.append((args.label, json.loads(args.config)))
    else:
        if args.only in ("plain", "both"):
            runs.append(("plain GAN", PLAIN))
        if args.only in ("recommended", "both"):
            runs.append(("ganforge default", {}))
    for label, override in runs:
        results = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            results.append(measure(args.dataset, override, seed))
            print(f"   {label}, seed {seed}: {json.dumps(results[-1])}", flush=True)
        modes = [r["modes"] for r in results]
        hq = [r["high_quality"] for r in results]
        minutes = sum(r["minutes"] for r in results)
        sd = statistics.stdev if len(results) > 1 else (lambda v: 0.0)
        print(
            f"| {args.dataset} | {label} | {statistics.mean(modes):.2f} ± {sd(modes):.2f} | "
            f"{statistics.mean(hq):.1f} ± {sd(hq):.1f} % | min {min(modes):.0f} modes, min {min(hq):.1f} % | "
            f"{len(results)} seeds, {minutes:.1f} min |",
            flush=True,
        )
        print("   per seed:", [(int(r["modes"]), round(r["high_quality"], 1)) for r in results], flush=True)


if __name__ == "__main__":
    main()
