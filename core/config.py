"""The run configuration: one Pydantic model shared by the API (the body of POST /runs), the worker and
`ganforge train`.

A config is resolved in three layers, lowest first: the defaults of its dataset (each built-in dataset's
default is its recommended configuration), then a named preset, then what the user wrote. The resolved
config is what is stored with the run, written next to its artifacts and into every checkpoint, so that a
run can be reproduced from it alone. Unknown fields are rejected, so a typo is an error and not a silent
default.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.tabular.columns import training_rows

BUILTIN_DATASETS: dict[str, dict[str, Any]] = {
    # kind, channels, number of classes (0 = unlabeled), how many images (None: drawn, not stored), and what it is
    "ring8": {
        "kind": "points",
        "channels": 0,
        "num_classes": 0,
        "num_images": None,
        "description": "8 Gaussians on a ring: 2-D points, the mode-collapse benchmark",
    },
    "grid25": {
        "kind": "points",
        "channels": 0,
        "num_classes": 0,
        "num_images": None,
        "description": "25 Gaussians on a 5×5 grid: 2-D points, the mode-collapse benchmark",
    },
    "digits": {
        "kind": "images",
        "channels": 1,
        "num_classes": 10,
        "num_images": 1797,
        "description": "scikit-learn's 1,797 real 8×8 handwritten digits, 10 classes",
    },
    "stacked-digits": {
        "kind": "images",
        "channels": 3,
        "num_classes": 1000,
        "num_images": None,
        "description": "three digits stacked as the R, G and B channels: 1,000 classes",
    },
    # Tables (kind "table", trained by ctgan): rows, their class as the categorical column `target`.
    "breast-cancer": {
        "kind": "table",
        "channels": 0,
        "num_classes": 0,
        "num_images": 569,
        "description": "scikit-learn's breast cancer table: 569 rows, 30 measurements and the diagnosis",
    },
    "wine": {
        "kind": "table",
        "channels": 0,
        "num_classes": 0,
        "num_images": 178,
        "description": "scikit-learn's wine table: 178 rows, 13 measurements and the cultivar",
    },
    "mixed": {
        "kind": "table",
        "channels": 0,
        "num_classes": 0,
        "num_images": 5000,
        "description": "a mixed-type table made from a seed: 5,000 rows of categoricals, integers, a skewed and a "
        "zero-inflated continuous column, a boolean and a binary target",
    },
    "credit": {
        "kind": "table",
        "channels": 0,
        "num_classes": 0,
        "num_images": 5000,
        "description": "credit-card accounts made from a seed: 5,000 rows of categoricals, integers, income, a "
        "zero-inflated balance and a rare default target that depends on how they combine",
    },
    "digits-printed": {
        "kind": "images",
        "channels": 1,
        "num_classes": 10,
        "num_images": 1797,
        "pairing": "unpaired",  # two domains, A and B, with no pairs between them: unpaired translation (cyclegan)
        "description": "unpaired: handwritten digits (A) and printed digits drawn with Pillow's font (B)",
    },
    "digits-edges": {
        "kind": "images",
        "channels": 1,
        "num_classes": 10,
        "num_images": 1797,
        "pairing": "paired",  # each sample is an (input, target) pair: image-to-image translation (pix2pix)
        "description": "paired: the Sobel edges of each digit (input) and the digit (target), 20 % held out",
    },
    "photos": {
        "kind": "images",
        "channels": 3,
        "num_classes": 0,
        "num_images": None,
        "description": "random patches of scikit-learn's two sample photographs (china.jpg, flower.jpg) for "
        "super-resolution; the left 256 columns of each photo are held out for evaluation",
    },
}

# Uploaded datasets are referenced by their id (see POST /datasets): `ds_...` for images, `tbl_...` for tables, so
# that a config names its data's kind and resolves alone (on the API, the worker and from a checkpoint).
DATASET_ID_PATTERN = re.compile(r"^(ds|tbl|paired|unpaired)_[0-9a-f]{8,64}$")
TABLE_ID_PATTERN = re.compile(r"^tbl_[0-9a-f]{8,64}$")
# Uploaded translation datasets: `paired_...` (A/ and B/ folders, or side-by-side AB images) for pix2pix,
# `unpaired_...` (trainA/ and trainB/) for cyclegan (core/uploads.py).
UPLOADED_PAIRING_PATTERN = re.compile(r"^(paired|unpaired)_[0-9a-f]{8,64}$")
# The column types a table's columns can take (core/tabular/columns.py infers them).
ColumnKind = Literal["continuous", "discrete", "categorical", "boolean", "datetime"]


def uploaded_pairing(dataset: str) -> str | None:
    """The pairing ("paired" or "unpaired") of an uploaded translation dataset's id, else None."""
    match = UPLOADED_PAIRING_PATTERN.match(dataset)
    return match.group(1) if match else None


ARCH_IMAGE_SIZES: dict[str, tuple[int, ...]] = {
    "mlp": (),
    "dcgan": (16, 32, 64, 128),
    "resnet": (32, 64),
    "ctgan": (),
    "pix2pix": (32, 64, 128, 256),
    "cyclegan": (32, 64, 128, 256),
    "srgan": (32, 48, 64, 96, 128, 192, 256),
    "stylegan2": (16, 32, 64, 128, 256, 512, 1024),
    "biggan": (32, 64, 128),
}

# Architectures that translate an input image into an output image (trained on paired data) instead of sampling
# from latents: their runs make no generations from noise. srgan's input is the low-resolution image.
TRANSLATION_ARCHS = ("pix2pix", "cyclegan", "srgan")
# srgan's upsampling factors: one x2 sub-pixel stage each, and the smallest low-resolution input it trains on.
SR_SCALES = (2, 4, 8)
SR_MIN_INPUT = 8
PHOTO_TRAIN_SIDE = 384  # photos: the shorter side of each photograph's training region (427 x 384 px)
PHOTO_COPIES = (0.5, 0.6, 0.7, 0.8, 0.9)  # photos' default train.downscaled_copies
# The fields only srgan reads, by section: any other architecture refuses them set, and drops them as defaults.
SR_ONLY_FIELDS = {
    "model": ("scale", "bicubic_skip", "g_batchnorm"),
    "loss": (
        "content",
        "feature_net",
        "feature_weight",
        "gradient_weight",
        "energy_weight",
        "energy_window",
        "psnr_weighting",
        "relativistic",
    ),
    "train": (
        "pretrain_steps",
        "phase_schedule",
        "lr_g_adversarial",
        "flips",
        "channel_orders",
        "downscaled_copies",
        "interpolation",
        "interpolation_sharpness",
        "aside_columns",
        "adversarial_ema",
        "detail_blend",
        "detail_window",
    ),
}
# The fields only pix2pix reads, by section.
PIX2PIX_ONLY_FIELDS = {
    "model": ("d_sobel",),
    "train": ("ema_batchnorm",),
    "loss": (
        "adversarial_start",
        "adversarial_ramp",
        "edge_weight",
        "sharpness_weight",
        "sharpness_start",
        "sharpness_one_sided",
    ),
}
# The fields only cyclegan's warps (model.spatial_transform) read, by section.
WARP_FIELDS = {"model": ("warp_centred",), "loss": ("warp_moment_weight",), "train": ("warp_share", "lr_warp")}
# What each translation architecture trains on (BUILTIN_DATASETS' "pairing").
ARCH_PAIRING = {"pix2pix": "paired", "cyclegan": "unpaired"}
# cyclegan's loss.semantic_matching_decay default: the running class means' decay, per step a class is read in
SEMANTIC_MATCHING_DECAY = 0.98


