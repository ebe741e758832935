"""The training loop: `train(cfg, out_dir=...)` trains a GAN and writes its grids and checkpoints.

It owns the optimizers, the EMA generator, the sample grids, the checkpoints, progress reporting and evaluation;
architectures live in core.networks, objectives in core.losses, data in core.datasets. See docs/DEVELOPING.md
for the interface and the events.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core import checkpoint, grids, layout
from core.augment import make_augment
from core.clusters import cluster_cdf, cluster_counts, cluster_images
from core.config import RunConfig
from core.datasets import DataOrder, Dataset, load_dataset
from core.device import pick_device, pick_precision, run_info
from core.losses import discriminator_loss, generator_loss
from core.networks import build_discriminator, build_generator

EventFn = Callable[[str, dict[str, Any]], None]


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


def train(
    cfg: RunConfig,
    *,
    out_dir: Path | str,
    on_event: EventFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    dataset_dir: Path | str | None = None,
) -> TrainResult:
    """Train the GAN that `cfg` describes into `out_dir`, resuming from its newest checkpoint if there is one."""
    emit: EventFn = on_event or (lambda kind, data: None)
    out_dir = Path(out_dir)
    total, batch_size, z_dim = cfg.train.steps, cfg.train.batch_size, cfg.model.z_dim

    # Pick the device and the precision, and seed every generator.
    device = pick_device(cfg.train.device)
    precision = pick_precision(cfg.train.precision, device, arch=cfg.model.arch)
    bf16 = precision == "bf16"
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    info = run_info(device, precision, cfg.seed)

    # Load the data.
    data = load_dataset(cfg.dataset, image_size=cfg.model.image_size, dataset_dir=dataset_dir).to(device)
    if cfg.model.conditional and data.labels is None:
        raise ValueError(f"model.conditional: dataset {cfg.dataset} has no class labels; set conditional to false")
    if data.kind == "points" and cfg.model.arch != "mlp":
        raise ValueError(f"model.arch: {cfg.dataset} is 2-D point data; only the mlp architecture fits it")
    num_classes = data.num_classes if cfg.model.conditional else 0
    order = DataOrder(len(data), seed=cfg.seed)
    latest = checkpoint.latest_checkpoint(out_dir)
    # Cluster conditioning: the real samples' cluster ids, from k-means at the start and from the checkpoint after.
    cluster_ids: torch.Tensor | None = None
    k, groups = cfg.model.clusters, cfg.model.label_groups(data.channels)
    if k:
        ids = checkpoint.read_clusters(latest) if latest is not None else None
        if ids is None:
            ids = cluster_images(data.data, k, seed=cfg.seed, per_channel=groups > 1)
        if ids.shape != (len(data),):
            raise ValueError("model.clusters: the checkpoint's clusters do not match this dataset's size")
        sizes = cluster_counts(ids, k, groups)  # (G, K)
        found = {"count": k, "smallest": int(sizes.min()), "largest": int(sizes.max())}
        emit("environment", {"clusters": {**found, "per_channel": groups > 1}})
        cluster_ids = ids.to(device)
    memory_format = torch.channels_last if data.kind == "images" else torch.contiguous_format

    # Build the networks, the EMA generator and the optimizers.
    G = build_generator(cfg, channels=data.channels, num_classes=data.num_classes)
    D = build_discriminator(cfg, channels=data.channels, num_classes=data.num_classes)
    if cluster_ids is not None:
        G.set_cluster_frequencies(cluster_cdf(cluster_ids, k, groups))
    G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.train.ema else None
    betas = (cfg.train.beta1, cfg.train.beta2)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas)
    g_fn, d_fn = (torch.compile(G), torch.compile(D)) if cfg.train.compile else (G, D)
    augment = make_augment(cfg.train.diffaugment)

    # Resume from the newest checkpoint, if any (with the best evaluation from before the resume).
    step = 0
    resumed_best: dict[str, Any] | None = None
    if latest is not None:
        step, resumed_best = checkpoint.load_training_state(
            latest,
            modules={"G": G, "D": D} | ({"G_ema": G_ema} if G_ema is not None else {}),
            optimizers={"opt_g": opt_g, "opt_d": opt_d},
            order=order,
        )
        info["resumed_from_step"] = step

    # Write the config and the run's facts next to its artifacts.
    out_dir.mkdir(parents=True, exist_ok=True)
    layout.atomic_write_text(out_dir / layout.CONFIG, cfg.model_dump_json(indent=2))
    layout.atomic_write_text(out_dir / layout.RUN_INFO, json.dumps(info, indent=2))

    # The fixed latent batch (and labels) of the sample grids, from a generator of its own.
    grid_gen = torch.Generator().manual_seed(cfg.seed + 1)
    n_grid, grid_nrow = _grid_layout(data.kind, num_classes)
    fixed_z = torch.randn(n_grid, z_dim, generator=grid_gen).to(device)
    fixed_labels = (torch.arange(n_grid) % num_classes).to(device) if num_classes else None
    # The collapse watch compares the grid samples' spread with the real data's (no random numbers drawn).
    real_spread = _spread(data.batch(torch.arange(min(len(data), DIVERSITY_SAMPLES)))[0])

    # Prepare the loop's bookkeeping.
    start_step = step
    ema_pairs = _ema_pairs(G_ema, G) if G_ema is not None else None
    stats_every = max(10, total // 500)  # at most ~500 stats events a run, and never a sync every step
    clock = time.monotonic()
    report = {"time": clock, "step": step}
    recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=10)
    collapse_warned = False
    evaluator: Any = None
    last_ckpt: Path | None = latest
    status = "completed"
    message: str | None = None
    # The best evaluation so far by the evaluator's primary metric, and the step of its checkpoint.
    best_value: float | None = None
    best_step: int | None = None
    best_metric: str | None = None
    if resumed_best is not None and layout.checkpoint_path(out_dir, int(resumed_best["step"])).exists():
        best_metric, best_value, best_step = resumed_best["metric"], resumed_best["value"], resumed_best["step"]
    loss_d = loss_g = torch.zeros(())
    stats: dict[str, torch.Tensor] = {}
    images_per_sec = 0.0

    while step < total:
        step += 1
        want_stats = step % stats_every == 0 or step == total or step == 1

        # Set this step's learning rates and instance-noise level.
        done = (step - 1) / total
        decay = 1.0 - done if cfg.train.lr_schedule == "linear" else 1.0
        for group in opt_g.param_groups:
            group["lr"] = cfg.train.lr_g * decay
        for group in opt_d.param_groups:
            group["lr"] = cfg.train.lr_d * decay
        noise_std = cfg.loss.instance_noise * (1.0 - done)

        # Train the discriminator n_critic times on fresh real and fake batches.
        D.requires_grad_(True)
        grad_norm_d = None
        for _ in range(cfg.train.n_critic):
            indices = order.next(batch_size)
            real, labels = data.batch(indices)  # (B, C, H, W) or (B, 2)
            real = real.contiguous(memory_format=memory_format) if data.kind == "images" else real
            labels = labels if num_classes else None
            z = torch.randn(batch_size, z_dim, device=device)  # (B, Z)
            fake_labels = torch.randint(num_classes, (batch_size,), device=device) if num_classes else None
            if cluster_ids is not None:  # real clusters from k-means, each fake's from its latent
                labels, fake_labels = cluster_ids[indices.to(device)], G.clusters_of(z)
            fake_labels = _paired(fake_labels) if cfg.loss.mode_seeking else fake_labels
            reuse_fake = cfg.train.n_critic == 1  # then G's step reuses this fake, graph and all
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                with torch.no_grad() if not reuse_fake else contextlib.nullcontext():
                    fake = g_fn(z, fake_labels)  # (B, C, H, W) or (B, 2)
                loss_d, stats_d = discriminator_loss(
                    cfg.loss,
                    D=d_fn,
                    real=real,
                    fake=fake.detach(),
                    labels=labels,
                    fake_labels=fake_labels,
                    augment=augment,
                    noise_std=noise_std,
                )
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            if want_stats:
                grad_norm_d = _grad_norm(D)
            opt_d.step()
            if cfg.loss.kind == "wgan":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-cfg.loss.clip, cfg.loss.clip)

        # Train the generator (on the last critic batch's fake when n_critic is 1, as pytorch/examples does).
        D.requires_grad_(False)
        if cfg.train.n_critic > 1:
            z = torch.randn(batch_size, z_dim, device=device)
            fake_labels = torch.randint(num_classes, (batch_size,), device=device) if num_classes else None
            fake_labels = G.clusters_of(z) if cluster_ids is not None else fake_labels
            fake_labels = _paired(fake_labels) if cfg.loss.mode_seeking else fake_labels
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                fake = g_fn(z, fake_labels)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss_g, stats_g = generator_loss(
                cfg.loss,
                D=d_fn,
                fake=fake,
                fake_labels=fake_labels,
                real=real,
                labels=labels,
                augment=augment,
                noise_std=noise_std,
                top_k=_top_k(cfg.loss.top_k, batch_size // cfg.model.pack, done),
            )
        if cfg.loss.mode_seeking:
            ratio = _mode_seeking_ratio(fake, z)
            stats_g = stats_g | {"mode_seeking_ratio": ratio.detach()}
            loss_g = loss_g + cfg.loss.mode_seeking / (ratio + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm_g = _grad_norm(G) if want_stats else None
        opt_g.step()

        # Update the EMA generator (its decay ramps up over the first steps, so the initial weights fade out).
        if G_ema is not None and ema_pairs is not None and cfg.train.ema is not None:
            ema_decay = min(cfg.train.ema, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_pairs[0], ema_pairs[1], 1.0 - ema_decay)
                for b_ema, b in zip(ema_pairs[2], ema_pairs[3], strict=True):
                    b_ema.copy_(b)

        # Decide which reports fall on this step.
        now = time.monotonic()
        stop = should_stop is not None and bool(should_stop())
        last = step == total or stop
        progress_due = now - report["time"] >= 1.0 or last
        sample_due = step % cfg.schedule.sample_every == 0 or last
        ckpt_due = step % cfg.schedule.checkpoint_every == 0 or last
        eval_due = cfg.schedule.eval_every > 0 and step % cfg.schedule.eval_every == 0

        # Stop at a non-finite loss: every step on the CPU, at the reporting steps on a GPU (no per-step sync).
        if device.type == "cpu" or want_stats or progress_due or sample_due or ckpt_due or eval_due:
            bad = [(name, float(v.detach())) for name, v in (("loss_d", loss_d), ("loss_g", loss_g))]
            bad = [(name, v) for name, v in bad if not math.isfinite(v)]
            if bad:
                kept = f"; the last good checkpoint is step {int(last_ckpt.stem)}" if last_ckpt else ""
                message = f"training diverged at step {step}: {bad[0][0]} is {bad[0][1]}{kept}"
                if not cfg.schedule.stop_on_divergence:
                    raise TrainingDiverged(message)
                # Roll back: the best checkpoint by the primary metric (else the last good one) becomes the newest.
                back = best_step if best_step is not None else (int(last_ckpt.stem) if last_ckpt else 0)
                last_ckpt = checkpoint.remove_checkpoints_after(out_dir, back)
                which = "best" if best_step is not None else "last good"
                message = (
                    f"training diverged at step {step}: {bad[0][0]} is {bad[0][1]}; "
                    f"rolled back to the {which} checkpoint (step {back})"
                )
                emit("warning", {"step": step, "message": message + " (schedule.stop_on_divergence)"})
                status, step = "diverged", back
                break

        # Report progress about once a second.
        if progress_due:
            elapsed = max(now - report["time"], 1e-9)
            steps_per_sec = (step - report["step"]) / elapsed
            images_per_sec = steps_per_sec * batch_size
            report = {"time": now, "step": step}
            emit(
                "progress",
                {
                    "step": step,
                    "total_steps": total,
                    "images_per_sec": images_per_sec,
                    "eta_seconds": (total - step) / steps_per_sec if steps_per_sec > 0 else None,
                    "losses": {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach())},
                },
            )

        # Report the downsampled training statistics and watch for collapse.
        if want_stats:
            stats = stats_d | stats_g
            values = {k: float(v) for k, v in stats.items()}
            values["grad_norm_d"] = float(grad_norm_d) if grad_norm_d is not None else float("nan")
            values["grad_norm_g"] = float(grad_norm_g) if grad_norm_g is not None else float("nan")
            values["lr_g"], values["lr_d"] = opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]
            values["images_per_sec"] = images_per_sec
            if cfg.loss.instance_noise > 0:
                values["instance_noise"] = noise_std
            emit("stats", {"step": step, "values": values})
            recent.append((values["loss_d"], values["loss_g"]))
            collapsing = _collapse_suspected(cfg.loss.kind, recent)
            if collapsing and not collapse_warned:
                emit(
                    "warning",
                    {
                        "step": step,
                        "message": (
                            f"possible collapse at step {step}: the discriminator's loss is near zero "
                            f"({values['loss_d']:.3g}) while the generator's loss climbs ({values['loss_g']:.3g})"
                        ),
                    },
                )
            if collapsing != collapse_warned:  # the watch as a series too: 1 while collapse is suspected
                emit("metric", {"step": step, "name": "collapse_suspected", "value": float(collapsing)})
            collapse_warned = collapsing

        # Write a sample grid from the fixed latent batch.
        if sample_due:
            path = layout.sample_path(out_dir, step)
            image, samples = _sample_image(G_ema or G, fixed_z, fixed_labels, data, nrow=grid_nrow, bf16=bf16)
            grids.save_png(image, path)
            emit("sample", {"step": step, "path": str(path)})
            # Watch the fixed-seed samples' diversity: a collapsed generator maps every latent to a few outputs.
            diversity = _spread(samples[:DIVERSITY_SAMPLES]) / max(real_spread, 1e-12)
            emit("metric", {"step": step, "name": "sample_diversity", "value": diversity})
            if diversity < COLLAPSE_DIVERSITY:
                emit(
                    "warning",
                    {
                        "step": step,
                        "message": (
                            f"possible mode collapse at step {step}: the fixed-seed samples spread only "
                            f"{diversity:.2f}× as much as the real data"
                        ),
                    },
                )

        # Evaluate, without disturbing the training's random streams; a new best gets a checkpoint of its own.
        if eval_due:
            with _preserved_rng(device):  # building the evaluator draws random numbers too (its classifier)
                if evaluator is None:
                    evaluator = _make_evaluator(data, cfg, device)
                    emit("environment", {"metric_floor": evaluator.floor, "primary_metric": list(evaluator.primary)})
                sampler = _sample_fn(G_ema or G, z_dim=z_dim, num_classes=num_classes, device=device, bf16=bf16)
                values = evaluator(sampler)
            for name, value in values.items():
                emit("metric", {"step": step, "name": name, "value": float(value)})
            primary, direction = evaluator.primary
            value = values.get(primary)
            if best_metric != primary:  # a best from before a resume counts only if it was measured the same way
                best_metric, best_value, best_step = primary, None, None
            if value is not None and (
                best_value is None or (value < best_value if direction == "min" else value > best_value)
            ):
                best_value, best_step = float(value), step
                ckpt_due = True

        # Write a checkpoint and keep only the newest ones.
        if ckpt_due:
            path = layout.checkpoint_path(out_dir, step)
            size = checkpoint.save_training_state(
                path,
                step=step,
                cfg=cfg,
                data_info=data.info(),
                modules={"G": G, "D": D} | ({"G_ema": G_ema} if G_ema is not None else {}),
                optimizers={"opt_g": opt_g, "opt_d": opt_d},
                order=order,
                run_info=info,
                best=None if best_step is None else {"metric": best_metric, "value": best_value, "step": best_step},
                clusters=cluster_ids,
            )
            checkpoint.prune_checkpoints(out_dir, cfg.schedule.keep_checkpoints, protect=best_step)
            last_ckpt = path
            emit("checkpoint", {"step": step, "path": str(path), "size_bytes": size, "best": step == best_step})

        if stop:
            status = "stopped"
            break

    if step == start_step:  # nothing left to train
        emit("progress", {"step": step, "total_steps": total, "images_per_sec": 0.0, "eta_seconds": 0.0, "losses": {}})
    return TrainResult(
        status=status,
        step=step,
        device=str(device),
        precision=precision,
        checkpoint=str(last_ckpt) if last_ckpt else None,
        message=message,
    )


def _top_k(fraction: float, n: int, done: float) -> int | None:
    """How many of `n` fake logits G's loss keeps at `done` (0..1) of the run: all at first, `fraction` from mid-run."""
    if fraction >= 1.0:
        return None
    current = 1.0 - (1.0 - fraction) * min(1.0, 2.0 * done)
    return max(1, round(current * n))


