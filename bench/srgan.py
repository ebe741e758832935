"""SRGAN x4 on photos against bicubic upsampling: train a configuration through core.train (the run's own
evaluations on the held-out patches, every `schedule.eval_every` steps), then evaluate its final generator on the
held-out patches with the evaluator the runs use.

    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan.py --seeds 0
    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan.py --seeds 0 --config '{"train": {"pretrain_steps": 3000}}'

Reported per seed: PSNR (dB), SSIM and the sharpness ratio (mean Sobel gradient magnitude of the outputs over the
high-resolution images') of SR and of bicubic on the held-out patches of `photos` (the left 256 columns of each
photograph, which training never sees), the PSNR gain over bicubic, and the training's wall and CPU minutes (process
time: the threads of this process together). The goals (issue 24): PSNR >= bicubic + 0.5 dB and sharpness >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import read_generator_state
from core.config import RunConfig
from core.datasets import load_dataset
from core.families import srgan
from core.metrics.superres import SREvaluator
from core.train import train

REPORT = ("psnr", "psnr_bicubic", "psnr_gain", "ssim", "ssim_bicubic", "sharpness", "sharpness_bicubic")


def measure(override: dict[str, Any], seed: int, trace: bool) -> dict[str, float]:
    """Train one run on photos; evaluate its final generator (the EMA copy when there is one) on the held-out
    patches."""
    cfg = RunConfig.model_validate({"dataset": "photos", "seed": seed, **override})
    events: list[tuple[str, dict[str, Any]]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))
        if trace and kind == "metric" and data["name"] in ("psnr", "sharpness"):
            print(f"  step {data['step']}: {data['name']} {data['value']:.3f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        train(cfg, out_dir=Path(tmp), on_event=on_event)
        wall, cpu = (time.perf_counter() - wall) / 60, (time.process_time() - cpu) / 60
        ckpt = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))[-1]
        state, meta = read_generator_state(ckpt, ema=True)
    G = srgan.generator(cfg, json.loads(meta["data"]))
    G.load_state_dict(state)
    data = srgan.split_data(load_dataset("photos", image_size=cfg.model.image_size), cfg)
    assert data.held is not None and data.held_low is not None
    ev = SREvaluator(data, n_samples=len(data.held), device="cpu")
    cpu_device = torch.device("cpu")
    low = data.held_low
    values = ev(lambda n: (srgan.super_resolve(G, low[:n], device=cpu_device, autocast=nullcontext), None))
    return {name: values[name] for name in REPORT} | {"wall_minutes": wall, "cpu_minutes": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--config", default="{}", help="JSON fields over the photos defaults")
    parser.add_argument("--trace", action="store_true", help="print the run's psnr and sharpness as it evaluates")
    args = parser.parse_args()
    override = json.loads(args.config)
    print(f"torch threads: {torch.get_num_threads()}; config over the defaults: {override}", flush=True)
    for seed in args.seeds:
        result = measure(override, seed, args.trace)
        print(json.dumps({"seed": seed, **{k: round(v, 4) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()
