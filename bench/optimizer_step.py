"""The optimizer step on the CPU: torch's loop over parameters against its multi-tensor (foreach) kernels, which
the stylegan2 family's optimizers use (docs/benchmarks.md, "Optimizer steps: a loop over the parameters or foreach").

    OMP_NUM_THREADS=1 .venv/bin/python bench/optimizer_step.py --steps 300 --rounds 5

For each case, builds the family's networks and optimizers for the run body (`core.families`' own `build`, so the
parameters and Adam settings are a run's), gives every parameter a gradient drawn N(0, 1), and times `step()` of
every optimizer, the per-parameter loop (`foreach` False, what torch picks on the CPU) and foreach alternately,
`--steps` steps a round. Reports the milliseconds of process CPU time per step of all of a run's optimizers
together, the median over the rounds, and whether the two give the same parameters bit for bit after `--check`
steps from the same state and gradients.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import RunConfig
from core.datasets import load_dataset
from core.families import family_of

CASES: dict[str, dict[str, Any]] = {
    # name: a run body on the architecture's defaults for its dataset
    "dcgan": {"dataset": "digits"},
    "resnet": {"dataset": "digits", "model": {"arch": "resnet"}},
    "stylegan2": {"dataset": "digits", "model": {"arch": "stylegan2"}},
    "biggan": {"dataset": "digits", "model": {"arch": "biggan", "conditional": True}},
    "ctgan": {"dataset": "credit", "model": {"arch": "ctgan"}},
    "pix2pix": {"dataset": "digits-edges", "model": {"arch": "pix2pix"}},
}


def optimizers_of(body: dict[str, Any]) -> list[torch.optim.Optimizer]:
    """A run's optimizers, built by its family, every parameter given a gradient."""
    cfg = RunConfig.model_validate(body | {"train": {"device": "cpu"}})
    data = load_dataset(cfg.dataset, image_size=cfg.model.image_size, table=cfg.table)
    family = family_of(cfg.model.arch)
    if hasattr(family, "split_data"):
        data = family.split_data(data, cfg)
    torch.manual_seed(0)
    models = family.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda *_: None)
    opts = [opt for opt in models.optimizers().values() if opt is not None]
    for opt in opts:
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.randn_like(p)
    return opts


def use_foreach(opts: list[torch.optim.Optimizer], on: bool) -> None:
    for opt in opts:
        for group in opt.param_groups:
            group["foreach"] = on


def ms_per_step(opts: list[torch.optim.Optimizer], steps: int) -> float:
    start = time.process_time()
    for _ in range(steps):
        for opt in opts:
            opt.step()
    return (time.process_time() - start) / steps * 1e3


def same_result(opts: list[torch.optim.Optimizer], steps: int) -> bool:
    """Whether the loop and foreach take the same parameters to the same values from one state."""
    results = []
    for on in (False, True):
        copies = copy.deepcopy(opts)  # the parameters, their gradients and the optimizers' state together
        use_foreach(copies, on)
        generator = torch.Generator().manual_seed(1)
        for _ in range(steps):
            for opt in copies:
                for group in opt.param_groups:
                    for p in group["params"]:
                        p.grad = torch.randn(p.shape, generator=generator)
                opt.step()
        results.append([p.detach().clone() for opt in copies for g in opt.param_groups for p in g["params"]])
    return all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps a round and setting")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--check", type=int, default=20, help="steps of the bit-for-bit comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| case | parameters | loop, ms/step | foreach, ms/step | foreach / loop | same values |")
    print("|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        opts = optimizers_of(CASES[name])
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for on in (False, True):
                use_foreach(opts, on)
                ms_per_step(opts, 10)  # the state, allocated
                times[on].append(ms_per_step(opts, args.steps))
        loop, each = statistics.median(times[False]), statistics.median(times[True])
        count = sum(len(g["params"]) for opt in opts for g in opt.param_groups)
        same = same_result(opts, args.check)
        verdict = "yes" if same else "NO"
        print(f"| {name} | {count} | {loop:.2f} | {each:.2f} | {each / loop:.2f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
