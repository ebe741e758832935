"""SRGAN x4 on photos: blends of a finished run's pretrained and adversarially trained generators on the held-out
patches, read from a last checkpoint that `bench/srgan.py --keep DIR` kept (it holds the pretrained G and the blend).

    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan.py --seeds 3 --keep kept
    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan_blends.py kept/seed3.safetensors --windows 0 33 --d0 0.05 0.08

Each blend is reported as PSNR gain over Pillow bicubic (dB, per patch then averaged) / sharpness ratio (the outputs'
mean Sobel magnitude over the high-resolution patches'), as bench/srgan.py reports them, and each family by where it
crosses sharpness 0.8 (linear between the blends either side: the gain there and the family's knob there):
- `network`: ESRGAN's network interpolation at each weight (what `train.interpolation` does);
- `output`: the pretrained G's outputs P and the adversarially trained G's outputs A mixed as P + c·(A − P);
- `detail k`: P + w·(A − P) per pixel, w = d² / (d² + d0²), d the mean Sobel magnitude of P over all channels and
  the whole patch (k = 0) or a k × k px window around the pixel (what `train.detail_blend` d0 with
  `train.detail_window` k serves): the adversarial detail kept where the pretrained
  output already has detail and left out where it is flat. The mean PSNR is led by the flat patches (40–48 dB, where
  any added detail costs dB and buys next to no sharpness) and the sharpness by the detailed ones. d0 is scanned over
  quantiles of d on the patches and at every `--d0` (a fixed value, to carry from one run to another).

`--train-sharpness` also reports each detail blend's sharpness on the 256 training patches that
`train.interpolation_sharpness` reads (`core.families.srgan.training_patches`): whether a sharpness read on the run's
own training data tells where the held-out sharpness lands.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from srgan import blended  # bench/srgan.py

from core.checkpoint import read_checkpoint
from core.config import RunConfig
from core.datasets import load_dataset
from core.families import srgan
from core.metrics.superres import sr_metrics
from core.superres import bicubic_upscale

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
Point = tuple[float, float, float]  # (PSNR gain, sharpness, the family's knob)


def gain_and_sharpness(out: torch.Tensor, hr: torch.Tensor, bicubic_psnr: float) -> tuple[float, float]:
    """PSNR gain over bicubic (per patch, then averaged) and the sharpness ratio, by the run's own evaluator's
    sr_metrics."""
    values = sr_metrics(out, hr)
    return values["psnr"] - bicubic_psnr, values["sharpness"]


def crossing(points: list[Point], target: float = 0.8) -> Point | None:
    """The point where the front crosses `target` sharpness, linear between the points either side."""
    points = sorted(points, key=lambda p: p[1])
    for (g0, s0, k0), (g1, s1, k1) in itertools.pairwise(points):
        if s0 <= target <= s1 and s1 > s0:
            t = (target - s0) / (s1 - s0)
            return g0 + t * (g1 - g0), target, k0 + t * (k1 - k0)
    return None


def report(family: str, points: list[Point], train: list[float] | None = None) -> None:
    """One family's points as [gain, sharpness, knob] (with `train`, each point's training-patch sharpness after
    them) and where it crosses sharpness 0.8."""
    front = [[round(g, 4), round(s, 4), round(k, 4)] for g, s, k in points]
    if train is not None:
        front = [[*point, round(t, 4)] for point, t in zip(front, train, strict=True)]
    cross = crossing(points)
    at = {"gain": round(cross[0], 4), "knob": round(cross[2], 4)} if cross else None
    print(json.dumps({"family": family, "at_0.8": at, "points": front}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a last checkpoint kept by bench/srgan.py --keep")
    parser.add_argument("--weights", type=float, nargs="*", default=[0.8, 0.85, 0.88, 0.9, 0.92, 0.95, 1.0])
    parser.add_argument("--windows", type=int, nargs="*", default=[0, 33], help="0: the whole patch; else odd px")
    parser.add_argument("--d0", type=float, nargs="*", default=[], help="fixed d0 values, beside the quantiles")
    parser.add_argument(
        "--train-sharpness", action="store_true", help="also each detail blend's sharpness on 256 training patches"
    )
    args = parser.parse_args()
    tensors, meta = read_checkpoint(args.checkpoint)
    cfg, info = RunConfig.model_validate_json(meta["config"]), json.loads(meta["data"])
    data = srgan.split_data(load_dataset("photos", image_size=cfg.model.image_size), cfg)
    assert data.held is not None and data.held_low is not None
    low, hr = data.held_low, data.held.float()
    bicubic_psnr = gain_and_sharpness(bicubic_upscale(low, cfg.model.scale), hr, 0.0)[0]

    def outputs_of(inputs: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        G = srgan.generator(cfg, info)
        G.load_state_dict(state)
        return srgan.super_resolve(G, inputs, device=torch.device("cpu"), autocast=nullcontext)  # (N, C, S, S)

    def outputs(state: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs_of(low, state)

    pretrained_state = {k[len("G_psnr.") :]: v for k, v in tensors.items() if k.startswith("G_psnr.")}
    pretrained = outputs(pretrained_state)
    adversarial_state = blended(args.checkpoint, 1.0)
    adversarial = outputs(adversarial_state)
    train_pretrained = train_adversarial = None
    train_detail = 1.0
    if args.train_sharpness:  # the patches train.interpolation_sharpness reads
        train_low, train_detail = srgan.training_patches(data, cfg)
        train_pretrained = outputs_of(train_low, pretrained_state)
        train_adversarial = outputs_of(train_low, adversarial_state)
    print(
        json.dumps(
            {"bicubic_psnr": round(bicubic_psnr, 4), "pretrained": gain_and_sharpness(pretrained, hr, bicubic_psnr)}
        )
    )
    report(
        "network",
        [(*gain_and_sharpness(outputs(blended(args.checkpoint, w)), hr, bicubic_psnr), w) for w in args.weights],
    )
    report(
        "output",
        [(*gain_and_sharpness(pretrained + c * (adversarial - pretrained), hr, bicubic_psnr), c) for c in args.weights],
    )
    for window in args.windows:
        d = srgan.detail(pretrained, window)
        scan = torch.quantile(d.flatten(), torch.tensor(QUANTILES)).tolist() + list(args.d0)
        points, train = [], []
        for d0 in sorted(set(scan)):
            mixed = srgan.detail_blend(pretrained, adversarial, d0, window)  # what train.detail_blend serves
            points.append((*gain_and_sharpness(mixed, hr, bicubic_psnr), d0))
            if train_pretrained is not None and train_adversarial is not None:
                on_train = srgan.detail_blend(train_pretrained, train_adversarial, d0, window)
                train.append(srgan.sharpness_ratio(on_train, train_detail))
        report(f"detail {window}", points, train if args.train_sharpness else None)


if __name__ == "__main__":
    main()
