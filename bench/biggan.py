"""BigGAN against the conditional resnet default on digits: the same steps, seeds and overrides for both.

    OMP_NUM_THREADS=1 .venv/bin/python bench/biggan.py --seeds 1 --config '{"model": {"width": 8},
        "train": {"steps": 2000, "batch_size": 32}}'
    OMP_NUM_THREADS=1 .venv/bin/python bench/biggan.py --only biggan --first-seed 1 --truncation 0.5 0.8

Each seed trains `{"dataset": "digits", "model": {"arch": A, "conditional": true}}` for A in resnet and biggan,
with the digits defaults beneath (and biggan's recipe, core/config.py), `--config` over them, through
`core.train.train`. The run's own evaluation at its last step (`schedule.eval_every`: the digits classifier's FID,
precision, recall and label accuracy of the EMA generator, 2,048 samples) gives the scores; the final checkpoint is
then evaluated again with truncated latents (`core.generate.sample_latents`, each |z_i| > ψ redrawn) for each
`--truncation` ψ. CPU minutes are this process's user + system time (the machine is shared, so wall time says
little), for training with its one evaluation, and for the truncation evaluations apart.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import footprint
from core.checkpoint import load_generator
from core.config import RunConfig
from core.datasets import load_dataset
from core.generate import sample_latents
from core.metrics import Evaluator
from core.train import train

ARCHS = ("resnet", "biggan")
REPORTED = ("label_accuracy", "fid_digits", "precision_digits", "recall_digits")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    """Merge `over` into `base` in place, dicts recursively."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _cpu_minutes() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) / 60


def truncated_scores(checkpoint: Path, psi: float, *, samples: int, seed: int) -> dict[str, float]:
    """The digits metrics of a checkpoint's EMA generator on latents truncated at ψ, labels uniform over classes."""
    G, cfg, info = load_generator(checkpoint)
    data = load_dataset("digits", image_size=cfg.model.image_size)
    evaluator = Evaluator(data, n_samples=samples, device="cpu")
    classes = int(info["num_classes"])

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = sample_latents(n, cfg.model.z_dim, seed=seed, truncation=psi)  # (n, Z)
        labels = torch.arange(n) % classes if cfg.model.conditional else None
        return torch.cat(
            [G(z[i : i + 500], None if labels is None else labels[i : i + 500]) for i in range(0, n, 500)]
        ), labels

    return {k: float(v) for k, v in evaluator(sample).items() if k in REPORTED}


def measure(
    arch: str, override: dict[str, Any], seed: int, truncations: list[float], eval_every: int | None
) -> dict[str, Any]:
    """Train one conditional digits run of `arch` and return its last evaluation and its CPU minutes; with
    `eval_every`, also print each earlier evaluation as it comes (to stderr), so that a stopped run still says
    something."""
    body: dict[str, Any] = {"dataset": "digits", "seed": seed, "model": {"arch": arch, "conditional": True}}
    _merge(body, override)
    steps = RunConfig.model_validate(body).train.steps
    _merge(body, {"schedule": {"eval_every": eval_every or steps, "sample_every": steps, "checkpoint_every": steps}})
    cfg = RunConfig.model_validate(body)
    g_values, d_values = footprint.network_sizes(cfg, channels=1, num_classes=10)
    curve: dict[int, dict[str, float]] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "metric" and data["name"] in REPORTED:
            at = curve.setdefault(int(data["step"]), {})
            at[data["name"]] = round(float(data["value"]), 4)
            if len(at) == len(REPORTED):
                print(
                    f"{arch} seed {seed} step {data['step']}: {at}, {_cpu_minutes() - start:.2f} CPU min",
                    file=sys.stderr,
                )

    with tempfile.TemporaryDirectory() as tmp:
        start = _cpu_minutes()
        result = train(cfg, out_dir=Path(tmp), on_event=on_event)
        trained = _cpu_minutes() - start
        checkpoint = max(Path(tmp, "checkpoints").glob("*.safetensors"))
        truncated = {
            str(psi): truncated_scores(checkpoint, psi, samples=cfg.schedule.eval_samples, seed=seed)
            for psi in truncations
        }
    return {
        "arch": arch,
        "seed": seed,
        "steps": result.step,
        "width": cfg.model.width,
        "batch_size": cfg.train.batch_size,
        "params_g": g_values,
        "params_d": d_values,
        "cpu_minutes": round(trained, 2),
        "cpu_minutes_truncation": round(_cpu_minutes() - start - trained, 2),
        **curve.get(steps, {}),
        "truncated": truncated,
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--only", choices=ARCHS, default=None, help="train one of the two architectures")
    parser.add_argument("--config", default="{}", help="JSON layered over both configurations")
    parser.add_argument("--truncation", type=float, nargs="*", default=[0.5], help="ψ values to evaluate at")
    parser.add_argument("--eval-every", type=int, default=None, help="also evaluate every this many steps")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    override = json.loads(args.config)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for arch in [args.only] if args.only else ARCHS:
            print(json.dumps(measure(arch, override, seed, args.truncation, args.eval_every)), flush=True)


if __name__ == "__main__":
    main()
