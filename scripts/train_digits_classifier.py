"""Train the digits classifier that ganforge's metrics use, and write core/assets/digits_classifier.safetensors.

    .venv/bin/python scripts/train_digits_classifier.py [--epochs 40] [--seed 0] [--out PATH]

CPU, deterministic for a given seed, about a minute. Trains on the digits' train split only (the same split the
`digits` dataset uses), with augmentation that makes it indifferent to how an 8 px digit was resized (nearest,
bilinear, bicubic) and to small shifts, rotations and noise, so that generated images are judged on their shape.
The held-out accuracy is printed and stored in the file's metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.metrics.classifier import ASSET_PATH, FORMAT, NATIVE_SIZE, DigitsClassifier
from core.metrics.digits_data import digits_split

MODES = ("nearest", "bilinear", "bicubic")


def upsample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, 1, 8, 8) in [-1, 1] → (B, 1, 32, 32)."""
    if mode == "nearest":
        return F.interpolate(x, size=(NATIVE_SIZE, NATIVE_SIZE), mode="nearest")
    return F.interpolate(x, size=(NATIVE_SIZE, NATIVE_SIZE), mode=mode, align_corners=False).clamp(-1, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rotation (±12°), scale (0.9-1.1), shift (±2.5 px) and light noise on (B, 1, 32, 32) images."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(12)
    scale = 0.9 + torch.rand(b, generator=gen) * 0.2
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * (2.5 * 2 / NATIVE_SIZE)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, 32, 32, 2)
    out = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    noise = torch.randn(out.shape, generator=gen) * 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) < 0.5)
    return (out + noise).clamp(-1, 1)


def accuracy(model: DigitsClassifier, x: torch.Tensor, y: torch.Tensor, mode: str) -> float:
    with torch.no_grad():
        pred = model(upsample(x, mode)).argmax(1)
    return float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSET_PATH)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)
    split = digits_split()
    x_train, y_train = split.train_images, split.train_labels  # (N, 1, 8, 8) in [-1, 1], (N,)
    x_test, y_test = split.heldout_images, split.heldout_labels

    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps_per_epoch = math.ceil(len(x_train) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * 64 : (i + 1) * 64]
            mode = MODES[int(torch.randint(len(MODES), (1,), generator=gen))]
            xb = augment(upsample(x_train[idx], mode), gen)  # (B, 1, 32, 32)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            model.eval()
            acc = accuracy(model, x_test, y_test, "bilinear")
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, held-out acc {acc:.4f}")

    model.eval()
    accs = {mode: accuracy(model, x_test, y_test, mode) for mode in MODES}
    heldout = min(accs.values())
    meta = {
        "format": FORMAT,
        "heldout_accuracy": f"{heldout:.6f}",
        "heldout_accuracy_by_resize": json.dumps({k: round(v, 6) for k, v in accs.items()}),
        "heldout_size": str(len(x_test)),
        "train_size": str(len(x_train)),
        "split": json.dumps(split.description),
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "native_size": str(NATIVE_SIZE),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out), metadata=meta)
    print(f"held-out accuracy (worst over resize modes) {heldout:.4f}  {accs}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