def refuse_nul(value: Any) -> Any:
    """`value` as it is, or a ValueError where a string in it (at any depth, keys too) holds a NUL character: no
    name or setting needs one, and PostgreSQL's text and JSON columns, where a run's config is kept, cannot store it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a NUL character (\\u0000) is not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item)
    return value


class _Strict(BaseModel):
    # Every number of a run is finite: NaN or infinity (which a JSON body may carry) is a validation error, and no
    # string holds a NUL character.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)


class ModelConfig(_Strict):
    arch: Literal["mlp", "dcgan", "resnet", "biggan", "ctgan", "pix2pix", "cyclegan", "srgan", "stylegan2"] = Field(
        "dcgan",
        description=(
            "Network family: mlp for 2-D data, dcgan or resnet (SNGAN-style) for images, biggan (Brock et al. 2019: "
            "the residual networks with self-attention, hierarchical latents and a shared class embedding in G's "
            "conditional BatchNorms, spectral norm in G and D) for class-conditional images, pix2pix (a U-Net "
            "generator and a PatchGAN discriminator, Isola et al. 2017) for paired image-to-image translation, "
            "cyclegan (two ResNet generators and two PatchGANs, Zhu et al. 2017) for unpaired translation, srgan (an "
            "SRResNet "
            "generator and the strided-convolution discriminator of Ledig et al. 2017) for super-resolution of any "
            "image dataset, stylegan2 (the "
            "style-based generator and residual discriminator of Karras et al. 2020) for images, ctgan (Xu et al. "
            "2019) for table rows."
        ),
    )
    image_size: int = Field(32, description="Side of the square images in pixels (ignored for 2-D data).")
    z_dim: int = Field(100, ge=1, le=1024, description="Dimension of the generator's latent vector.")
    width: int = Field(64, ge=4, le=1024, description="Base channel count (conv nets) or hidden units (mlp).")
    g_width: int | None = Field(
        None, ge=4, le=1024, description="The generator's base width when it differs from D's; unset = width."
    )
    depth: int = Field(3, ge=1, le=8, description="Hidden layers of the mlp (conv nets ignore it).")
    conditional: bool = Field(False, description="Condition on class labels (needs a labeled dataset).")
    g_conditioning: Literal["concat", "cbn"] = Field(
        "cbn", description="How the generator sees the label: concatenated embedding, or conditional BatchNorm."
    )
    d_conditioning: Literal["projection", "acgan"] = Field(
        "projection", description="Conditional discriminator: projection (Miyato & Koyama) or an AC-GAN head."
    )
    clusters: int = Field(
        0,
        ge=0,
        le=4096,
        description=(
            "Cluster-conditioned training of an unconditional run: k-means on the real images (pixels, pooled to at "
            "most 16 px) splits them into this many clusters, whose ids condition G and D as class labels would "
            "(model.g_conditioning, model.d_conditioning), and G draws each sample's cluster from its latent at the "
            "real data's cluster frequencies, so callers still sample G(z). In the spirit of the self-conditioned "
            "GAN (Liu et al. 2020), which clusters D's features. 0 turns it off."
        ),
    )
    cluster_channels: bool = Field(
        False,
        description=(
            "Cluster each image channel on its own, into model.clusters clusters each, for data whose channels are "
            "independent pieces (stacked-digits: a digit in each of R, G and B): a sample's label is its channels' "
            "clusters together, G and D embed it as a sum of one code per channel, and G draws every channel's "
            "cluster independently at that channel's frequencies, so that every combination is drawn."
        ),
    )
    class_clusters: int = Field(
        0,
        ge=0,
        le=256,
        description=(
            "stylegan2, conditional runs: k-means splits each class's images into this many clusters (as "
            "model.clusters splits an unlabeled dataset), G and D are conditioned on the (class, cluster) pair, and "
            "G, given a class, draws the cluster from its latent at that class's cluster frequencies, so callers "
            "still pass only the class. Each class's variety then has codes of its own instead of one, which keeps "
            "the generator from collapsing within a class on small data. 0 turns it off. Left out of a POST /runs "
            "on an uploaded labelled dataset, it is chosen from the smallest class: one cluster per 17 of its "
            "images, at most 10, none below 2 (default_class_clusters)."
        ),
    )
    spectral_norm: bool = Field(False, description="Spectral normalisation on every discriminator layer.")
    minibatch_std: bool = Field(False, description="Minibatch standard deviation feature in the discriminator.")
    pack: int = Field(
        1,
        ge=1,
        le=16,
        description=(
            "PacGAN packing: the discriminator judges this many samples jointly (ctgan's tables: 10, and 5 on a "
            "table of 1,000 training rows or more while model.gumbel_input is left null)."
        ),
    )
    target_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "ctgan: the share of training-by-sampling conditions put on the table's target column (when it is "
            "categorical or boolean; the rest are drawn over every categorical column, uniformly), and then rows "
            "are sampled conditioned on the target at its frequency in the data, so that they follow the target's "
            "mix and G's rows for each target value. null: the target is one categorical column among the others."
        ),
    )
    gumbel_input: bool | None = Field(
        None,
        description=(
            "ctgan: the generator also reads the Gumbel noise that picks each row's categories and the modes of its "
            "numeric columns, so that the rest of the row can follow what the noise picks (a zero balance and no late "
            "payments, a default and a high balance); without it each of those draws is independent of the others "
            "given the latent and the conditional vector. null: decided by the table's size once its rows are known "
            "(a built-in's at once, an uploaded table's when the run is created): on for a table of 1,000 training "
            "rows or more (whose batch is the full 500), where train.epochs left at 375 also becomes 450 and "
            "model.pack left at 10 becomes 5; off for a smaller one. The stored config holds the decision."
        ),
    )
    mapping_layers: int = Field(
        8, ge=1, le=16, description="stylegan2: fully connected layers of the mapping network from z to w."
    )
    w_dim: int | None = Field(
        None, ge=8, le=1024, description="stylegan2: dimension of the intermediate latent w; unset = z_dim."
    )
    mapping_lr_mul: float = Field(
        0.01,
        gt=0,
        le=1,
        description=(
            "stylegan2: the mapping network's learning-rate multiplier (the paper's 0.01, set for hundreds of "
            "thousands of steps). On digits 0.1 lowered recall, and 0.001 lowered fid_digits on the three seeds "
            "measured (batch 16, 26,000 steps), so digits' default takes 0.001 (docs/benchmarks.md)."
        ),
    )
    mixing_prob: float = Field(
        0.9,
        ge=0,
        le=1,
        description=(
            "stylegan2: style-mixing regularization: the fraction of training fakes made from two latents, the "
            "second one's w taking over the layers after a random cutoff. 0 turns it off."
        ),
    )
    res_blocks: int | None = Field(
        None,
        ge=1,
        le=16,
        description=(
            "cyclegan: residual blocks of each ResNet generator; unset = the paper's 9 at 256 px, 6 below. srgan: "
            "residual blocks of the SRResNet generator; unset = the recommended 8 (the paper has 16)."
        ),
    )
    spatial_transform: bool = Field(
        False,
        description=(
            "cyclegan: a spatial transformer (Jaderberg et al. 2015) in front of each generator: a small "
            "localisation net predicts a warp of the input (a scale and a shift), starting as the "
            "identity (model.warp_centred: as a centring of the content) and learnt through the generators' losses, "
            "so that a translation can resize and move its "
            "content (the identity terms then compare each generator without its warp)."
        ),
    )
    warp_centred: bool = Field(
        False,
        description=(
            "cyclegan with model.spatial_transform: each warp's shift is measured from the centroid of its input's "
            "content (the absolute difference from the image's frame colour) instead of from the frame's centre, so "
            "a warp starts by centring the content (at zoom 1) and learns corrections to that."
        ),
    )
    residual_generator: bool = Field(
        False,
        description=(
            "cyclegan: each ResNet generator outputs its input plus what it computes, clipped to [-1, 1] (in place "
            "of a tanh), its last layer starting at zero, so that it starts as the identity and learns a "
            "correction; needs domains with the same channels."
        ),
    )
    a_render_size: int | None = Field(
        None,
        ge=8,
        le=256,
        description=(
            "cyclegan: the side at which G_BA draws domain A: its input (after its warp) is average-pooled to this "
            "size, its ResNet runs there, and its output is upsampled bilinearly to model.image_size, so that the "
            "translations are smooth upscales of small images, as scikit-learn's 8x8 digits at 32 px are (8 on "
            "digits-printed). A multiple of 4 that divides model.image_size; unset = image_size (no rendering)."
        ),
    )
    class_projection: bool = Field(
        False,
        description=(
            "cyclegan with loss.semantic_weight: D_A is a projection discriminator (Miyato & Koyama 2018) "
            "conditioned on the class: real A images on their labels, G_BA's translations on the class the "
            "semantic term anchors them to (with loss.semantic_anchor clusters their input's cluster's class, else "
            "the class the semantic term's classifier reads in them), so that each class's translations are judged "
            "against that class's real images (its style and spread), not only against the mixture. Domain B's "
            "labels are never read."
        ),
    )
    latent_dim: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "cyclegan: the size of a latent code z ~ N(0, I) that G_BA also reads (its residual blocks modulated by "
            "z, FiLM), so that one domain-B image has many translations into A (augmented / multimodal CycleGAN: "
            "Almahairi et al. 2018, Huang et al. 2018). An encoder reads each A image's code for the A→B→A cycle "
            "(loss.latent_kl_weight keeps its codes near the prior) and the code back from each translation "
            "(loss.latent_regression_weight, so that z is not ignored). Evaluations and translation jobs draw one "
            "code per image from a fixed seed, so they stay deterministic. 0 = no code: one translation per image "
            "(digits-printed's default is 8)."
        ),
    )
    scale: int = Field(
        4,
        ge=1,
        le=64,
        description=(
            "srgan: the upsampling factor, 2, 4 or 8 (one x2 sub-pixel stage each). The high-resolution image is "
            "model.image_size px; its low-resolution input, image_size / scale px, is made from it by Pillow's "
            "bicubic downscaling."
        ),
    )
    bicubic_skip: bool = Field(
        False,
        description=(
            "srgan: add the generator's output to the bicubic upsampling of its input (the global residual of VDSR, "
            "Kim et al. 2016; not in Ledig et al.'s SRResNet), so that it learns only what bicubic misses."
        ),
    )
    g_batchnorm: bool = Field(
        True,
        description=(
            "srgan: BatchNorm after the convolutions of the SRResNet's residual blocks and the one after them (Ledig "
            "et al.); false removes it, as EDSR (Lim et al. 2017) and ESRGAN do, the convolutions then with biases."
        ),
    )
    patch_layers: int | None = Field(
        None,
        ge=1,
        le=6,
        description=(
            "Stride-2 convolutions of the pix2pix PatchGAN discriminator, which set the patch each of its outputs "
            "judges: 1, 2, 3, 4 give 16, 34, 70, 142 px patches. Unset scales the paper's 70 px patch at 256 px to "
            "the image size: 3 at 256 px, 2 at 128 px, 1 below."
        ),
    )
    d_sobel: bool = Field(
        False,
        description=(
            "pix2pix: the PatchGAN also sees the Sobel gradient magnitude of the image it judges (the output or the "
            "target, a quarter of it: a full-range step reads about 2), one more channel per image channel beside "
            "the input and the image, so that it judges how steep the edges are as directly as the sharpness "
            "metric measures them."
        ),
    )
    d_depth: int = Field(
        1,
        ge=1,
        le=4,
        description=(
            "Convolutions per resolution in the dcgan discriminator: 1 is DCGAN's (one 4x4 stride-2 convolution); "
            "each more adds a 3x3 stride-1 convolution after it, as SNGAN's standard CNN has (Miyato et al. 2018)."
        ),
    )

    shared_dim: int = Field(
        128,
        ge=1,
        le=1024,
        description=(
            "biggan: width of the class embedding shared by every conditional BatchNorm of G (128 in the paper); "
            "each block's BatchNorms read it concatenated with that block's chunk of z."
        ),
    )
    attention_resolution: int | None = Field(
        16,
        description=(
            "biggan: the side in px of the feature maps where G and D each have a self-attention block (SAGAN): "
            "8 up to half the image size; null leaves attention out."
        ),
    )

    def label_classes(self, dataset_classes: int) -> int:
        """How many label ids G and D are conditioned on: the clusters, the dataset's classes (times the clusters in
        each, with class_clusters), or 0 (unconditional)."""
        return self.clusters or (dataset_classes * (self.class_clusters or 1) if self.conditional else 0)

    def label_groups(self, channels: int) -> int:
        """How many parts a label has: one cluster per channel (cluster_channels), else 1."""
        return max(channels, 1) if self.clusters and self.cluster_channels else 1


class LossConfig(_Strict):
    kind: Literal["minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge"] = Field(
        "nonsaturating", description="The adversarial objective."
    )
    gp_weight: float = Field(10.0, ge=0, description="Gradient-penalty weight (wgan-gp).")
    r1_gamma: float = Field(
        0.0,
        ge=0,
        description=(
            "R1 penalty weight γ on real data (the penalty is γ/2 · |∇D(x)|²); 0 turns it off. stylegan2 runs that "
            "leave it unset take StyleGAN2-ADA's heuristic 0.0002 · image_size² / batch_size, except on digits "
            "(unconditional), whose default is 0.1."
        ),
    )
    r1_every: int = Field(
        16, ge=1, le=1000, description="stylegan2: lazy R1: apply it every this many steps, scaled by the interval."
    )
    pl_weight: float = Field(
        2.0, ge=0, description="stylegan2: path-length regularization weight (Karras et al. 2020); 0 turns it off."
    )
    pl_every: int = Field(
        4, ge=1, le=1000, description="stylegan2: lazy path-length regularization every this many steps."
    )
    clip: float = Field(0.01, gt=0, description="Weight-clipping bound of the critic (wgan).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="One-sided label smoothing: real target 1 - this.")
    instance_noise: float = Field(
        0.0, ge=0, description="Std of Gaussian noise added to D's inputs, annealed linearly to 0 over the run."
    )
    feature_matching: float = Field(
        0.0,
        ge=0,
        description=(
            "Weight of the feature-matching term in G's loss: the squared distance of the mean features of real and "
            "fake batches in D's last hidden layer (Salimans et al. 2016); pix2pix: the L1 distance of D's hidden "
            "activations on (input, output) to those on (input, target), averaged over its layers (pix2pixHD's)."
        ),
    )
    acgan_weight: float = Field(1.0, ge=0, description="Weight of the auxiliary classifier loss (AC-GAN).")
    mode_seeking: float = Field(
        0.0,
        ge=0,
        description=(
            "Weight of the mode-seeking term (MSGAN, Mao et al. 2019): the batch's fakes come in pairs that share a "
            "label or cluster, and G's loss adds weight / (mean |G(z1) - G(z2)| / mean |z1 - z2|), so that G does "
            "not ignore z within a class. A cyclegan with model.latent_dim pairs each step's B→A translations with "
            "those of the same inputs under a second code; its code starts ignored (the modulation starts at zero), "
            "so the term starts near 1e5 there, and on digits-printed weights 1 and 0.01 both lowered label "
            "preservation. 0 turns it off."
        ),
    )
    diversity: float = Field(
        0.0,
        ge=0,
        description=(
            "cyclegan with model.latent_dim, and stylegan2: weight λ of a bounded diversity term (Yang et al. 2019, "
            "'Diversity-Sensitive Conditional GANs'): each step's B→A translations are made again under a second "
            "code, and G's loss adds -λ · min(ratio, loss.diversity_cap), the ratio being loss.mode_seeking's (mean "
            "|G_BA(b, z1) - G_BA(b, z2)| / mean |z1 - z2|). Unlike loss.mode_seeking's inverse, its pull is at most "
            "λ while the code is still ignored, and none once the ratio reaches the cap. Costs one more G_BA pass a "
            "step. On digits-printed with model.latent_dim 8, λ 1 lowered fd_digits against the code alone on seeds "
            "1-3, not on seed 0 and level on seed 5 (docs/benchmarks.md); digits-printed's default is 1 with the "
            "code, the semantic anchor and the class-conditional matching together. stylegan2: the second half of "
            "G's batch takes the first half's labels or clusters, and the ratio is mean |G(z1, c) - G(z2, c)| / mean "
            "|z1 - z2| over those pairs (in Z, the latent G is fed), at no extra pass; 1 by default on digits, where "
            "it lowered the eight-draw fid_digits on three seeds by raising recall. 0 turns it off."
        ),
    )
    diversity_cap: float = Field(
        0.2,
        gt=0,
        description=(
            "The ratio τ above which loss.diversity stops pushing two codes' translations (cyclegan) or two latents' "
            "samples of one cluster (stylegan2) apart (images in [-1, 1], codes from N(0, I)). 0.2 is about 3× the "
            "ratio a digits-printed run with model.latent_dim 8 ends at without the term (0.07)."
        ),
    )
    cycle_weight: float = Field(
        10.0, ge=0, description="cyclegan: weight λ of the cycle-consistency L1 terms |G_BA(G_AB(a)) - a| and back."
    )
    identity_weight: float = Field(
        0.5,
        ge=0,
        description=(
            "cyclegan: weight of the identity L1 terms |G_AB(b) - b| and |G_BA(a) - a|, as a fraction of "
            "loss.cycle_weight (0.5, as Zhu et al.'s code); needs domains with the same channels. 0 turns it off."
        ),
    )
    warp_moment_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "cyclegan with model.spatial_transform: weight of a term that trains each warp to put the brightness of "
            "its images where the other domain's lies: each warped image's brightness centroid against the other "
            "domain's batch mean, and the batch's mean log spread of brightness about it against the other "
            "domain's (no labels). 0 leaves the warps to the adversarial and cycle terms."
        ),
    )
    cycle_noise: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "cyclegan: standard deviation of Gaussian noise added to each translation before it is translated back "
            "in the cycle terms (Bashkirova et al. 2019), so that the cycle cannot be kept by faint detail hidden in "
            "a translation (Chu et al. 2017) but only by what it visibly shows. 0 turns it off."
        ),
    )
    self_regularization_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "cyclegan: weight of the L1 terms between each generator's output and its input (with "
            "model.spatial_transform: the warped input), Shrivastava et al. 2017's self-regularization, which keeps a "
            "translation close to what it translates. 0 turns it off."
        ),
    )
    info_max_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "cyclegan on data whose domain A has labels (digits-printed): weight of an information-maximization term "
            "(Liang et al. 2020) on G_BA's translations, read by a small classifier the run trains alongside on "
            "domain A's training images and labels (an MLP on the images average-pooled to 8x8): each translation's "
            "prediction entropy (read as one class) minus the entropy of the batch's mean prediction (every class "
            "as often). Domain B's labels are never read. 0 turns it off."
        ),
    )
    semantic_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "cyclegan on data whose domain A has labels (digits-printed): weight of a semantic-consistency term "
            "(CyCADA, Hoffman et al. 2018) on G_BA's translations. Before the first step the run trains a "
            "convolutional classifier of domain A on A's training images and labels (shifted, turned and scaled "
            "a little) and freezes it; each translation is then asked (cross-entropy) to be read by it as the "
            "class it reads in the translation's input (with model.spatial_transform: the warped input), where it "
            "reads that input with a confidence of 0.9 or more. Domain B's labels are never read. 0 turns it off."
        ),
    )
    semantic_matching: float = Field(
        0.0,
        ge=0,
        description=(
            "cyclegan with loss.semantic_weight: weight of a class-conditional feature-matching term in the frozen "
            "semantic classifier's hidden layer. The run keeps, for each class, the mean hidden features of A's "
            "training images of that class and a running mean (decay 0.98) of those of the B→A translations the "
            "classifier reads as that class with a confidence of 0.9 or more; each such translation's features are "
            "pushed along the gap between the two (the running mean minus the real mean, held fixed), which moves "
            "a class's translations as a whole towards that class's real images without drawing them to one point. "
            "Domain B's labels are never read. On digits-printed the default is 0.1 with loss.semantic_matching_push "
            "unit (with the gap push, at 1 its gradient is about 60 times the other terms' and the latent code's "
            "spread collapses; docs/benchmarks.md). 0 turns it off."
        ),
    )
    semantic_matching_push: Literal["gap", "unit"] = Field(
        "gap",
        description=(
            "cyclegan with loss.semantic_matching: the size of the push on each translation's features. gap: its "
            "class's gap itself (the gradient of half the squared distance between the class's running mean and "
            "its real mean), so the push fades as the class nears its real images and grows with the gap; unit: "
            "the gap's direction at unit length (the gradient of the distance itself), the same size however far "
            "the class lies, so that loss.semantic_matching sets the push directly and a class keeps moving until "
            "it reaches its real mean."
        ),
    )
    semantic_matching_moments: Literal["mean", "std"] = Field(
        "mean",
        description=(
            "cyclegan with loss.semantic_matching: what of each class's translations it matches to the class's real "
            "images in the semantic classifier's hidden layer. mean: the class mean alone; std: the mean and, unit "
            "by unit, the standard deviation. With std the run also keeps each class's per-unit standard deviation "
            "over A's training images and a running mean (decay 0.98) of its translations' squared features, and "
            "each translation is also pushed away from its class's running mean along the units where the class's "
            "translations vary less than its real images, and towards it where they vary more (the gap of standard "
            "deviations, at unit length with loss.semantic_matching_push unit, times the translation's deviation in "
            "units of the real class's spread), at loss.semantic_matching's weight: so that each class's "
            "translations spread as its real images do, not only lie where they do. digits-printed's default is std "
            "(it lowered fd_digits on seeds 0, 1, 3 and 5 and left seed 2 level; docs/benchmarks.md)."
        ),
    )
    semantic_matching_mean: float | None = Field(
        None,
        ge=0,
        description=(
            "cyclegan with loss.semantic_matching and loss.semantic_matching_moments std: a weight of its own for "
            "the mean push (each class's translations moved towards the class's real mean), the standard-deviation "
            "push keeping loss.semantic_matching's; null: loss.semantic_matching's for both. With moments mean the "
            "mean push is the term's only one, weighed by loss.semantic_matching itself. null on digits-printed: "
            "0.05, 0.2 and 0.3 each read higher fd_digits than the shared 0.1 on seeds 0 and 1 (docs/benchmarks.md)."
        ),
    )
    semantic_matching_layers: Literal["hidden", "conv"] = Field(
        "hidden",
        description=(
            "cyclegan with loss.semantic_matching: where in the semantic classifier it matches each class's "
            "translations to the class's real images. hidden: its hidden layer; conv: also each of its three "
            "convolutional blocks' outputs averaged over space, each block's features scaled so that their real "
            "per-unit standard deviations are of the hidden layer's size, the blocks' pushes averaged and added to "
            "the hidden layer's (at loss.semantic_matching's weights), so that the directions of the blocks the "
            "hidden layer does not pass on are matched as well. hidden on digits-printed, where conv "
            "measured within a run's scatter (docs/benchmarks.md)."
        ),
    )
    semantic_matching_decay: float = Field(
        SEMANTIC_MATCHING_DECAY,
        gt=0,
        lt=1,
        description=(
            "cyclegan with loss.semantic_matching: the decay of the running means (and squares) of each class's "
            "translations' features, per step the class is read in; nearer 1 is a longer memory (less noise, more "
            "lag behind the generator). 0.98 on digits-printed, where 0.995 measured "
            "mixed (docs/benchmarks.md)."
        ),
    )
    semantic_classifiers: int = Field(
        1,
        ge=1,
        le=4,
        description=(
            "cyclegan with loss.semantic_weight: how many semantic classifiers of domain A the run trains before "
            "its first step (the same layout, classifier k from the run's seed + 1000 k, so each from its own "
            "initial weights and batch order). Their mean reading of each (warped) input is the class it is "
            "anchored to; the semantic term and loss.semantic_matching's pushes (each classifier with its own class "
            "statistics) are averaged over them, so that a translation is matched in features less particular to "
            "one network. Domain B's labels are never read. 1 on digits-printed, where 3 "
            "measured within a run's scatter (docs/benchmarks.md)."
        ),
    )
    semantic_anchor: Literal["reading", "clusters"] = Field(
        "reading",
        description=(
            "cyclegan with loss.semantic_weight: the class each B→A translation is anchored to. reading: the class the "
            "semantic classifier reads in the translation's (warped) input, where it reads it with a confidence of "
            "0.9 or more (and for loss.semantic_matching the class it reads in the translation itself, likewise); "
            "clusters: the class of the input's cluster, for every translation in both terms. Before the first step "
            "domain B's training images are clustered by k-means into as many clusters as domain A has classes (on "
            "their pixels, each image centred on its brightness centroid and scaled to domain A's mean brightness "
            "spread, so that the clusters follow the glyphs rather than their offset and size), and each step the "
            "clusters are matched one-to-one to A's classes (Hungarian algorithm) on the classifier's mean class "
            "probabilities over each cluster's warped inputs so far: a class the classifier never reads with "
            "confidence still gets the cluster, of those left, that reads most like it. Domain B's labels are never "
            "read. digits-printed's default is clusters."
        ),
    )
    latent_regression_weight: float = Field(
        1.0,
        ge=0,
        description=(
            "cyclegan with model.latent_dim: weight of the L1 distance between the code z each B→A translation was "
            "drawn with and the code the encoder reads back from it (BicycleGAN's latent regression, Zhu et al. "
            "2017b; updates the generator only), so that different codes give different translations."
        ),
    )
    latent_kl_weight: float = Field(
        0.01,
        ge=0,
        description=(
            "cyclegan with model.latent_dim: weight of the KL divergence of the encoder's Gaussian over each A "
            "image's code from N(0, I) (as BicycleGAN's 0.01), so that the codes the A→B→A cycle reconstructs from "
            "lie where evaluations and translation jobs draw theirs."
        ),
    )
    adversarial_weight: float = Field(
        1.0,
        ge=0,
        description=(
            "pix2pix, cyclegan and srgan: weight of the adversarial terms in the generators' loss (srgan: 1e-3, as "
            "Ledig et al.); 0 trains them on their L1 (srgan: content) terms alone (pix2pix's L1-only ablation), "
            "while the discriminators still train and report."
        ),
    )
    adversarial_start: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "pix2pix: the share of the run (of train.steps) the generator trains on its L1 term alone before the "
            "adversarial term comes in, as SRGAN pretrains on its content loss; the discriminator trains "
            "throughout. 0 adds the term from the first step."
        ),
    )
    adversarial_ramp: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "pix2pix: the share of the run over which the adversarial term's weight then rises linearly from 0 to "
            "loss.adversarial_weight, after loss.adversarial_start. 0 brings it in at once."
        ),
    )
    edge_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "pix2pix: weight of the mean absolute difference of the Sobel derivatives (d/dx, d/dy of every channel) "
            "of the output and the target in the generator's loss, beside loss.l1_weight's term (srgan's "
            "loss.gradient_weight term): a pixel-aligned term that asks for edges as steep as the target's. 0 = off."
        ),
    )
    sharpness_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "pix2pix: weight of the batch's sharpness gap in the generator's loss: the squared difference from 1 "
            "of the outputs' mean Sobel gradient magnitude over the targets' (the ratio the `sharpness` metric "
            "reports on the held-out pairs). The outputs are a second pass of the batch through G in eval mode "
            "(no dropout, BatchNorm on its running statistics), the generator as it is evaluated, at the cost of "
            "that pass (about half a step more). It asks for edges as steep as the target's on the whole, not in "
            "the same pixels, where L1 settles for a slightly blurred edge. 0 = off."
        ),
    )
    sharpness_start: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "pix2pix: the share of the run (of train.steps) before loss.sharpness_weight's term comes in, so that "
            "G settles on its L1 and adversarial terms first and the term corrects the sharpness over the rest; "
            "its second pass through G is skipped before then. 0 adds the term from the first step."
        ),
    )
    sharpness_one_sided: bool = Field(
        False,
        description=(
            "pix2pix with loss.sharpness_weight: take the term on batches blurrier than their targets only (the "
            "ratio below 1; the gap clamped at 0 above it), so that it raises the outputs' sharpness and never "
            "pulls a batch that came out sharper back towards 1. A run with sharpness_weight 0 drops it where it "
            "comes from a default; chosen there, it is refused."
        ),
    )
    l1_weight: float = Field(
        100.0,
        ge=0,
        description=(
            "pix2pix: weight of the L1 distance between the output and the target in the generator's loss, beside "
            "the adversarial term (100 in Isola et al. 2017). Families without targets ignore it."
        ),
    )
    content: Literal["mse", "l1"] = Field(
        "mse",
        description=(
            "srgan: the pixel content loss between the super-resolved and the high-resolution image: mse (Ledig et "
            "al.'s SRResNet) or l1. The pretraining phase (train.pretrain_steps) trains on it alone."
        ),
    )
    feature_net: Literal["discriminator", "digits", "vgg19", "none"] = Field(
        "discriminator",
        description=(
            "srgan: the network whose feature maps the feature (perceptual) loss compares, beside the pixel loss: "
            "discriminator (the run's own discriminator's convolutional features, no download), digits (the "
            "shipped digits classifier's second convolutional block, for 1-channel data), vgg19 (the paper's "
            "VGG54: VGG-19's fourth convolution of the fifth block, read from torchvision's vgg19-dcbb9e9d.pth at "
            "the path GANFORGE_VGG19_WEIGHTS names; nothing is downloaded), or none."
        ),
    )
    feature_weight: float = Field(
        0.01,
        ge=0,
        description=(
            "srgan: weight of the feature loss (the mean squared difference of the feature maps of the "
            "super-resolved and the high-resolution image) in the generator's loss after pretraining."
        ),
    )
    gradient_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "srgan: weight of the gradient loss in the generator's loss, in both phases: the mean absolute "
            "difference of the Sobel derivatives (d/dx, d/dy of every channel) of the super-resolved and the "
            "high-resolution image. A pixel-aligned term that asks for edges as steep as the real ones. 0 = off."
        ),
    )
    energy_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "srgan: weight of the gradient-energy loss in the generator's loss after pretraining: the mean squared "
            "difference of the local means (over 8 x 8 px windows) of the Sobel gradient magnitude of the "
            "super-resolved and the high-resolution image. It asks for as much detail as the real image has in "
            "each window, not for the same pixels, so it sharpens where the pixel loss averages detail away. 0 = off."
        ),
    )
    energy_window: int = Field(
        8,
        ge=2,
        le=64,
        description="srgan: the side in px of the windows over which loss.energy_weight's term compares detail.",
    )
    psnr_weighting: bool = Field(
        False,
        description=(
            "srgan: after pretraining, weigh each image's pixel and gradient terms by 1 / its own mean squared "
            "error (normalised to a mean of 1 over the batch, not differentiated), as the gradient of the mean "
            "per-image PSNR weighs them: nearly flat images weigh most, the most detailed least. Off by default: "
            "on photos it made the adversarial phase harsher without a better trade of PSNR for sharpness."
        ),
    )
    relativistic: bool = Field(
        False,
        description=(
            "srgan: the relativistic average discriminator of ESRGAN (Wang et al. 2018; Jolicoeur-Martineau 2018) "
            "in place of the standard one: D learns to rate each real image more real than the batch's fakes on "
            "average and each fake less real than the reals, and G the reverse, both with the logistic loss (so "
            "loss.kind must be nonsaturating). Off by default: on photos its blends traded PSNR for sharpness worse "
            "(docs/benchmarks.md)."
        ),
    )
    top_k: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "Top-k training (Sinha et al. 2020): the generator's adversarial loss uses only this fraction of each "
            "fake batch, the samples D rates most real; annealed linearly from the whole batch at step 0 to this "
            "fraction at mid-run. 1 turns it off."
        ),
    )
    ortho_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "BigGAN's orthogonal regularization of G (Brock et al. 2019): β Σ ||WᵀW ⊙ (1 - I)||²_F over the weights "
            "W of G's convolutions and linear layers (each as a matrix of filters), added to G's loss; it pushes "
            "filters apart without fixing their norms, which makes G amenable to the truncation trick. biggan runs "
            "take 1e-4, the paper's β; mlp, dcgan and resnet runs may set it too. 0 turns it off."
        ),
    )


class ProgressiveConfig(_Strict):
    """Progressive growing (Karras et al. 2018): train at start_resolution for stable_steps, then for each doubling
    fade the new resolution in over fade_steps and train it stable for stable_steps; the full size then stays."""

    start_resolution: int = Field(
        8, ge=4, le=512, description="The side, in px, that G and D start at: a power of 2 below model.image_size."
    )
    fade_steps: int = Field(
        500, ge=1, le=10_000_000, description="Steps over which each new resolution's weight α rises from 0 to 1."
    )
    stable_steps: int = Field(
        500, ge=0, le=10_000_000, description="Steps at each resolution below the full size after its fade-in."
    )

    def growing_steps(self, image_size: int) -> int:
        """The steps until the full size has faded in: the start's stable steps, then a fade and a stable period
        per doubling but the last, then the last fade."""
        return int(math.log2(image_size // self.start_resolution)) * (self.fade_steps + self.stable_steps)

    def phase(self, step: int, image_size: int) -> tuple[int, float]:
        """(resolution, α) at a 1-based step: the side G and D run at and the weight of its newest block, which
        rises from 1 / fade_steps at the fade's first step to 1 at its last. A function of the step alone, so that
        a resumed run grows as an unbroken one."""
        done = step - 1 - self.stable_steps  # the steps since the first fade began
        if done < 0:
            return self.start_resolution, 1.0
        doubling, into = divmod(done, self.fade_steps + self.stable_steps)
        resolution = self.start_resolution << (doubling + 1)
        if resolution > image_size:
            return image_size, 1.0
        return resolution, min(1.0, (into + 1) / self.fade_steps)


class TrainConfig(_Strict):
    steps: int = Field(3000, ge=1, le=10_000_000, description="Generator steps to train.")
    batch_size: int = Field(64, ge=1, le=4096, description="Samples per batch.")
    lr_g: float = Field(2e-4, gt=0, le=1, description="Generator learning rate.")
    lr_d: float = Field(2e-4, gt=0, le=1, description="Discriminator learning rate (TTUR when it differs).")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2.")
    n_critic: int = Field(1, ge=1, le=20, description="Discriminator steps per generator step.")
    lr_schedule: Literal["constant", "linear", "hold-then-linear"] = Field(
        "constant",
        description=(
            "linear decays every rate to 0 over the run; hold-then-linear keeps them for the first half and then "
            "decays them linearly to 0, as CycleGAN trains."
        ),
    )
    lr_rampdown: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Over this last share of the run every learning rate falls along half a cosine to 0 (e.g. 0.2: the last "
            "fifth), on top of train.lr_schedule; it depends on the step alone, so a resumed run continues it. "
            "0 turns it off."
        ),
    )
    pool_size: int = Field(
        50,
        ge=0,
        le=1000,
        description=(
            "cyclegan: the history of generated images each discriminator also judges (Shrivastava et al. 2017): "
            "half of its fakes come from the last this many. 0 turns it off."
        ),
    )
    warp_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "cyclegan with model.spatial_transform: for this share of train.steps at the start each generator is its "
            "warp alone (the adversarial, cycle and moment terms train the warps; the identity terms train the "
            "generators behind them), so the geometry is learnt before the generators change the content. 0 turns "
            "it off."
        ),
    )
    lr_warp: float = Field(
        2e-3,
        gt=0,
        le=1,
        description=(
            "cyclegan with model.spatial_transform: Adam's rate for the warps' localisation nets (their own "
            "optimizer, scheduled as the others): a warp has to travel far from the identity (a digit enlarged 2x "
            "is a log scale of 0.7), which the generators' rate would take thousands of steps to do."
        ),
    )
    pretrain_steps: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description=(
            "srgan: the first this many of train.steps train the generator on the pixel content loss alone (the "
            "SRResNet that Ledig et al. initialise SRGAN from); the discriminator, the feature and the adversarial "
            "terms start after them."
        ),
    )
    phase_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description=(
            "srgan: cosine lowers G's and D's learning rates along half a cosine to 0 within each phase (the "
            "pretraining, then the adversarial phase), starting again at the phase boundary; on top of "
            "train.lr_schedule."
        ),
    )
    lr_g_adversarial: float | None = Field(
        None, gt=0, le=1, description="srgan: G's learning rate in the adversarial phase; unset = train.lr_g."
    )
    flips: bool = Field(
        False,
        description=(
            "srgan: mirror each high-resolution training image left-right, top-bottom and across its diagonal, each "
            "with probability 1/2 (one of the square's eight symmetries, as EDSR augments), before its "
            "low-resolution input is made."
        ),
    )
    channel_orders: bool = Field(
        False,
        description=(
            "srgan: put each high-resolution training image's channels in a random order (each of the C! orders "
            "equally likely) before its low-resolution input is made: colours the training images lack, for a "
            "generator that treats the channels alike. One-channel images are left as they are. Off by default: on "
            "photos the pixel phase gained less with it (docs/benchmarks.md)."
        ),
    )
    downscaled_copies: list[float] = Field(
        [],
        max_length=8,
        description=(
            "srgan on photos: also cut training patches from copies of the photographs' training region downscaled "
            "by each of these factors (each above 0 and below 1, e.g. [0.5, 0.7, 0.9]; Pillow's bicubic), in "
            "proportion to each copy's area: the same scenes with finer detail per pixel, as more training content. "
            "Empty = the native region alone. photos defaults to [0.5, 0.6, 0.7, 0.8, 0.9], less the factors that "
            "leave no patch of the run's size: they lift the pretrained generator by about 0.1 dB (docs/benchmarks.md)."
        ),
    )
    interpolation: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "srgan: ESRGAN's network interpolation: after the last step, G's weights become (1 - this) times the "
            "generator the pretraining ended with plus this times the adversarially trained one (0: the "
            "pretrained generator, 1: the GAN's); needs 0 < pretrain_steps < steps. Unset = off."
        ),
    )
    interpolation_sharpness: float | None = Field(
        None,
        gt=0,
        le=2,
        description=(
            "srgan with train.interpolation: choose the blend's weight after the last step instead, as the smallest "
            "whose outputs on 256 of the run's training images (with train.aside_columns, on 256 patches of the "
            "columns it keeps out of training) reach this sharpness ratio (their mean Sobel magnitude over the "
            "high-resolution images', as the metric sharpness): the blend of best PSNR at that sharpness, whatever "
            "this run's adversarial generator came to (1 when it falls short). The weight chosen is the stat "
            "interpolation. Unset = the fixed weight train.interpolation."
        ),
    )
    aside_columns: int | None = Field(
        None,
        ge=1,
        description=(
            "srgan on photos: keep this many columns of each photograph's training region (the ones next to the "
            "held-out columns) out of training, with the downscaled copies of them; train.interpolation_sharpness "
            "then reads its blend's sharpness on 256 patches of them, photographs the run never saw, instead of on "
            "training images, which the generator renders sharper than unseen ones. At least model.image_size, "
            "leaving at least that many to train on. Unset = the whole region trains."
        ),
    )
    adversarial_ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description=(
            "srgan: the decay of a moving average of G's weights over the adversarial phase (the running mean of "
            "the phase's generators until it spans 1 / (1 - decay) steps, then an exponential moving average); after "
            "the last step G takes the average's weights, before train.interpolation blends them. Needs "
            "train.pretrain_steps < train.steps. Unset = off."
        ),
    )
    detail_blend: float | None = Field(
        None,
        gt=0,
        description=(
            "srgan with train.interpolation: blend the two generators' outputs instead of their weights, per pixel "
            "by how much detail the pretrained one renders there: P + w·(A - P), P and A the outputs of the "
            "pretrained and the adversarially trained generator, w = d² / (d² + this²), d the mean Sobel magnitude "
            "of P (images in [-1, 1], averaged over channels) over train.detail_window: the adversarial detail kept "
            "where the image has detail and left out where it is flat, where it costs PSNR for next to no "
            "sharpness. Until the adversarial phase the run serves G alone; every output then takes both "
            "generators' passes. Unset = the network blend at train.interpolation's weight. photos defaults to "
            "0.19 (with a 127 px train.detail_window), which gives way to a chosen train.interpolation or "
            "interpolation_sharpness (the network blend) and to a run without an adversarial phase."
        ),
    )
    detail_window: int = Field(
        33,
        ge=0,
        description=(
            "srgan with train.detail_blend: the side in px (odd) of the window around each pixel over which the "
            "pretrained output's detail d is averaged (the part of it inside the image at the borders); 0 = over "
            "the whole image. photos defaults to 127: the whole of each 64 px patch it trains and evaluates on, "
            "and a neighbourhood of that size in a translation of a larger photograph."
        ),
    )
    progressive: ProgressiveConfig | None = Field(
        None,
        description=(
            "stylegan2: progressive growing (ProGAN's fade-in): G and D start at a low resolution and fade each "
            "doubling in; reals are shown at the current resolution, and grids show it. null = off."
        ),
    )
    ema: float | None = Field(
        None, gt=0, lt=1, description="Decay of an EMA copy of the generator; grids and samples use it when set."
    )
    ema_kimg: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description=(
            "Half-life of the EMA generator in thousands of images (StyleGAN's G smoothing): the per-step decay is "
            "0.5 ** (batch_size / (1000 · ema_kimg)). An alternative to train.ema."
        ),
    )
    ema_batchnorm: Literal["copied", "recomputed"] = Field(
        "copied",
        description=(
            "pix2pix with the EMA generator (train.ema or train.ema_kimg): the BatchNorm statistics it normalises "
            "with. copied: the live generator's running statistics, copied every step; recomputed: its own, the mean "
            "over the training inputs (in batches of train.batch_size, dropout off) of each batch's mean and "
            "variance through the averaged weights, taken before each sample grid, evaluation and checkpoint, since "
            "the live generator's statistics do not fit the averaged weights. Refused without the EMA generator."
        ),
    )
    diffaugment: str = Field("", description="DiffAugment policy: comma-separated color, translation, cutout.")
    augment: Literal["none", "ada"] = Field(
        "none",
        description=(
            "ada: adaptive discriminator augmentation (Karras et al. 2020b) on every image D sees: flips, quarter "
            "turns, integer translation, scaling, brightness, contrast, saturation and cutout, each applied with a "
            "probability p that rises while D is too sure of the reals (dcgan, resnet and stylegan2 runs)."
        ),
    )
    ada_target: float = Field(
        0.6, gt=0, lt=1, description="ADA: the E[sign(D(real))] that p steers toward; lower augments more."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto picks bf16 where the hardware runs it fast (CUDA, AVX512-BF16 CPUs), else fp32."
    )
    compile: bool = Field(False, description="Wrap the networks in torch.compile.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto takes CUDA when there is one.")
    epochs: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description=(
            "ctgan: passes over the table's training rows, the default schedule of tables (375; 450 on a table of "
            "1,000 training rows or more while model.gumbel_input is left null). Once the table's "
            "rows are known (a built-in's at once, an uploaded table's when the run is created) it becomes "
            "train.steps = epochs · training rows / batch_size, at least 750 and at most 10,000 (a batch_size of "
            "500, the tables' default, first becomes half the training rows, from 200 to 500, on a small table), with "
            "schedule.eval_every at most those steps, and is then null: the stored config holds the steps. "
            "Choosing train.steps alone sets it to null."
        ),
    )
    world_size: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Processes that train the run together on one host (torch.distributed DistributedDataParallel: one per "
            "GPU with NCCL, or CPU processes with gloo). batch_size stays the global batch: each process takes "
            "batch_size / world_size of it. mlp, dcgan and resnet runs without ADA or compile."
        ),
    )

    @property
    def ema_decay(self) -> float | None:
        """The EMA generator's per-step decay: train.ema, or the one with train.ema_kimg's half-life; None = off."""
        if self.ema_kimg is not None:
            return float(0.5 ** (self.batch_size / (1000.0 * self.ema_kimg)))
        return self.ema


class ScheduleConfig(_Strict):
    sample_every: int = Field(500, ge=1, description="Write a sample grid every this many steps.")
    checkpoint_every: int = Field(1000, ge=1, description="Write a checkpoint every this many steps.")
    eval_every: int = Field(0, ge=0, description="Compute evaluation metrics every this many steps; 0 = never.")
    eval_samples: int = Field(2048, ge=64, le=50_000, description="Generated samples per evaluation.")
    keep_checkpoints: int = Field(5, ge=1, le=1000, description="Keep this many most recent checkpoints.")
    keep_samples: int = Field(
        200,
        ge=2,
        le=10_000,
        description="Keep every sample grid up to this many, then thin them out evenly over the run, always keeping "
        "the first and the last.",
    )
    stop_on_divergence: bool = Field(
        False,
        description="On a non-finite loss, end the run stopped at its last good checkpoint instead of failed.",
    )


QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class PlacementConfig(_Strict):
    """Which workers may train the run (store/workers.py: route_run)."""

    queue: str | None = Field(
        None, pattern=QUEUE_PATTERN, description="The worker queue to send the run to, e.g. gpu-a100."
    )
    min_gpu_memory_gb: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description="Send the run to a queue served by a live worker whose GPUs each have at least this much memory.",
    )


class TableSource(_Strict):
    """How an uploaded table is read: its column type overrides and target, as the dataset held them when the run
    was created (PATCH /datasets/{id} sets them)."""

    columns: dict[str, ColumnKind] = Field(
        default_factory=dict, description="Column types that replace the inferred ones, by column name."
    )
    target: str | None = Field(None, description="The column that machine-learning efficacy predicts; null: none.")
    rows: int | None = Field(
        None,
        ge=0,
        description="The table's rows, filled in from the dataset when the run is created: ctgan's train.epochs "
        "turn them into steps.",
    )


class RunConfig(_Strict):
    name: str = Field("", max_length=200, description="A name for people; not unique.")
    dataset: str = Field(
        ...,
        description="A built-in dataset (ring8, grid25, digits, stacked-digits, digits-edges, digits-printed, photos, "
        "breast-cancer, wine, mixed, credit) or a dataset id.",
    )
    preset: str | None = Field(None, description="A named configuration applied before your own fields.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of every random number generator in the run.")
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    loss: LossConfig = Field(default_factory=LossConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)  # type: ignore[arg-type]
    table: TableSource | None = Field(
        None,
        description="An uploaded table's column types and target, filled in from the dataset when the run is "
        "created; null for other datasets.",
    )
    placement: PlacementConfig | None = Field(
        None,
        description='Where the run trains: {"queue": "gpu-a100"} or {"min_gpu_memory_gb": 40}; null: the train queue.',
    )

    @model_validator(mode="before")
    @classmethod
    def _layer_defaults(cls, data: Any) -> Any:
        """Fill in the dataset's recommended defaults and the preset beneath the user's own fields."""
        if not isinstance(data, dict):
            return data
        dataset = data.get("dataset")
        if not isinstance(dataset, str):
            return data
        # A section that is not an object, or a preset that is not a name, is left for field validation to name.
        sections = [data[key] for key in ("model", "loss", "train", "schedule") if key in data]
        if any(not isinstance(section, dict) for section in sections) or not isinstance(
            data.get("preset", ""), str | None
        ):
            return data
        if dataset not in BUILTIN_DATASETS and not DATASET_ID_PATTERN.match(dataset):
            raise ValueError(
                f"dataset: unknown dataset {dataset!r}; use one of {', '.join(BUILTIN_DATASETS)} or a dataset id"
            )
        uploaded = "_uploaded_table" if TABLE_ID_PATTERN.match(dataset) else "_uploaded"
        if (uploaded_pairs := uploaded_pairing(dataset)) is not None:
            uploaded = f"_uploaded_{uploaded_pairs}"
        layered = copy.deepcopy(DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS[uploaded]))
        preset = data.get("preset")
        # An architecture's own recipe (ARCH_DEFAULTS) goes over the dataset's, beneath the preset and the user's.
        picked = [src.get("model", {}).get("arch") for src in (data, PRESETS.get(preset or "", {}))]
        arch_chosen = next((a for a in picked if isinstance(a, str)), None)
        _deep_merge(layered, ARCH_DEFAULTS.get(arch_chosen or "", {}))
        # The architecture's recipe on this dataset, for unconditional runs or for conditional ones.
        conditional = any(src.get("model", {}).get("conditional") for src in (data, PRESETS.get(preset or "", {})))
        arch_on_dataset = CONDITIONAL_ARCH_DEFAULTS if conditional else DATASET_ARCH_DEFAULTS
        recipe = arch_on_dataset.get((dataset, arch_chosen or ""), {})
        _deep_merge(layered, recipe)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"preset: unknown preset {preset!r}; use one of {', '.join(sorted(PRESETS))}")
            _deep_merge(layered, PRESETS[preset])
            if BUILTIN_DATASETS.get(dataset, {}).get("kind") == "points":
                _deep_merge(layered, POINT_PRESETS.get(preset, {}))
        _deep_merge(layered, data)
        # A default gives way to a choice that excludes it: weight clipping (wgan) to a default spectral norm, class
        # labels or packing to default clusters, an architecture to a default image size it does not build (resnet
        # on stacked-digits' 16 px).
        loss, model = layered.get("loss"), layered.get("model")

        def requested(section: str, name: str) -> bool:
            """Whether the request or its preset sets this field (rather than a default)."""
            sources = (data, PRESETS.get(preset or "", {}))
            return any(isinstance(src.get(section), dict) and name in src[section] for src in sources)

        def defaulted(key: str) -> bool:
            return isinstance(model, dict) and not requested("model", key)

        def drop_unchosen(fields: dict[str, tuple[str, ...]]) -> None:
            """Remove these fields where they come from a default, not from the request or its preset."""
            for section, names in fields.items():
                layer = layered.get(section)
                for name in names:
                    if isinstance(layer, dict) and not requested(section, name):
                        layer.pop(name, None)

        # srgan's own fields, from a dataset that defaults to srgan (photos), give way to another architecture.
        if isinstance(model, dict) and model.get("arch") != "srgan":
            drop_unchosen(SR_ONLY_FIELDS)
        # srgan's default blend gives way to a run without an adversarial phase to blend; photos' default detail
        # blend also gives way to a chosen network blend (train.interpolation, or its weight chosen by a sharpness).
        sr_train = layered.get("train")
        if isinstance(sr_train, dict) and sr_train.get("interpolation") is not None:
            pretrain = sr_train.get("pretrain_steps", 0)
            steps = sr_train.get("steps", TrainConfig.model_fields["steps"].default)
            chosen_blend = any(
                requested("train", name) for name in ("interpolation", "interpolation_sharpness", "detail_blend")
            )
            if not chosen_blend and isinstance(pretrain, int) and isinstance(steps, int) and not 0 < pretrain < steps:
                sr_train.pop("interpolation")
                sr_train.pop("interpolation_sharpness", None)
                sr_train.pop("detail_blend", None)
        chosen_network = any(requested("train", name) for name in ("interpolation", "interpolation_sharpness"))
        if isinstance(sr_train, dict) and chosen_network and not requested("train", "detail_blend"):
            sr_train.pop("detail_blend", None)
        # photos' default downscaled copies keep the factors that still hold a patch of the run's size (in the
        # columns that train, less train.aside_columns).
        copies = sr_train.get("downscaled_copies") if isinstance(sr_train, dict) else None
        sized = isinstance(model, dict) and isinstance(model.get("image_size"), int)
        if copies and sized and not requested("train", "downscaled_copies"):
            aside = sr_train.get("aside_columns") or 0
            side = PHOTO_TRAIN_SIDE - aside if isinstance(aside, int) else PHOTO_TRAIN_SIDE
            sr_train["downscaled_copies"] = [f for f in copies if round(side * f) >= model["image_size"]]
        # The warps' own fields, from a dataset that defaults to them (digits-printed), give way to a run without.
        if isinstance(model, dict) and not model.get("spatial_transform"):
            drop_unchosen(WARP_FIELDS)
        # So do the fields that refine the semantic term (digits-printed's) to a run without it or without the
        # refinement they need, and the diversity term to a run without a latent code.
        if isinstance(loss, dict) and not loss.get("semantic_weight"):
            drop_unchosen({"loss": ("semantic_matching", "semantic_anchor", "semantic_classifiers")})
        if isinstance(loss, dict) and not loss.get("semantic_matching"):
            drop_unchosen(
                {
                    "loss": (
                        "semantic_matching_push",
                        "semantic_matching_moments",
                        "semantic_matching_mean",
                        "semantic_matching_layers",
                        "semantic_matching_decay",
                    )
                }
            )
        if isinstance(loss, dict) and loss.get("semantic_matching_moments") != "std":
            drop_unchosen({"loss": ("semantic_matching_mean",)})
        # (stylegan2 pairs its latents within a cluster instead: its digits default keeps the term.)
        if (
            isinstance(loss, dict)
            and isinstance(model, dict)
            and not model.get("latent_dim")
            and arch_chosen != "stylegan2"
        ):
            drop_unchosen({"loss": ("diversity",)})
        # pix2pix's one-sided sharpness term gives way to a run without the term (the L1-only U-Net).
        if isinstance(loss, dict) and not loss.get("sharpness_weight"):
            drop_unchosen({"loss": ("sharpness_one_sided",)})
        if isinstance(loss, dict) and loss.get("kind") == "wgan" and defaulted("spectral_norm"):
            model["spectral_norm"] = False
        # Default cluster conditioning gives way to class labels (conditional) and to packing, which exclude it.
        excludes = isinstance(model, dict) and (model.get("conditional") or model.get("pack", 1) != 1)
        if excludes and model.get("clusters") and defaulted("clusters"):
            model["clusters"] = 0
        # A default cluster per channel gives way to no clusters and to an AC-GAN head (one label per sample).
        single = isinstance(model, dict) and (not model.get("clusters") or model.get("d_conditioning") == "acgan")
        if single and model.get("cluster_channels") and defaulted("cluster_channels"):
            model["cluster_channels"] = False
        field = ModelConfig.model_fields
        sizes = ARCH_IMAGE_SIZES.get(model.get("arch", field["arch"].default), ()) if isinstance(model, dict) else ()
        if sizes and defaulted("image_size") and model.get("image_size", field["image_size"].default) not in sizes:
            model["image_size"] = sizes[0]
        # A default EMA gives way to a chosen one of the other kind (a decay, or a half-life in images).
        train_layer = layered.get("train")
        if isinstance(train_layer, dict) and train_layer.get("ema") is not None and train_layer.get("ema_kimg"):
            for key, other in (("ema", "ema_kimg"), ("ema_kimg", "ema")):
                if requested("train", key) and not requested("train", other):
                    train_layer[other] = None
        # stylegan2's R1 weight, unless chosen or measured for the dataset (its recipe's): StyleGAN2-ADA's
        # heuristic, which grows with the image's area.
        chosen_gamma = requested("loss", "r1_gamma") or "r1_gamma" in recipe.get("loss", {})
        if isinstance(model, dict) and model.get("arch") == "stylegan2" and not chosen_gamma:
            size = model.get("image_size", field["image_size"].default)
            batch = train_layer.get("batch_size", 64) if isinstance(train_layer, dict) else 64
            if isinstance(size, int) and isinstance(batch, int) and batch > 0:
                layered.setdefault("loss", {})["r1_gamma"] = STYLEGAN2_R1_PER_PIXEL * size * size / batch
        if isinstance(model, dict) and model.get("arch") == "ctgan" and model.get("gumbel_input") is None:
            _resolve_table_size(layered)
        if isinstance(train_layer, dict) and train_layer.get("epochs") is not None:
            _resolve_table_steps(layered, data, PRESETS.get(preset or "", {}))
        return layered

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfig:
        """Reject combinations that cannot train, with the field and the reason."""
        self._check_world_size()
        info = BUILTIN_DATASETS.get(self.dataset)
        kind = self.data_kind
        arch = self.model.arch
        pairing = info.get("pairing") if info is not None else uploaded_pairing(self.dataset)
        if arch == "srgan":
            self._check_srgan(info)
        elif arch in TRANSLATION_ARCHS:
            self._check_translation(info)
        elif pairing == "paired":
            raise ValueError(
                f"model.arch: {self.dataset} pairs each input image with a target image; train it with pix2pix"
            )
        elif pairing == "unpaired":
            raise ValueError(f"model.arch: {self.dataset} holds two unpaired image domains; train it with cyclegan")
        if kind == "table" and arch != "ctgan":
            raise ValueError(f"model.arch: {self.dataset} is a table; only the ctgan architecture fits it, not {arch}")
        if arch == "ctgan" and kind != "table":
            what = "2-D point data" if kind == "points" else "an image dataset"
            raise ValueError(f"model.arch: ctgan synthesizes table rows, and {self.dataset} is {what}")
        if arch == "ctgan":
            self._check_ctgan()
        elif self.train.epochs is not None:
            raise ValueError("train.epochs: only ctgan counts passes over a table's rows; set train.steps instead")
        elif self.model.target_share is not None:
            raise ValueError("model.target_share: only ctgan conditions on a table's target column; set it to null")
        elif self.model.gumbel_input:
            raise ValueError("model.gumbel_input: only ctgan draws categories by Gumbel noise; set it to null")
        if self.table is not None and not TABLE_ID_PATTERN.match(self.dataset):
            raise ValueError(f"table: {self.dataset} is not an uploaded table; set table only for a tbl_ dataset")
        if kind == "points" and arch != "mlp":
            raise ValueError(f"model.arch: {self.dataset} is 2-D point data; only the mlp architecture fits it")
        if kind == "images" and arch == "mlp":
            raise ValueError(f"model.arch: {self.dataset} is an image dataset; use dcgan or resnet, not mlp")
        sizes = ARCH_IMAGE_SIZES[arch]
        if kind == "images" and self.model.image_size not in sizes:
            raise ValueError(
                f"model.image_size: {arch} supports {', '.join(map(str, sizes))} px, not {self.model.image_size}"
            )
        if self.train.progressive is not None:
            self._check_progressive(self.train.progressive, kind)
        if arch == "biggan":
            self._check_biggan()
        else:
            for name in ("shared_dim", "attention_resolution"):
                if getattr(self.model, name) != ModelConfig.model_fields[name].default:
                    raise ValueError(f"model.{name}: only the biggan architecture has it, not {arch}")
        if self.loss.ortho_weight > 0 and arch not in ("mlp", "dcgan", "resnet", "biggan"):
            raise ValueError(
                f"loss.ortho_weight: orthogonal regularization is applied in the G step of mlp, dcgan, resnet and "
                f"biggan runs, not {arch}'s; set it to 0"
            )
        if arch == "stylegan2":
            self._check_stylegan2()
        else:
            only = [("model", self.model, ("mapping_layers", "w_dim", "mapping_lr_mul", "mixing_prob"))]
            only.append(("loss", self.loss, ("r1_every", "pl_weight", "pl_every")))
            for section, values, names in only:  # a resolved config holds every field: compare with the default
                for name in names:
                    if getattr(values, name) != type(values).model_fields[name].default:
                        raise ValueError(f"{section}.{name}: only the stylegan2 architecture has it, not {arch}")
        if arch != "srgan":
            for section, names in SR_ONLY_FIELDS.items():
                values = getattr(self, section)
                for name in names:
                    if getattr(values, name) != type(values).model_fields[name].default:
                        raise ValueError(f"{section}.{name}: only the srgan architecture has it, not {arch}")
        if self.model.spatial_transform and arch != "cyclegan":
            raise ValueError(f"model.spatial_transform: only the cyclegan architecture has it, not {arch}")
        if self.train.warp_share > 0 and not self.model.spatial_transform:
            raise ValueError("train.warp_share: the warp-only steps need model.spatial_transform set to true")
        if self.train.lr_warp != TrainConfig.model_fields["lr_warp"].default and not self.model.spatial_transform:
            raise ValueError("train.lr_warp: the warps' rate needs model.spatial_transform set to true")
        if self.loss.warp_moment_weight > 0 and not self.model.spatial_transform:
            raise ValueError("loss.warp_moment_weight: the term trains warps; set model.spatial_transform to true")
        if self.model.warp_centred and not self.model.spatial_transform:
            raise ValueError("model.warp_centred: it places warps; set model.spatial_transform to true")
        for section, names in PIX2PIX_ONLY_FIELDS.items():
            values = getattr(self, section)
            for name in names:
                if arch != "pix2pix" and getattr(values, name) != type(values).model_fields[name].default:
                    raise ValueError(f"{section}.{name}: only the pix2pix architecture has it, not {arch}")
        if self.model.residual_generator and arch != "cyclegan":
            raise ValueError(f"model.residual_generator: only the cyclegan architecture has it, not {arch}")
        if self.loss.cycle_noise > 0 and arch != "cyclegan":
            raise ValueError(f"loss.cycle_noise: only the cyclegan architecture has it, not {arch}")
        if self.loss.self_regularization_weight > 0 and arch != "cyclegan":
            raise ValueError(f"loss.self_regularization_weight: only the cyclegan architecture has it, not {arch}")
        if self.loss.info_max_weight > 0 and arch != "cyclegan":
            raise ValueError(f"loss.info_max_weight: only the cyclegan architecture has it, not {arch}")
        if self.loss.semantic_weight > 0 and arch != "cyclegan":
            raise ValueError(f"loss.semantic_weight: only the cyclegan architecture has it, not {arch}")
        if self.loss.semantic_matching > 0 and (arch != "cyclegan" or self.loss.semantic_weight <= 0):
            raise ValueError(
                "loss.semantic_matching: it matches features of the semantic term's classifier, which only a "
                "cyclegan with loss.semantic_weight > 0 has; set it to 0"
            )
        if self.loss.semantic_anchor != "reading" and (arch != "cyclegan" or self.loss.semantic_weight <= 0):
            raise ValueError(
                "loss.semantic_anchor: it anchors the semantic term's translations, which only a cyclegan with "
                "loss.semantic_weight > 0 has; set it to reading"
            )
        default_push = LossConfig.model_fields["semantic_matching_push"].default
        if self.loss.semantic_matching_push != default_push and self.loss.semantic_matching <= 0:
            raise ValueError(
                "loss.semantic_matching_push: it sets the size of loss.semantic_matching's push; set "
                "loss.semantic_matching above 0"
            )
        default_moments = LossConfig.model_fields["semantic_matching_moments"].default
        if self.loss.semantic_matching_moments != default_moments and self.loss.semantic_matching <= 0:
            raise ValueError(
                "loss.semantic_matching_moments: it says what loss.semantic_matching matches; set "
                "loss.semantic_matching above 0"
            )
        if self.loss.semantic_matching_mean is not None and (
            self.loss.semantic_matching <= 0 or self.loss.semantic_matching_moments != "std"
        ):
            raise ValueError(
                "loss.semantic_matching_mean: it weighs loss.semantic_matching's mean push apart from its "
                "standard-deviation push, which only loss.semantic_matching above 0 with "
                "loss.semantic_matching_moments std has; set it to null (or loss.semantic_matching itself)"
            )
        for name in ("semantic_matching_layers", "semantic_matching_decay"):
            if getattr(self.loss, name) != LossConfig.model_fields[name].default and self.loss.semantic_matching <= 0:
                raise ValueError(
                    f"loss.{name}: it refines loss.semantic_matching's statistics; set loss.semantic_matching above 0"
                )
        if self.loss.semantic_classifiers != 1 and (arch != "cyclegan" or self.loss.semantic_weight <= 0):
            raise ValueError(
                "loss.semantic_classifiers: it counts the semantic term's classifiers, which only a cyclegan with "
                "loss.semantic_weight > 0 has; set it to 1"
            )
        if self.model.latent_dim > 0 and arch != "cyclegan":
            raise ValueError(f"model.latent_dim: only the cyclegan architecture has it, not {arch}")
        if self.loss.diversity > 0 and arch != "stylegan2" and (arch != "cyclegan" or self.model.latent_dim <= 0):
            raise ValueError(
                "loss.diversity: it spreads the translations of a latent code, which only a cyclegan with "
                "model.latent_dim has, or the samples of one cluster or class, which stylegan2 pairs; set it to 0"
            )
        if self.loss.diversity > 0 and self.loss.mode_seeking > 0:
            raise ValueError("loss.diversity: it is a bounded form of loss.mode_seeking's term; set one of them to 0")
        if self.loss.diversity_cap != LossConfig.model_fields["diversity_cap"].default and self.loss.diversity <= 0:
            raise ValueError("loss.diversity_cap: it bounds loss.diversity's term; set loss.diversity above 0")
        if self.model.class_projection and (arch != "cyclegan" or self.loss.semantic_weight <= 0):
            raise ValueError(
                "model.class_projection: only a cyclegan with loss.semantic_weight > 0 has it (its classifier reads "
                "the translations' classes)"
            )
        render = self.model.a_render_size
        if render is not None and arch != "cyclegan":
            raise ValueError(f"model.a_render_size: only the cyclegan architecture has it, not {arch}")
        if render is not None and (render % 4 or self.model.image_size % render):
            raise ValueError(
                f"model.a_render_size: {render} px must be a multiple of 4 that divides model.image_size "
                f"({self.model.image_size} px)"
            )
        if self.train.augment == "ada" and arch not in ("dcgan", "resnet", "biggan", "stylegan2"):
            raise ValueError(
                f"train.augment: ada augments images for dcgan, resnet, biggan and stylegan2 runs, not {arch}"
            )
        if self.train.augment == "ada" and self.train.diffaugment.strip():
            raise ValueError("train.augment: ada and DiffAugment (train.diffaugment) both augment D's inputs; pick one")
        if self.train.augment != "ada" and self.train.ada_target != TrainConfig.model_fields["ada_target"].default:
            raise ValueError("train.ada_target: set train.augment to ada for a target to steer by")
        if self.train.ema is not None and self.train.ema_kimg is not None:
            raise ValueError("train.ema_kimg: set the EMA generator's decay (train.ema) or its half-life, not both")
        if self.train.ema_batchnorm == "recomputed" and self.train.ema_decay is None:
            raise ValueError(
                "train.ema_batchnorm: recomputed sets the EMA generator's statistics; set train.ema or train.ema_kimg"
            )
        if self.model.d_depth > 1 and arch != "dcgan":
            raise ValueError(f"model.d_depth: only the dcgan discriminator has a depth to set, not {arch}'s")
        if self.model.conditional and info is not None and info["num_classes"] == 0:
            raise ValueError(f"model.conditional: {self.dataset} has no labels, so a run on it cannot be conditional")
        if self.model.pack > 1 and self.train.batch_size % self.model.pack:
            raise ValueError(
                f"model.pack: train.batch_size ({self.train.batch_size}) must be a multiple of pack ({self.model.pack})"
            )
        if self.model.clusters == 1:
            raise ValueError("model.clusters: one cluster conditions on nothing; use 0 (off) or at least 2")
        if self.model.clusters and self.model.conditional:
            raise ValueError(
                "model.clusters: a run conditions on its class labels (conditional) or on clusters, not both; "
                "set clusters to 0 or conditional to false"
            )
        if self.model.class_clusters == 1:
            raise ValueError(
                "model.class_clusters: one cluster per class is the class itself; use 0 (off) or at least 2"
            )
        if self.model.class_clusters and not self.model.conditional:
            raise ValueError(
                "model.class_clusters: clusters within classes need class labels; set conditional to true, or use "
                "model.clusters to cluster an unconditional run"
            )
        if self.model.class_clusters and arch != "stylegan2":
            raise ValueError(f"model.class_clusters: clusters within classes are built for stylegan2, not {arch}")
        if self.model.cluster_channels and not self.model.clusters:
            raise ValueError("model.cluster_channels: set model.clusters to the number of clusters per channel")
        if self.model.cluster_channels and self.model.d_conditioning == "acgan":
            raise ValueError(
                "model.cluster_channels: an AC-GAN head classifies one label, not a cluster per channel; "
                "use d_conditioning projection"
            )
        if self.model.clusters and arch == "mlp":
            raise ValueError(
                "model.clusters: cluster conditioning needs an image architecture (dcgan, resnet or stylegan2)"
            )
        images = info["num_images"] if info is not None and info["kind"] == "images" else None
        classes = info["num_classes"] if info is not None else 0
        if images is not None and classes and self.model.class_clusters * classes > images:
            raise ValueError(
                f"model.class_clusters: {self.model.class_clusters} clusters in each of {classes} classes need at "
                f"least {self.model.class_clusters * classes} images; {self.dataset} has {images}"
            )
        if images is not None and self.model.clusters > images:
            raise ValueError(
                f"model.clusters: {self.model.clusters} clusters need at least as many images; {self.dataset} has "
                f"{images}"
            )
        if self.model.pack > 1 and self.model.conditional:
            raise ValueError("model.pack: packing is for unconditional runs; set pack to 1 or conditional to false")
        if self.model.pack > 1 and self.model.clusters:
            raise ValueError("model.pack: packing judges samples of mixed clusters together; set pack 1 or clusters 0")
        if self.loss.label_smoothing > 0 and self.loss.kind not in ("minimax", "nonsaturating", "lsgan"):
            raise ValueError(
                f"loss.label_smoothing: one-sided label smoothing needs a target-based loss "
                f"(minimax, nonsaturating, lsgan), not {self.loss.kind}"
            )
        if self.loss.kind == "wgan" and self.model.spectral_norm:
            raise ValueError(
                "model.spectral_norm: wgan already constrains the critic by weight clipping; "
                "use one of the two (or loss.kind hinge / wgan-gp with spectral norm)"
            )
        policies = [p.strip() for p in self.train.diffaugment.split(",") if p.strip()]
        unknown = [p for p in policies if p not in ("color", "translation", "cutout")]
        if unknown:
            raise ValueError(f"train.diffaugment: unknown policy {unknown[0]!r}; use color, translation, cutout")
        if policies and kind == "points":
            raise ValueError("train.diffaugment: DiffAugment works on images, not on 2-D point data")
        return self

    def _check_biggan(self) -> None:
        """What a biggan run needs: a self-attention side both networks have, a z long enough to split into one
        chunk per block and the input's, class labels (or none) rather than clusters, and its own G and D design
        (conditional BatchNorm from the shared embedding in G, spectral norm and projection in D)."""
        m, loss = self.model, self.loss
        sides = [2**k for k in range(3, m.image_size.bit_length() - 1)]  # 8 px up to half the image
        if m.attention_resolution is not None and m.attention_resolution not in sides:
            raise ValueError(
                f"model.attention_resolution: at {m.image_size} px biggan has self-attention at "
                f"{', '.join(map(str, sides))} px or none (null), not {m.attention_resolution}"
            )
        chunks = m.image_size.bit_length() - 2  # the input's chunk and one per up-block from 4 px
        if m.z_dim < chunks:
            raise ValueError(
                f"model.z_dim: biggan splits z into {chunks} chunks at {m.image_size} px (the input's and one per "
                f"block), so it needs at least {chunks}, not {m.z_dim}"
            )
        refused = [
            ("loss.kind", loss.kind == "wgan", "biggan constrains D by spectral norm, not weight clipping; use hinge"),
            ("model.spectral_norm", not m.spectral_norm, "biggan applies spectral norm to every layer of G and D"),
            ("model.clusters", m.clusters > 0, "biggan conditions on class labels (conditional); set clusters to 0"),
            ("model.g_conditioning", m.g_conditioning != "cbn", "biggan's G conditions through its BatchNorms"),
            ("model.d_conditioning", m.d_conditioning != "projection", "the biggan discriminator uses projection"),
            ("model.minibatch_std", m.minibatch_std, "the biggan discriminator has no minibatch-std feature"),
            ("model.pack", m.pack > 1, "the biggan discriminator judges single samples; set pack to 1"),
        ]
        for field_path, bad, reason in refused:
            if bad:
                raise ValueError(f"{field_path}: {reason}")

    def _check_stylegan2(self) -> None:
        """What a stylegan2 run needs: its own loss (nonsaturating logistic with lazy R1 and path-length
        regularization), labels only through its mapping network, and none of the noise family's loss stabilizers."""
        m, loss, train = self.model, self.loss, self.train
        refused = [
            ("loss.kind", loss.kind != "nonsaturating", "stylegan2 trains with the nonsaturating logistic loss"),
            ("model.minibatch_std", not m.minibatch_std, "the stylegan2 discriminator always has the feature"),
            ("model.pack", m.pack > 1, "the stylegan2 discriminator judges single samples; set pack to 1"),
            ("model.d_conditioning", m.d_conditioning != "projection", "the stylegan2 discriminator uses projection"),
            ("train.n_critic", train.n_critic > 1, "stylegan2 alternates one G and one D update; set n_critic to 1"),
            ("train.compile", train.compile, "R1 and path-length regularization need double backward; set false"),
            ("loss.label_smoothing", loss.label_smoothing > 0, "not part of stylegan2's loss; set it to 0"),
            ("loss.instance_noise", loss.instance_noise > 0, "not part of stylegan2's loss; set it to 0"),
            ("loss.feature_matching", loss.feature_matching > 0, "not part of stylegan2's loss; set it to 0"),
            ("loss.mode_seeking", loss.mode_seeking > 0, "not part of stylegan2's loss; set it to 0"),
            ("loss.top_k", loss.top_k < 1, "not part of stylegan2's loss; set it to 1"),
        ]
        for field_path, bad, reason in refused:
            if bad:
                raise ValueError(f"{field_path}: {reason}")

    def _check_progressive(self, grow: ProgressiveConfig, kind: str) -> None:
        """Progressive growing: a stylegan2 image run, from a power of 2 below its size, done before the run ends."""
        size = self.model.image_size
        if self.model.arch != "stylegan2" or kind != "images":
            raise ValueError(
                f"train.progressive: progressive growing is built into the stylegan2 networks, not {self.model.arch}"
            )
        start = grow.start_resolution
        if start & (start - 1):
            raise ValueError(f"train.progressive.start_resolution: must be a power of 2, not {start}")
        if start >= size:
            raise ValueError(
                f"train.progressive.start_resolution: must be below model.image_size ({size} px), not {start}"
            )
        needed = grow.growing_steps(size)
        if needed >= self.train.steps:
            raise ValueError(
                f"train.progressive: growing from {start} to {size} px takes {needed} steps, and train.steps is "
                f"{self.train.steps}; train longer or shorten fade_steps and stable_steps"
            )

    def _check_translation(self, info: dict[str, Any] | None) -> None:
        """What a translation run needs: paired (pix2pix) or unpaired (cyclegan) data, an image size its networks
        build, and none of the noise family's conditioning, packing or stabilizers that assume a latent input."""
        m, loss, train = self.model, self.loss, self.train
        pairing = ARCH_PAIRING[m.arch]
        builtin = {"paired": "digits-edges", "unpaired": "digits-printed"}[pairing]
        has = info.get("pairing") if info is not None else uploaded_pairing(self.dataset)
        if has != pairing:
            needs = "translates inputs into targets" if pairing == "paired" else "translates between two domains"
            upload = "A/ and B/ folders" if pairing == "paired" else "trainA/ and trainB/ folders"
            kinds = {"table": "a table", "points": "2-D point data", "images": "an image dataset without pairs"}
            kind = has or kinds[self.data_kind]
            raise ValueError(
                f"model.arch: {m.arch} {needs} and needs a{'n' if pairing == 'unpaired' else ''} {pairing} dataset "
                f"({builtin}, or an upload of {upload}); {self.dataset} is {kind}"
            )
        refused = [
            ("model.conditional", m.conditional, "the input image is the condition; set conditional to false"),
            ("model.clusters", m.clusters > 0, "the input image is the condition; set clusters to 0"),
            ("model.pack", m.pack > 1, "the PatchGAN judges each (input, output) pair on its own; set pack to 1"),
            ("model.minibatch_std", m.minibatch_std, "the PatchGAN has no minibatch-std feature; set it to false"),
            ("train.n_critic", train.n_critic > 1, f"{m.arch} alternates one D and one G update; set n_critic to 1"),
            ("train.diffaugment", bool(train.diffaugment.strip()), "DiffAugment would move outputs off their inputs"),
            (
                "loss.feature_matching",
                loss.feature_matching > 0 and m.arch != "pix2pix",
                f"{m.arch} matches no discriminator features (pix2pix does); set it to 0",
            ),
            (
                "loss.mode_seeking",
                loss.mode_seeking > 0 and m.latent_dim <= 0,
                f"{m.arch} has no latents to seek modes with (a cyclegan has them with model.latent_dim); set it to 0",
            ),
            ("loss.top_k", loss.top_k < 1, "top-k ranks whole samples, the PatchGAN scores patches; set it to 1"),
        ]
        for field_path, bad, reason in refused:
            if bad:
                raise ValueError(f"{field_path}: {reason}")
        if loss.kind not in ("minimax", "nonsaturating", "lsgan", "hinge"):
            raise ValueError(f"loss.kind: {m.arch} trains with minimax, nonsaturating, lsgan or hinge, not {loss.kind}")
        if m.arch == "cyclegan" and train.compile:
            raise ValueError("train.compile: cyclegan runs its generators uncompiled; set compile to false")
        if loss.sharpness_one_sided and loss.sharpness_weight <= 0:
            raise ValueError("loss.sharpness_one_sided: it shapes loss.sharpness_weight's term; set that above 0")
        if loss.adversarial_start + loss.adversarial_ramp > 1:
            raise ValueError(
                f"loss.adversarial_ramp: the ramp ({loss.adversarial_ramp}) after loss.adversarial_start "
                f"({loss.adversarial_start}) would end after the run; their sum must be at most 1"
            )
        size, layers = m.image_size, m.patch_layers
        if layers is not None and size // 2**layers < 3:
            most = max(n for n in range(1, 7) if size // 2**n >= 3)
            raise ValueError(f"model.patch_layers: at {size} px the PatchGAN has room for at most {most}, not {layers}")

    def _check_srgan(self, info: dict[str, Any] | None) -> None:
        """What an srgan run needs: single images (each one's low-resolution input is made from it), a scale of
        one x2 stage per factor of two whose inputs keep at least SR_MIN_INPUT px, a feature network that reads
        the data, and none of the noise family's conditioning, packing or latent-based stabilizers."""
        m, loss, train = self.model, self.loss, self.train
        kind = self.data_kind
        if kind != "images":
            what = "2-D point data" if kind == "points" else "a table"
            raise ValueError(f"model.arch: srgan super-resolves images, and {self.dataset} is {what}")
        pairing = info.get("pairing") if info is not None else uploaded_pairing(self.dataset)
        if pairing is not None:
            raise ValueError(
                f"model.arch: srgan makes each low-resolution input from its own image, and {self.dataset} is "
                f"{pairing} translation data; use photos, digits or an uploaded image dataset"
            )
        if m.scale not in SR_SCALES:
            raise ValueError(f"model.scale: srgan upsamples by 2, 4 or 8 (one x2 sub-pixel stage each), not {m.scale}")
        if m.image_size // m.scale < SR_MIN_INPUT:
            raise ValueError(
                f"model.scale: x{m.scale} at {m.image_size} px makes {m.image_size // m.scale} px low-resolution "
                f"inputs; srgan needs image_size / scale >= {SR_MIN_INPUT}, so lower the scale or raise image_size"
            )
        if loss.feature_net == "digits" and info is not None and info["channels"] != 1:
            raise ValueError(
                f"loss.feature_net: the digits classifier reads 1-channel images, and {self.dataset} has "
                f"{info['channels']} channels; use discriminator (or vgg19 with its weights file)"
            )
        refused = [
            ("model.conditional", m.conditional, "the low-resolution image is the condition; set it to false"),
            ("model.clusters", m.clusters > 0, "the low-resolution image is the condition; set clusters to 0"),
            ("model.pack", m.pack > 1, "the srgan discriminator judges each image on its own; set pack to 1"),
            ("model.minibatch_std", m.minibatch_std, "the srgan discriminator has no minibatch-std feature"),
            ("model.spectral_norm", m.spectral_norm, "the srgan discriminator normalises with BatchNorm, as the paper"),
            ("train.n_critic", train.n_critic > 1, "srgan alternates one D and one G update; set n_critic to 1"),
            ("train.diffaugment", bool(train.diffaugment.strip()), "DiffAugment would move outputs off their inputs"),
            ("train.compile", train.compile, "srgan runs its networks uncompiled; set compile to false"),
            ("loss.feature_matching", loss.feature_matching > 0, "srgan's feature term is loss.feature_weight"),
            ("loss.mode_seeking", loss.mode_seeking > 0, "srgan has no latents to seek modes with; set it to 0"),
            ("loss.top_k", loss.top_k < 1, "top-k ranks samples from latents; set it to 1"),
        ]
        for field_path, bad, reason in refused:
            if bad:
                raise ValueError(f"{field_path}: {reason}")
        if loss.kind not in ("minimax", "nonsaturating", "lsgan", "hinge"):
            raise ValueError(f"loss.kind: srgan trains with minimax, nonsaturating, lsgan or hinge, not {loss.kind}")
        if loss.relativistic and loss.kind != "nonsaturating":
            raise ValueError(
                f"loss.relativistic: the relativistic average loss is logistic; set loss.kind to nonsaturating, not "
                f"{loss.kind}"
            )
        if loss.relativistic and loss.instance_noise > 0:
            raise ValueError("loss.relativistic: the relativistic discriminator sees no instance noise; set it to 0")
        if train.downscaled_copies:
            if self.dataset != "photos":
                raise ValueError(
                    f"train.downscaled_copies: only photos cuts its patches from photographs larger than them; "
                    f"{self.dataset} has none to downscale, so leave it empty"
                )
            for factor in train.downscaled_copies:
                if not 0 < factor < 1:
                    raise ValueError(f"train.downscaled_copies: each factor is above 0 and below 1, not {factor}")
                if round(PHOTO_TRAIN_SIDE * factor) < m.image_size:
                    raise ValueError(
                        f"train.downscaled_copies: {factor} leaves {round(PHOTO_TRAIN_SIDE * factor)} px of photos, "
                        f"short of a {m.image_size} px patch; use factors of at least "
                        f"{math.ceil(100 * m.image_size / PHOTO_TRAIN_SIDE) / 100}"
                    )
        if train.aside_columns is not None:
            if self.dataset != "photos":
                raise ValueError(
                    f"train.aside_columns: only photos has a training region to keep columns of; {self.dataset} "
                    "has none, so leave it unset"
                )
            room = PHOTO_TRAIN_SIDE - train.aside_columns
            if train.aside_columns < m.image_size or room < m.image_size:
                raise ValueError(
                    f"train.aside_columns: {train.aside_columns} columns must hold a {m.image_size} px patch and leave "
                    f"one to train on; use {m.image_size} to {PHOTO_TRAIN_SIDE - m.image_size}"
                )
            for factor in train.downscaled_copies:
                if round(room * factor) < m.image_size:
                    raise ValueError(
                        f"train.downscaled_copies: {factor} leaves {round(room * factor)} px of the {room} columns "
                        f"train.aside_columns trains on, short of a {m.image_size} px patch"
                    )
        if train.interpolation_sharpness is not None and train.interpolation is None:
            raise ValueError(
                "train.interpolation_sharpness: it chooses the weight of the blend that train.interpolation turns on; "
                "set train.interpolation too (any weight: this one replaces it)"
            )
        if train.detail_blend is not None:
            if train.interpolation is None:
                raise ValueError(
                    "train.detail_blend: it blends the outputs of the generators that train.interpolation keeps; set "
                    "train.interpolation too (any weight: this blend replaces it)"
                )
            if train.interpolation_sharpness is not None:
                raise ValueError(
                    "train.detail_blend: it replaces the network blend whose weight train.interpolation_sharpness "
                    "chooses; leave one of them unset"
                )
        if train.detail_window % 2 == 0 and train.detail_window != 0:
            raise ValueError(
                f"train.detail_window: {train.detail_window} px has no centre pixel; use an odd side, or 0 for the "
                "whole image"
            )
        if train.adversarial_ema is not None and train.pretrain_steps >= train.steps:
            raise ValueError(
                "train.adversarial_ema: it averages G over the adversarial phase, and with train.pretrain_steps >= "
                "train.steps the run has none; lower pretrain_steps or leave it unset"
            )
        if train.interpolation is not None and not 0 < train.pretrain_steps < train.steps:
            raise ValueError(
                "train.interpolation: it blends the pretrained and the adversarially trained generator, so it needs "
                "0 < train.pretrain_steps < train.steps"
            )

    def _check_ctgan(self) -> None:
        """What a ctgan run cannot use: its conditional vector replaces class labels and clusters, and the noise
        family's image and latent-pair stabilizers have nothing to act on."""
        m, loss, train = self.model, self.loss, self.train
        refused = [
            ("model.conditional", m.conditional, "ctgan conditions on every categorical column; set it to false"),
            ("model.clusters", m.clusters > 0, "ctgan conditions through its conditional vector; set clusters to 0"),
            ("model.minibatch_std", m.minibatch_std, "the ctgan discriminator packs rows instead; set it to false"),
            ("model.d_conditioning", m.d_conditioning != "projection", "ctgan has no class labels for an AC-GAN head"),
            ("train.diffaugment", bool(train.diffaugment.strip()), "DiffAugment works on images, not table rows"),
            ("loss.mode_seeking", loss.mode_seeking > 0, "not part of ctgan's loss; set it to 0"),
        ]
        for field_path, bad, reason in refused:
            if bad:
                raise ValueError(f"{field_path}: {reason}")

    def _check_world_size(self) -> None:
        """Data-parallel training covers the noise family (core/train.py: the ranks), on an even split of the batch."""
        n, t = self.train.world_size, self.train
        if n == 1:
            return
        if self.model.arch not in ("mlp", "dcgan", "resnet"):
            raise ValueError(
                f"train.world_size: data-parallel training covers mlp, dcgan and resnet, not {self.model.arch}"
            )
        if t.augment == "ada":
            raise ValueError("train.world_size: ADA steers one augmentation probability per process; use 1 process")
        if t.compile:
            raise ValueError("train.world_size: compile is not combined with data-parallel training; set compile false")
        if t.batch_size % n:
            raise ValueError(f"train.batch_size: {t.batch_size} does not split evenly over world_size {n} processes")
        per_rank = t.batch_size // n
        if self.model.pack > 1 and per_rank % self.model.pack:
            raise ValueError(
                f"model.pack: each process's batch ({per_rank}) must be a multiple of pack ({self.model.pack})"
            )
        if self.loss.mode_seeking and per_rank % 2:
            raise ValueError(f"loss.mode_seeking: each process's batch ({per_rank}) must be even")

    @property
    def data_kind(self) -> str:
        """'points' for 2-D data, 'table' for tables (built-in or `tbl_` uploads), 'images' otherwise."""
        info = BUILTIN_DATASETS.get(self.dataset)
        if info is not None:
            return str(info["kind"])
        return "table" if TABLE_ID_PATTERN.match(self.dataset) else "images"


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    """Merge `over` into `base` in place, one level of dicts deep at a time."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


# Each built-in dataset's default is its recommended configuration; docs/benchmarks.md holds the measurements and
# the alternatives tried.
# wgan-gp's gradient-penalty weight on the 2-D mixtures: 0.1, as Gulrajani et al.'s toy code uses; the weight of 10
# they use on images swamps the mixtures' tight modes.
POINTS_GP_WEIGHT = 0.1
# The 2-D mixtures' learning rate, for G and D alike: their defaults and the presets on them (POINT_PRESETS).
POINTS_LR = 1e-3


def _points_defaults(*, width: int, steps: int) -> dict[str, Any]:
    """The 2-D mixtures' recipe: an MLP with the minibatch-std feature in D (it keeps every mode), trained long with
    a large batch, a linearly decaying learning rate and the EMA generator."""
    return {
        "model": {"arch": "mlp", "z_dim": 2, "width": width, "depth": 3, "minibatch_std": True},
        "loss": {"gp_weight": POINTS_GP_WEIGHT},
        "train": {
            "steps": steps,
            "batch_size": 512,
            "lr_g": POINTS_LR,
            "lr_d": POINTS_LR,
            "beta1": 0.5,
            "ema": 0.999,
            "lr_schedule": "linear",
        },
        "schedule": {"sample_every": 1000, "checkpoint_every": 2000},
    }


TABLE_EPOCHS = 375  # 3,000 steps of 500 rows on a 4,000-row table (mixed's training rows), as measured
TABLE_LARGE_EPOCHS = 450  # with G reading the Gumbel noise, on a table whose batch is the full TABLE_BATCH
TABLE_PACK = 10  # the tables' PacGAN packing (Xu et al.'s) ...
TABLE_LARGE_PACK = 5  # ... and on a table whose batch is the full TABLE_BATCH (credit's efficacy, fresh seeds)
TABLE_BATCH = 500  # the tables' batch; on a table of fewer than 1,000 training rows it becomes half of them
TABLE_MIN_BATCH = 200  # ... but no fewer rows than this (smaller batches scored worse on wine's 142 rows)
TABLE_MIN_STEPS = 750  # a small table still trains this many steps (what half its rows per batch gives)
TABLE_MAX_STEPS = 10_000  # a large table stops here, in a CPU budget


def table_batch(*, rows: int, pack: int) -> int:
    """ctgan's default batch on a `rows`-row table: TABLE_BATCH, or half its training rows when fewer (at least
    TABLE_MIN_BATCH), rounded down to a multiple of `pack`. The epochs then give a small table more, smaller
    steps for the same rows seen: a batch of 500 drawn from a few hundred rows repeats each of them and updates the
    networks too rarely (docs/benchmarks.md, breast-cancer)."""
    training = training_rows(rows)
    if large_table(training=training):
        return TABLE_BATCH  # kept as is: a pack it is no multiple of is refused, as a chosen batch's would be
    return max(pack, max(TABLE_MIN_BATCH, training // 2) // pack * pack)


def large_table(*, training: int) -> bool:
    """Whether a table of `training` training rows trains with model.gumbel_input, TABLE_LARGE_EPOCHS and
    TABLE_LARGE_PACK by default: when it keeps the full batch of TABLE_BATCH (table_batch), where they were measured
    better (credit and mixed, 4,000 training rows); on breast-cancer's 455, G reading the noise lost quality
    (docs/benchmarks.md)."""
    return training // 2 >= TABLE_BATCH


def table_steps(*, epochs: float, rows: int, batch_size: int) -> int:
    """ctgan's steps for `epochs` passes over the training rows of a `rows`-row table, within the bounds."""
    training = training_rows(rows)
    return min(TABLE_MAX_STEPS, max(TABLE_MIN_STEPS, math.ceil(epochs * training / batch_size)))


