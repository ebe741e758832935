"""pix2pix on digits-edges against the U-Net trained with L1 alone (Isola et al. 2017's ablation): each trains with the
dataset's recommended config (core/config.py: DATASET_DEFAULTS["digits-edges"]) for `--steps` steps, the L1-only one
with `loss.adversarial_weight`, `loss.feature_matching`, `loss.edge_weight` and `loss.sharpness_weight` 0 (its
discriminator still trains, but G's loss is 100 × L1 alone), and is evaluated once at the end by the run's own
evaluator (core/metrics/paired.py) on the 360 held-out pairs: `l1`, `psnr`, `ssim`, `sharpness` (the outputs' mean
Sobel magnitude over the targets': 1 is as sharp as the digits) and `digit_accuracy` (the shipped digits classifier
reading the outputs as their target's digit).

    OMP_NUM_THREADS=1 .venv/bin/python bench/pix2pix.py --steps 400 --seeds 0 1
    OMP_NUM_THREADS=1 .venv/bin/python bench/pix2pix.py --steps 3000 --config '{"train": {"lr_schedule": "linear"}}'

`--config` is JSON over the dataset's defaults that both configurations get (so the comparison stays the same U-Net
and schedule); the L1-only one then has its adversarial, feature-matching, edge and sharpness weights set to 0 over it.

Wall minutes and CPU minutes (this process's CPU time) are of training and the final evaluation, at `--threads`
intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import RunConfig
from core.train import train

CONFIGS: dict[str, dict[str, Any]] = {
    "pix2pix": {},
    "unet-l1-only": {
        "loss": {"adversarial_weight": 0.0, "feature_matching": 0.0, "edge_weight": 0.0, "sharpness_weight": 0.0}
    },
}
REPORT = ("l1", "psnr", "ssim", "sharpness", "digit_accuracy")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid over it, section by section."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def measure(name: str, steps: int, seed: int, common: dict[str, Any]) -> dict[str, float]:
    """Train one run of `name` (over `common`) and return its final held-out metrics, wall and CPU minutes."""
    over = _merge(common, CONFIGS[name])
    cfg = RunConfig.model_validate(
        {
            "dataset": "digits-edges",
            "seed": seed,
            **over,
            "train": {**over.get("train", {}), "steps": steps},
            "schedule": {"sample_every": steps, "checkpoint_every": steps, "eval_every": steps},
        }
    )
    metrics: dict[str, float] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "metric" and data["step"] == steps:
            metrics[data["name"]] = float(data["value"])

    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(cfg, out_dir=Path(tmp), on_event=on_event)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.status == "completed", result
    return {**{k: metrics[k] for k in REPORT}, "wall_min": wall / 60, "cpu_min": cpu / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default="{}", help="JSON fields over the digits-edges defaults, for both configs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows: dict[str, list[dict[str, float]]] = {}
    for name in args.configs:
        for seed in args.seeds:
            row = measure(name, args.steps, seed, json.loads(args.config))
            rows.setdefault(name, []).append(row)
            print(json.dumps({"config": name, "seed": seed, **row}), flush=True)
    print(f"\n| config | {' | '.join(REPORT)} | wall min | CPU min |")
    print("|---" * (len(REPORT) + 3) + "|")
    for name, runs in rows.items():
        cells = []
        for key in (*REPORT, "wall_min", "cpu_min"):
            values = [r[key] for r in runs]
            mean = statistics.mean(values)
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{mean:.3f}{spread}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
