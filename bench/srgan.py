"""SRGAN x4 on photos against bicubic upsampling: train a configuration through core.train (the run's own
evaluations on the held-out patches, every `schedule.eval_every` steps), then evaluate its final generator on the
held-out patches with the evaluator the runs use.

    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan.py --seeds 0
    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan.py --seeds 0 --config '{"train": {"pretrain_steps": 3000}}'
    OMP_NUM_THREADS=1 .venv/bin/python bench/srgan.py --seeds 4 --interpolations 0.8 0.9 --sharpness-targets 0.8 0.81

Reported per seed: PSNR (dB), SSIM and the sharpness ratio (mean Sobel gradient magnitude of the outputs over the
high-resolution images') of SR and of bicubic on the held-out patches of `photos` (the left 256 columns of each
photograph, which training never sees), the PSNR gain over bicubic, and the training's wall and CPU minutes (process
time: the threads of this process together). The goals (issue 24): PSNR >= bicubic + 0.5 dB and sharpness >= 0.8.

`--quartiles` also reports, per quarter of the held-out patches ordered by their own mean gradient magnitude (the
flattest first), the mean PSNR, the sharpness ratio and that quarter's share of the patches' gradient: the mean PSNR
is an average of per-patch dB, which the flat patches lead, while the sharpness is a ratio of sums, which the
detailed ones lead. `--interpolations 0.6 0.8` re-blends a run with `train.interpolation` at other weights from its
last checkpoint (which holds the pretrained and the blended generator) and reports each, as the run would have ended.
`--sharpness-targets 0.8 0.81` reports the blend that `train.interpolation_sharpness` would have chosen at each target
(its `sharpness_target`), and every blend's `train_sharpness`, the sharpness on the training images that rule reads.
`--averages 0.99 0.998` also reports, beside the run's own G, the moving average of its G over the adversarial phase at
each decay (what `train.adversarial_ema` would have ended with: the average only watches the training, so one run
measures several), each blended at the run's weight and at every `--interpolations` weight (and at the weight each
`--sharpness-targets` target would choose for it). With `train.aside_columns` in `--config`, every generator's PSNR
gain over bicubic and sharpness on the held-aside patches are reported too (`aside_gain`, `aside_sharpness`), and the
sharpness targets read those patches, as the run would. `--keep DIR` copies each seed's last checkpoint (the pretrained
G beside the blend) to DIR/seed{S}.safetensors, and the `--averages`' weights to DIR/seed{S}_averages.pt, for
bench/srgan_blends.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import read_checkpoint, read_generator_state, read_module_state
from core.config import RunConfig
from core.datasets import load_dataset
from core.families import srgan
from core.metrics.superres import SREvaluator, sr_metrics
from core.paired import sobel_magnitude
from core.superres import bicubic_upscale, downscale
from core.train import train

REPORT = ("psnr", "psnr_bicubic", "psnr_gain", "ssim", "ssim_bicubic", "sharpness", "sharpness_bicubic")


def quartiles(out: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
    """Per quarter of the patches (N, C, S, S) by their mean gradient magnitude, flattest first: mean PSNR (dB),
    sharpness ratio, and the quarter's share of the patches' gradient."""
    out, hr = out.float().clamp(-1, 1), hr.float()
    psnr = -10 * torch.log10(((out - hr) / 2).square().mean((1, 2, 3)))  # (N,) on images in [0, 1]
    grad_out, grad_hr = sobel_magnitude(out).mean((1, 2, 3)), sobel_magnitude(hr).mean((1, 2, 3))  # (N,)
    values = {}
    for q, idx in enumerate(grad_hr.argsort().chunk(4), start=1):
        values[f"q{q}_psnr"] = float(psnr[idx].mean())
        values[f"q{q}_sharpness"] = float(grad_out[idx].sum() / grad_hr[idx].sum())
        values[f"q{q}_share"] = float(grad_hr[idx].sum() / grad_hr.sum())
    return values


def blended(ckpt: Path, alpha: float, chosen: float | None = None) -> dict[str, torch.Tensor]:
    """The generator of a run with train.interpolation as it would have ended at `alpha`: its adversarially trained G
    recovered from the blend the checkpoint holds (at `chosen`, else train.interpolation; with train.detail_blend G is
    the adversarially trained G) and G_psnr, then blended at alpha."""
    tensors, meta = read_checkpoint(ckpt)
    run_train = RunConfig.model_validate_json(meta["config"]).train
    chosen = chosen or (1.0 if run_train.detail_blend is not None else run_train.interpolation)
    if not chosen or not any(key.startswith("G_psnr.") for key in tensors):
        raise ValueError("--interpolations: the run blends nothing (train.interpolation unset or 0) to re-blend")
    state = {}
    for key, value in tensors.items():
        if not key.startswith("G."):
            continue
        name = key[2:]
        if value.is_floating_point():
            psnr = tensors[f"G_psnr.{name}"]
            trained = psnr + (value - psnr) / chosen  # value = psnr + chosen·(trained - psnr)
            value = torch.lerp(psnr, trained, alpha)
        state[name] = value
    return state


def target_weights(
    ckpt: Path,
    cfg: RunConfig,
    data: Any,
    chosen: float | None,
    targets: tuple[float, ...],
    trained: dict[str, torch.Tensor] | None = None,
) -> list[float]:
    """The blend weight train.interpolation_sharpness would have chosen at each of `targets` for this run (for the
    adversarially trained generator `trained` when given, else the run's own)."""
    tensors, meta = read_checkpoint(ckpt)
    G = srgan.generator(cfg, json.loads(meta["data"]))
    G.load_state_dict(trained if trained is not None else blended(ckpt, 1.0, chosen))
    G_psnr = srgan.generator(cfg, json.loads(meta["data"]))
    G_psnr.load_state_dict({k[len("G_psnr.") :]: v for k, v in tensors.items() if k.startswith("G_psnr.")})
    return [
        srgan.sharpness_weight(
            G,
            G_psnr,
            data,
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"interpolation_sharpness": target})}),
            device=torch.device("cpu"),
            autocast=nullcontext,
        )
        for target in targets
    ]


