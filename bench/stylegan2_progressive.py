"""Progressive growing on digits at 32 px: the stylegan2 defaults with and without `train.progressive`, the same
steps and seed, FD from the run's own Evaluator (`fid_digits`, every `--eval-every` steps) and the process CPU time
of the whole run, evaluations included (docs/benchmarks.md, "StyleGAN2: progressive growing").

    OMP_NUM_THREADS=1 .venv/bin/python bench/stylegan2_progressive.py --variant progressive --steps 2000 --seed 0
    OMP_NUM_THREADS=1 .venv/bin/python bench/stylegan2_progressive.py --variant fixed --steps 2000 --seed 0

One variant per process (run the two side by side on a shared machine: CPU time counts only this process). Prints a
JSON line per evaluation and one at the end with the CPU minutes, the load average and the run folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import RunConfig
from core.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["fixed", "progressive"], required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--start", type=int, default=8, help="train.progressive.start_resolution")
    parser.add_argument("--fade", type=int, default=250, help="train.progressive.fade_steps")
    parser.add_argument("--stable", type=int, default=250, help="train.progressive.stable_steps")
    parser.add_argument("--out", type=Path, required=True, help="the run folder (a new one)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train_body: dict[str, Any] = {"steps": args.steps}
    if args.variant == "progressive":
        train_body["progressive"] = {
            "start_resolution": args.start,
            "fade_steps": args.fade,
            "stable_steps": args.stable,
        }
    cfg = RunConfig.model_validate(
        {
            "dataset": "digits",
            "seed": args.seed,
            "model": {"arch": "stylegan2", "image_size": 32},
            "train": train_body,
            "schedule": {"eval_every": args.eval_every, "sample_every": args.eval_every, "checkpoint_every": 10**6},
        }
    )
    start_cpu, start_wall = time.process_time(), time.perf_counter()

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "metric" and data["name"] == "fid_digits":
            cpu = (time.process_time() - start_cpu) / 60
            print(json.dumps({"step": data["step"], "fid_digits": data["value"], "cpu_minutes": round(cpu, 2)}))
            sys.stdout.flush()

    result = train(cfg, out_dir=args.out, on_event=on_event)
    print(
        json.dumps(
            {
                "variant": args.variant,
                "seed": args.seed,
                "steps": result.step,
                "progressive": train_body.get("progressive"),
                "cpu_minutes": round((time.process_time() - start_cpu) / 60, 2),
                "wall_minutes": round((time.perf_counter() - start_wall) / 60, 2),
                "load_average": os.getloadavg(),
                "out": str(args.out),
            }
        )
    )


if __name__ == "__main__":
    main()