def _table_rows(layered: dict[str, Any]) -> int | None:
    """A table's rows, once known: a built-in table's, or an uploaded table's table.rows; None otherwise."""
    info = BUILTIN_DATASETS.get(str(layered.get("dataset")))
    if info is not None:
        return info["num_images"] if info["kind"] == "table" else None
    table = layered.get("table")
    rows = table.get("rows") if isinstance(table, dict) else None
    return rows if isinstance(rows, int) else None


def large_table_pack(pack: int) -> int:
    """The pack D judges on a large table (large_table): the tables' default TABLE_PACK becomes TABLE_LARGE_PACK;
    a chosen pack stays."""
    return TABLE_LARGE_PACK if pack == TABLE_PACK else pack


def _resolve_table_size(layered: dict[str, Any]) -> None:
    """A null model.gumbel_input becomes large_table's answer once the table's rows are known, and on a large table
    the tables' default train.epochs (TABLE_EPOCHS) becomes TABLE_LARGE_EPOCHS, before the epochs become steps, and
    their default model.pack (TABLE_PACK) becomes TABLE_LARGE_PACK. An uploaded table's config is validated again
    from its dump when its rows are filled in, so a default 375 or 10 cannot be told from a chosen one there: 375
    epochs and a pack of 10 with a null gumbel_input are read as the defaults on either path."""
    rows = _table_rows(layered)
    if rows is None:
        return  # an uploaded table before its rows are filled in; ctgan.build decides from its rows if still null
    large = large_table(training=training_rows(rows))
    layered["model"]["gumbel_input"] = large
    train = layered.get("train")
    if large and isinstance(train, dict) and train.get("epochs") == TABLE_EPOCHS:
        train["epochs"] = TABLE_LARGE_EPOCHS
    if large and "pack" in layered["model"]:
        layered["model"]["pack"] = large_table_pack(layered["model"]["pack"])


