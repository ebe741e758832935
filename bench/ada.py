"""Adaptive discriminator augmentation with little data: one configuration trained three ways on a subset of the
digits (`--images`, 500 by default, drawn from the digits classifier's train split under a fixed seed): without
augmentation, with DiffAugment (color, translation, cutout) and with ADA (`train.augment` ada). Each run's final
generator (its EMA copy when it has one) is evaluated by the runs' own `core.metrics.Evaluator` against the whole
digits set (FID on the digits classifier's features, 2,048 samples; the reference is the full train split, not the
subset), and ADA's final p is read from the checkpoint.

The leak check asks whether the generator has learned the augmentations themselves. ADA shows D rotated, flipped
and brightness/contrast-shifted images, reals and fakes alike; if it leaked, G would draw some digits turned or
mirrored, or on a shifted background. Orientation: each image is put through the square's eight symmetries and
each version's distance to its nearest real digit in the classifier's feature space (the train split) is taken;
`upright` is the fraction of images whose own orientation is the nearest. Held-out real digits set the level (some
digits read as well turned or mirrored, 0, 1 and 8); a generator that draws turned digits falls below it, and its
`nearest_turned` comes down toward `nearest`. Tone: an image's background is the 25 % quantile of its pixels (the
blank paper, -1 in the data); `background_off` is the fraction of images whose background lies more than 0.1 from
the real digits' median, and `contrast_mean`/`contrast_std` are the mean and spread of the images' pixel standard
deviations. The arm without augmentation is the control. A grid of 100 samples per run goes to `--out`.

The training set is narrowed by replacing the dataset that core.train loads with its subset (no config field
selects a subset of a built-in dataset).

    OMP_NUM_THREADS=1 .venv/bin/python bench/ada.py --seed 0 --steps 6000 --out /tmp/ada
    OMP_NUM_THREADS=1 .venv/bin/python bench/ada.py --arch stylegan2 --steps 2000 --out /tmp/ada

Prints one JSON line per run, with wall and process-CPU minutes of its training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core.train
from core import checkpoint
from core.config import RunConfig
from core.datasets import Dataset, load_dataset
from core.grids import image_grid
from core.metrics import Evaluator
from core.metrics.classifier import load_digits_classifier
from core.metrics.digits_data import digits_split_indices

ARMS: dict[str, dict[str, Any]] = {
    "none": {},
    "diffaugment": {"train": {"diffaugment": "color,translation,cutout"}},
    "ada": {"train": {"augment": "ada"}},
}
SAMPLES = 2048
SUBSET_SEED = 0
BACKGROUND_QUANTILE = 0.25  # an image's background level: this quantile of its pixels (digits cover less)
BACKGROUND_TOLERANCE = 0.1  # a background this far from the real digits' median level counts as shifted


def subset(data: Dataset, n: int) -> Dataset:
    """n images of the digits classifier's train split (a seeded draw), with their labels."""
    train_idx, _ = digits_split_indices()
    order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(SUBSET_SEED))
    picks = torch.from_numpy(np.sort(train_idx[order[:n].numpy()]))
    labels = data.labels[picks] if data.labels is not None else None
    return Dataset(
        name=data.name,
        kind=data.kind,
        store=data.store[picks].clone(),
        labels=labels,
        num_classes=data.num_classes,
        channels=data.channels,
        image_size=data.image_size,
        class_names=data.class_names,
    )


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The eight orientations of images (B, C, H, W), the identity first."""
    turns = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    return turns + [t.flip(3) for t in turns]


@torch.no_grad()
def orientation_and_tone(x: torch.Tensor, classifier: Any, reference: torch.Tensor) -> dict[str, Any]:
    """How images (N, 1, S, S) sit among the real digits' classifier features `reference` (M, F) in each of their
    eight orientations, and their tones."""
    near = []
    for v in dihedral(x):
        feats = torch.cat([classifier.features_and_logits(c)[0] for c in v.split(512)])  # (N, F)
        near.append(torch.cdist(feats, reference).min(1).values)  # (N,) distance to the nearest real digit
    dist = torch.stack(near, 1)  # (N, 8)
    conf = torch.softmax(classifier(x), 1).max(1).values  # (N,)
    background = torch.quantile(x.flatten(1), BACKGROUND_QUANTILE, dim=1)  # (N,) the level of the blank paper
    return {
        "confidence": float(conf.mean()),
        "upright": float((dist.argmin(1) == 0).double().mean()),
        "nearest": float(dist[:, 0].mean()),
        "nearest_turned": float(dist[:, 1:].min(1).values.mean()),
        "background": background,
        "contrast": x.flatten(1).std(1),
    }


def summary(stats: dict[str, Any], real: dict[str, Any]) -> dict[str, float]:
    """The orientation and tone statistics, the background against the real digits' median."""
    out = {k: round(v, 4) for k, v in stats.items() if isinstance(v, float)}
    median = float(real["background"].median())
    out["background_mean"] = round(float(stats["background"].mean()), 4)
    shifted = (stats["background"] - median).abs() > BACKGROUND_TOLERANCE
    out["background_off"] = round(float(shifted.double().mean()), 4)
    out["contrast_mean"] = round(float(stats["contrast"].mean()), 4)
    out["contrast_std"] = round(float(stats["contrast"].std()), 4)
    return out