def watch_averages(cfg: RunConfig, decays: tuple[float, ...]) -> tuple[dict[float, torch.nn.Module], Any]:
    """Moving averages of G over the adversarial phase at each of `decays`, as train.adversarial_ema keeps them,
    updated by a wrapper of srgan.train_step (returned, to be put back), which leaves the training as it is."""
    averages: dict[float, torch.nn.Module] = {}
    step_fn = srgan.train_step

    def watched(m: Any, c: RunConfig, at: Any) -> Any:
        out = step_fn(m, c, at)
        k = at.step - c.train.pretrain_steps
        if k >= 1:
            for decay in decays:
                if decay not in averages:
                    averages[decay] = copy.deepcopy(m.G).requires_grad_(False)
                srgan.update_average(averages[decay], m.G, decay, k)
        return out

    if decays:
        fixed_weight = cfg.train.interpolation and not (cfg.train.interpolation_sharpness or cfg.train.detail_blend)
        if cfg.train.adversarial_ema is not None or not fixed_weight:
            raise ValueError(
                "--averages: needs a run with a fixed train.interpolation (no detail_blend) and without "
                "train.adversarial_ema"
            )
        # The last step blends G in place; the averages must see the adversarial G: the blend waits for the wrapper.
        blend_at_end = cfg.train.interpolation

        def watched_last(m: Any, c: RunConfig, at: Any) -> Any:
            if at.step < c.train.steps:
                return watched(m, c, at)
            unblended = c.model_copy(update={"train": c.train.model_copy(update={"interpolation": None})})
            out = watched(m, unblended, at)
            srgan.interpolate(m.G, m.G_psnr, blend_at_end)
            return out

        srgan.train_step = watched_last  # type: ignore[assignment]
    return averages, step_fn