def _resolve_table_steps(layered: dict[str, Any], data: dict[str, Any], preset: dict[str, Any]) -> None:
    """Turn train.epochs into train.steps once the table's rows are known (a built-in's, or an uploaded table's
    table.rows), and clear it, so that the stored config holds the steps alone and a resumed run keeps the steps
    it is given; train.steps chosen without epochs (by the user or the preset) clears it too. A batch of
    TABLE_BATCH rows (the tables' default) becomes table_batch's on a small table before the steps are counted (an
    uploaded table's config is validated again from its dump, so a default batch cannot be told from a chosen
    500 there). An evaluation
    cadence longer than the steps becomes the steps, so that the run is evaluated once."""
    train = layered["train"]
    chosen = [src.get("train") for src in (data, preset)]
    if any(isinstance(t, dict) and "steps" in t for t in chosen) and not any(
        isinstance(t, dict) and t.get("epochs") is not None for t in chosen
    ):
        train["epochs"] = None
        return
    rows = _table_rows(layered)  # None on a dataset that is no table: validation refuses train.epochs there
    batch = train.get("batch_size", TrainConfig.model_fields["batch_size"].default)
    epochs = train["epochs"]
    if not isinstance(rows, int) or not isinstance(batch, int) or batch < 1 or not isinstance(epochs, int | float):
        return  # an uploaded table before its rows are filled in, or a field that validation will refuse
    model = layered.get("model")
    pack = model.get("pack", 1) if isinstance(model, dict) else 1
    if batch == TABLE_BATCH and isinstance(pack, int) and pack >= 1:
        batch = train["batch_size"] = table_batch(rows=rows, pack=pack)
    train["steps"], train["epochs"] = table_steps(epochs=float(epochs), rows=rows, batch_size=batch), None
    schedule = layered.setdefault("schedule", {})
    if isinstance(schedule.get("eval_every"), int) and schedule["eval_every"] > train["steps"]:
        schedule["eval_every"] = train["steps"]  # evaluate at least once, at the last step


