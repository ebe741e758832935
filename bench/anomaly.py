"""Anomaly detection with a GAN, run by hand (results in docs/benchmarks.md, ## Generations).

    .venv/bin/python bench/anomaly.py --steps 1000 --search-steps 100

Trains an unconditional DCGAN-32 on the digits 0–4 only (80 % of them, uploaded as a dataset through
core.uploads, trained with core.train.train), then scores the held-out 20 % of 0–4 (normal) and the digits
5–9 (anomalies; `--anomalies` of them, drawn at random) with core.scoring, and reports the AUROC of each
score: discriminator (−D(x)), AnoGAN ((1 − λ)·residual + λ·feature after a latent search), and its two parts.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import scoring, uploads  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.train import train  # noqa: E402


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, 8, 8, 1) and their labels (N,)."""
    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)


def upload(images: np.ndarray, folder: Path) -> Path:
    """The images as an uploaded dataset folder (a flat ZIP of PNGs through core.uploads.prepare)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, image in enumerate(images):
            png = io.BytesIO()
            Image.fromarray(image[:, :, 0], mode="L").save(png, format="PNG")
            archive.writestr(f"{i:05d}.png", png.getvalue())
    path = folder / "train.zip"
    path.write_bytes(buffer.getvalue())
    prepared = uploads.prepare(path, datasets_dir=folder)
    return prepared.tmp_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--search-steps", type=int, default=100, help="latent-search steps per image")
    parser.add_argument("--weight", type=float, default=0.1, help="λ of the AnoGAN score")
    parser.add_argument("--anomalies", type=int, default=400, help="digits 5–9 scored (at random)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")

    images, labels = digits_uint8()
    rng = np.random.default_rng(0)
    normal = rng.permutation(np.flatnonzero(labels < 5))
    cut = int(0.8 * len(normal))
    train_idx, held_out = normal[:cut], normal[cut:]
    anomalies = rng.permutation(np.flatnonzero(labels >= 5))[: args.anomalies]

    work = Path(tempfile.mkdtemp(prefix="gf-bench-anomaly-"))
    dataset_dir = upload(images[train_idx], work)
    cfg = RunConfig.model_validate(
        {
            "dataset": "ds_0123456789abcdef",
            "seed": 0,
            "model": {"arch": "dcgan", "image_size": 32, "width": 32, "z_dim": 100},
            "train": {"steps": args.steps, "batch_size": 64, "ema": 0.999},
            "schedule": {"sample_every": args.steps, "checkpoint_every": args.steps},
        }
    )
    t0 = time.perf_counter()
    result = train(cfg, out_dir=work / "run", dataset_dir=dataset_dir)
    train_seconds = time.perf_counter() - t0
    checkpoint = sorted((work / "run" / "checkpoints").glob("*.safetensors"))[-1]
    print(f"trained {result.step} steps on {len(train_idx)} images of 0–4 in {train_seconds:.0f} s ({checkpoint})")

    scorer = scoring.load_scorer(checkpoint, ema=True)
    test = np.concatenate([held_out, anomalies])
    truth = np.concatenate([np.zeros(len(held_out)), np.ones(len(anomalies))])  # 1 = anomaly (5–9)
    x = scoring.prepare_images(images[test], channels=1, image_size=32)  # (N, 1, 32, 32)
    t0 = time.perf_counter()
    scores = scoring.score_images(scorer, x, steps=args.search_steps, weight=args.weight, seed=0)
    score_seconds = time.perf_counter() - t0
    print(
        f"scored {len(held_out)} held-out 0–4 and {len(anomalies)} 5–9 in {score_seconds:.0f} s "
        f"({args.search_steps} search steps, λ = {args.weight})"
    )
    for name in ("discriminator", "anogan", "residual", "feature"):
        print(f"  AUROC {name:>13}: {roc_auc_score(truth, scores[name]):.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
