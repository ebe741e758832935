"""The CycleGAN family (Zhu et al. 2017): unpaired translation between image domains A and B. Two ResNet generators,
G_AB and G_BA, and two PatchGAN discriminators, D_A (real A against G_BA's outputs) and D_B (real B against G_AB's).
The generators minimise the adversarial terms (`loss.kind`, lsgan in the paper, weighed as pix2pix's are) plus
`loss.cycle_weight` × (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|) plus `loss.identity_weight` × cycle_weight ×
(|G_AB(b) - b| + |G_BA(a) - a|). Each discriminator judges its fakes through a history pool of `train.pool_size`
generated images (Shrivastava et al. 2017). One Adam optimizer updates both generators, one both discriminators;
the paper's schedule (rates held, then decayed linearly) is `train.lr_schedule` hold-then-linear.

With `model.spatial_transform` each generator is a warp followed by the ResNet (`WarpedGenerator`: a spatial
transformer, Jaderberg et al. 2015, starting as the identity), so a translation can change an image's geometry
(printed digits are half the handwritten ones' size), which the ResNet generator cannot learn (Zhu et al. 2017,
"Limitations"). The warps' localisation nets have their own Adam (`opt_warp`, `train.lr_warp`). The identity terms
compare each ResNet without its warp (a warp of a target-domain image would be penalised for resizing it). For the
first `train.warp_share` of the steps each generator is its warp alone: the adversarial, cycle and moment terms
train the warps while the identity terms keep the ResNets near the identity, so the content is changed only once the
geometry is in place. `loss.warp_moment_weight` adds a label-free term on the warps' outputs: each warped image's
brightness centroid against the other domain's batch mean, and the batch's mean log spread of brightness against the
other domain's. It is there because the adversarial and cycle terms alone move the warps erratically: a warp under
the cycle weight of 10 stays at the identity (the L1 cycle has a sharp minimum there), and under a cycle weight of 1
or 0 it overshoots (zooms of 3-5 where 2 is right) and, when it may rotate, turns the digits by 20-30 degrees.
With `model.warp_centred` a warp's shift is measured from its input's content centroid (`SpatialTransformer`).
With `model.a_render_size` G_BA's ResNet draws domain A at that size, its output upsampled bilinearly to the image
size (`RenderedGenerator`), as domain A's digits are 8x8 images upscaled.
With `loss.info_max_weight` the run also trains a small classifier of domain A on A's labels (`C`, its own Adam
`opt_c`; `PooledClassifier`), each step on the step's A batch before the generators', and G_BA's translations are
asked to be read by it confidently and every class as often (information maximization, Liang et al. 2020): a
class-aware signal that reads no label of domain B. It is blind to which class is which, though: a classifier that
reads the untranslated inputs poorly lets whole classes trade places. With `loss.semantic_weight` (CyCADA's semantic
consistency, Hoffman et al. 2018) the run first trains a convolutional classifier of domain A (`S`,
`SourceClassifier`) on A's labelled images, shifted, turned and scaled a little (`train_source_classifier`), and
freezes it; each of G_BA's translations is then asked to be read by S as the class S reads in its (warped) input,
where S reads that input with a confidence of SEMANTIC_CONFIDENCE or more: an anchor that says which class is which
without reading domain B's labels. S is in the checkpoints, so a resumed run reads with the same classifier.
`loss.semantic_matching` adds class-conditional feature matching in S's hidden layer (`ClassFeatureMeans`): each
class's mean over A's training images against a running mean over the translations S reads as that class, each such
translation pushed along the gap (held fixed), so that a class's translations move as a whole towards its real
images (the per-class offset that dominates fd_digits on digits-printed) without being drawn to one point; with
`loss.semantic_matching_push` unit the push is the gap's direction at unit length (`unit_rows`), so its size is the
weight's alone and does not fade as the class nears its real images. With `loss.semantic_matching_moments` std
each class's per-unit standard deviation is matched as well (`spread_push`: a running mean of the squared features
beside the running mean, each translation pushed from or towards its class's running mean by the standard deviation
gap), so that a class's translations spread as its real images do. With `loss.semantic_matching_layers` conv
the matching also runs in each of S's three convolutional blocks (their outputs averaged over space, scaled to the
hidden layer's size), whose directions the hidden layer does not all pass on; with `loss.semantic_classifiers` above
1 the run trains that many classifiers of A, each from its own seed (`S_others` after S), anchors each translation
on their mean reading and averages the semantic and matching terms over them (each with class statistics of its
own). With `loss.semantic_anchor` clusters both terms anchor each translation to the class of its input's cluster
instead (`ClusterAnchor`): domain B's training images are clustered by k-means before the run (`domain_clusters`),
and each step the clusters are matched one-to-one to A's classes (Hungarian) on S's mean class probabilities over
their warped inputs so far, so that a class S never reads with confidence (a printed glyph unlike its handwritten
class) is still anchored, to the cluster that reads most like it of those left.
With `model.latent_dim` G_BA also reads a latent code z (its residual blocks modulated by z, FiLM), so that a
printed digit has many handwritten translations (augmented CycleGAN, Almahairi et al. 2018; BicycleGAN, Zhu et al.
2017b): each step's B→A translations draw z from N(0, I); an encoder (`G.enc`, `LatentEncoder`) reads each A
image's code (a Gaussian, with a KL term towards the prior, `loss.latent_kl_weight`) for its A→B→A cycle and its
identity term; and the code is read back from each B→A translation (`loss.latent_regression_weight`, updating G_BA
only), so that z is not ignored. `loss.mode_seeking` adds Mao et al. 2019's mode-seeking term: the step's
B inputs are translated again with a second code, and G_BA is asked to maximise the mean L1 distance between the two
translations over that between the two codes (the term is that ratio's inverse), so that a digit's codes spread its
translations instead of settling on one style. `loss.diversity` asks the same with a bounded pull (DSGAN, Yang et al.
2019): G's loss subtracts weight × min(ratio, `loss.diversity_cap`), whose gradient stays that of the ratio while the
code is still ignored (1 / ratio's is then ~1e5 times larger) and vanishes above the cap. Without either term, a
latent run's stats still report the ratio (`mode_seeking_spread`, measured without gradients under a second code from
a generator of its own, so the run is unchanged). Evaluations and grids translate held-out B image i with the code
`image_latents` draws for it from EVAL_LATENT_SEED, translation jobs from their seed (core/translate.py), so both
are deterministic. With `model.class_projection` D_A is a projection PatchGAN: real A images are judged on their
labels, G_BA's translations on the class the semantic term anchors them to (with `loss.semantic_anchor` clusters
their input's cluster's class, else the class S reads in them; kept beside them in the history pool), so that each
digit's translations are judged against that digit's real images.

Options that keep a translation close to its input (docs/benchmarks.md, "CycleGAN on digits-printed"):
`model.residual_generator` makes each ResNet output its input plus a correction (the identity at start);
`loss.self_regularization_weight` adds the L1 distance of each generator's output to its (warped) input after the
warp-only steps (Shrivastava et al. 2017's self-regularization); `loss.cycle_noise` adds Gaussian noise to each
translation before the cycle translates it back (Bashkirova et al. 2019), so that faint detail hidden in a
translation cannot carry the cycle (Chu et al. 2017).

The loop draws domain A's batch in its data order (`Step.next_batch`); domain B's batch is drawn uniformly from
the torch generator, so a checkpoint's RNG state resumes it. The pools are checkpoint tensors (`pool.a`, `pool.b`
and their fill counts). `G` is one module holding both generators (`G.ab`, `G.ba`), so the loop's EMA copy, grids
and checkpoints cover both; `D` holds `D.a` and `D.b`. The grid shows held-out A | A→B | A→B→A, then B | B→A |
B→A→B; `sampler` translates the held-out B images into A (the direction the label preservation of digits-printed
is measured on), and also gives both cycles for the evaluator.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import nn

from core import checkpoint, grids
from core.config import SEMANTIC_MATCHING_DECAY, RunConfig
from core.families import Step, StepStats, eval_mode, grad_norm
from core.families.pix2pix import adversarial_scale, patch_judge
from core.losses import (
    MODE_SEEKING_EPS,
    bounded_diversity,
    discriminator_loss,
    generator_loss,
    mode_seeking_ratio,
)
from core.networks_translation import (
    LatentEncoder,
    PatchDiscriminator,
    PooledClassifier,
    RenderedGenerator,
    ResnetGenerator,
    SourceClassifier,
    SpatialTransformer,
    WarpedGenerator,
    patch_layers,
    resnet_blocks,
)
from core.unpaired import UnpairedDataset

EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]
GRID_IMAGES, GRID_TRIPLES_PER_ROW = 8, 4  # held-out images of each domain in the grid, and triples a row
SAMPLE_BATCH = 256
LR_CLASSIFIER = 1e-3  # Adam's rate for the classifier of domain A that loss.info_max_weight trains
# loss.semantic_weight's classifier of domain A: trained before the run for this many epochs of batches of this
# size, at Adam's rate rising and falling over them (one cycle), on images turned by up to SOURCE_TURN degrees,
# scaled by 1 +- SOURCE_SCALE and shifted by up to SOURCE_SHIFT of the frame, half of them with Gaussian noise of
# std SOURCE_NOISE; a translation is anchored where it reads the input with at least SEMANTIC_CONFIDENCE.
SOURCE_EPOCHS, SOURCE_BATCH, SOURCE_LR = 10, 64, 2e-3
SOURCE_TURN, SOURCE_SCALE, SOURCE_SHIFT, SOURCE_NOISE = 12.0, 0.1, 0.08, 0.1
SEMANTIC_CONFIDENCE = 0.9
# loss.semantic_classifiers: classifier k (1, 2, ...) after the first is trained from the run's seed + k times this
OTHER_CLASSIFIER_SEEDS = 1000
CLUSTER_RESTARTS = 10  # loss.semantic_anchor clusters: k-means runs from different seeds, the best kept
EVAL_LATENT_SEED = 0  # the seed of the latent codes (model.latent_dim) of the grids' and evaluations' B→A translations


class CycleGenerators(nn.Module):
    """G_AB (`ab`) and G_BA (`ba`); calling it translates A into B. With model.latent_dim, G_BA also reads a latent
    code (`ba(x, z)`) and `enc` (a LatentEncoder) reads the code of a domain-A image."""

    def __init__(self, ab: nn.Module, ba: nn.Module, enc: LatentEncoder | None = None) -> None:
        super().__init__()
        self.ab, self.ba = ab, ba
        self.enc = enc

    @property
    def latent_dim(self) -> int:
        return self.enc.latent_dim if self.enc is not None else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ab(x)  # (B, C_A, H, W) -> (B, C_B, H, W)


class CycleDiscriminators(nn.Module):
    """D_A (`a`: real A against G_BA's outputs) and D_B (`b`: real B against G_AB's)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b