# Tables: ctgan as Xu et al. train it (WGAN-GP with PacGAN packing of 10, batch 500, Adam 2e-4 with betas 0.5 and
# 0.9, two residual blocks of 256 in G and two dropout layers of 256 in D, a 128-d latent), in fp32 (tiny MLPs gain
# nothing from bf16), plus an EMA generator (0.999), which samples: against the ctgan package on the mixed table
# (bench/tables.py, docs/benchmarks.md) it lifts the quality score by ~0.06 at no cost. model.gumbel_input is left
# null, so that a table of 1,000 training rows or more trains G reading the Gumbel noise for 450 epochs, with D
# judging packs of 5 rows (credit's efficacy gained with each, fresh seeds), and a smaller one trains as before
# (breast-cancer's quality lost with G reading the noise).
TABLE_DEFAULTS: dict[str, Any] = {
    "model": {"arch": "ctgan", "z_dim": 128, "width": 256, "depth": 2, "pack": TABLE_PACK},
    "loss": {"kind": "wgan-gp", "gp_weight": 10.0},
    "train": {
        "steps": 3000,  # until an uploaded table's rows are known; then train.epochs decides (and is cleared)
        "epochs": TABLE_EPOCHS,
        "batch_size": 500,
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "beta1": 0.5,
        "beta2": 0.9,
        "precision": "fp32",
        "ema": 0.999,
    },
    "schedule": {"sample_every": 500, "checkpoint_every": 1000, "eval_every": 500, "eval_samples": 1000},
}

