"""Image quality on digits and stacked-digits: train a configuration, then evaluate its final generator (the EMA copy
when there is one) with the same Evaluator the runs use, against the real-vs-real floor.

    .venv/bin/python bench/image_quality.py --dataset digits --seeds 3
    .venv/bin/python bench/image_quality.py --dataset digits --preset wgan-gp --seeds 3
    .venv/bin/python bench/image_quality.py --dataset digits --preset sngan-hinge --seeds 3
    .venv/bin/python bench/image_quality.py --dataset digits --config '{"model": {"conditional": true}}' --seeds 3
    .venv/bin/python bench/image_quality.py --dataset stacked-digits --seeds 3 --samples 26000

digits: FID on the digits classifier's features (`fid_digits`, 2,048 samples), precision/recall, classes, KL, and
the label accuracy of conditional runs. stacked-digits: modes covered of 1,000 and KL of the mode histogram to
uniform, over `--samples` generated images (the literature counts 26,000), each channel classified.
Minutes are wall-clock of the training alone, at `--threads` intra-op threads.
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
from core.datasets import load_dataset
from core.metrics import Evaluator

REPORT = (
    "fid_digits",
    "precision_digits",
    "recall_digits",
    "classes",
    "kl_classes",
    "label_accuracy",
    "modes",
    "kl_modes",
)


def measure(dataset: str, override: dict, seed: int, samples: int) -> dict[str, float]:
    """Train one run; evaluate its final generator on `samples` generated images."""
    cfg = RunConfig.model_validate({"dataset": dataset, "seed": seed, **override})
    cfg = cfg.model_copy(update={"schedule": cfg.schedule.model_copy(update={"sample_every": 10**6, "eval_every": 0})})
    from core.train import train

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(cfg, out_dir=Path(tmp))
        minutes = (time.perf_counter() - t0) / 60
        ckpt = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))[-1]
        G, _, info = load_generator(ckpt, ema=True)
    data = load_dataset(dataset, image_size=cfg.model.image_size)
    num_classes = int(info["num_classes"]) if cfg.model.conditional else 0
    gen = torch.Generator().manual_seed(10_000 + seed)

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        outs, labs = [], []
        for start in range(0, n, 500):
            b = min(500, n - start)
            z = torch.randn(b, cfg.model.z_dim, generator=gen)
            labels = torch.randint(num_classes, (b,), generator=gen) if num_classes else None
            outs.append(G(z, labels).float())
            if labels is not None:
                labs.append(labels)
        return torch.cat(outs), (torch.cat(labs) if labs else None)

    ev = Evaluator(data, n_samples=samples)
    values = ev(sample)
    out = {k: float(values[k]) for k in REPORT if k in values}
    out["floor_fid_digits"] = float(ev.floor.get("fid_digits", float("nan")))
    out["minutes"] = minutes
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=["digits", "stacked-digits"], default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--config", default="{}", help="JSON override of the dataset's default configuration")
    parser.add_argument("--samples", type=int, default=2048, help="generated images per evaluation")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    override = json.loads(args.config)
    if args.preset:
        override["preset"] = args.preset
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = measure(args.dataset, override, seed, args.samples)
        rows.append(row)
        print(json.dumps({"seed": seed, **{k: round(v, 4) for k, v in row.items()}}), flush=True)
    print(f"{args.dataset} {json.dumps(override)}: {len(rows)} seeds, {args.samples} samples")
    for key in rows[0]:
        vals = [r[key] for r in rows if key in r]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"  {key:18s} {statistics.mean(vals):9.4f} ± {sd:.4f}   (worst-to-best {min(vals):.4f}..{max(vals):.4f})")


if __name__ == "__main__":
    main()
