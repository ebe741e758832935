"""What one Inception-v3 feature pass costs (the part of fid_inception/kid_inception/inception_score that
dominates an evaluation), and what the statistics on its 2,048-d features cost.

    .venv/bin/python bench/inception_cost.py [--n 256] [--size 32] [--channels 1] [--threads 1 2] [--repeats 2]
                                             [--stats-n 512 2048]

The network gets random weights (the cost does not depend on them; the real file is not needed) and is run
as the Evaluator runs it: eval mode, channels-last, 32 images per forward pass, images of `size` px resized
to 299 x 299 inside. For each thread count it prints wall / CPU seconds for `n` images (median of `repeats`),
then, at one thread, FID, KID and the Inception Score for `stats-n` real against `stats-n` generated random
features (below 2,048 FID takes the exact low-rank form, from 2,048 on torchmetrics' eigendecomposition).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.metrics.distances import kid
from core.metrics.evaluator import INCEPTION_BATCH
from core.metrics.inception import fid_from_features, inception_features, inception_score
from core.metrics.inception_net import FIDInceptionV3

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[tuple[float, float], T]:
    """(wall seconds, CPU seconds of this process), fn's result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stats-n", type=int, nargs="*", default=[512, 2048])
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()}")
    gen = torch.Generator().manual_seed(0)
    net = FIDInceptionV3().eval().requires_grad_(False)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (not in torch's stubs)
    images = torch.rand(args.n, args.channels, args.size, args.size, generator=gen) * 2 - 1

    print(f"\n| torch threads | {args.n} images, wall / CPU s (median of {args.repeats}) | per image, wall s |")
    print("|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        inception_features(net, images[:2], batch=INCEPTION_BATCH)  # warm-up
        runs = [timed(lambda: inception_features(net, images, batch=INCEPTION_BATCH))[0] for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"| {threads} | {wall:.1f} / {cpu:.1f} | {wall / args.n:.3f} |")

    torch.set_num_threads(1)
    if args.stats_n:
        print("\n| N real = N generated | FID wall / CPU s | KID | Inception Score |")
        print("|---|---|---|---|")
    for n in args.stats_n:
        real = torch.rand(n, 2048, generator=gen)
        fake = torch.rand(n, 2048, generator=gen)
        total = real.double()
        sums = (total.sum(0), total.T @ total)
        (fid_t, _) = timed(lambda: fid_from_features(real, sums[0], sums[1], fake))  # noqa: B023
        (kid_t, _) = timed(lambda: kid(real, fake))  # noqa: B023
        logits = torch.randn(n, 1008, generator=gen) * 3
        (is_t, _) = timed(lambda: inception_score(logits))  # noqa: B023
        print(
            f"| {n} | {fid_t[0]:.2f} / {fid_t[1]:.2f} | {kid_t[0]:.2f} / {kid_t[1]:.2f} | "
            f"{is_t[0]:.3f} / {is_t[1]:.3f} |"
        )
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