# srgan: Ledig et al.'s phases (the pixel loss alone while pretraining, then with the feature term and the adversarial
# term at 1e-3; Adam with beta1 0.9), narrowed for a CPU: width 32 and 8 residual blocks where the paper has 64 and 16,
# no BatchNorm in G (as EDSR and ESRGAN), x4 from 16 px to 64 px, G learning what bicubic misses (model.bicubic_skip).
# The pixel loss is L1 (as EDSR) plus the Sobel gradient loss at 1: L1 alone left G at its bicubic start, the gradient
# term moved it. Rates fall along a cosine within each phase, G's from 1e-3 over 4,800 pretraining steps and from 1e-4
# (the paper's) over the 800 adversarial ones; training patches are mirrored at random (EDSR's augmentation). After
# pretraining the gradient-energy loss at 2 asks for the real image's amount of detail in each 8 px window (the
# adversarial term at 1e-3 alone added little), and the final G is 0.1 of the pretrained and 0.9 of the adversarially
# trained one (ESRGAN's network interpolation). On photos it meets sharpness 0.8 at PSNR 0.5 dB above bicubic on some
# seeds and not on others, and which ones moves with the machine: docs/benchmarks.md holds the measurements.
SRGAN_RECIPE: dict[str, Any] = {
    "model": {
        "arch": "srgan",
        "width": 32,
        "g_width": 32,
        "res_blocks": 8,
        "scale": 4,
        "bicubic_skip": True,
        "g_batchnorm": False,
        "spectral_norm": False,
        "minibatch_std": False,
        "clusters": 0,
        "cluster_channels": False,
    },
    "loss": {
        "kind": "nonsaturating",
        "adversarial_weight": 1e-3,
        "content": "l1",
        "gradient_weight": 1.0,
        "feature_net": "discriminator",
        "feature_weight": 0.01,
        "energy_weight": 2.0,
    },
    "train": {
        "steps": 5600,
        "pretrain_steps": 4800,
        "interpolation": 0.9,
        "phase_schedule": "cosine",
        "flips": True,
        "batch_size": 16,
        "lr_g": 1e-3,
        "lr_g_adversarial": 1e-4,
        "lr_d": 1e-4,
        "beta1": 0.9,
        "beta2": 0.999,
        "ema": None,
        "ema_kimg": None,
    },
    "schedule": {"sample_every": 400, "checkpoint_every": 400, "eval_every": 400, "eval_samples": 256},
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "ring8": _points_defaults(width=128, steps=16000),
    "grid25": _points_defaults(width=256, steps=15000),  # 25 modes need a wider MLP
    # digits: SNGAN's recipe at 16 px (the digits are 8x8, so 16 px loses nothing): spectral norm on D and Adam betas
    # (0, 0.9), with the nonsaturating loss so that label smoothing stays legal. Unconditional runs are conditioned
    # on 50 k-means clusters of the images (model.clusters); a conditional run uses its labels instead.
    "digits": {
        "model": {"arch": "dcgan", "image_size": 16, "z_dim": 100, "width": 64, "spectral_norm": True, "clusters": 50},
        "train": {"steps": 12000, "batch_size": 64, "ema": 0.999, "beta1": 0.0, "beta2": 0.9},
        "schedule": {"sample_every": 500, "checkpoint_every": 2000},
    },
    # stacked-digits: digits' recipe with a cluster per channel (model.cluster_channels: 50 k-means clusters of each
    # channel, drawn independently), since its channels are three independent digits.
    "stacked-digits": {
        "model": {
            "arch": "dcgan",
            "image_size": 16,
            "z_dim": 100,
            "width": 64,
            "spectral_norm": True,
            "clusters": 50,
            "cluster_channels": True,
        },
        "train": {"steps": 20000, "batch_size": 64, "ema": 0.999, "beta1": 0.0, "beta2": 0.9},
        "schedule": {"sample_every": 2000, "checkpoint_every": 4000},
    },
    # digits-edges: pix2pix as Isola et al. train it (nonsaturating loss, L1 weight 100, Adam 2e-4 with beta1 0.5),
    # narrowed to width 32 for 32 px digits on a CPU, with the adversarial term at 0.03 of the paper's weight (an edge
    # map nearly fixes its digit, so L1 alone barely blurs; at 1 the term cost L1 and sharpness, at 0.03 it lowers L1
    # below the L1-only U-Net's), and the sharpness term at 5 over the last fifth of the run, once L1 has settled
    # (sharper than the L1-only U-Net with L1 still below it on more seeds than without the term, at less L1 than the
    # term from the first step), taken one-sided: only batches blurrier than their targets count (on the 2-core Intel
    # Xeon with AMX all three goals on seeds 0-3 of 0-5, where the two-sided term met them on none of 0-4, by small
    # margins; docs/benchmarks.md, "pix2pix on digits-edges"). Its served generator is an EMA of G (decay 0.99) with
    # BatchNorm statistics of its own, recomputed over the training inputs before each grid, evaluation and
    # checkpoint: on the 2-core AMD EPYC (Zen 4) all three goals on eight of seeds 0-8 against the L1-only U-Net with
    # the same EMA (seed 8 misses sharpness by 0.00015), where the live generator met them on four of seven.
    "digits-edges": {
        "model": {"arch": "pix2pix", "image_size": 32, "width": 32},
        "loss": {
            "kind": "nonsaturating",
            "l1_weight": 100.0,
            "adversarial_weight": 0.03,
            "sharpness_weight": 5.0,
            "sharpness_start": 0.8,
            "sharpness_one_sided": True,
        },
        "train": {
            "steps": 3000,
            "batch_size": 16,
            "beta1": 0.5,
            "beta2": 0.999,
            "ema": 0.99,
            "ema_batchnorm": "recomputed",
        },
        "schedule": {"sample_every": 500, "checkpoint_every": 1000, "eval_every": 500, "eval_samples": 512},
    },
    "breast-cancer": TABLE_DEFAULTS,
    "wine": TABLE_DEFAULTS,
    "mixed": TABLE_DEFAULTS,
    "credit": TABLE_DEFAULTS,
    # digits-printed: CycleGAN as Zhu et al. train it (LSGAN, a pool of 50, Adam 2e-4 with beta1 0.5 held for the first
    # half, then decayed to 0) but with the cycle terms at 2.5 where the paper's are 10 (against 10, 5 had the lower
    # eight-draw fd_digits on seeds 0, 2 and 3 of four on an Intel Xeon; against 5, 2.5 on seeds 0, 2, 3, 4 and 5 of six
    # on an AMD EPYC, under the goal's 0.76 on all six where 5 missed it on three; the gain lies in the translations'
    # spread in the digits classifier's features, not in each digit's mean there), narrowed for 32 px digits on a CPU
    # (width 8, 2 residual blocks), with a spatial transformer in front of each generator (the printed digits are half
    # the handwritten ones' size) that trains alone for the first fifth of the run, steered by the brightness-moment
    # term and centred on each digit's ink, and identity terms at the paper's 0.5 of the cycle weight (1.25; on the
    # generators without their warps; against 2, a lower eight-draw fd_digits on seeds 0-2 with the held-out printed
    # digits balanced). Each ResNet corrects its input, the PatchGANs see the whole digit (34 px patches), G_BA draws at
    # 8 px as the handwritten digits are 8x8 images upscaled, and an information-maximization term asks a classifier of
    # domain A, trained alongside on A's labels, to read the translations confidently and every digit as often, while a
    # semantic-consistency term (a classifier of A trained before the run) anchors each translation to a digit: that of
    # its printed digit's cluster (k-means of the printed training digits, the clusters matched to the digits by that
    # classifier's readings). G_BA reads a latent code of 8 (a printed digit has many handwritten translations), kept in
    # use by the bounded diversity term, and each digit's translations are pushed towards that digit's real images in
    # the classifier's hidden layer (class-conditional feature matching, a push of fixed size), and spread, unit by
    # unit, as that digit's real images spread there (its per-unit standard deviation matched too). 6,000 steps, about
    # 10-14 of the 20 CPU minutes at one process a core: against 3,000, a lower fd_digits on three seeds of four (mean
    # 1.32 -> 1.09), under the goal on one.
    # docs/benchmarks.md, "CycleGAN on digits-printed".
    "digits-printed": {
        "model": {
            "arch": "cyclegan",
            "image_size": 32,
            "width": 8,
            "res_blocks": 2,
            "spatial_transform": True,
            "warp_centred": True,
            "residual_generator": True,
            "patch_layers": 2,
            "a_render_size": 8,
            "latent_dim": 8,
        },
        "loss": {
            "kind": "lsgan",
            "cycle_weight": 2.5,
            "identity_weight": 0.5,
            "warp_moment_weight": 10.0,
            "info_max_weight": 1.0,
            "semantic_weight": 1.0,
            "semantic_matching": 0.1,
            "semantic_matching_push": "unit",
            "semantic_matching_moments": "std",
            "semantic_anchor": "clusters",
            "diversity": 1.0,
        },
        "train": {
            "steps": 6000,
            "batch_size": 8,
            "beta1": 0.5,
            "beta2": 0.999,
            "lr_schedule": "hold-then-linear",
            "pool_size": 50,
            "warp_share": 0.2,
        },
        "schedule": {"sample_every": 500, "checkpoint_every": 1000, "eval_every": 500, "eval_samples": 500},
    },
    # photos: srgan's recipe, with patches also cut from the photographs downscaled by 0.5-0.9 (more content of the
    # same scenes: the pretrained G gains about 0.1 dB on the held-out columns), and the two generators' outputs
    # blended per pixel by the pretrained one's detail (train.detail_blend d0 0.19 over 127 px: the whole of each
    # 64 px patch) instead of the network blend at 0.9: at about the same sharpness it keeps 0.12-0.13 dB more PSNR.
    # With d0 fixed before fresh seeds 2, 3 and 5 were read, it met both goals (PSNR 0.5 dB over bicubic, sharpness
    # 0.8) on all six seeds measured (0-5 on the Intel Xeon with AMX), where the network blend missed PSNR on four; its
    # sharpness lies 0.0035-0.024 above 0.8 and its PSNR 0.046-0.165 dB above the goal there (docs/benchmarks.md).
    "photos": copy.deepcopy(SRGAN_RECIPE)
    | {
        "model": SRGAN_RECIPE["model"] | {"image_size": 64},
        "train": SRGAN_RECIPE["train"]
        | {"downscaled_copies": list(PHOTO_COPIES), "detail_blend": 0.19, "detail_window": 127},
    },
    "_uploaded": {
        "model": {"arch": "dcgan", "image_size": 32},
        "train": {"steps": 5000, "batch_size": 64},
    },
    "_uploaded_table": TABLE_DEFAULTS,
    # Uploaded translation datasets: digits-edges' and digits-printed's recipes at 64 px.
    "_uploaded_paired": {
        "model": {"arch": "pix2pix", "image_size": 64, "width": 32},
        "loss": {"kind": "nonsaturating", "l1_weight": 100.0},
        "train": {"steps": 3000, "batch_size": 16, "beta1": 0.5, "beta2": 0.999},
        "schedule": {"sample_every": 500, "checkpoint_every": 1000, "eval_every": 500, "eval_samples": 512},
    },
    "_uploaded_unpaired": {
        "model": {"arch": "cyclegan", "image_size": 64, "width": 16},
        "loss": {"kind": "lsgan", "cycle_weight": 10.0, "identity_weight": 0.5},
        "train": {
            "steps": 3000,
            "batch_size": 8,
            "beta1": 0.5,
            "beta2": 0.999,
            "lr_schedule": "hold-then-linear",
            "pool_size": 50,
        },
        "schedule": {"sample_every": 500, "checkpoint_every": 1000, "eval_every": 500, "eval_samples": 500},
    },
}

