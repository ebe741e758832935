"""What one evaluation costs, and what building the reference statistics costs once.

    .venv/bin/python bench/eval_cost.py [--dataset digits] [--size 32] [--n 2048] [--repeats 3] [--threads 1 2]

For each thread count: builds the Evaluator with an empty cache (reference features and statistics plus the
real-vs-real floor), builds it again from the warm cache, then times `repeats` evaluations of `n` samples and
the parts of one of them (features, FID, KID, precision/recall, density/coverage, SWD). The sampler hands out
dataset images with a little noise, so the generator's own cost is left out: add one forward pass of n
samples to get the whole cost inside a run. Prints a Markdown table and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.datasets import load_dataset
from core.metrics import Evaluator
from core.metrics.distances import density_coverage, fid, kid, precision_recall
from core.metrics.evaluator import MAX_SWD
from core.metrics.swd import swd


def timed(fn):  # type: ignore[no-untyped-def]
    """(wall seconds, CPU seconds of this process), fn's result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()}")
    ds = load_dataset(args.dataset, image_size=args.size)
    gen = torch.Generator().manual_seed(0)

    def sampler(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, labels = ds.batch(torch.randint(len(ds), (n,), generator=gen))
        return (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(-1, 1), labels

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as cache:
            cold, ev = timed(lambda: Evaluator(ds, n_samples=args.n, device="cpu", cache_dir=cache))
            warm, _ = timed(lambda: Evaluator(ds, n_samples=args.n, device="cpu", cache_dir=cache))
            evals = [timed(lambda: ev(sampler))[0] for _ in range(args.repeats)]  # noqa: B023
            parts: dict[str, tuple[float, float]] = {}
            x, _ = sampler(args.n)
            if ev.classifier is not None:
                parts["features"], (feats, _) = timed(lambda: ev._features(x))  # noqa: B023
                ref = ev.ref
                m = min(ev.n_real, args.n)
                parts["fid"], _ = timed(lambda: fid(ref["sum"], ref["cov_sum"], ev.n_real, feats))  # noqa: B023
                parts["kid"], _ = timed(lambda: kid(ref["feats"], feats))  # noqa: B023
                parts["pr"], _ = timed(lambda: precision_recall(ref["feats"][:m], feats[:m]))  # noqa: B023
                parts["dc"], _ = timed(lambda: density_coverage(ref["feats"][:m], feats[:m]))  # noqa: B023
            if ev.kind == "images":
                m_swd = min(ev.n_real, args.n, MAX_SWD)
                parts["swd"], _ = timed(lambda: swd(ev.ref_x[:m_swd], x[:m_swd]))  # noqa: B023
        med = (statistics.median(e[0] for e in evals), statistics.median(e[1] for e in evals))
        rows.append((threads, cold, warm, med, parts))

    print(f"load average after: {os.getloadavg()}")
    print(f"\n{args.dataset} at {args.size} px, n = {args.n} generated, n_real = {ev.n_real}, {args.repeats} evals")
    print("\nwall / CPU seconds (CPU = this process's CPU time, steadier than wall time on a shared machine)\n")
    print("| threads | reference + floor, cold cache | reference, warm cache | one eval (median) | parts of one eval |")
    print("|---|---|---|---|---|")
    for threads, cold, warm, med, parts in rows:
        detail = ", ".join(f"{k} {w:.2f} / {c:.2f}" for k, (w, c) in parts.items())
        print(
            f"| {threads} | {cold[0]:.2f} / {cold[1]:.2f} | {warm[0]:.2f} / {warm[1]:.2f} "
            f"| {med[0]:.2f} / {med[1]:.2f} | {detail} |"
        )


if __name__ == "__main__":
    main()