def run_arm(
    name: str, body: dict[str, Any], args: argparse.Namespace, ev: Evaluator, real: dict[str, Any], ref: torch.Tensor
) -> dict[str, Any]:
    cfg = RunConfig.model_validate(body)
    schedule = {"sample_every": 10**6, "eval_every": 0, "checkpoint_every": args.steps}
    cfg = cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update={"steps": args.steps}),
            "schedule": cfg.schedule.model_copy(update=schedule),
        }
    )
    classifier = load_digits_classifier()
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        core.train.train(cfg, out_dir=Path(tmp))
        minutes = [round((time.perf_counter() - wall) / 60, 2), round((time.process_time() - cpu) / 60, 2)]
        ckpt = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))[-1]
        p = checkpoint.read_tensor(ckpt, "augment.p")
        G, _, _ = checkpoint.load_generator(ckpt, ema=True)
    gen = torch.Generator().manual_seed(10_000 + args.seed)

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, None]:
        chunks = [G(torch.randn(min(500, n - s), cfg.model.z_dim, generator=gen)).float() for s in range(0, n, 500)]
        return torch.cat(chunks), None

    values = ev(sample)
    fake = sample(SAMPLES)[0].clamp(-1, 1)
    if args.out:
        image_grid(fake[:100], nrow=10).save(Path(args.out) / f"{cfg.model.arch}_{name}_seed{args.seed}.png")
    return {
        "arm": name,
        "arch": cfg.model.arch,
        "seed": args.seed,
        "images": args.images,
        "steps": args.steps,
        "fid_digits": round(float(values["fid_digits"]), 3),
        "precision": round(float(values["precision_digits"]), 3),
        "recall": round(float(values["recall_digits"]), 3),
        "ada_p": round(float(p), 3) if p is not None else None,
        "leak": summary(orientation_and_tone(fake, classifier, ref), real),
        "train_minutes_wall_cpu": minutes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dcgan", help="dcgan (the digits default) or stylegan2 (its defaults)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated: none, diffaugment, ada")
    parser.add_argument("--config", default="{}", help="JSON merged into every arm's body (model and train)")
    parser.add_argument("--out", default="", help="a directory for each run's grid of 100 samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)

    extra = json.loads(args.config)
    size = RunConfig.model_validate({"dataset": "digits", "model": {"arch": args.arch}}).model.image_size
    full = load_dataset("digits", image_size=size)
    ev = Evaluator(full, n_samples=SAMPLES)
    classifier = load_digits_classifier()
    train_idx, held_idx = digits_split_indices()
    with torch.no_grad():
        ref = classifier.features_and_logits(full.batch(torch.from_numpy(train_idx))[0])[0]  # (M, F)
    real = orientation_and_tone(full.batch(torch.from_numpy(held_idx))[0], classifier, ref)  # held-out digits
    print(json.dumps({"real_heldout": summary(real, real)}), flush=True)

    load = core.train.load_dataset
    core.train.load_dataset = lambda *a, **k: subset(load(*a, **k), args.images)  # type: ignore[assignment]
    for name in args.arms.split(","):
        body: dict[str, Any] = {"dataset": "digits", "seed": args.seed, "model": {"arch": args.arch}, "train": {}}
        for section in ("model", "train", "loss"):
            body.setdefault(section, {}).update(extra.get(section, {}))
            body[section].update(ARMS[name].get(section, {}))
        print(json.dumps(run_arm(name, body, args, ev, real, ref)), flush=True)


if __name__ == "__main__":
    main()