# biggan: the paper's hinge loss, Adam with betas 0 and 0.999 at 1e-4 for G and 4e-4 for D, orthogonal
# regularization of G at 1e-4 and spectral norm in both networks, without cluster conditioning (it conditions on
# class labels); one D step per G step instead of the paper's two, and width 16 (64 channels at 32 px) for a CPU.
BIGGAN_RECIPE: dict[str, Any] = {
    "model": {"width": 16, "spectral_norm": True, "minibatch_std": False, "clusters": 0, "cluster_channels": False},
    "loss": {"kind": "hinge", "ortho_weight": 1e-4},
    "train": {"lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.999},
}

# What an architecture brings beneath the preset and the user's fields when it is chosen over a dataset's default.
# stylegan2: the paper's Adam betas (0 and 0.99) at half its rate (0.00125 for G and D), G smoothing (EMA half-life
# of 10k images), its discriminator's own minibatch std and no spectral norm, and the dataset's cluster conditioning
# (k-means clusters embedded into the mapping network and projected in D, 100 on digits by DATASET_ARCH_DEFAULTS; on
# stacked-digits the dataset's 50 clusters per channel: 1,000 of 1,000 modes and a KL of 0.16-0.22 at 10,000 steps on
# seeds 0-2, where stylegan2 without clusters read 862, 101 and 846 modes, KL 1.1-3.9, for 5 % more CPU). Sized
# for a CPU budget: width 16 (16, 32, 64 channels at 16, 8, 4 px), a mapping network of 2 layers (StyleGAN2-ADA's
# for small data; the field's default is the paper's 8), batch 32 and 10,000 steps (on digits batch 16 and 22,000
# steps), 13–20 CPU minutes at 16 px on one thread in fp32 on the CPUs measured (core.device.pick_precision). On
# digits half the paper's rate over twice the steps had the lower FD on the paired draws of three seeds (level on
# one, lower on all draws of two), with the higher recall (docs/benchmarks.md). Set width 32 at 1024 px for the
# paper's config F.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "srgan": SRGAN_RECIPE,
    "biggan": BIGGAN_RECIPE,
    "stylegan2": {
        "model": {"width": 16, "mapping_layers": 2, "spectral_norm": False, "minibatch_std": True},
        "loss": {"kind": "nonsaturating"},
        "train": {
            "steps": 10000,
            "batch_size": 32,
            "lr_g": 0.00125,
            "lr_d": 0.00125,
            "beta1": 0.0,
            "beta2": 0.99,
            "ema": None,
            "ema_kimg": 10.0,
        },
    },
}
# What an architecture brings on one dataset, over ARCH_DEFAULTS. stylegan2 on digits: 100 clusters instead of the
# dataset's 50: a lower FD than 50 clusters on all three seeds measured (by 0.05-0.10), with the higher recall and the
# lower PPL; DSGAN's diversity term at λ 1 (loss.diversity, pairs of fakes within a cluster): a lower eight-draw FD than
# without it on seeds 6, 1 and 5 (by 0.046, 0.051 and 0.174), recall up by 0.05-0.14, at no measurable cost a step; and
# batch 16 with more steps instead of 32 over 13,000: the FD keeps falling long after 13,000 steps, and a step at batch
# 16 costs 0.7 of one at 32 while learning about as much after the first 10,000 (over 26,000 steps it read lower on 23
# of the 24 paired draws of seeds 1, 6 and 5); and the mapping network's learning-rate multiplier at 0.001 instead of
# the paper's 0.01 (set for hundreds of thousands of steps): lower on seeds 1, 6 and 5 by 0.040, 0.049 and 0.031, recall
# level. 22,000 steps, for the 20 CPU minutes the issue allows (17.5-21 of training on one thread of a Zen 4 EPYC, whose
# speed moved by a fifth within an hour; 26,000 took 20.7-22.5; 25-42 on a Zen 3, whose speed moved between days, where
# the dcgan default takes 14-24 against 8-9 on the Zen 4), read the same FD as 26,000: 0.275 against 0.281 over seeds 0,
# 1, 5 and 6, the checkpoints between 22,000 and 26,000 moving by more than that. R1's weight at 0.1 instead of
# StyleGAN2-ADA's size rule (0.0032 at 16 px and batch 16, a penalty D all but ignores over 22,000 steps on 1,437
# images): lower on 21 of the 24 paired draws of seeds 0, 1 and 5 (0.237 against 0.337 on a Zen 3), with the higher
# recall and a PPL still below the dcgan default's (over six seeds on a Zen 3, 0.254 ± 0.034 against the dcgan default's
# 0.240 ± 0.036, 22,000 steps at 1.7-1.8 times its CPU time; on a Xeon with AMX 0.259 ± 0.026 against 0.241 ± 0.032,
# 22-28 CPU minutes as the host's speed moved within one evening); γ 1 spread the samples further at the cost of
# precision and PPL (docs/benchmarks.md). A conditional run (on class labels) keeps the architecture's recipe, R1's
# rule included.
DATASET_ARCH_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "stylegan2"): {
        "model": {"clusters": 100, "mapping_lr_mul": 0.001},
        "loss": {"diversity": 1.0, "r1_gamma": 0.1},
        "train": {"steps": 22000, "batch_size": 16},
    },
}
# What an architecture brings on one dataset to a conditional run, over ARCH_DEFAULTS. stylegan2 on digits: 10
# k-means clusters within each class (model.class_clusters). Conditioned on the class alone it collapsed within each
# class (fid_digits 4.81, 2.42 and 5.38 at 10,000 steps on seeds 0-2, recall 0.01-0.32); with the clusters 0.58, 0.33
# and 0.39, recall 0.73-0.74, labels read at 0.98-0.99 (against 1.00), at the same cost (docs/benchmarks.md).
# An uploaded labelled dataset's class sizes are known when a run is posted, not when its config is layered: the API
# fills a conditional stylegan2 run's model.class_clusters from them (default_class_clusters), keeping at least as
# many images in each cluster of the smallest class as digits' clusters keep in its smallest (174 images).
CLASS_CLUSTERS = 10
CLASS_CLUSTER_IMAGES = 17
CONDITIONAL_ARCH_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "stylegan2"): {"model": {"class_clusters": CLASS_CLUSTERS}},
}


