"""The training loop: `train(cfg, out_dir=...)` trains a GAN and writes its grids and checkpoints.

`train` sets up (device and precision, seeds, data, the family's networks, the EMA generator, resume), then loops:
each step is the family's `train_step` (`core.families.family_of(model.arch)`), after which the loop updates the
EMA generator and runs its hooks on their cadence: the divergence check, progress and stats reports with the
collapse watch, sample grids, evaluation and checkpoints. What one step does lives with its family; what every
family shares lives here. See docs/DEVELOPING.md for the interface and the events.

Errors (one small tree): `ValueError` for bad data or an impossible config, with a sentence a user can act on;
`TrainingDiverged` (a RuntimeError) when a loss becomes non-finite, naming the step and the loss.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core import checkpoint, distributed, grids, layout
from core.collapse import COLLAPSE_DIVERSITY, DIVERSITY_SAMPLES, RECENT_REPORTS, collapse_suspected, spread
from core.config import RunConfig
from core.datasets import DataOrder, Dataset, load_dataset
from core.device import pick_device, pick_precision, run_info
from core.families import Batch, Family, Models, Step, StepStats, family_of

EventFn = Callable[[str, dict[str, Any]], None]
EVALUATION_SEED_OFFSET = 7919  # seed_evaluation: the run's seed plus this, a stream apart from the training's


class TrainingDiverged(RuntimeError):
    """A loss became non-finite; the message names the step and the loss. The last good checkpoint is kept."""


@dataclass
class TrainResult:
    status: str  # "completed" | "stopped" | "diverged" (stopped and rolled back: schedule.stop_on_divergence)
    step: int  # the last step trained
    device: str
    precision: str
    checkpoint: str | None  # path of the newest checkpoint
    message: str | None = None  # what happened, when diverged
    replica_checks: int = 0  # data-parallel: steps after which every rank's weights were compared and the same


def train(
    cfg: RunConfig,
    *,
    out_dir: Path | str,
    on_event: EventFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    dataset_dir: Path | str | None = None,
    may_write: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train the GAN that `cfg` describes into `out_dir`, resuming from its newest checkpoint if there is one.

    `may_write`, asked right before each sample grid and checkpoint is written, fences the run's files: when it
    answers False (the worker lost the run to another), the loop stops without writing."""
    rank = distributed.current()
    if cfg.train.world_size > 1 and rank is None:  # spawn the ranks, which come back here (core/distributed.py)
        return distributed.launch(
            cfg,
            out_dir=Path(out_dir),
            on_event=on_event,
            should_stop=should_stop,
            dataset_dir=dataset_dir,
            may_write=may_write,
        )
    family = family_of(cfg.model.arch)
    run, models, ema = _set_up(family, cfg, Path(out_dir), on_event or _no_events, dataset_dir)
    loop = _resume(run, models, ema)
    step_cfg = cfg  # what the family's step sees: in a rank, its slice of the global batch
    if rank is not None:
        distributed.wrap_models(models, run.device)
        per_rank = cfg.train.model_copy(update={"batch_size": cfg.train.batch_size // rank.world_size})
        step_cfg = cfg.model_copy(update={"train": per_rank})
    total, start_step, status, message = cfg.train.steps, loop.step, "completed", None
    stats_every = max(10, total // 500)  # at most ~500 stats events a run, and never a sync every step
    optimizers = models.optimizers()
    replica_checks = 0  # steps after which the ranks' weights were compared (and were the same)

    while loop.step < total:
        loop.step += 1
        step = loop.step
        want_stats = step % stats_every == 0 or step == total or step == 1

        # Train one step at this step's learning rates, then update the EMA generator.
        done = (step - 1) / total
        _set_learning_rates(optimizers, lr_scale(cfg.train.lr_schedule, done, cfg.train.lr_rampdown))
        if rank is not None:
            distributed.seed_step(cfg.seed, step, rank)
        at = Step(step, done, want_stats, run.device, next_batch=run.next_batch, autocast=run.autocast)
        losses, stats = family.train_step(models, step_cfg, at)
        if ema is not None:
            ema.update(step)

        # Decide which reports fall on this step (every rank the same: the losses and the stop flag are agreed).
        now = time.monotonic()
        stop = should_stop is not None and bool(should_stop())
        if rank is not None:
            check = run.device.type == "cpu" or want_stats
            weights = distributed.fingerprint(list(models.modules().values())) if check else None
            losses, stop = distributed.agree(losses, stop, weights, step=step, device=run.device)
            replica_checks += check
        last = step == total or stop
        progress_due = now - loop.reported[0] >= 1.0 or last
        sample_due = step % cfg.schedule.sample_every == 0 or last
        ckpt_due = step % cfg.schedule.checkpoint_every == 0 or last
        eval_due = cfg.schedule.eval_every > 0 and step % cfg.schedule.eval_every == 0

        # Stop at a non-finite loss: every step on the CPU, at the reporting steps on a GPU (no per-step sync).
        if run.device.type == "cpu" or want_stats or progress_due or sample_due or ckpt_due or eval_due:
            message = _check_finite(run, loop, losses)
            if message is not None:
                status = "diverged"
                break

        # Report, draw, evaluate and save on their cadence.
        sampled = ema.module if ema is not None else models.G
        if progress_due:
            _report_progress(run, loop, losses, now)
        if want_stats:
            _report_stats(run, loop, stats, optimizers)
        if not run.lead:  # files, evaluations and checkpoints are rank 0's
            sample_due = eval_due = ckpt_due = False
        if (sample_due or ckpt_due) and may_write is not None and not may_write():
            status, message = "stopped", "the run's lease was lost: another worker holds it"
            break
        if ema is not None and cfg.train.ema_batchnorm == "recomputed" and (sample_due or eval_due or ckpt_due):
            assert hasattr(family, "recompute_batchnorm")  # pix2pix; the config refuses the field elsewhere
            family.recompute_batchnorm(ema.module, models, cfg, autocast=run.autocast)
        if sample_due:
            _write_sample(family, run, loop, sampled)
        if eval_due:
            sample_fn = family.sampler(sampled, cfg, models, device=run.device, autocast=run.autocast)
            path = _path_sampler(family, run, models, sampled)
            ckpt_due = _evaluate(run, loop, sample_fn, path) or ckpt_due  # a new best gets a checkpoint of its own
        if ckpt_due and (may_write is None or may_write()):  # asked again: an evaluation may have taken long
            _save_checkpoint(run, loop, models, ema)
        if stop:
            status = "stopped"
            break

    if loop.step == start_step:  # nothing left to train
        run.emit(
            "progress",
            {"step": loop.step, "total_steps": total, "images_per_sec": 0.0, "eta_seconds": 0.0, "losses": {}},
        )
    return TrainResult(
        status=status,
        step=loop.step,
        device=str(run.device),
        precision=run.precision,
        checkpoint=str(loop.last_ckpt) if loop.last_ckpt else None,
        message=message,
        replica_checks=replica_checks,
    )


def _no_events(kind: str, data: dict[str, Any]) -> None:
    pass


@dataclass
class Run:
    """What stays fixed through a run: its config, folder and event sink, where and how it computes, its data and
    data order, its facts (run_info.json) and the sample grid's inputs."""

    cfg: RunConfig
    out_dir: Path
    emit: EventFn
    device: torch.device
    precision: str  # "fp32" | "bf16"
    data: Dataset
    order: DataOrder  # advances as the run draws batches; saved in every checkpoint
    info: dict[str, Any]
    grid: Any  # the family's fixed inputs of the sample grid
    real_spread: float  # the real data's spread, which the collapse watch compares the grid samples' with
    shard: tuple[int, int] = (0, 1)  # (rank, world size): this process's slice of each global batch
    lead: bool = True  # this process writes the files and emits the events (rank 0, or the only process)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The run's precision for a forward pass: bf16 autocast, or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def next_batch(self) -> Batch:
        """The next real batch in the run's data order; images channels-last, as the networks are."""
        indices = self.order.next(self.cfg.train.batch_size)
        rank, world_size = self.shard
        if world_size > 1:  # every rank draws the same global batch and takes its own disjoint slice
            indices = indices.chunk(world_size)[rank]
        x, labels = self.data.batch(indices)  # (B, C, H, W) or (B, 2)
        if self.data.kind == "images":
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(indices, x, labels)


@dataclass
class Loop:
    """What the loop carries from step to step besides the networks: counters, windows and the best evaluation."""

    step: int = 0
    reported: tuple[float, int] = (0.0, 0)  # (time, step) of the last progress report
    images_per_sec: float = 0.0
    recent: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_REPORTS)
    )  # (loss_d, loss_g) of the last stats reports, for the collapse watch
    collapse_warned: bool = False
    evaluator: Any = None  # core.metrics.Evaluator, built at the first evaluation
    last_ckpt: Path | None = None
    # The best evaluation so far by the evaluator's primary metric, and the step of its checkpoint.
    best_metric: str | None = None
    best_value: float | None = None
    best_step: int | None = None


class Ema:
    """The exponential moving average of a module's weights, in eval mode; its decay ramps up over the first
    steps, so that the initial weights fade out."""

    def __init__(self, source: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(source).eval().requires_grad_(False)
        self.decay = decay
        # (EMA params, params, EMA buffers, buffers) as lists, for the foreach update.
        self._params = ([p.data for p in self.module.parameters()], [p.data for p in source.parameters()])
        self._buffers = (list(self.module.buffers()), list(source.buffers()))

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        torch._foreach_lerp_(self._params[0], self._params[1], 1.0 - decay)
        for b_ema, b in zip(*self._buffers, strict=True):
            b_ema.copy_(b)


def _set_up(
    family: Family, cfg: RunConfig, out_dir: Path, emit: EventFn, dataset_dir: Path | str | None
) -> tuple[Run, Models, Ema | None]:
    """Pick the device and the precision, seed every generator, load the data, and build the networks, the EMA
    generator and the sample grid's inputs."""
    device = pick_device(cfg.train.device)
    rank = distributed.current()
    if rank is not None and device.type == "cuda":  # one GPU per rank
        device = torch.device("cuda", rank.rank)
    precision = pick_precision(cfg.train.precision, device, arch=cfg.model.arch)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    data = load_dataset(cfg.dataset, image_size=cfg.model.image_size, dataset_dir=dataset_dir, table=cfg.table)
    if hasattr(family, "split_data"):  # a family that holds part of any dataset out for its evaluation (srgan)
        data = family.split_data(data, cfg)
    data = data.to(device)
    order = DataOrder(len(data), seed=cfg.seed)
    latest = checkpoint.latest_checkpoint(out_dir)
    models = family.build(cfg, data, device=device, latest=latest, emit=emit)
    if rank is not None:  # before the EMA copy, so that it is converted too
        distributed.sync_batchnorm(models, device)
    ema = Ema(models.G, cfg.train.ema_decay) if cfg.train.ema_decay else None
    # after the family's build, which may re-encode the data as the checkpoint did (ctgan's table transformer)
    info = run_info(device, precision, cfg.seed) | {"data_fingerprint": data.fingerprint()}
    if rank is not None:
        info |= {"world_size": rank.world_size, "backend": rank.backend}
    run = Run(
        cfg=cfg,
        out_dir=out_dir,
        emit=emit,
        device=device,
        precision=precision,
        data=data,
        order=order,
        info=info,
        grid=family.grid_inputs(cfg, data, models, device),
        real_spread=spread(data.batch(torch.arange(min(len(data), DIVERSITY_SAMPLES)))[0]),
        shard=(rank.rank, rank.world_size) if rank is not None else (0, 1),
        lead=rank is None or rank.lead,
    )
    return run, models, ema


def _modules(models: Models, ema: Ema | None) -> dict[str, nn.Module]:
    """The modules a checkpoint stores: the family's and the EMA generator (`G_ema`)."""
    return models.modules() | ({"G_ema": ema.module} if ema is not None else {})


def _resume(run: Run, models: Models, ema: Ema | None) -> Loop:
    """Restore the newest checkpoint, if any, with the best evaluation from before the resume; then write the
    config and the run's facts next to its artifacts. Returns the loop's state."""
    loop = Loop(last_ckpt=checkpoint.latest_checkpoint(run.out_dir))
    if loop.last_ckpt is not None:
        loop.step, best, data_info = checkpoint.load_training_state(
            loop.last_ckpt, modules=_modules(models, ema), optimizers=models.optimizers(), order=run.order
        )
        run.info["resumed_from_step"] = loop.step
        _check_data(run, data_info.get("fingerprint"), loop.step)
        if best is not None and layout.checkpoint_path(run.out_dir, int(best["step"])).exists():
            loop.best_metric, loop.best_value, loop.best_step = best["metric"], best["value"], best["step"]
    loop.reported = (time.monotonic(), loop.step)
    if not run.lead:
        return loop
    run.out_dir.mkdir(parents=True, exist_ok=True)
    layout.atomic_write_text(run.out_dir / layout.CONFIG, run.cfg.model_dump_json(indent=2))
    layout.atomic_write_text(run.out_dir / layout.RUN_INFO, json.dumps(run.info, indent=2))
    return loop


def _check_data(run: Run, saved: str | None, step: int) -> None:
    """Warn when the data differ from those the checkpoint at `step` was trained on (`saved`, its fingerprint; None
    in a checkpoint that predates fingerprints): the run continues on the data it has now, so the resume is not
    exact, and run_info.json records it."""
    if saved is None or saved == run.info["data_fingerprint"]:
        return
    run.info["data_changed_at_step"] = step
    message = (
        f"the training data differ from those the checkpoint at step {step} was trained on (fingerprint "
        f"{saved[:12]}, now {run.info['data_fingerprint'][:12]}): the run goes on with the data as they are now, "
        "so it does not resume exactly; start a new run to train on one dataset throughout"
    )
    run.emit("warning", {"step": step, "message": message})


def lr_scale(schedule: str, done: float, rampdown: float = 0.0) -> float:
    """The learning rates' factor at `done` (0..1) of the run: 1 (constant), 1 - done (linear), or 1 for the
    first half and then linearly to 0 (hold-then-linear); times half a cosine from 1 to 0 over the last `rampdown`
    share of the run (train.lr_rampdown)."""
    scale = 1.0
    if schedule == "linear":
        scale = 1.0 - done
    elif schedule == "hold-then-linear":
        scale = min(1.0, 2.0 * (1.0 - done))
    if rampdown > 0 and done > 1.0 - rampdown:
        scale *= 0.5 * (1.0 + math.cos(math.pi * (done - (1.0 - rampdown)) / rampdown))
    return scale


def _set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], scale: float) -> None:
    """Scale every optimizer's learning rate (the one it was built with) by `scale`."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = opt.defaults["lr"] * scale


def _check_finite(run: Run, loop: Loop, losses: dict[str, torch.Tensor]) -> str | None:
    """Raise TrainingDiverged at a non-finite loss; with schedule.stop_on_divergence, roll back instead (the best
    checkpoint by the primary metric, else the last good one, becomes the newest) and return the message."""
    bad = [(name, float(v.detach())) for name, v in losses.items()]
    bad = [(name, v) for name, v in bad if not math.isfinite(v)]
    if not bad:
        return None
    step, (name, value) = loop.step, bad[0]
    kept = f"; the last good checkpoint is step {int(loop.last_ckpt.stem)}" if loop.last_ckpt else ""
    if not run.cfg.schedule.stop_on_divergence:
        raise TrainingDiverged(f"training diverged at step {step}: {name} is {value}{kept}")
    back = loop.best_step if loop.best_step is not None else (int(loop.last_ckpt.stem) if loop.last_ckpt else 0)
    if run.lead:
        loop.last_ckpt = checkpoint.remove_checkpoints_after(run.out_dir, back)
    which = "best" if loop.best_step is not None else "last good"
    message = (
        f"training diverged at step {step}: {name} is {value}; rolled back to the {which} checkpoint (step {back})"
    )
    run.emit("warning", {"step": step, "message": message + " (schedule.stop_on_divergence)"})
    loop.step = back
    return message


def _report_progress(run: Run, loop: Loop, losses: dict[str, torch.Tensor], now: float) -> None:
    """The progress event: speed since the last one, the time left and the losses."""
    total = run.cfg.train.steps
    steps_per_sec = (loop.step - loop.reported[1]) / max(now - loop.reported[0], 1e-9)
    loop.images_per_sec = steps_per_sec * run.cfg.train.batch_size
    loop.reported = (now, loop.step)
    run.emit(
        "progress",
        {
            "step": loop.step,
            "total_steps": total,
            "images_per_sec": loop.images_per_sec,
            "eta_seconds": (total - loop.step) / steps_per_sec if steps_per_sec > 0 else None,
            "losses": {name: float(v.detach()) for name, v in losses.items()},
        },
    )


def _report_stats(run: Run, loop: Loop, stats: StepStats, optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """The stats event (the step's stats, the learning rates `lr_g`/`lr_d`, the speed), and the collapse watch on
    the losses: a warning when D's loss falls near zero while G's climbs, and the `collapse_suspected` series."""
    values = {name: float(v) for name, v in stats.items()}
    values |= {name.replace("opt_", "lr_"): opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    values["images_per_sec"] = loop.images_per_sec
    step = loop.step
    run.emit("stats", {"step": step, "values": values})
    loop.recent.append((values["loss_d"], values["loss_g"]))
    collapsing = collapse_suspected(run.cfg.loss.kind, loop.recent)
    if collapsing and not loop.collapse_warned:
        message = (
            f"possible collapse at step {step}: the discriminator's loss is near zero "
            f"({values['loss_d']:.3g}) while the generator's loss climbs ({values['loss_g']:.3g})"
        )
        run.emit("warning", {"step": step, "message": message})
    if collapsing != loop.collapse_warned:  # the watch as a series too: 1 while collapse is suspected
        run.emit("metric", {"step": step, "name": "collapse_suspected", "value": float(collapsing)})
    loop.collapse_warned = collapsing


def _write_sample(family: Family, run: Run, loop: Loop, G: nn.Module) -> None:
    """Write the sample grid from the fixed inputs, and watch its samples' diversity: a collapsed generator maps
    every latent to a few outputs."""
    step, path = loop.step, layout.sample_path(run.out_dir, loop.step)
    image, samples = family.sample_grid(G, run.grid, run.data, autocast=run.autocast)
    grids.save_png(image, path)
    layout.prune_samples(run.out_dir, run.cfg.schedule.keep_samples)
    run.emit("sample", {"step": step, "path": str(path)})
    diversity = spread(samples[:DIVERSITY_SAMPLES]) / max(run.real_spread, 1e-12)
    run.emit("metric", {"step": step, "name": "sample_diversity", "value": diversity})
    if diversity < COLLAPSE_DIVERSITY:
        message = (
            f"possible mode collapse at step {step}: the fixed-seed samples spread only "
            f"{diversity:.2f}× as much as the real data"
        )
        run.emit("warning", {"step": step, "message": message})


def _path_sampler(family: Any, run: Run, models: Models, sampled: nn.Module) -> Any:
    """What the image Evaluator walks for the perceptual path length (core.metrics.ppl.PathSampler): the sampled
    generator of a family that noise → image; None for points and for families with an evaluator of their own."""
    if hasattr(family, "evaluator") or run.data.kind != "images":
        return None
    from core.metrics.ppl import PathSampler

    return PathSampler(sampled, z_dim=run.cfg.model.z_dim, num_classes=int(getattr(models, "num_classes", 0) or 0))


def _evaluate(run: Run, loop: Loop, sample_fn: Callable[[int], Any], path: Any = None) -> bool:
    """Evaluate without disturbing the training's random streams and report the metrics; True at a new best by
    the evaluator's primary metric. `path`: the generator to measure path lengths on (`_path_sampler`).

    Every evaluation of a run draws from the same seed (`seed_evaluation`), so its latents, labels and path ends are
    the same at each step: successive values differ by what the generator learned, not by the draw (a noise → image
    run's fid_digits moves by about 0.1 from one draw of 2,048 latents to the next), and the best checkpoint is
    chosen on that basis."""
    with _preserved_rng(run.device):  # building the evaluator draws random numbers too (its classifier)
        if loop.evaluator is None:
            loop.evaluator = _make_evaluator(run.data, run.cfg, run.device)
            floor, primary = loop.evaluator.floor, list(loop.evaluator.primary)
            run.emit("environment", {"metric_floor": floor, "primary_metric": primary})
        seed_evaluation(run.cfg.seed)
        values = loop.evaluator(sample_fn) if path is None else loop.evaluator(sample_fn, path)
    for name, value in values.items():
        run.emit("metric", {"step": loop.step, "name": name, "value": float(value)})
    primary, direction = loop.evaluator.primary
    value = values.get(primary)
    if loop.best_metric != primary:  # a best from before a resume counts only if it was measured the same way
        loop.best_metric, loop.best_value, loop.best_step = primary, None, None
    best = loop.best_value
    if value is None or not (best is None or (value < best if direction == "min" else value > best)):
        return False
    loop.best_value, loop.best_step = float(value), loop.step
    return True


def _save_checkpoint(run: Run, loop: Loop, models: Models, ema: Ema | None) -> None:
    """Write a checkpoint and keep only the newest ones (and the best)."""
    step, path = loop.step, layout.checkpoint_path(run.out_dir, loop.step)
    best = (
        None
        if loop.best_step is None
        else {"metric": loop.best_metric, "value": loop.best_value, "step": loop.best_step}
    )
    size = checkpoint.save_training_state(
        path,
        step=step,
        cfg=run.cfg,
        data_info=run.data.info() | {"fingerprint": run.info["data_fingerprint"]},
        modules=_modules(models, ema),
        optimizers=models.optimizers(),
        order=run.order,
        run_info=run.info,
        best=best,
        extra=models.tensors(),
    )
    checkpoint.prune_checkpoints(run.out_dir, run.cfg.schedule.keep_checkpoints, protect=loop.best_step)
    loop.last_ckpt = path
    run.emit("checkpoint", {"step": step, "path": str(path), "size_bytes": size, "best": step == loop.best_step})


def _make_evaluator(data: Dataset, cfg: RunConfig, device: torch.device) -> Any:
    family = family_of(cfg.model.arch)
    if hasattr(family, "evaluator"):  # a family that measures its samples its own way (see core.families)
        return family.evaluator(data, cfg, device)
    try:
        from core.metrics import Evaluator
    except ImportError as exc:
        raise ValueError(
            f"schedule.eval_every: evaluation is not available in this installation (core.metrics: {exc}); "
            "set eval_every to 0"
        ) from exc
    return Evaluator(data, n_samples=cfg.schedule.eval_samples, device=device)


def seed_evaluation(seed: int) -> None:
    """Seed torch's (every device's), numpy's and Python's generators for an evaluation of the run seeded `seed`:
    the same for every evaluation of the run, and apart from the training's own stream."""
    evaluation_seed = seed + EVALUATION_SEED_OFFSET
    torch.manual_seed(evaluation_seed)
    np.random.seed(evaluation_seed % 2**32)
    random.seed(evaluation_seed)


@contextlib.contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block without changing torch's, numpy's and Python's random states."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    np.random.set_state(np_state)
    random.setstate(py_state)
