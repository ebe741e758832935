"""Where a digits generator's Fréchet distance comes from: kept checkpoints (`bench/ppl.py --keep DIR`) evaluated on
the digits classifier's features, each FD split into its mean term |μ_f − μ_r|² and its covariance term.

For each checkpoint (its EMA generator when it has one) it draws `--draws` draws of `--samples` latents, seeds S,
S + 1000, ... as `bench/ppl.py --draws` does (S the run's seed; a style-based generator's noise maps drawn per sample
after the latents, as `evaluate_checkpoint` draws them), and reports per draw the distance to the 1,437 training
digits (the evaluator's reference) with its two terms. Over all the draws at once (where the draws' own sampling
bias is small) it reports the distance to the training digits and to the 360 held-out digits, the trace and the
leading eigenvalues of the fakes' feature covariance, and the median distance from a fake to its nearest training
digit in the features; the training digits' own values stand beside them (their distance to the held-out digits, the
held-out digits' nearest-training distance), so that a generator at the data's floor, or one that copies its
training digits, shows as such.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fd_parts.py ckpts/stylegan2-seed1-00013000.safetensors \\
        ckpts/dcgan-seed1-00012000.safetensors --draws 8

Prints one JSON line per checkpoint, after one for the real digits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ppl import DRAW_SEED_STRIDE  # draw i takes the latents of seed + i * this, as there
from core.checkpoint import load_generator
from core.datasets import load_dataset
from core.metrics.classifier import load_digits_classifier
from core.metrics.digits_data import digits_split_indices
from core.metrics.distances import feature_stats, frechet_distance
from core.networks_stylegan2 import fresh_noise

BATCH = 512
EIGENVALUES = 8  # how many of the covariance's leading eigenvalues to report


def features(classifier: Any, images: torch.Tensor) -> torch.Tensor:
    """Digits classifier features (N, 128) of (N, 1, H, W) images in [-1, 1]."""
    with torch.no_grad():
        return torch.cat(
            [classifier.features_and_logits(images[i : i + BATCH])[0] for i in range(0, len(images), BATCH)]
        )


def fd_terms(fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """The Fréchet distance of two feature sets and its mean term (the covariance term is the rest)."""
    mu_f, sigma_f = feature_stats(fake)
    mu_r, sigma_r = feature_stats(real)
    total = frechet_distance(mu_f.numpy(), sigma_f.numpy(), mu_r.numpy(), sigma_r.numpy())
    mean = float((mu_f - mu_r).square().sum())
    return {"fd": round(total, 4), "mean_term": round(mean, 4), "covariance_term": round(total - mean, 4)}


def nearest_median(a: torch.Tensor, b: torch.Tensor) -> float:
    """The median over the rows of a of the Euclidean distance to the nearest row of b."""
    nearest = torch.cat(
        [torch.cdist(a[i : i + BATCH].double(), b.double()).min(1).values for i in range(0, len(a), BATCH)]
    )
    return round(float(nearest.median()), 3)


def spectrum(feats: torch.Tensor) -> dict[str, Any]:
    sigma = feature_stats(feats)[1].numpy()
    eig = np.linalg.eigvalsh(sigma)[::-1][:EIGENVALUES]
    return {"trace": round(float(np.trace(sigma)), 2), "eigenvalues": [round(float(v), 2) for v in eig]}


def draw(G: torch.nn.Module, z_dim: int, *, seed: int, n: int) -> torch.Tensor:
    """n images of an unconditional generator from latents of `seed`, noise maps per sample after them."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=gen)  # (n, Z)
    with torch.no_grad(), fresh_noise(G, gen):
        return torch.cat([G(z[i : i + BATCH]).float() for i in range(0, n, BATCH)])  # (n, 1, H, W)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(1)
    classifier = load_digits_classifier()
    train_idx, held_idx = digits_split_indices()
    references: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def reference(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training and held-out digits' features at a generator's image size."""
        if image_size not in references:
            data = load_dataset("digits", image_size=image_size)
            train = features(classifier, data.batch(torch.from_numpy(train_idx))[0].float())
            held = features(classifier, data.batch(torch.from_numpy(held_idx))[0].float())
            references[image_size] = (train, held)
            real = {"fd_to_held_out": fd_terms(train, held), **spectrum(train)}
            real["nearest_training_median_of_held_out"] = nearest_median(held, train)
            print(json.dumps({"real_digits": image_size, **real}), flush=True)
        return references[image_size]

    for path in args.checkpoints:
        G, cfg, info = load_generator(path)
        if cfg.dataset != "digits" or cfg.model.conditional:
            raise SystemExit(f"{path}: fd_parts reads unconditional runs on digits, not {cfg.dataset}")
        train, held = reference(int(info["image_size"]))
        per_draw = []
        for i in range(args.draws):
            images = draw(G, cfg.model.z_dim, seed=cfg.seed + i * DRAW_SEED_STRIDE, n=args.samples)
            per_draw.append(features(classifier, images))
        terms = [fd_terms(f, train) for f in per_draw]
        pooled = torch.cat(per_draw)
        row = {
            "checkpoint": path.name,
            "draws": terms,
            **{f"{k}_mean": round(statistics.mean(t[k] for t in terms), 4) for k in terms[0]},
            "pooled": {
                "samples": len(pooled),
                "to_training": fd_terms(pooled, train),
                "to_held_out": fd_terms(pooled, held),
            },
            **spectrum(pooled),
            "nearest_training_median": nearest_median(pooled[: args.samples], train),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