def default_class_clusters(smallest_class: int) -> int:
    """Clusters within each class for a conditional stylegan2 run whose smallest class has `smallest_class` images:
    one per CLASS_CLUSTER_IMAGES of them, at most CLASS_CLUSTERS, and 0 (off) where that would be fewer than 2."""
    k = min(CLASS_CLUSTERS, smallest_class // CLASS_CLUSTER_IMAGES)
    return k if k >= 2 else 0


# StyleGAN2-ADA's R1 weight per pixel and image: γ = this · image_size² / batch_size (0.0008 at 16 px, batch 64).
STYLEGAN2_R1_PER_PIXEL = 0.0002

# Named configurations that POST /runs accepts as "preset"; applied over the dataset defaults.
# wgan-gp trains its critic once per generator step at four times G's learning rate (TTUR, Heusel et al. 2017), not
# five times at one rate as Gulrajani et al. do: on digits it scores better in half the time.
PRESETS: dict[str, dict[str, Any]] = {
    "dcgan": {
        "model": {"arch": "dcgan", "spectral_norm": False},
        "loss": {"kind": "nonsaturating"},
        "train": {"beta1": 0.5, "beta2": 0.999},
    },
    "wgan-gp": {
        "model": {"spectral_norm": False},
        "loss": {"kind": "wgan-gp"},  # gp_weight: the dataset's (10, the field's default, but 0.1 on 2-D points)
        "train": {"n_critic": 1, "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9},
    },
    "sngan-hinge": {
        "model": {"spectral_norm": True},
        "loss": {"kind": "hinge"},
        "train": {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 1},
    },
}

# What a preset sets instead on 2-D point data (ring8, grid25), layered over PRESETS: the mlp recipes train G and D at
# one rate (POINTS_LR), which wgan-gp's TTUR rates for images would replace.
POINT_PRESETS: dict[str, dict[str, Any]] = {
    "wgan-gp": {"train": {"lr_g": POINTS_LR, "lr_d": POINTS_LR}},
}
