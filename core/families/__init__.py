"""Model families: what differs between kinds of GAN, one module each, side by side.

A family owns its networks and optimizers (`build`), what one training step does with them (`train_step`), its
sample grid and the sampler its evaluation draws from. The training loop (core/train.py) owns what every family
shares: seeding, data order, precision, EMA, the learning-rate schedule, exact-resume state, evaluation, events,
grids and checkpoints on their cadence, divergence and stop checks. It hands a family's `train_step` a `Step`.

Families: `noise` (latents → images or 2-D points: unconditional, class-conditional, cluster-conditioned),
`pix2pix` (paired image-to-image translation),
`cyclegan` (unpaired translation), `srgan` (super-resolution),
`stylegan2` (the style-based generator: latents → images).
`ctgan` (table rows from latents and a conditional vector; core/tabular holds the tables).
`family_of(arch)` maps `model.arch` to its family. A family module has the functions of `Family`, and its `build`
returns an object with the attributes of `Models`. A family whose samples core.metrics.Evaluator cannot judge (a
translation is judged against its target) also provides `evaluator(data, cfg, device)`: an object with the
Evaluator's `floor`, `primary` and `__call__(sample_fn) -> {name: value}`, called with the family's sampler. A
family that evaluates on a held-out part of any dataset also provides `split_data(data, cfg) -> Dataset`, which the
loop calls on the loaded data before anything else sees it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from PIL import Image
from torch import nn

from core import checkpoint
from core.clusters import cluster_counts, cluster_images, cluster_within_classes
from core.config import RunConfig


class Batch(NamedTuple):
    indices: torch.Tensor  # (B,) the samples' positions in the dataset
    x: torch.Tensor  # (B, C, H, W) images in [-1, 1] (channels-last in memory), or (B, 2) points
    labels: torch.Tensor | None  # (B,) int64, when the dataset has labels


# A step's stats: detached scalar tensors (synced only when reported) or plain floats.
StepStats = dict[str, torch.Tensor | float]


@dataclass(frozen=True)
class Step:
    """What the loop hands a family's `train_step`: where the run is, and the loop's data and precision."""

    step: int  # 1-based
    done: float  # the fraction of the run before this step (0 at the first), for schedules
    want_stats: bool  # the loop reports this step's stats: measure what costs a sync (gradient norms) only then
    device: torch.device
    next_batch: Callable[[], Batch]  # the next real batch in the run's data order
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]  # the run's precision, for forward passes


EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


class Models(Protocol):
    """What a family's `build` returns: its networks and optimizers, by the names a checkpoint stores them under."""

    G: nn.Module  # the network the loop keeps an EMA copy of (`G_ema`) and draws grids and evaluations from

    def modules(self) -> dict[str, nn.Module]: ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def tensors(self) -> dict[str, torch.Tensor]: ...  # other tensors a checkpoint keeps, by their full names


class Family(Protocol):
    """The functions a family module provides (see core/families/noise.py for the reference one)."""

    def build(self, cfg: Any, data: Any, *, device: torch.device, latest: Path | None, emit: EventFn) -> Any: ...

    def train_step(self, m: Any, cfg: Any, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]: ...

    def grid_inputs(self, cfg: Any, data: Any, m: Any, device: torch.device) -> Any: ...

    def sample_grid(
        self, G: nn.Module, inputs: Any, data: Any, *, autocast: Autocast
    ) -> tuple[Image.Image, torch.Tensor]: ...

    def sampler(
        self, G: nn.Module, cfg: Any, m: Any, *, device: torch.device, autocast: Autocast
    ) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]: ...


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """`module` in eval mode inside the block (sample grids, samplers), back in the mode it was in after it."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def grad_norm(module: nn.Module) -> torch.Tensor:
    """The L2 norm of all of a module's gradients together, as every family reports it."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def real_clusters(
    cfg: RunConfig, data: Any, latest: Path | None, *, groups: int, device: torch.device, emit: Callable[..., None]
) -> torch.Tensor | None:
    """Cluster conditioning (`model.clusters`, core.clusters): each real sample's cluster id (N,) on `device`, from
    k-means at the start and from the newest checkpoint `latest` when resuming, their sizes emitted with the run's
    environment; None without clusters. `groups` > 1 clusters each of that many channels on its own. With
    `model.class_clusters` k, the id is class · k + the sample's cluster within its class."""
    k, within = cfg.model.clusters, cfg.model.class_clusters
    if not k and not within:
        return None
    ids = checkpoint.read_clusters(latest) if latest is not None else None
    if ids is None and within:
        ids = cluster_within_classes(data.data, data.labels, within, seed=cfg.seed)
    elif ids is None:
        ids = cluster_images(data.data, k, seed=cfg.seed, per_channel=groups > 1)
    if ids.shape != (len(data),):
        raise ValueError("model.clusters: the checkpoint's clusters do not match this dataset's size")
    sizes = cluster_counts(ids, k, groups) if k else torch.bincount(ids, minlength=data.num_classes * within)
    found = {"count": k or within, "smallest": int(sizes.min()), "largest": int(sizes.max())}
    emit("environment", {"clusters": {**found, "per_channel": groups > 1, "within_classes": bool(within)}})
    return ids.to(device)


def family_of(arch: str) -> Family:
    """The family that trains `model.arch`."""
    from core.families import ctgan, cyclegan, noise, pix2pix, srgan, stylegan2

    families: dict[str, Any] = {
        "mlp": noise,
        "dcgan": noise,
        "resnet": noise,
        "biggan": noise,
        "pix2pix": pix2pix,
        "cyclegan": cyclegan,
        "srgan": srgan,
        "stylegan2": stylegan2,
        "ctgan": ctgan,
    }
    if arch not in families:
        raise ValueError(f"model.arch: no family trains {arch!r}")
    return families[arch]  # type: ignore[no-any-return]