def measure(
    override: dict[str, Any],
    seed: int,
    trace: bool,
    *,
    split: bool = False,
    alphas: tuple[float, ...] = (),
    targets: tuple[float, ...] = (),
    decays: tuple[float, ...] = (),
    keep: Path | None = None,
) -> list[dict[str, float]]:
    """Train one run on photos; evaluate its final generator (the EMA copy when there is one) on the held-out
    patches, each re-blend at `alphas`, the blend that each sharpness target in `targets` would have chosen, and the
    moving average of G over the adversarial phase at each of `decays`, blended at the run's weight and at `alphas`."""
    cfg = RunConfig.model_validate({"dataset": "photos", "seed": seed, **override})
    averages, step_fn = watch_averages(cfg, decays)
    events: list[tuple[str, dict[str, Any]]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))
        if trace and kind == "metric" and data["name"] in ("psnr", "sharpness"):
            print(f"  step {data['step']}: {data['name']} {data['value']:.3f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            train(cfg, out_dir=Path(tmp), on_event=on_event)
        finally:
            srgan.train_step = step_fn
        wall, cpu = (time.perf_counter() - wall) / 60, (time.process_time() - cpu) / 60
        ckpt = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))[-1]
        if keep is not None:  # the last checkpoint and the averages' weights, for analyses after the run
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(ckpt, keep / f"seed{seed}.safetensors")
            if averages:
                torch.save({d: a.state_dict() for d, a in averages.items()}, keep / f"seed{seed}_averages.pt")
        state, meta = read_generator_state(ckpt, ema=True)
        psnr_state = read_module_state(ckpt, "G_psnr")
        picked = [
            float(d["values"]["interpolation"]) for k, d in events if k == "stats" and "interpolation" in d["values"]
        ]
        chosen = picked[-1] if picked else None  # the weight train.interpolation_sharpness chose
        data = srgan.split_data(load_dataset("photos", image_size=cfg.model.image_size), cfg)
        by_target = target_weights(ckpt, cfg, data, chosen, targets) if targets else []
        alphas = tuple(dict.fromkeys(alphas + tuple(by_target)))  # each weight once, whichever targets chose it
        # (blend weight or None for the run's own G, decay of an average or None, its weights)
        states: list[tuple[float | None, float | None, dict[str, torch.Tensor]]] = [(None, None, state)]
        states += [(alpha, None, blended(ckpt, alpha, chosen)) for alpha in alphas]
        average_targets: dict[float, list[float]] = {}  # each average's weights at the targets
        if averages:
            assert cfg.train.interpolation is not None
            tensors, _ = read_checkpoint(ckpt)
            psnr = {k[len("G_psnr.") :]: v for k, v in tensors.items() if k.startswith("G_psnr.")}
            for decay, average in averages.items():
                own = target_weights(ckpt, cfg, data, chosen, targets, average.state_dict()) if targets else []
                average_targets[decay] = own
                for alpha in dict.fromkeys((cfg.train.interpolation, *alphas, *own)):
                    mixed = {
                        k: torch.lerp(psnr[k], v, alpha) if v.is_floating_point() else v
                        for k, v in average.state_dict().items()
                    }
                    states.append((alpha, decay, mixed))
    assert data.held is not None and data.held_low is not None
    ev = SREvaluator(data, n_samples=len(data.held), device="cpu")
    low, results, patches = data.held_low, [], srgan.training_patches(data, cfg)
    aside_hr, aside_low, aside_bicubic = data.aside, None, {}  # the held-aside patches (K, C, S, S), if any
    if aside_hr is not None:
        aside_low = downscale(aside_hr, cfg.model.scale)
        aside_bicubic = sr_metrics(bicubic_upscale(aside_low, cfg.model.scale), aside_hr)
    for weight, average_decay, weights in states:
        G = srgan.generator(cfg, json.loads(meta["data"]))
        G.load_state_dict(weights)
        if weight is None and cfg.train.detail_blend is not None:  # the run's own: what it serves
            G_psnr = srgan.generator(cfg, json.loads(meta["data"]))
            G_psnr.load_state_dict(psnr_state)
            G = srgan.served(G, G_psnr, cfg)
        out = srgan.super_resolve(G, low, device=torch.device("cpu"), autocast=nullcontext)  # (N, C, S, S)
        values = ev(lambda n, out=out: (out[:n], None))
        result: dict[str, float] = {name: values[name] for name in REPORT}
        result |= {"interpolation": weight} if weight is not None else {}
        if average_decay is not None:
            result["adversarial_ema"] = average_decay
            if weight in average_targets[average_decay]:
                result["sharpness_target"] = targets[average_targets[average_decay].index(weight)]
        elif weight is not None and weight in by_target:
            result["sharpness_target"] = targets[by_target.index(weight)]
        result["train_sharpness"] = srgan.training_sharpness(
            G, patches, device=torch.device("cpu"), autocast=nullcontext
        )
        if aside_hr is not None and aside_low is not None:
            aside = sr_metrics(
                srgan.super_resolve(G, aside_low, device=torch.device("cpu"), autocast=nullcontext), aside_hr
            )
            result |= {"aside_gain": aside["psnr"] - aside_bicubic["psnr"], "aside_sharpness": aside["sharpness"]}
        result |= quartiles(out, data.held) if split else {}
        final = {"wall_minutes": wall, "cpu_minutes": cpu} | ({"interpolation": chosen} if chosen else {})
        results.append(result | (final if weight is None else {}))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--config", default="{}", help="JSON fields over the photos defaults")
    parser.add_argument("--trace", action="store_true", help="print the run's psnr and sharpness as it evaluates")
    parser.add_argument("--quartiles", action="store_true", help="also report per quarter of the patches by detail")
    parser.add_argument("--interpolations", type=float, nargs="*", default=[], help="re-blend at these weights too")
    parser.add_argument(
        "--sharpness-targets",
        type=float,
        nargs="*",
        default=[],
        help="also the blend train.interpolation_sharpness would choose at each of these targets (needs a blend)",
    )
    parser.add_argument(
        "--averages",
        type=float,
        nargs="*",
        default=[],
        help="also the moving average of G over the adversarial phase at each of these decays (train.adversarial_ema)",
    )
    parser.add_argument("--keep", type=Path, help="copy each seed's last checkpoint (and averages) into this folder")
    args = parser.parse_args()
    override = json.loads(args.config)
    print(f"torch threads: {torch.get_num_threads()}; config over the defaults: {override}", flush=True)
    for seed in args.seeds:
        alphas, targets = tuple(args.interpolations), tuple(args.sharpness_targets)
        decays = tuple(args.averages)
        results = measure(
            override,
            seed,
            args.trace,
            split=args.quartiles,
            alphas=alphas,
            targets=targets,
            decays=decays,
            keep=args.keep,
        )
        for result in results:
            print(json.dumps({"seed": seed, **{k: round(v, 4) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()