def _paired(labels: torch.Tensor | None) -> torch.Tensor | None:
    """Labels (B,) whose second half repeats the first, so that fakes i and B/2 + i share one (mode seeking)."""
    if labels is None or labels.shape[0] < 2:
        return labels
    half = labels.shape[0] // 2
    out = labels.clone()
    out[half : 2 * half] = labels[:half]
    return out


def _mode_seeking_ratio(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN's ratio, in fp32: mean |G(z_i) - G(z_i')| over mean |z_i - z_i'| for the pairs (i, B/2 + i), each
    mean over the pairs and their entries (as Mao et al.'s code computes it)."""
    half = fake.shape[0] // 2
    if half == 0:
        return torch.ones((), device=fake.device)
    d_image = (fake[:half].float() - fake[half : 2 * half].float()).abs().mean()
    return d_image / (z[:half] - z[half : 2 * half]).abs().mean()


def _grid_layout(kind: str, num_classes: int) -> tuple[int, int]:
    """How many samples a grid shows and how many per row: one class per column for up to 10 classes."""
    if kind == "points":
        return 1000, 1
    if 0 < num_classes <= 10:
        return num_classes * 10, num_classes
    return 64, 8


def _ema_pairs(G_ema: nn.Module, G: nn.Module) -> tuple[list[torch.Tensor], ...]:
    """(EMA params, params, EMA buffers, buffers) as lists, for the foreach update."""
    return (
        [p.data for p in G_ema.parameters()],
        [p.data for p in G.parameters()],
        list(G_ema.buffers()),
        list(G.buffers()),
    )


def _grad_norm(module: nn.Module) -> torch.Tensor:
    """The L2 norm of all of a module's gradients together."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _collapse_suspected(kind: str, recent: collections.deque[tuple[float, float]]) -> bool:
    """D's loss near zero over the last reports while G's loss has climbed: D wins and G gets no signal."""
    if kind not in ("minimax", "nonsaturating", "lsgan") or len(recent) < recent.maxlen:  # type: ignore[operator]
        return False
    d_recent = sum(d for d, _ in list(recent)[-5:]) / 5
    g_then, g_now = recent[0][1], recent[-1][1]
    return d_recent < 0.05 and g_now > 2.0 * max(g_then, 0.5) and g_now > 3.0


@torch.no_grad()
def _sample_image(
    G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None, data: Dataset, *, nrow: int, bf16: bool
) -> tuple[Any, torch.Tensor]:
    """A grid PNG image (or a scatter plot for 2-D data) of G's samples from a fixed latent batch, and the
    samples themselves."""
    was_training = G.training
    G.eval()
    with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = G(z, labels).float()  # (N, C, H, W) or (N, 2)
    G.train(was_training)
    out = out.detach()
    if data.kind == "points":
        return grids.scatter_plot(out, modes=data.modes), out
    return grids.image_grid(out, nrow=nrow), out


# The collapse watch: samples compared, and the fraction of the real data's spread below which it warns.
DIVERSITY_SAMPLES = 64
COLLAPSE_DIVERSITY = 0.2


def _spread(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance of a batch of samples (B, ...), in float64."""
    flat = x.detach().reshape(len(x), -1).to("cpu", torch.float64)  # (B, D)
    if len(flat) < 2:
        return 0.0
    distances = torch.cdist(flat, flat)  # (B, B)
    return float(distances.sum() / (len(flat) * (len(flat) - 1)))


def _sample_fn(
    G: nn.Module, *, z_dim: int, num_classes: int, device: torch.device, bf16: bool
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]:
    """sample_fn(n) -> (samples in [-1, 1] or (n, 2) points, labels or None), from G in eval mode."""

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        was_training = G.training
        G.eval()
        outs, labs = [], []
        for start in range(0, n, 500):
            b = min(500, n - start)
            z = torch.randn(b, z_dim, device=device)
            labels = torch.randint(num_classes, (b,), device=device) if num_classes else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outs.append(G(z, labels).float())
            if labels is not None:
                labs.append(labels)
        G.train(was_training)
        return torch.cat(outs), (torch.cat(labs) if labs else None)

    return sample


def _make_evaluator(data: Dataset, cfg: RunConfig, device: torch.device) -> Any:
    try:
        from core.metrics import Evaluator  # the metrics engineer's module
    except ImportError as exc:
        raise ValueError(
            f"schedule.eval_every: evaluation is not available in this installation (core.metrics: {exc}); "
            "set eval_every to 0"
        ) from exc
    return Evaluator(data, n_samples=cfg.schedule.eval_samples, device=device)


@contextlib.contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block without changing torch's, numpy's and Python's random states."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    np.random.set_state(np_state)
    random.setstate(py_state)
