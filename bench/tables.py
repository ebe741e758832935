"""ganforge's ctgan against the `ctgan` package (sdv-dev's, its defaults, 300 epochs), side by side: the same
table, the same train/holdout split (core.tabular.data.split_rows), the same machine, one thread each, scored by
the same metrics (core.tabular.metrics): quality score, efficacy (ROC AUC of a logistic regression trained on the
synthetic rows, tested on the real holdout; the `real` row trains it on the real training rows), privacy ratio
(median DCR of synthetic rows over that of the holdout) and CPU minutes (user + system time of the process that
trains and samples, imports included).

The package is not a dependency of ganforge: it lives in a venv of its own (docs/benchmarks.md says how to make
it), and runs in a subprocess on the training rows written to a temporary CSV.

    .venv/bin/python bench/tables.py --ctgan-python $CTGAN_VENV/bin/python
    .venv/bin/python bench/tables.py --datasets mixed --seeds 0 1 2 --ctgan-python $CTGAN_VENV/bin/python
    .venv/bin/python bench/tables.py --datasets credit --seeds 1 --package-only --ctgan-python $CTGAN_VENV/bin/python
    .venv/bin/python bench/tables.py --datasets mixed --config '{"train": {"steps": 2000}}' --label "2k steps"

Both sides sample as many rows as the table has training rows (seeded), and both train with the same seed.
The package's integer columns come back as floats and are rounded, as SDV would; its categorical columns are the
table's categorical and boolean columns. Ours trains with the dataset's default config (with `--config` merged
on top), its periodic evaluation, sample pictures and checkpoints included, and samples from the last checkpoint
(the EMA generator when the config has one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# Run by the package's Python: train CTGAN with its defaults on a CSV and write n sampled rows.
PACKAGE_SCRIPT = """
import json, sys
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from ctgan import CTGAN
args = json.loads(sys.argv[1])
df = pd.read_csv(args["train"], dtype={c: str for c in args["discrete"]}, keep_default_na=False)
model = CTGAN(epochs=args["epochs"])
model.set_random_state(args["seed"])
model.fit(df, discrete_columns=args["discrete"])
out = model.sample(args["n"])
for c in args["integers"]:
    out[c] = out[c].round().astype("int64")
out.to_csv(args["out"], index=False)
"""


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def ours(args: argparse.Namespace) -> None:
    """In the child: train the dataset's default config (with --config on top) and write the sampled rows."""
    import torch

    torch.set_num_threads(1)
    from core.config import RunConfig
    from core.families.ctgan import load_table_generator, sample_rows
    from core.tabular.io import write_csv
    from core.train import train

    body = _merge({"dataset": args.dataset, "seed": args.seed, "train": {"device": "cpu"}}, json.loads(args.config))
    cfg = RunConfig.model_validate(body)
    run = Path(args.out).parent / "run"
    train(cfg, out_dir=run)
    last = sorted((run / "checkpoints").glob("*.safetensors"))[-1]
    tg = load_table_generator(last)
    rows, _ = sample_rows(tg, args.n, seed=10_000 + args.seed)
    Path(args.out).write_bytes(write_csv(rows, tg.transformer.columns))


def _child(cmd: list[str]) -> float:
    """Run a child process on one thread; its CPU minutes (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env=os.environ | SINGLE_THREAD, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{done.stderr[-3000:]}")
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / 60


def score(fake_csv: Path, data: Any) -> dict[str, float]:
    """Our metrics of synthetic rows (a CSV in the table's columns) against the training rows and the holdout."""
    from core.tabular.columns import typed
    from core.tabular.io import read_csv
    from core.tabular.metrics import dcr_ratio, ml_efficacy, quality

    fake = typed(read_csv(fake_csv.read_bytes()), data.columns)
    return {
        "quality": quality(data.rows, fake, data.columns)["quality_score"],
        "efficacy": ml_efficacy(fake, data.held, data.columns, data.target, data.rows) or float("nan"),
        "privacy": dcr_ratio(fake, data.rows, data.held, data.columns),
    }


def compare(dataset: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One dataset and seed: the real row, ours and (with --ctgan-python) the package's, each scored alike."""
    from core.tabular.data import builtin_dataset
    from core.tabular.io import write_csv
    from core.tabular.metrics import ml_efficacy, quality

    data = builtin_dataset(dataset)
    n = len(data)
    out = [
        {
            "dataset": dataset,
            "seed": seed,
            "who": "real rows",
            "quality": quality(data.rows, data.held, data.columns)["quality_score"],
            "efficacy": ml_efficacy(data.rows, data.held, data.columns, data.target, data.rows),
            "privacy": 1.0,
            "cpu_min": 0.0,
        }
    ]
    with tempfile.TemporaryDirectory(prefix="tables-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.package_only:
            keep = Path(args.keep) / f"{dataset}-{seed}" if args.keep else None
            mine = (keep or tmp / "ours") / "rows.csv"
            mine.parent.mkdir(parents=True)  # a fresh folder: a run in one that holds checkpoints would resume
            cmd = [sys.executable, __file__, "--_ours", "--dataset", dataset, "--seed", str(seed)]
            cpu = _child([*cmd, "--n", str(n), "--out", str(mine), "--config", args.config])
            out.append({"dataset": dataset, "seed": seed, "who": args.label, **score(mine, data), "cpu_min": cpu})
        if args.ctgan_python:
            train_csv, theirs = tmp / "train.csv", tmp / "package.csv"
            train_csv.write_bytes(write_csv(data.rows, data.columns))
            spec = {
                "train": str(train_csv),
                "out": str(theirs),
                "n": n,
                "seed": seed,
                "epochs": args.epochs,
                "discrete": [c.name for c in data.columns if c.kind in ("categorical", "boolean")],
                "integers": [c.name for c in data.columns if c.kind == "discrete"],
            }
            cpu = _child([args.ctgan_python, "-c", PACKAGE_SCRIPT, json.dumps(spec)])
            who = f"ctgan package ({args.epochs} epochs)"
            out.append({"dataset": dataset, "seed": seed, "who": who, **score(theirs, data), "cpu_min": cpu})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["breast-cancer", "wine", "mixed", "credit"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--ctgan-python", help="the Python of a venv with the ctgan package; without it, ours only")
    parser.add_argument("--epochs", type=int, default=300, help="the package's epochs (its default: 300)")
    parser.add_argument("--config", default="{}", help="JSON merged over the dataset's default config (ours)")
    parser.add_argument("--label", default="ganforge default")
    parser.add_argument("--package-only", action="store_true", help="run the package alone (with --ctgan-python)")
    parser.add_argument("--json", help="also write every row to this JSON file")
    parser.add_argument("--keep", help="keep our runs (checkpoints and rows) in DIR/<dataset>-<seed>/, to sample again")
    parser.add_argument("--_ours", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._ours:
        ours(args)
        return

    rows: list[dict[str, Any]] = []
    print("| dataset | seed | who | quality | efficacy (AUC) | privacy (DCR ratio) | CPU min |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        for seed in args.seeds:
            for r in compare(dataset, seed, args):
                if r["who"] == "real rows" and seed != args.seeds[0]:
                    continue
                rows.append(r)
                print(
                    f"| {r['dataset']} | {r['seed']} | {r['who']} | {r['quality']:.3f} | {r['efficacy']:.3f} "
                    f"| {r['privacy']:.2f} | {r['cpu_min']:.2f} |",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
