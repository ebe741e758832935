"""Conditional digits: label accuracy and FID of the recommended conditional configuration over several seeds.

    .venv/bin/python bench/conditional.py --seeds 3
    .venv/bin/python bench/conditional.py --seeds 1 --eval-every 500
    .venv/bin/python bench/conditional.py --seeds 2 --config '{"model": {"g_conditioning": "concat"}}' --label concat

Each seed trains `{"dataset": "digits", "model": {"conditional": true}}` with the digits defaults (the recommended
configuration, core/config.py), plus `--config`, through `core.train.train`, and reads the
trainer's own evaluation (`schedule.eval_every`: the digits classifier's label accuracy of the EMA generator's
samples, FID on its features, 2,048 samples) at the last step. Minutes are wall-clock for the whole run, one
evaluation included, at one intra-op thread; CPU minutes are the process's own over the same span.
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

# The digits defaults in core/config.py are the recommended configuration (spectral norm on D, which also drops
# D's BatchNorm: what makes the projection term teach G the labels quickly). Layer an experiment with --config.
RECOMMENDED: dict[str, Any] = {}
REPORTED = ("label_accuracy", "fid_digits", "precision_digits", "recall_digits", "classes")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    """Merge `over` into `base` in place, dicts recursively."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def measure(override: dict[str, Any], seed: int, eval_every: int | None) -> dict[str, Any]:
    """Train one conditional digits run and return its last evaluation, its curve and its minutes."""
    body: dict[str, Any] = {"dataset": "digits", "seed": seed, "model": {"conditional": True}}
    _merge(body, RECOMMENDED)
    _merge(body, override)
    steps = RunConfig.model_validate(body).train.steps
    if eval_every and steps % eval_every:
        # The trainer evaluates at multiples of eval_every only: the last step would have no row to report.
        raise SystemExit(f"--eval-every {eval_every} does not divide the run's {steps} steps; pick a divisor")
    _merge(body, {"schedule": {"eval_every": eval_every or steps, "sample_every": steps, "checkpoint_every": steps}})
    cfg = RunConfig.model_validate(body)
    curve: dict[int, dict[str, float]] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "metric" and data["name"] in REPORTED:
            curve.setdefault(int(data["step"]), {})[data["name"]] = float(data["value"])

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = train(cfg, out_dir=Path(tmp), on_event=on_event)
        minutes = (time.perf_counter() - t0) / 60
        cpu_minutes = (time.process_time() - c0) / 60
    last = curve.get(result.step, {})
    return {
        "seed": seed,
        "steps": result.step,
        "minutes": round(minutes, 2),
        "cpu_minutes": round(cpu_minutes, 2),
        **last,
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--config", default="{}", help="JSON layered over the recommended configuration")
    parser.add_argument("--label", default="recommended")
    parser.add_argument("--eval-every", type=int, default=None, help="also evaluate every this many steps")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    override = json.loads(args.config)

    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = measure(override, seed, args.eval_every)
        results.append(r)
        if args.eval_every:
            for step, values in sorted(r["curve"].items()):
                print(f"   seed {seed} step {step}: {json.dumps({k: round(v, 3) for k, v in values.items()})}")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "curve"}
        print(f"   {args.label}, seed {seed}: {json.dumps(shown)}", flush=True)

    def summary(key: str, digits: int) -> str:
        values = [float(r[key]) for r in results if key in r]
        if not values:
            return "n/a"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"

    minutes = [float(r["minutes"]) for r in results]
    cpu = [float(r["cpu_minutes"]) for r in results]
    print(
        f"| {args.label} | {results[0]['steps']} steps | label accuracy {summary('label_accuracy', 3)} | "
        f"FID {summary('fid_digits', 2)} | recall {summary('recall_digits', 2)} | "
        f"{len(results)} seeds, {statistics.mean(minutes):.1f} min each (max {max(minutes):.1f}), "
        f"{statistics.mean(cpu):.1f} CPU min each |",
        flush=True,
    )


if __name__ == "__main__":
    main()
