"""CycleGAN on digits-printed (A: handwritten digits, B: printed digits): train the dataset's default through
core.train (with the run's own evaluations every `schedule.eval_every` steps), then evaluate its final generators
on every held-out image of both domains with the evaluator the runs use (core/metrics/unpaired.py).

    OMP_NUM_THREADS=1 .venv/bin/python bench/cyclegan.py --seeds 0 1
    OMP_NUM_THREADS=1 .venv/bin/python bench/cyclegan.py --seeds 0 --trace --config '{"train": {"steps": 6000}}'

Reported per seed: `label_preservation` (the 500 held-out printed digits translated B→A and read by the shipped
digits classifier as their source digit), `label_preservation_b` (the 360 held-out handwritten digits translated
A→B and read by the printed read-out of the classifier's features), `fd_digits` (B→A translations against the
handwritten training digits, classifier features) and its ratio to the floor (held-out handwritten digits against
the same), `fd_digits_b` and its ratio likewise for A→B, the cycle errors, and the training's wall and CPU minutes
(process time: this process's threads together, training and its periodic evaluations). Also, for B→A:
`by_digit`, the share of each digit's held-out printed images read as it, and `label_preservation_nn`, the share
read as their digit by a second judge of another kind than the digits classifier: the nearest handwritten training
digit, both average-pooled to 8x8 (`floor_label_preservation_nn`: that judge on the held-out handwritten digits).
The goals (issue 24): label_preservation >= 0.90 and fd_digits <= 3x its floor, within 20 CPU minutes.

With model.latent_dim (the default), G_BA translates each printed digit with a latent code, so every B→A reading
depends on the draw of codes: the evaluator's (`EVAL_LATENT_SEED`) moves fd_digits by about 0.1 (sd) against other
draws on the same generators. `--code-draws K` (default 8) also evaluates the final generators under K draws of
codes: the first is the evaluator's own, so the rows above are that draw and stay comparable with earlier ones; draw
k takes its codes from seed EVAL_LATENT_SEED + k * CODE_DRAW_STRIDE. Reported over the K draws: `fd_digits_draws`
(each draw's), `fd_digits_mean` and `fd_digits_sd`, the mean of each draw's FD split into its mean term
||mu_fake - mu_real||^2 (`fd_digits_mean_term`) and the rest, the covariance term (`fd_digits_cov_term`), and
`label_preservation_mean`. fd_digits_b and label_preservation_b translate A→B, which reads no code: one draw gives
them. Without a latent code every draw is the same, and one is read.

The held-out printed digits hold each digit 50 times (core/unpaired.py), as the handwritten training digits and the
floor's held-out handwritten digits hold theirs about equally (35–37 a digit held out); before that they were not
balanced (36 of 5, 62 of 2, 46–56 of the others), which alone raised fd_digits by about 0.45 (docs/benchmarks.md,
"CycleGAN on digits-printed"). Each draw is also read on the first 36 translations of each digit (360, the floor's
count and proportions, and the count the readings before the balanced split used): `fd_digits_balanced_draws`,
`fd_digits_balanced_mean` and `fd_digits_balanced_sd`, against the same floor. It differs from fd_digits only by
the count it reads (360 against 500).

`--evaluate DIR` evaluates the last checkpoint of a run folder (one `--keep` left: DIR/checkpoints) without training,
with the run's own config:

    OMP_NUM_THREADS=1 .venv/bin/python bench/cyclegan.py --evaluate KEPT/seed0 --code-draws 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import read_generator_state
from core.config import RunConfig
from core.datasets import load_dataset
from core.families import cyclegan
from core.metrics.classifier import load_digits_classifier
from core.metrics.distances import fid
from core.metrics.unpaired import UnpairedEvaluator
from core.train import train
from core.unpaired import UnpairedDataset

TRACE = ("label_preservation", "label_preservation_b", "fd_digits", "fd_digits_b")
REPORT = (*TRACE, "cycle_error_a", "cycle_error_b")
HELD_OUT = 500  # every held-out image of each domain (360 handwritten, 500 printed)
BALANCED_PER_DIGIT = 36  # fd_digits_balanced's translations of each digit: 360 in all, the floor's count
CODE_DRAW_STRIDE = 1_000_000  # draw k's codes: seed EVAL_LATENT_SEED + k * this (image i's from that seed + i)


def measure(
    override: dict[str, Any], seed: int, trace: bool, keep: Path | None, code_draws: int
) -> tuple[dict[str, float | list[float]], list[float]]:
    """Train one run on digits-printed; evaluate its final generators (their EMA copy when there is one) on the
    held-out images of both domains (`evaluate`). `keep`: a folder to leave the run's folder in (grids,
    checkpoints)."""
    cfg = RunConfig.model_validate({"dataset": "digits-printed", "seed": seed, **override})

    zoom: dict[str, float] = {}
    spreads: list[float] = []  # the step stats' mode_seeking_spread since the last evaluation (model.latent_dim)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "stats":
            zoom.update({k: float(v) for k, v in data["values"].items() if k.startswith("warp_zoom")})
            if "mode_seeking_spread" in data["values"]:
                spreads.append(float(data["values"]["mode_seeking_spread"]))
        if trace and kind == "metric" and data["name"] in TRACE:
            print(f"  step {data['step']}: {data['name']} {data['value']:.3f}", flush=True)
            if data["name"] == TRACE[0] and zoom:
                print("  " + ", ".join(f"{k} {v:.2f}" for k, v in zoom.items()), flush=True)
            if data["name"] == TRACE[0] and spreads:
                mean = sum(spreads) / len(spreads)
                print(f"  mode_seeking_spread {mean:.4f} (mean of {len(spreads)} stats since the last)", flush=True)
                spreads.clear()

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = keep / f"seed{seed}" if keep is not None else Path(tmp)
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(cfg, out_dir=out_dir, on_event=on_event)
        wall, cpu = (time.perf_counter() - wall) / 60, (time.process_time() - cpu) / 60
        assert result.status == "completed", result
        values, by_digit = evaluate(out_dir, code_draws)
    return values | {"wall_minutes": wall, "cpu_minutes": cpu}, by_digit


def evaluate(run_dir: Path, code_draws: int) -> tuple[dict[str, float | list[float]], list[float]]:
    """Evaluate the last checkpoint of a run folder (its generators' EMA copy when there is one) on the held-out
    images of both domains, under `code_draws` draws of latent codes (the first the evaluator's own)."""
    ckpt = sorted((run_dir / "checkpoints").glob("*.safetensors"))[-1]
    state, meta = read_generator_state(ckpt, ema=True)
    cfg = RunConfig.model_validate_json(meta["config"])
    G = cyclegan.generator(cfg, json.loads(meta["data"]))
    G.load_state_dict(state)
    data = load_dataset("digits-printed", image_size=cfg.model.image_size)
    assert isinstance(data, UnpairedDataset)
    ev = UnpairedEvaluator(data, n_samples=HELD_OUT, device="cpu")
    translations = cyclegan.Translations(G=G, data=data, device=torch.device("cpu"), autocast=nullcontext)
    values = ev(translations)
    ratios = {f"{k}_x_floor": values[k] / ev.floor[k] for k in ("fd_digits", "fd_digits_b")}
    floors = {f"floor_{k}": ev.floor[k] for k in TRACE}
    ba, labels = translations(HELD_OUT)  # (500, 1, S, S), (500,)
    assert labels is not None and data.held_a is not None and data.held_a_labels is not None
    with torch.no_grad():
        read = load_digits_classifier()(ba).argmax(1)  # (500,)
    by_digit = [round(float((read[labels == d] == d).float().mean()), 2) for d in range(10)]
    nn_read, nn_floor = nearest_digit(data, ba), nearest_digit(data, data.held_a)
    draws = code_draw_values(ev, translations, code_draws if G.enc is not None else 1)
    return (
        {k: values[k] for k in REPORT}
        | ratios
        | floors
        | {
            "label_preservation_nn": float((nn_read == labels).float().mean()),
            "floor_label_preservation_nn": float((nn_floor == data.held_a_labels).float().mean()),
        }
        | draws
    ), by_digit


def code_draw_values(
    ev: UnpairedEvaluator, translations: cyclegan.Translations, code_draws: int
) -> dict[str, float | list[float]]:
    """fd_digits (and its mean and covariance terms), its class-balanced reading and label_preservation over
    `code_draws` draws of G_BA's latent codes for the held-out printed digits, draw 0 the evaluator's own: each
    draw's fd_digits and balanced reading, their means and sds (n - 1; 0 for one draw), the mean of fd_digits' two
    terms and of label_preservation over the draws."""
    assert ev.classifier is not None
    real_sum, _, n_real = ev.ref["a"]
    mu_real = real_sum / n_real  # (128,) float64
    fds, balanced_fds, mean_terms, labels = [], [], [], []
    for k in range(code_draws):
        seed = cyclegan.EVAL_LATENT_SEED + k * CODE_DRAW_STRIDE
        ba, source = replace(translations, code_seed=seed)(HELD_OUT)  # (500, 1, S, S), (500,)
        assert source is not None
        with torch.no_grad():
            feats, logits = ev.classifier.features_and_logits(ba.clamp(-1, 1))  # (500, 128), (500, 10)
        fds.append(fid(*ev.ref["a"], feats))
        balanced_fds.append(fid(*ev.ref["a"], feats[balanced(source, BALANCED_PER_DIGIT)]))
        mean_terms.append(float(((feats.double().mean(0) - mu_real) ** 2).sum()))
        labels.append(float((logits.argmax(1) == source).float().mean()))
    fd, mean_term = torch.tensor(fds, dtype=torch.float64), torch.tensor(mean_terms, dtype=torch.float64)
    fd_balanced = torch.tensor(balanced_fds, dtype=torch.float64)
    return {
        "fd_digits_draws": [round(v, 4) for v in fds],
        "fd_digits_mean": float(fd.mean()),
        "fd_digits_sd": float(fd.std()) if code_draws > 1 else 0.0,
        "fd_digits_mean_term": float(mean_term.mean()),
        "fd_digits_cov_term": float((fd - mean_term).mean()),
        "fd_digits_balanced_draws": [round(v, 4) for v in balanced_fds],
        "fd_digits_balanced_mean": float(fd_balanced.mean()),
        "fd_digits_balanced_sd": float(fd_balanced.std()) if code_draws > 1 else 0.0,
        "label_preservation_mean": sum(labels) / len(labels),
    }


def balanced(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """The indices of the first m images of each class in `labels` (N,), m `per_class` or the rarest class's count
    if fewer: a subset with every class equally often."""
    counts = torch.bincount(labels)  # (K,)
    classes = torch.nonzero(counts)[:, 0]
    m = min(per_class, int(counts[classes].min()))
    return torch.cat([torch.nonzero(labels == c)[:m, 0] for c in classes])


def nearest_digit(data: UnpairedDataset, x: torch.Tensor) -> torch.Tensor:
    """The label (N,) of the handwritten training digit nearest to each image x (N, 1, S, S), both average-pooled
    to 8x8 (Euclidean): a judge that shares nothing with the digits classifier but the training digits."""
    train = torch.nn.functional.adaptive_avg_pool2d(data.store.float(), 8).flatten(1)  # (N_A, 64)
    query = torch.nn.functional.adaptive_avg_pool2d(x.float(), 8).flatten(1)  # (N, 64)
    assert data.labels is not None
    return data.labels[torch.cdist(query, train).argmin(1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--config", default="{}", help="JSON fields over the digits-printed defaults")
    parser.add_argument("--trace", action="store_true", help="print the run's own evaluations as it trains")
    parser.add_argument("--keep", type=Path, help="leave each seed's run folder (grids, checkpoints) in this folder")
    parser.add_argument(
        "--code-draws", type=int, default=8, help="draws of G_BA's latent codes to evaluate (the first the evaluator's)"
    )
    parser.add_argument(
        "--evaluate", type=Path, nargs="+", help="evaluate these run folders' last checkpoints; no training"
    )
    args = parser.parse_args()
    if args.code_draws < 1:
        parser.error("--code-draws: at least 1")
    if args.evaluate:
        for run_dir in args.evaluate:
            result, by_digit = evaluate(run_dir, args.code_draws)
            print(json.dumps({"run": run_dir.name, **rounded(result), "by_digit": by_digit}), flush=True)
        return
    override = json.loads(args.config)
    print(f"torch threads: {torch.get_num_threads()}; config over the defaults: {override}", flush=True)
    for seed in args.seeds:
        result, by_digit = measure(override, seed, args.trace, args.keep, args.code_draws)
        print(json.dumps({"seed": seed, **rounded(result), "by_digit": by_digit}), flush=True)


def rounded(values: dict[str, float | list[float]]) -> dict[str, float | list[float]]:
    """Floats to 4 decimals; lists (already rounded) as they are."""
    return {k: v if isinstance(v, list) else round(v, 4) for k, v in values.items()}


if __name__ == "__main__":
    main()