class ImagePool:
    """The last `size` generated images (Shrivastava et al. 2017, as CycleGAN uses it): until full, each query's
    images go in and come back; then each image comes back with probability 1/2, or else swaps with a random stored
    image, which comes back instead. Every query draws the same random numbers however full the pool is."""

    def __init__(self, size: int, shape: tuple[int, ...], device: torch.device, *, labelled: bool = False) -> None:
        self.images = torch.zeros(size, *shape, device=device)  # (P, C, H, W)
        self.labels = torch.zeros(size, dtype=torch.int64, device=device) if labelled else None  # (P,)
        self.count = 0

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        """What D judges of a detached batch of fakes (B, C, H, W): a batch of the same shape."""
        return self.query_labelled(fakes, None)[0]

    def query_labelled(
        self, fakes: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`query`, with each fake's class (B,) kept beside it in a labelled pool (model.class_projection)."""
        size = self.images.shape[0]
        if size == 0:
            return fakes, labels
        coins, picks = torch.rand(fakes.shape[0]), torch.randint(size, (fakes.shape[0],))  # (B,), (B,)
        out = fakes.clone()
        out_labels = labels.clone() if labels is not None else None
        for i in range(fakes.shape[0]):
            if self.count < size:
                self.images[self.count] = fakes[i]
                if self.labels is not None and labels is not None:
                    self.labels[self.count] = labels[i]
                self.count += 1
            elif coins[i] > 0.5:
                j = int(picks[i])
                out[i] = self.images[j]
                self.images[j] = fakes[i]
                if self.labels is not None and out_labels is not None:
                    out_labels[i] = self.labels[j]
                    self.labels[j] = labels[i]
        return out, out_labels

    def state(self, name: str) -> dict[str, torch.Tensor]:
        labels = {f"{name}.labels": self.labels} if self.labels is not None else {}
        return {name: self.images, f"{name}.count": torch.tensor([self.count], dtype=torch.int64)} | labels

    def load(self, images: torch.Tensor, count: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if images.shape != self.images.shape:
            raise ValueError("train.pool_size: the checkpoint's history pool does not match this run's")
        if (labels is None) != (self.labels is None):
            raise ValueError("model.class_projection: the checkpoint's history pool does not match this run's")
        self.images.copy_(images)
        if self.labels is not None and labels is not None:
            self.labels.copy_(labels)
        self.count = int(count[0])


class ClassFeatureMeans:
    """loss.semantic_matching's statistics in a semantic classifier's hidden layer (or one of its convolutional
    blocks, loss.semantic_matching_layers conv): each class's mean over domain A's training images (`real`, (K, H),
    fixed) and a running mean over the translations S reads as that class (`fake`, (K, H), decaying by `decay`,
    loss.semantic_matching_decay, each step the class is read in; `seen` (K,) 1 once it has been). With
    loss.semantic_matching_moments std also each class's per-unit standard deviation over A's training images
    (`real_std`, (K, H), fixed) and a running mean of the translations' squared features (`fake_sq`, (K, H),
    decaying as `fake`). Checkpoint tensors, so a resumed run continues them."""

    def __init__(
        self,
        real: torch.Tensor,
        fake: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
        *,
        real_std: torch.Tensor | None = None,
        fake_sq: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        decay: float = SEMANTIC_MATCHING_DECAY,
        name: str = "semantic",
    ) -> None:
        """A new run's means (`real`, and `real_std` for the second moments), or a checkpoint's (all of them).
        `scale` (1,): what the features are multiplied by before they are matched (a convolutional block's, so
        that its push is of the hidden layer's size; kept in the checkpoint); `name`: the checkpoint's prefix."""
        self.real = real
        self.scale = scale
        self.decay = decay
        self.name = name
        self.fake = fake if fake is not None else torch.zeros_like(real)
        self.seen = seen if seen is not None else torch.zeros(real.shape[0], device=real.device)
        self.real_std = real_std
        self.fake_sq = fake_sq if fake_sq is not None or real_std is None else torch.zeros_like(real)

    def update(self, feats: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Fold a batch's features (B, H) of the given classes (B,), each counted with its weight (B,) (0 or 1:
        read with confidence or not), into the running means (and the running squares, with `real_std`); returns
        each class's gap (K, H), its running mean minus its real mean (zero for a class not read yet)."""
        with torch.no_grad():
            counts = F.one_hot(classes, self.real.shape[0]).float() * weights[:, None]  # (B, K)
            totals = counts.sum(0)  # (K,)
            present = (totals > 0).float()[:, None]  # (K, 1)
            keep = self.seen[:, None] * self.decay  # (K, 1): the old mean's share, 0 for a new class

            def fold(old: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
                means = (counts.T @ values) / totals.clamp_min(1.0)[:, None]  # (K, H)
                return present * (keep * old + (1 - keep) * means) + (1 - present) * old

            if self.fake_sq is not None:
                self.fake_sq = fold(self.fake_sq, feats.float().square())
            self.fake = fold(self.fake, feats.float())
            self.seen = torch.maximum(self.seen, present[:, 0])
            return (self.fake - self.real) * self.seen[:, None]

    def std_gap(self) -> tuple[torch.Tensor, torch.Tensor]:
        """With `real_std`: each class's per-unit standard deviation gap (K, H), the running one (from the running
        mean and squares) minus the real one (zero for a class not read yet), and each class's scale (K,), the root
        mean square of its real standard deviations over the units."""
        assert self.real_std is not None and self.fake_sq is not None
        fake_std = (self.fake_sq - self.fake.square()).clamp_min(0).sqrt()  # (K, H)
        scale = self.real_std.square().mean(1).sqrt().clamp_min(1e-6)  # (K,)
        return (fake_std - self.real_std) * self.seen[:, None], scale

    def features(self, feats: torch.Tensor) -> torch.Tensor:
        """A batch's features (B, H) as they are matched: times `scale` when there is one."""
        return feats if self.scale is None else feats * self.scale

    def state(self) -> dict[str, torch.Tensor]:
        n = self.name
        moments = {}
        if self.real_std is not None and self.fake_sq is not None:
            moments = {f"{n}.real_std": self.real_std, f"{n}.fake_sq": self.fake_sq}
        scale = {f"{n}.scale": self.scale} if self.scale is not None else {}
        return {f"{n}.real": self.real, f"{n}.fake": self.fake, f"{n}.seen": self.seen} | moments | scale


def unit_rows(gap: torch.Tensor) -> torch.Tensor:
    """Each row of `gap` (K, H) scaled to unit length, a zero row (a class not read yet) left zero:
    loss.semantic_matching_push unit, a push whose size does not depend on how far its class lies."""
    return gap / gap.norm(dim=1, keepdim=True).clamp_min(1e-12)


def spread_push(
    hidden: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor, means: ClassFeatureMeans, *, unit: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """loss.semantic_matching_moments std's push on the hidden features (B, H) of translations of the given classes
    (B,), each counted with its weight (B,), after `means.update`: half each translation's squared deviation from
    its class's running mean, unit by unit, weighed by the class's standard deviation gap (at unit length with
    `unit`) over its real scale, averaged over the counted translations. Its gradient on a translation is the gap
    times the translation's deviation, so the translations of a class that varies too little on a unit are pushed
    apart along it and those of one that varies too much together. Returns the push and the gap (K, H)."""
    std_gap, scale = means.std_gap()  # (K, H), (K,)
    along = (unit_rows(std_gap) if unit else std_gap) / scale[:, None]  # (K, H)
    deviation = hidden - means.fake[classes]  # (B, H)
    push = ((0.5 * deviation.square() * along[classes]).sum(1) * weights).sum() / weights.sum().clamp_min(1.0)
    return push, std_gap


def matched_push(
    feats: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor, means: ClassFeatureMeans, *, unit: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """loss.semantic_matching on the features (B, H) of translations of the given classes (B,), each counted with
    its weight (B,): folds them into `means`, then returns the mean push (each translation's features along its
    class's gap, at unit length with `unit`, averaged over the counted translations), the standard-deviation push
    (`spread_push`; None without `means.real_std`), the gap (K, H) and the standard-deviation gap (or None)."""
    gap = means.update(feats.detach(), classes, weights)  # (K, H)
    along = unit_rows(gap) if unit else gap
    push = ((feats * along[classes]).sum(1) * weights).sum() / weights.sum().clamp_min(1.0)
    if means.real_std is None:
        return push, None, gap, None
    spread, std_gap = spread_push(feats, classes, weights, means, unit=unit)
    return push, spread, gap, std_gap


def means_name(classifier: int, block: int | None) -> str:
    """The checkpoint prefix of loss.semantic_matching's statistics of one semantic classifier (0: the first, S)
    in its hidden layer (`block` None) or one of its convolutional blocks (0, 1, 2)."""
    return "semantic" + (str(classifier) if classifier else "") + (f"_conv{block}" if block is not None else "")


class ClusterAnchor:
    """loss.semantic_anchor clusters: the cluster of each of domain B's training images (`clusters`, (M,), fixed) and
    the semantic classifier's class probabilities summed over each cluster's inputs (`readings`, (K, K): cluster by
    class, growing each step). Checkpoint tensors, so a resumed run continues them."""

    def __init__(self, clusters: torch.Tensor, readings: torch.Tensor | None = None, *, classes: int = 0) -> None:
        """A new run's anchor (`clusters` and the number of classes), or a checkpoint's (both tensors)."""
        self.clusters = clusters
        self.readings = readings if readings is not None else torch.zeros(classes, classes, device=clusters.device)

    def classes(self, picks: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Fold S's class probabilities (B, K) of the inputs at B's training indices `picks` (B,) into the readings;
        returns each input's anchor (B,): the class its cluster is matched to (`assignment`)."""
        cluster = self.clusters[picks.to(self.clusters.device)]  # (B,)
        self.readings = self.readings.index_add(
            0, cluster.to(self.readings.device), probs.float().to(self.readings.device)
        )
        return self.assignment().to(cluster.device)[cluster]

    def assignment(self) -> torch.Tensor:
        """The class (K,) each cluster is matched to: the one-to-one assignment that maximises the sum of the
        clusters' mean probabilities of their classes (Hungarian). Means, not counts of confident readings: a glyph
        S reads with confidence as no class (or as a class another cluster reads more surely) is still placed by
        which of the classes left it reads most like."""
        means = self.readings / self.readings.sum(1, keepdim=True).clamp_min(1e-12)  # (K, K), a row per cluster
        rows, cols = linear_sum_assignment(means.cpu().double().numpy(), maximize=True)
        matched = torch.empty(len(rows), dtype=torch.int64)
        matched[torch.from_numpy(rows)] = torch.from_numpy(cols)
        return matched

    def state(self) -> dict[str, torch.Tensor]:
        return {"anchor.clusters": self.clusters, "anchor.readings": self.readings}


@torch.no_grad()
def domain_clusters(data: UnpairedDataset, k: int, *, seed: int) -> torch.Tensor:
    """The cluster (M,) of each of domain B's training images: k-means into k clusters (CLUSTER_RESTARTS runs from
    `seed`, the tightest kept) of their pixels, each image first centred on its brightness centroid and scaled so
    that its brightness spread is domain A's mean (`brightness_moments`): the printed digits are a few glyphs under
    offsets, sizes and small turns, and without the centring and scaling the clusters follow the offsets and sizes."""
    b = data.domain_b(torch.arange(data.b_size)).float().cpu()  # (M, C_B, H, W)
    a = data.store.float() / 127.5 - 1.0 if data.store.dtype == torch.uint8 else data.store.float()
    _, spread_a = brightness_moments(a)
    centre, spread = brightness_moments(b)  # (M, 2), (M,)
    scale = (spread - spread_a.exp().mean().log()).exp()  # < 1 enlarges the image
    theta = torch.zeros(len(b), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale, scale, centre
    grid = F.affine_grid(theta, list(b.shape), align_corners=False)  # (M, H, W, 2)
    framed = F.grid_sample(b + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    km = KMeans(n_clusters=k, n_init=CLUSTER_RESTARTS, random_state=seed).fit(framed.flatten(1).numpy())
    return torch.from_numpy(np.asarray(km.labels_, dtype=np.int64))


@dataclass
class Models:
    """A CycleGAN's two generators (in G) and two discriminators (in D), their optimizers, the history pools and
    the unpaired data the step takes domain B from."""

    G: CycleGenerators
    D: CycleDiscriminators
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    pool_a: ImagePool  # G_BA's outputs, for D_A
    pool_b: ImagePool  # G_AB's outputs, for D_B
    data: UnpairedDataset
    opt_warp: torch.optim.Optimizer | None = None  # the warps' localisation nets, with model.spatial_transform
    C: nn.Module | None = None  # domain A's classifier, with loss.info_max_weight
    opt_c: torch.optim.Optimizer | None = None
    S: SourceClassifier | None = None  # domain A's frozen classifier, with loss.semantic_weight
    class_means: ClassFeatureMeans | None = None  # S's class means, with loss.semantic_matching
    anchor: ClusterAnchor | None = None  # domain B's clusters and their readings, with loss.semantic_anchor clusters
    S_others: tuple[SourceClassifier, ...] = ()  # loss.semantic_classifiers' classifiers after the first (S1, S2, ...)
    # loss.semantic_matching's statistics other than S's hidden layer's (class_means), by name (means_name): the
    # other classifiers' hidden layers and, with loss.semantic_matching_layers conv, every classifier's blocks
    more_means: dict[str, ClassFeatureMeans] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint stores, by name (the loop adds the EMA copy of G as `G_ema`)."""
        classifiers = {name: c for name, c in (("C", self.C), ("S", self.S)) if c is not None}
        others = {f"S{k}": judge for k, judge in enumerate(self.S_others, start=1)}
        return {"G": self.G, "D": self.D} | classifiers | others

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        warp = {"opt_warp": self.opt_warp} if self.opt_warp is not None else {}
        classifier = {"opt_c": self.opt_c} if self.opt_c is not None else {}
        return {"opt_g": self.opt_g, "opt_d": self.opt_d} | warp | classifier

    def tensors(self) -> dict[str, torch.Tensor]:
        """The history pools, loss.semantic_matching's means and loss.semantic_anchor's clusters and readings, which
        a resumed run continues from."""
        means = self.class_means.state() if self.class_means is not None else {}
        for more in self.more_means.values():
            means |= more.state()
        anchor = self.anchor.state() if self.anchor is not None else {}
        return self.pool_a.state("pool.a") | self.pool_b.state("pool.b") | means | anchor


def build(cfg: RunConfig, data: Any, *, device: torch.device, latest: Path | None, emit: EventFn) -> Models:
    """Check that the data is unpaired, build both generators and discriminators with their optimizers on
    `device`, and the history pools (restored from the newest checkpoint `latest` when resuming)."""
    if not isinstance(data, UnpairedDataset):
        raise ValueError(f"model.arch: cyclegan needs an unpaired dataset (digits-printed); {cfg.dataset} is not")
    m, ca, cb = cfg.model, data.channels, data.b_channels
    if cfg.loss.identity_weight > 0 and ca != cb:
        raise ValueError(
            f"loss.identity_weight: the identity terms need domains with the same channels, not {ca} and {cb}; set 0"
        )
    if m.residual_generator and ca != cb:
        raise ValueError(
            f"model.residual_generator: a generator that corrects its input needs domains with the same channels, "
            f"not {ca} and {cb}; set false"
        )
    for name, weight in (("info_max_weight", cfg.loss.info_max_weight), ("semantic_weight", cfg.loss.semantic_weight)):
        if weight > 0 and (data.labels is None or data.num_classes < 2):
            raise ValueError(
                f"loss.{name}: the term's classifier learns domain A's labels, and {cfg.dataset} has none; set 0"
            )
    G = generator(cfg, data.info())
    layers = patch_layers(m.image_size, m.patch_layers)
    classes = data.num_classes if m.class_projection else 0
    D = CycleDiscriminators(
        PatchDiscriminator(
            in_channels=ca, layers=layers, width=m.width, sn=m.spectral_norm, norm="instance", classes=classes
        ),
        PatchDiscriminator(in_channels=cb, layers=layers, width=m.width, sn=m.spectral_norm, norm="instance"),
    )
    G = G.to(device, memory_format=torch.channels_last)
    D = D.to(device, memory_format=torch.channels_last)
    size, pool = m.image_size, cfg.train.pool_size
    pool_a = ImagePool(pool, (ca, size, size), device, labelled=classes > 0)
    pool_b = ImagePool(pool, (cb, size, size), device)
    if latest is not None:
        for name, p in (("pool.a", pool_a), ("pool.b", pool_b)):
            images, count = checkpoint.read_tensor(latest, name), checkpoint.read_tensor(latest, f"{name}.count")
            if images is None or count is None:
                raise ValueError(f"{latest.name} holds no history pool; it was not written by a cyclegan run")
            p.load(images, count, checkpoint.read_tensor(latest, f"{name}.labels"))
    C = None
    if cfg.loss.info_max_weight > 0:
        C = PooledClassifier(channels=ca, classes=data.num_classes).to(device)
    S = None
    if cfg.loss.semantic_weight > 0:  # trained here on a new run; a resumed run loads it from its checkpoint
        S = SourceClassifier(channels=ca, classes=data.num_classes).to(device)
        if latest is None:
            train_source_classifier(S, data, seed=cfg.seed)
        S.eval().requires_grad_(False)
    S_others: list[SourceClassifier] = []
    for k in range(1, cfg.loss.semantic_classifiers if S is not None else 1):  # loss.semantic_classifiers
        judge = SourceClassifier(channels=ca, classes=data.num_classes).to(device)
        if latest is None:
            train_source_classifier(judge, data, seed=cfg.seed + k * OTHER_CLASSIFIER_SEEDS)
        S_others.append(judge.eval().requires_grad_(False))
    class_means = None
    more_means: dict[str, ClassFeatureMeans] = {}
    if S is not None and cfg.loss.semantic_matching > 0:
        blocks = (None, 0, 1, 2) if cfg.loss.semantic_matching_layers == "conv" else (None,)
        for k, judge in enumerate((S, *S_others)):
            names = [means_name(k, block) for block in blocks]
            if latest is None:
                fresh = source_layer_moments(judge, data, blocks)  # the hidden layer first
                hidden_std = fresh[0][1]
                layers = [
                    new_class_means(cfg, name, moments, hidden_std=None if block is None else hidden_std)
                    for name, block, moments in zip(names, blocks, fresh, strict=True)
                ]
            else:
                layers = [saved_class_means(cfg, n, b, latest, device) for n, b in zip(names, blocks, strict=True)]
            for block, means in zip(blocks, layers, strict=True):
                if k == 0 and block is None:
                    class_means = means
                else:
                    more_means[means.name] = means
    anchor = None
    if S is not None and cfg.loss.semantic_anchor == "clusters":
        if latest is None:
            anchor = ClusterAnchor(domain_clusters(data, data.num_classes, seed=cfg.seed), classes=data.num_classes)
        else:  # the checkpoint's clusters, so that a resumed run's do not depend on k-means giving the same again
            clusters, readings = (checkpoint.read_tensor(latest, f"anchor.{k}") for k in ("clusters", "readings"))
            if clusters is None or readings is None:
                raise ValueError(f"{latest.name} holds no clusters; it was not written with loss.semantic_anchor")
            anchor = ClusterAnchor(clusters, readings)
    betas = (cfg.train.beta1, cfg.train.beta2)
    warps = [p for name, p in G.named_parameters() if ".warp." in name]  # the localisation nets, when there are
    nets = [p for name, p in G.named_parameters() if ".warp." not in name]
    return Models(
        G=G,
        D=D,
        opt_g=torch.optim.Adam(nets, lr=cfg.train.lr_g, betas=betas),
        opt_d=torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas),
        pool_a=pool_a,
        pool_b=pool_b,
        data=data,
        opt_warp=torch.optim.Adam(warps, lr=cfg.train.lr_warp, betas=betas) if warps else None,
        C=C,
        opt_c=torch.optim.Adam(C.parameters(), lr=LR_CLASSIFIER) if C is not None else None,
        S=S,
        class_means=class_means,
        anchor=anchor,
        S_others=tuple(S_others),
        more_means=more_means,
    )


def new_class_means(
    cfg: RunConfig, name: str, moments: tuple[torch.Tensor, torch.Tensor], *, hidden_std: torch.Tensor | None
) -> ClassFeatureMeans:
    """A new run's loss.semantic_matching statistics (`name`) of a semantic classifier's layer, from that layer's
    real class `moments` over A's training images (`source_layer_moments`). A convolutional block's (`hidden_std`
    given: the hidden layer's real per-unit standard deviations) are scaled so that the root mean square of their
    real per-unit standard deviations (averaged over the classes) is the hidden layer's, so that its push is of the
    hidden layer's size."""
    real, real_std = moments
    scale = None
    if hidden_std is not None:
        ratio = feature_scale(hidden_std) / feature_scale(real_std).clamp_min(1e-12)
        real, real_std, scale = real * ratio, real_std * ratio, ratio.reshape(1)
    with_std = cfg.loss.semantic_matching_moments == "std"
    decay = cfg.loss.semantic_matching_decay
    return ClassFeatureMeans(real, real_std=real_std if with_std else None, scale=scale, decay=decay, name=name)


def saved_class_means(
    cfg: RunConfig, name: str, block: int | None, latest: Path, device: torch.device
) -> ClassFeatureMeans:
    """loss.semantic_matching's statistics (`name`) of a semantic classifier's hidden layer (`block` None) or
    convolutional block, as the checkpoint `latest` holds them (the classifier is loaded after build, so its means
    come from the checkpoint as well)."""
    with_std = cfg.loss.semantic_matching_moments == "std"
    saved = {k: t.to(device) for k, t in checkpoint.read_module_state(latest, name).items()}
    if not {"real", "fake", "seen"} <= saved.keys() or (block is not None and "scale" not in saved):
        raise ValueError(
            f"{latest.name} holds no class means {name}; it was not written with this loss.semantic_matching"
        )
    if with_std and not {"real_std", "fake_sq"} <= saved.keys():
        raise ValueError(
            f"{latest.name} holds no class standard deviations; it was not written with "
            "loss.semantic_matching_moments std"
        )
    return ClassFeatureMeans(
        saved["real"],
        saved["fake"],
        saved["seen"],
        real_std=saved["real_std"] if with_std else None,
        fake_sq=saved["fake_sq"] if with_std else None,
        scale=saved.get("scale") if block is not None else None,
        decay=cfg.loss.semantic_matching_decay,
        name=name,
    )


def feature_scale(std: torch.Tensor) -> torch.Tensor:
    """The size of a layer's features: the root mean square over the units of each class's per-unit standard
    deviations (K, H), averaged over the classes (a 0-d tensor)."""
    return std.square().mean(1).sqrt().mean()


@torch.no_grad()
def source_layer_moments(
    S: SourceClassifier, data: UnpairedDataset, layers: tuple[int | None, ...]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each of `layers`, in that order, the mean features (K, H) of S (in eval mode) over domain A's training
    images of each class and their per-unit standard deviations (K, H), from one pass over those images: None is
    the hidden layer, 0, 1, 2 a convolutional block's output averaged over space (`SourceClassifier.activations`)."""
    assert data.labels is not None
    device = next(S.parameters()).device
    sums: list[torch.Tensor] = []
    squares: list[torch.Tensor] = []
    counts = torch.zeros(data.num_classes, device=device)
    for start in range(0, len(data), SAMPLE_BATCH):
        x, labels = data.batch(torch.arange(start, min(start + SAMPLE_BATCH, len(data))))  # (B, C, H, W), (B,)
        assert labels is not None
        onehot = F.one_hot(labels.to(device), data.num_classes).float()  # (B, K)
        x = x.to(device).float()
        if layers == (None,):
            outputs = [S.features(x)]  # (B, H)
        else:
            pooled, hidden = S.activations(x)
            outputs = [hidden if layer is None else pooled[layer] for layer in layers]  # (B, H) each
        batch_sums = [onehot.T @ feats for feats in outputs]  # (K, H) each
        batch_squares = [onehot.T @ feats.square() for feats in outputs]
        sums = [a + b for a, b in zip(sums, batch_sums, strict=True)] if sums else batch_sums
        squares = [a + b for a, b in zip(squares, batch_squares, strict=True)] if squares else batch_squares
        counts += onehot.sum(0)
    per_class = counts.clamp_min(1.0)[:, None]
    result = []
    for total, total_sq in zip(sums, squares, strict=True):
        means = total / per_class
        result.append((means, (total_sq / per_class - means.square()).clamp_min(0).sqrt()))
    return result


def train_source_classifier(S: nn.Module, data: UnpairedDataset, *, seed: int) -> None:
    """Train S on domain A's training images and labels for SOURCE_EPOCHS epochs (each image once an epoch, in an
    order drawn from a generator seeded with `seed`), each batch shifted, turned and scaled a little
    (`jitter`), with Adam at a one-cycle rate. Reads nothing of domain B; leaves S in train mode."""
    assert data.labels is not None
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(data) // SOURCE_BATCH)
    opt = torch.optim.Adam(S.parameters(), lr=SOURCE_LR)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=SOURCE_LR, total_steps=SOURCE_EPOCHS * steps_per_epoch)
    S.train()
    for _ in range(SOURCE_EPOCHS):
        order = torch.randperm(len(data), generator=gen)
        for i in range(steps_per_epoch):
            x, labels = data.batch(order[i * SOURCE_BATCH : (i + 1) * SOURCE_BATCH])  # (B, C, H, W), (B,)
            assert labels is not None
            loss = F.cross_entropy(S(jitter(x.float(), gen)), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()


def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images x (B, C, H, W) in [-1, 1], each turned by up to SOURCE_TURN degrees, scaled by 1 +- SOURCE_SCALE and
    shifted by up to SOURCE_SHIFT of the frame on each axis (bilinear; what comes in is -1), and half of them with
    Gaussian noise of std SOURCE_NOISE; the random numbers from `gen` (on the CPU)."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(SOURCE_TURN)  # (B,)
    scale = 1 + (torch.rand(b, generator=gen) * 2 - 1) * SOURCE_SCALE
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * 2 * SOURCE_SHIFT  # (B, 2) in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    noisy = (torch.rand(b, 1, 1, 1, generator=gen) < 0.5).float()  # (B, 1, 1, 1)
    noise = torch.randn(out.shape, generator=gen) * SOURCE_NOISE * noisy
    return (out + noise.to(x.device)).clamp(-1, 1)


def generator(cfg: RunConfig, info: dict[str, Any]) -> CycleGenerators:
    """Both generators of a run with this config and data facts (an UnpairedDataset's `info()`, a checkpoint's
    `data`): domain A has `channels`, B `b_channels`. Translations load a checkpoint's G into it
    (core/translate.py)."""
    m = cfg.model
    ca, cb = int(info["channels"]), int(info["b_channels"])
    width, blocks = m.g_width or m.width, resnet_blocks(m.image_size, m.res_blocks)
    res = m.residual_generator
    latent = m.latent_dim
    ab: nn.Module = ResnetGenerator(in_channels=ca, out_channels=cb, width=width, blocks=blocks, residual=res)
    ba: nn.Module = ResnetGenerator(
        in_channels=cb, out_channels=ca, width=width, blocks=blocks, residual=res, latent_dim=latent
    )
    if m.a_render_size is not None and m.a_render_size < m.image_size:
        ba = RenderedGenerator(ba, size=m.a_render_size)
    if m.spatial_transform:
        ab, ba = (
            WarpedGenerator(SpatialTransformer(channels=ca, centred=m.warp_centred), ab),
            WarpedGenerator(SpatialTransformer(channels=cb, centred=m.warp_centred), ba),
        )
    enc = LatentEncoder(channels=ca, latent_dim=latent) if latent > 0 else None
    return CycleGenerators(ab, ba, enc)


def image_latents(n: int, latent_dim: int, *, seed: int, start: int = 0) -> torch.Tensor:
    """The latent codes (n, latent_dim) of images start .. start + n - 1 of a batch translated B→A with `seed`:
    image i's code is drawn from its own generator seeded with seed + i, so it does not depend on how many images
    are translated or in which batches."""
    codes = [
        torch.randn(latent_dim, generator=torch.Generator().manual_seed((seed + i) % 2**63))
        for i in range(start, start + n)
    ]
    return torch.stack(codes) if codes else torch.zeros(0, latent_dim)


def _parts(g: nn.Module) -> tuple[SpatialTransformer | None, nn.Module]:
    """A generator's warp (None without model.spatial_transform) and the network behind it."""
    return (g.warp, g.net) if isinstance(g, WarpedGenerator) else (None, g)


def _zoom(warp: SpatialTransformer, x: torch.Tensor) -> torch.Tensor:
    """How much a warp enlarges the images x (B, C, H, W), on average: 1 / sqrt(|det|) of its linear part."""
    with torch.no_grad():
        a = warp.theta(x)[:, :, :2]  # (B, 2, 2)
        return torch.linalg.det(a).abs().rsqrt().mean()


def train_step(m: Models, cfg: RunConfig, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]:
    """One step, in the paper's order: a G update (both generators: adversarial, cycle and identity terms), then a
    D update (both discriminators: real images against fakes through the pools). Returns `{"loss_d", "loss_g"}`
    and the step's stats."""
    noise_std = cfg.loss.instance_noise * (1.0 - at.done)  # instance noise anneals to zero over the run
    _, real_a, labels_a = at.next_batch()  # (B, C_A, H, W), (B,)
    picks = torch.randint(m.data.b_size, (real_a.shape[0],))
    real_b = m.data.domain_b(picks).contiguous(memory_format=torch.channels_last)  # (B, C_B, H, W)
    cycle_weight = cfg.loss.cycle_weight
    identity_weight = cfg.loss.identity_weight * cycle_weight
    (warp_ab, net_ab), (warp_ba, net_ba) = _parts(m.G.ab), _parts(m.G.ba)
    g_ab, g_ba = m.G.ab, m.G.ba
    warp_only = at.done < cfg.train.warp_share
    if warp_only and warp_ab is not None and warp_ba is not None:
        g_ab, g_ba = warp_ab, warp_ba  # the warp-only steps: each generator is its warp alone
    # model.latent_dim: a code from the prior for each B→A translation, and each A image's code read by the
    # encoder (with the reparametrisation) for the A→B→A cycle; none while the generators are their warps alone.
    latent = 0 if warp_only and warp_ab is not None else m.G.latent_dim
    z_b = z_a = kl = None
    if latent:
        z_b = torch.randn(real_b.shape[0], latent, device=real_b.device)  # (B, L)
        mu_a, logvar_a = m.G.enc(real_a)  # (B, L) each
        z_a = mu_a + (0.5 * logvar_a).exp() * torch.randn_like(mu_a)
        kl = 0.5 * (mu_a.square() + logvar_a.exp() - 1 - logvar_a).sum(1).mean()

    # Train domain A's classifier on its labels (loss.info_max_weight).
    loss_c = None
    if m.C is not None and m.opt_c is not None and labels_a is not None:
        m.C.requires_grad_(True)
        loss_c = F.cross_entropy(m.C(real_a), labels_a)
        m.opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        m.opt_c.step()
        m.C.requires_grad_(False)

    # Train the generators.
    m.D.requires_grad_(False)
    with at.autocast():
        if warp_ab is not None and warp_ba is not None:
            warped_a, warped_b = warp_ab(real_a), warp_ba(real_b)  # (B, C_A, H, W), (B, C_B, H, W)
            fake_b = warped_a if warp_only else net_ab(warped_a)  # (B, C_B, H, W)
            fake_a = warped_b if warp_only else _with_code(net_ba, warped_b, z_b)  # (B, C_A, H, W)
        else:
            fake_b, fake_a = g_ab(real_a), _with_code(g_ba, real_b, z_b)
        if cfg.loss.cycle_noise > 0:  # the reverse translation reads only what the noise leaves of each image
            rec_a = _with_code(g_ba, fake_b + cfg.loss.cycle_noise * torch.randn_like(fake_b), z_a)
            rec_b = g_ab(fake_a + cfg.loss.cycle_noise * torch.randn_like(fake_a))
        else:
            rec_a, rec_b = _with_code(g_ba, fake_b, z_a), g_ab(fake_a)
        adv_ab, _ = generator_loss(cfg.loss, D=patch_judge(m.D.b), fake=fake_b, fake_labels=None, noise_std=noise_std)
    # The semantic term's reading of each (warped) input: the class each translation is anchored to (its cluster's
    # with loss.semantic_anchor clusters) and whether it is; read here, before D_A judges the translations, as
    # model.class_projection judges them on the anchor's class.
    reading = anchored = None
    if m.S is not None and not warp_only:
        reading, anchored = semantic_reading(m, warped_b if warp_ba is not None else real_b, picks)
    with at.autocast():
        fake_classes = None  # model.class_projection: each translation judged as a digit of A
        if m.D.a.embed is not None and m.S is not None:
            if m.anchor is not None and reading is not None:  # its input's cluster's class
                fake_classes = reading
            else:  # the digit S reads in it
                with torch.no_grad():
                    fake_classes = m.S(fake_a.detach()).argmax(1)  # (B,)
        judge_a = class_judge(m.D.a) if fake_classes is not None else patch_judge(m.D.a)
        adv_ba, _ = generator_loss(cfg.loss, D=judge_a, fake=fake_a, fake_labels=fake_classes, noise_std=noise_std)
    cycle = _l1(rec_a, real_a) + _l1(rec_b, real_b)
    loss_g = adversarial_scale(cfg) * (adv_ab + adv_ba) + cycle_weight * cycle
    stats: StepStats = {"loss_g_adv": (adv_ab + adv_ba).detach(), "loss_g_cycle": cycle.detach()}
    if cfg.loss.warp_moment_weight > 0 and warp_ab is not None and warp_ba is not None:
        moments = moment_gap(warped_a, real_b) + moment_gap(warped_b, real_a)
        loss_g = loss_g + cfg.loss.warp_moment_weight * moments
        stats["loss_g_moments"] = moments.detach()
    if cfg.loss.self_regularization_weight > 0 and not warp_only:  # each generator's output against its input
        inputs_a, inputs_b = (warped_a, warped_b) if warp_ab is not None else (real_a, real_b)
        regularization = _l1(fake_b, inputs_a) + _l1(fake_a, inputs_b)
        loss_g = loss_g + cfg.loss.self_regularization_weight * regularization
        stats["loss_g_self"] = regularization.detach()
    if m.C is not None and not warp_only:  # confident, class-balanced translations B→A, read by domain A's classifier
        probs = m.C(fake_a).softmax(1)  # (B, classes)
        info = _entropy(probs).mean() - _entropy(probs.mean(0, keepdim=True)).mean()
        loss_g = loss_g + cfg.loss.info_max_weight * info
        stats["loss_g_info"] = info.detach()
    if m.S is not None and reading is not None and anchored is not None:  # each translation B→A read as its input
        unit = cfg.loss.semantic_matching_push == "unit"
        conv = m.class_means is not None and cfg.loss.semantic_matching_layers == "conv"
        semantics: list[torch.Tensor] = []
        pushes: list[torch.Tensor] = []  # each classifier's mean push (with moments std: its spread push in spreads)
        spreads: list[torch.Tensor | None] = []
        for k, judge in enumerate((m.S, *m.S_others)):
            pooled, hidden = judge.activations(fake_a) if conv else ([], judge.features(fake_a))  # (B, H)
            logits = judge.logits(hidden)  # (B, K)
            misread = F.cross_entropy(logits, reading, reduction="none")  # (B,)
            semantics.append((misread * anchored).sum() / anchored.sum().clamp_min(1.0))
            if m.class_means is None:
                continue
            # each class's translations moved along its gap to the real class
            if m.anchor is not None:  # the clusters' classes again
                read_as, matched = reading, anchored
            else:  # the class this classifier reads in each translation, where it is sure: (B,)
                sure_of, read_as = logits.detach().softmax(1).max(1)
                matched = (sure_of >= SEMANTIC_CONFIDENCE).float()
            means = m.class_means if k == 0 else m.more_means[means_name(k, None)]
            push, spread, gap, std_gap = matched_push(hidden, read_as, matched, means, unit=unit)
            if k == 0:
                seen = m.class_means.seen.sum().clamp_min(1.0)
                stats |= {"semantic_gap": gap.square().sum(1).sum() / seen, "semantic_matched": matched.mean()}
                if std_gap is not None:
                    stats["semantic_std_gap"] = std_gap.square().sum(1).sum() / seen
            if pooled:  # loss.semantic_matching_layers conv: each block's pushes, averaged, added to the hidden's
                blocks = []
                for i, feats in enumerate(pooled):  # (B, C_i)
                    block_means = m.more_means[means_name(k, i)]
                    blocks.append(matched_push(block_means.features(feats), read_as, matched, block_means, unit=unit))
                push = push + sum(b[0] for b in blocks) / len(blocks)
                if spread is not None:
                    spread = spread + sum(b[1] for b in blocks if b[1] is not None) / len(blocks)
            pushes.append(push)
            spreads.append(spread)
        semantic = semantics[0] if len(semantics) == 1 else torch.stack(semantics).mean()
        loss_g = loss_g + cfg.loss.semantic_weight * semantic
        stats |= {"loss_g_semantic": semantic.detach(), "semantic_anchored": anchored.mean()}
        if pushes:
            push = pushes[0] if len(pushes) == 1 else torch.stack(pushes).mean()
            spread = spreads[0]
            if spread is not None and len(spreads) > 1:
                spread = torch.stack([s for s in spreads if s is not None]).mean()
            mean_weight = cfg.loss.semantic_matching_mean  # the mean push's own weight, or None: the term's
            if spread is not None:  # and each class's spread, unit by unit, towards the real one's
                if mean_weight is None:  # one weight over the two pushes' sum
                    push = push + spread
                else:
                    loss_g = loss_g + cfg.loss.semantic_matching * spread
            loss_g = loss_g + (cfg.loss.semantic_matching if mean_weight is None else mean_weight) * push
    if m.G.enc is not None and z_b is not None and kl is not None:  # the code read back; the codes' prior
        m.G.enc.requires_grad_(False)  # the regression trains G_BA to show its code, not the encoder to find it
        read_back, _ = m.G.enc(fake_a)  # (B, L)
        m.G.enc.requires_grad_(True)
        regression = (read_back - z_b).abs().mean()
        loss_g = loss_g + cfg.loss.latent_regression_weight * regression + cfg.loss.latent_kl_weight * kl
        stats |= {"loss_g_latent": regression.detach(), "loss_g_kl": kl.detach()}
    spread_term = cfg.loss.mode_seeking > 0 or cfg.loss.diversity > 0  # two codes' translations kept apart
    if z_b is not None and (spread_term or at.want_stats):
        # A term draws the second code from the run's stream and keeps the graph; the ratio measured for the stats
        # alone draws it from a generator of its own, without gradients, so the run is unchanged.
        if spread_term:
            z_other = torch.randn_like(z_b)  # (B, L)
        else:
            z_other = torch.randn(z_b.shape, generator=torch.Generator().manual_seed(at.step)).to(z_b.device)
        with torch.set_grad_enabled(spread_term), at.autocast():
            other_a = _with_code(net_ba, warped_b, z_other) if warp_ba is not None else g_ba(real_b, z_other)
        first = fake_a if spread_term else fake_a.detach()
        spread = mode_seeking_ratio(torch.cat([first, other_a]), torch.cat([z_b, z_other]))  # pairs (i, B + i)
        if cfg.loss.mode_seeking > 0:
            mode_seeking = 1.0 / (spread + MODE_SEEKING_EPS)
            loss_g = loss_g + cfg.loss.mode_seeking * mode_seeking
            stats["loss_g_mode_seeking"] = mode_seeking.detach()
        elif cfg.loss.diversity > 0:  # bounded: no push once the translations differ by the cap per unit of code
            diversity = bounded_diversity(spread, cfg.loss.diversity_cap)
            loss_g = loss_g - cfg.loss.diversity * diversity
            stats["loss_g_diversity"] = diversity.detach()
        stats["mode_seeking_spread"] = spread.detach()
    if identity_weight > 0:
        with at.autocast():  # each generator without its warp, which would have to resize a target-domain image
            same_b, same_a = net_ab(real_b), _with_code(net_ba, real_a, z_a)
        identity = _l1(same_b, real_b) + _l1(same_a, real_a)
        loss_g = loss_g + identity_weight * identity
        stats["loss_g_identity"] = identity.detach()
    m.opt_g.zero_grad(set_to_none=True)
    if m.opt_warp is not None:
        m.opt_warp.zero_grad(set_to_none=True)
    loss_g.backward()
    grad_norm_g = grad_norm(m.G) if at.want_stats else None
    m.opt_g.step()
    if m.opt_warp is not None:
        m.opt_warp.step()

    # Train the discriminators on real images against fakes, half of them from the history once it is full.
    m.D.requires_grad_(True)
    judged_a, judged_classes = m.pool_a.query_labelled(fake_a.detach(), fake_classes)
    judged_b = m.pool_b.query(fake_b.detach())
    real_classes = labels_a if fake_classes is not None else None
    with at.autocast():  # domain A's discriminator, then B's (the order their instance noise is drawn in)
        (loss_da, stats_da), (loss_db, stats_db) = (
            discriminator_loss(
                cfg.loss, D=judge, real=real, fake=fake, labels=y_real, fake_labels=y_fake, noise_std=noise_std
            )
            for judge, real, fake, y_real, y_fake in (
                (judge_a, real_a, judged_a, real_classes, judged_classes),
                (patch_judge(m.D.b), real_b, judged_b, None, None),
            )
        )
    loss_d = loss_da + loss_db
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    grad_norm_d = grad_norm(m.D) if at.want_stats else None
    m.opt_d.step()

    stats |= {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real_a": stats_da["d_real"],
        "d_fake_a": stats_da["d_fake"],
        "d_real_b": stats_db["d_real"],
        "d_fake_b": stats_db["d_fake"],
    }
    if grad_norm_d is not None and grad_norm_g is not None:
        stats |= {"grad_norm_d": grad_norm_d, "grad_norm_g": grad_norm_g}
    if at.want_stats and warp_ab is not None and warp_ba is not None:
        stats |= {"warp_zoom_ab": _zoom(warp_ab, real_a), "warp_zoom_ba": _zoom(warp_ba, real_b)}
    if loss_c is not None:
        stats["loss_c"] = loss_c.detach()
    if cfg.loss.instance_noise > 0:
        stats["instance_noise"] = noise_std
    return {"loss_d": loss_d, "loss_g": loss_g}, stats


@torch.no_grad()
def semantic_reading(m: Models, inputs: torch.Tensor, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class (B,) the semantic term anchors each translation of the (warped) B inputs (B, C_B, H, W) to, and
    whether it is anchored (B,), 1.0 or 0.0: S's reading where it is sure (the classifiers' mean reading with
    loss.semantic_classifiers), or with loss.semantic_anchor clusters every input on its cluster's class (the
    readings folded into the anchor's, `picks` (B,) being the inputs' indices in B's training images)."""
    assert m.S is not None
    probs = m.S(inputs).softmax(1)  # (B, K)
    if m.S_others:  # loss.semantic_classifiers: the classifiers' mean reading
        probs = torch.stack([probs, *(judge(inputs).softmax(1) for judge in m.S_others)]).mean(0)
    if m.anchor is not None:  # every translation anchored to its input's cluster's class
        reading = m.anchor.classes(picks, probs).to(probs.device)  # (B,)
        return reading, torch.ones_like(reading, dtype=torch.float)
    confidence, reading = probs.max(1)  # (B,), (B,)
    return reading, (confidence >= SEMANTIC_CONFIDENCE).float()


def class_judge(D: PatchDiscriminator) -> Any:
    """A projection PatchGAN as core.losses calls a discriminator: (x, classes) -> (patch logits (B·P·P,), no
    features, no class logits)."""

    def judge(x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, None, None]:
        return D(x, labels=labels).flatten(), None, None

    return judge


def _with_code(g: nn.Module, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """g(x), or g(x, z) when there is a latent code z (B, L) (model.latent_dim)."""
    return g(x) if z is None else g(x, z)


def _l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.float() - y.float()).abs().mean()


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """The entropy (N,) of each row of class probabilities (N, classes)."""
    return -(probs * probs.clamp_min(1e-8).log()).sum(1)


def brightness_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the brightness of images x (B, C, H, W) in [-1, 1] lies: its centroid (B, 2) in [-1, 1] coordinates
    and the log of its spread (B,), the root mean square distance of the brightness from the centroid."""
    mass = (x.float().mean(1) + 1) / 2  # (B, H, W) in [0, 1]
    total = mass.sum((1, 2)).clamp_min(1e-3)  # (B,)
    h, w = x.shape[-2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=x.device)[:, None]  # (H, 1) pixel centres
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=x.device)[None, :]  # (1, W)
    cy, cx = (mass * ys).sum((1, 2)) / total, (mass * xs).sum((1, 2)) / total  # (B,) each
    var = (mass * ((ys - cy[:, None, None]) ** 2 + (xs - cx[:, None, None]) ** 2)).sum((1, 2)) / total
    return torch.stack([cx, cy], 1), 0.5 * var.clamp_min(1e-6).log()


def moment_gap(warped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far a batch of warped images (B, C, H, W) lies from where the target domain's batch puts its brightness:
    each image's centroid against the target batch's mean centroid, and the batch's mean log spread against the
    target batch's (so that the warp centres each image and scales the domain, not each image, to the target's
    size)."""
    centre, spread = brightness_moments(warped)
    with torch.no_grad():
        target_centre, target_spread = brightness_moments(target)
    return (centre - target_centre.mean(0)).abs().sum(1).mean() + (spread.mean() - target_spread.mean()).abs()


@dataclass(frozen=True)
class GridInputs:
    """The held-out images a run's sample grids translate: domain A's (N, C_A, H, W) and domain B's."""

    a: torch.Tensor
    b: torch.Tensor


def grid_inputs(cfg: RunConfig, data: UnpairedDataset, m: Models, device: torch.device) -> GridInputs:
    """The first GRID_IMAGES held-out images of each domain."""
    assert data.held_a is not None and data.held_b is not None
    return GridInputs(a=data.held_a[:GRID_IMAGES].to(device), b=data.held_b[:GRID_IMAGES].to(device))


@torch.no_grad()
def sample_grid(
    G: nn.Module, inputs: GridInputs, data: UnpairedDataset, *, autocast: Autocast
) -> tuple[Image.Image, torch.Tensor]:
    """Rows of A | A→B | A→B→A triples, then rows of B | B→A | B→A→B, GRID_TRIPLES_PER_ROW a row; and the
    translations (A→B, then B→A)."""
    z_a, z_b = None, None
    if G.enc is not None:  # each A image's own code for its cycle, fixed codes for the B→A translations
        z_a = G.enc(inputs.a)[0]  # (N, L)
        z_b = image_latents(len(inputs.b), G.latent_dim, seed=EVAL_LATENT_SEED).to(inputs.b.device)
    with eval_mode(G), autocast():
        ab = G.ab(inputs.a).float()  # (N, C_B, H, W)
        aba = _with_code(G.ba, ab, z_a).float()
        ba = _with_code(G.ba, inputs.b, z_b).float()  # (N, C_A, H, W)
        bab = G.ab(ba).float()
    c = max(inputs.a.shape[1], inputs.b.shape[1])
    rows = [[inputs.a.float(), ab, aba], [inputs.b.float(), ba, bab]]
    triples = torch.cat([torch.stack([_with_channels(x, c) for x in row], dim=1) for row in rows])  # (2N, 3, ...)
    image = grids.image_grid(triples.flatten(0, 1), nrow=3 * GRID_TRIPLES_PER_ROW)
    translations = torch.cat([ab, ba]) if ab.shape[1:] == ba.shape[1:] else ba
    return image, translations


def _with_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    """Images (N, C', H, W) shown with c channels: grey repeated into colour."""
    return x if x.shape[1] == c else x.expand(-1, c, -1, -1)


@dataclass
class Translations:
    """What the loop's evaluation draws from: calling it with n translates the first n held-out B images into A
    (`sample_fn(n) -> (translations, their labels or None)`); `cycles(n)` gives both directions and both cycles of
    the first n held-out images of each domain, for the evaluator's cycle and domain-B metrics. G in eval mode.
    With model.latent_dim, held-out B image i is translated with the code image_latents draws for it from
    `code_seed` (EVAL_LATENT_SEED, the same at every evaluation, unless another draw of codes is asked for), and
    A→B→A with each A image's code as the encoder reads it (its mean)."""

    G: nn.Module  # CycleGenerators, or its EMA copy
    data: UnpairedDataset
    device: torch.device
    autocast: Autocast
    code_seed: int = EVAL_LATENT_SEED

    def __call__(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.data.held_b is not None
        out = self._translate("ba", self.data.held_b[:n], self._codes(min(n, len(self.data.held_b))))
        labels = self.data.held_b_labels
        return out, labels[: len(out)] if labels is not None else None

    def cycles(self, n: int) -> dict[str, torch.Tensor]:
        """{"a", "ab", "aba", "b", "ba", "bab"}: the held-out images of each domain (n', C, H, W) on the CPU, their
        translations and their translations back."""
        assert self.data.held_a is not None and self.data.held_b is not None
        a, b = self.data.held_a[:n], self.data.held_b[:n]
        ab, ba = self._translate("ab", a), self._translate("ba", b, self._codes(len(b)))
        z_a = None
        if self.G.enc is not None:
            with torch.no_grad(), eval_mode(self.G):
                z_a = self.G.enc(a.to(self.device))[0].cpu()  # (n', L)
        return {
            "a": a.float().cpu(),
            "ab": ab,
            "aba": self._translate("ba", ab, z_a),
            "b": b.float().cpu(),
            "ba": ba,
            "bab": self._translate("ab", ba),
        }

    def _codes(self, n: int) -> torch.Tensor | None:
        """The latent codes (n, L) of the first n held-out B images' translations; None without model.latent_dim."""
        return image_latents(n, self.G.latent_dim, seed=self.code_seed) if self.G.enc is not None else None

    @torch.no_grad()
    def _translate(self, direction: str, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """G_AB or G_BA of images (N, C, H, W) (G_BA with latent codes z (N, L) when given), in batches:
        (N, C', H, W) float32 on the CPU."""
        G = getattr(self.G, direction)
        with eval_mode(self.G):
            outs = []
            for start in range(0, len(x), SAMPLE_BATCH):
                xb = x[start : start + SAMPLE_BATCH].to(self.device).contiguous(memory_format=torch.channels_last)
                zb = z[start : start + SAMPLE_BATCH].to(self.device) if z is not None else None
                with self.autocast():
                    outs.append(_with_code(G, xb, zb).float().cpu())
        return torch.cat(outs)


def sampler(G: nn.Module, cfg: RunConfig, m: Models, *, device: torch.device, autocast: Autocast) -> Translations:
    """The evaluation's sample_fn: G_BA's translations of the held-out B images (see `Translations`)."""
    return Translations(G=G, data=m.data, device=device, autocast=autocast)


def evaluator(data: UnpairedDataset, cfg: RunConfig, device: torch.device) -> Any:
    """The B→A translation metrics on the held-out B images (core.metrics.unpaired), in place of the noise
    family's."""
    from core.metrics.unpaired import UnpairedEvaluator

    return UnpairedEvaluator(data, n_samples=cfg.schedule.eval_samples, device=device)
