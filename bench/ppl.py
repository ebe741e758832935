"""Perceptual path length on digits: the stylegan2 defaults against the dcgan default, each trained for `--steps`
(0: each configuration's own step count, the defaults' full runs), then evaluated with
core.metrics.evaluate_checkpoint (its EMA generator when there is one): `ppl_w_digits` for stylegan2 (end-point
sampling in W), `ppl_z_digits` for dcgan (in Z), beside `fid_digits`. `--runs` picks the configurations,
`--stylegan2 JSON` merges fields into the stylegan2 body (candidates for its default), and `--eval-every N` has
the run's own evaluator report fid_digits and the path length every N steps with the process's CPU minutes so far
(evaluations included), a curve of quality against compute. With `--project N`, N held-out real
digits (the classifier's held-out split) are projected into the stylegan2 run (core.projection, `--project-steps`
steps), once with the digits classifier in the distance and once without it, and the classifier's accuracy on the
reconstructions is reported (the issue's goal: ≥ 95 %; with the classifier in the distance, the accuracy is not
independent of the objective, hence both).

One draw of 2,048 samples moves a checkpoint's fid_digits by 0.2 or more, so `--draws K` evaluates the final
checkpoint on K draws of `--samples` latents (seeds S, S + 1000, S + 2000, ...; the first is the seed's own, as
before) and reports each draw's fid_digits, precision and recall with their mean and sample standard deviation.
The dcgan default's anchor is read the same way (`--runs dcgan --draws 8`, per seed and per machine model, since
runs reproduce on one model and not across them; the readings are in docs/benchmarks.md), so draws of 2,048 keep the
comparison at the same sample count. `--draw-steps 4000` evaluates the checkpoints of those steps the same way
(a shorter run's result from a longer one: the stylegan2 learning rates are constant and its EMA ramp does not
depend on the run's length; not so inside a `train.lr_rampdown`, which starts at a share of the run's own
length). `--best` evaluates the run's best checkpoint the same way too: the one the run keeps by its own paired
evaluations (`--eval-every`; core.train keeps the checkpoint of the lowest fid_digits), as a user of the run would
take it. `--keep DIR` copies the evaluated checkpoints there, and `--evaluate CKPT[,CKPT]` only evaluates kept
checkpoints (no training).

    OMP_NUM_THREADS=1 .venv/bin/python bench/ppl.py --steps 1000 --seed 0 --project 100 --project-steps 200
    OMP_NUM_THREADS=1 .venv/bin/python bench/ppl.py --runs stylegan2 --samples 2048 --eval-every 1000 \
        --stylegan2 '{"model": {"clusters": 50}, "train": {"steps": 4000}}'
    OMP_NUM_THREADS=1 .venv/bin/python bench/ppl.py --runs stylegan2 --steps 0 --draws 3 --keep ckpts/

Prints one JSON line per run with wall and CPU minutes of training and of the measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import checkpoint
from core.config import RunConfig
from core.datasets import load_dataset
from core.metrics import evaluate_checkpoint
from core.metrics.classifier import load_digits_classifier
from core.metrics.digits_data import digits_split_indices

CONFIGS: dict[str, dict[str, Any]] = {
    "dcgan": {},  # the digits default
    "stylegan2": {"model": {"arch": "stylegan2"}},  # its defaults
}


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return round((wall - start[0]) / 60, 2), round((cpu - start[1]) / 60, 2)


CURVE_METRICS = ("fid_digits", "precision_digits", "recall_digits", "ppl_w_digits", "ppl_z_digits")
DRAW_SEED_STRIDE = 1000  # draw i evaluates the latents of seed + i * this


def evaluate_draws(ckpt: Path, *, samples: int, seed: int, draws: int) -> dict[str, Any]:
    """fid_digits, precision and recall of `draws` draws of `samples` latents, each draw's and their mean and sample
    standard deviation, and the path lengths (a fixed set of pairs, the same in every draw: from the first)."""
    per_draw: list[dict[str, float]] = []
    ppl: dict[str, float] = {}
    for i in range(draws):
        metrics = evaluate_checkpoint(ckpt, dataset="digits", n_samples=samples, seed=seed + i * DRAW_SEED_STRIDE)[
            "metrics"
        ]
        per_draw.append(
            {
                "fid_digits": metrics["fid_digits"],
                "precision": metrics["precision_digits"],
                "recall": metrics["recall_digits"],
            }
        )
        if i == 0:
            ppl = {k: round(v, 3) for k, v in metrics.items() if k.startswith("ppl_")}
    row: dict[str, Any] = {}
    for name in ("fid_digits", "precision", "recall"):
        values = [d[name] for d in per_draw]
        row[name] = round(values[0], 3)  # the first draw: the seed's own latents, as a single-draw run reports
        if draws > 1:
            row[f"{name}_draws"] = [round(v, 3) for v in values]
            row[f"{name}_mean"] = round(statistics.mean(values), 3)
            row[f"{name}_sd"] = round(statistics.stdev(values), 3)
    return row | {"ppl": ppl}


def best_step(ckpt: Path) -> int | None:
    """The step of the best checkpoint that `ckpt` records (by the run's own evaluations), or None."""
    best = checkpoint.read_checkpoint(ckpt)[1].get("best")
    return int(json.loads(best)["step"]) if best else None


def project_accuracy(ckpt: Path, n: int, steps: int, seed: int) -> dict[str, Any]:
    """Classifier accuracy on reconstructions of n held-out digits, with and without the classifier in the
    projection's distance."""
    from core import projection, scoring

    scorer = scoring.load_scorer(ckpt, ema=True)
    data = load_dataset("digits", image_size=scorer.cfg.model.image_size)
    _, held = digits_split_indices()
    x, labels = data.batch(torch.from_numpy(held[:n]))  # (n, 1, S, S), (n,)
    classifier = load_digits_classifier()
    out: dict[str, Any] = {"n": n, "steps": steps}
    with torch.no_grad():
        out["accuracy_of_the_real_images"] = float((classifier(x).argmax(1) == labels).double().mean())
    for name, clf in (("with_classifier", classifier), ("without_classifier", None)):
        start = clocks()
        distance = projection.Distance(discriminator=scorer.discriminator, classifier=clf)
        result = projection.project(scorer.generator, x, steps=steps, distance=distance, seed=seed)
        with torch.no_grad():
            pred = classifier(torch.from_numpy(result.images)).argmax(1)
        out[name] = {
            "distance": result.distance,
            "accuracy": float((pred == labels).double().mean()),
            "mean_start_distance": float(result.start_distance.mean()),
            "mean_final_distance": float(result.final_distance.mean()),
            "minutes_wall_cpu": since(start),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="training steps; 0 = each configuration's own")
    parser.add_argument("--runs", default="dcgan,stylegan2", help="comma-separated: dcgan, stylegan2")
    parser.add_argument("--stylegan2", default="{}", help="JSON merged into the stylegan2 body")
    parser.add_argument("--eval-every", type=int, default=0, help="report fid_digits and PPL every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=1024, help="evaluation samples (and PPL pairs)")
    parser.add_argument("--project", type=int, default=0, help="held-out digits to project into the stylegan2 run")
    parser.add_argument("--project-steps", type=int, default=200)
    parser.add_argument("--draws", type=int, default=1, help="evaluate the final checkpoint on this many draws")
    parser.add_argument("--draw-steps", default="", help="comma-separated earlier steps to evaluate as well")
    parser.add_argument("--best", action="store_true", help="evaluate the run's best checkpoint as well")
    parser.add_argument("--keep", default="", help="copy the evaluated checkpoints into this folder")
    parser.add_argument("--evaluate", default="", help="comma-separated checkpoints to evaluate, without training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from core.train import train

    if args.evaluate:
        for path in args.evaluate.split(","):
            start = clocks()
            kept = {"checkpoint": Path(path).name, "seed": args.seed, "samples": args.samples, "draws": args.draws}
            kept |= evaluate_draws(Path(path), samples=args.samples, seed=args.seed, draws=args.draws)
            print(json.dumps(kept | {"eval_minutes_wall_cpu": since(start)}), flush=True)
        return

    for label in args.runs.split(","):
        body: dict[str, Any] = {"dataset": "digits", "seed": args.seed, **CONFIGS[label]}
        if label == "stylegan2":
            for section, fields in json.loads(args.stylegan2).items():
                body[section] = body.get(section, {}) | fields
        cfg = RunConfig.model_validate(body)
        steps = args.steps or cfg.train.steps
        draw_steps = sorted({int(x) for x in args.draw_steps.split(",") if x} | {steps})
        schedule = {
            "sample_every": 10**6,
            "eval_every": args.eval_every,
            "eval_samples": args.samples,
            "checkpoint_every": math.gcd(*draw_steps),
            # every checkpoint: an evaluation's new best gets one of its own, which would push the ones asked for out
            "keep_checkpoints": 1000,
        }
        cfg = cfg.model_copy(
            update={
                "train": cfg.train.model_copy(update={"steps": steps}),
                "schedule": cfg.schedule.model_copy(update=schedule),
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            start = clocks()

            def on_event(
                kind: str, data: dict[str, Any], start: tuple[float, float] = start, label: str = label
            ) -> None:
                if kind == "metric" and data["name"] in CURVE_METRICS:
                    point = {"step": data["step"], data["name"]: round(data["value"], 3), "cpu_min": since(start)[1]}
                    print(json.dumps({"config": label, "curve": point}), flush=True)

            train(cfg, out_dir=Path(tmp), on_event=on_event)
            train_minutes = since(start)
            ckpts = {int(c.stem): c for c in (Path(tmp) / "checkpoints").glob("*.safetensors")}
            best = best_step(ckpts[steps])
            if args.best and best is not None and best not in draw_steps:
                draw_steps = sorted({*draw_steps, best})
            for at in draw_steps[:-1]:  # the earlier steps asked for, one line each
                start = clocks()
                early: dict[str, Any] = {"config": label, "steps": at, "seed": args.seed, "best": at == best}
                early |= evaluate_draws(ckpts[at], samples=args.samples, seed=args.seed, draws=args.draws)
                print(json.dumps(early | {"eval_minutes_wall_cpu": since(start)}), flush=True)
            ckpt = ckpts[steps]
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                for at in draw_steps:
                    shutil.copyfile(ckpts[at], Path(args.keep) / f"{label}-seed{args.seed}-{ckpts[at].name}")
            start = clocks()
            row: dict[str, Any] = {"config": label, "body": body, "steps": steps, "seed": args.seed}
            row["best"] = steps == best
            row |= evaluate_draws(ckpt, samples=args.samples, seed=args.seed, draws=args.draws)
            row |= {"train_minutes_wall_cpu": train_minutes, "eval_minutes_wall_cpu": since(start)}
            if args.project and cfg.model.arch == "stylegan2":
                row["projection"] = project_accuracy(ckpt, args.project, args.project_steps, args.seed)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
