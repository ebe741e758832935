"""How much a run's networks weigh, counted from its config alone, without torch: the API checks a config's disk
budget before anything is queued, and it loads no torch (a torch import costs it seconds and some 150 MB).

The counts follow the builders in core/networks.py, core/networks_biggan.py, core/networks_stylegan2.py,
core/networks_translation.py and core/families/ctgan.py layer by layer: weights, biases, normalisation parameters
and buffers (what a state dict holds), leaving out the spectral-norm power-iteration vectors.
tests/core/test_footprint.py builds the networks and compares. A ctgan's encoded row width depends on its data (a
numeric column takes one value and up to ten mode indicators): it is estimated from the number of columns.
"""

from __future__ import annotations

import itertools
import math

from core.config import RunConfig

# Bytes per stored value: checkpoints keep weights and Adam's moments in float32.
BYTES_PER_VALUE = 4
# Width of conditional BatchNorm's class code (core.networks.CBN_CODE_DIM).
CBN_CODE_DIM = 128
# The U-Net's and PatchGAN's channel cap, as a multiple of width (core.networks_translation.MAX_MULT).
MAX_MULT = 8
# An encoded table column's width, at most: one value and ten mode indicators of a numeric column.
TABLE_COLUMN_WIDTH = 11
# SRResNet's residual blocks when model.res_blocks is unset (core.families.srgan.DEFAULT_BLOCKS).
SR_DEFAULT_BLOCKS = 8
# CycleGAN's spatial transformer: its localisation net's channels and hidden units (core.networks_translation).
STN_WIDTH, STN_HIDDEN = 8, 32
# CycleGAN's classifiers of domain A (core.networks_translation): PooledClassifier's side and hidden units
# (loss.info_max_weight), SourceClassifier's width and hidden units (loss.semantic_weight).
POOLED_SIZE, POOLED_HIDDEN = 8, 128
SOURCE_WIDTH, SOURCE_HIDDEN = 32, 128


def _conv(cin: int, cout: int, k: int, *, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _linear(i: int, o: int, *, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def _bn(f: int) -> int:
    """BatchNorm: scale and shift, running mean and variance, the batch counter."""
    return 4 * f + 1


def _norm2d(f: int, classes: int, groups: int) -> int:
    """core.networks.Norm2d: BatchNorm, or conditional BatchNorm through the class code."""
    if not classes:
        return _bn(f)
    return 2 * f + 1 + classes * groups * CBN_CODE_DIM + 2 * f * CBN_CODE_DIM


def _class_head(features: int, classes: int, conditioning: str, groups: int) -> int:
    if not classes:
        return 0
    return classes * groups * features if conditioning == "projection" else _linear(features, classes)


def _dcgan_g(cfg: RunConfig, channels: int, classes: int, groups: int) -> int:
    m = cfg.model
    width = m.g_width or m.width
    n = int(math.log2(m.image_size)) - 2
    cbn = classes if m.g_conditioning == "cbn" else 0
    concat = bool(classes) and m.g_conditioning == "concat"
    total = classes * groups if m.clusters else 0  # cluster_cdf
    total += classes * groups * m.z_dim if concat else 0
    mult = 2 ** (n - 1)
    total += _conv(m.z_dim * (2 if concat else 1), width * mult, 4, bias=False) + _norm2d(width * mult, cbn, groups)
    for _ in range(n - 1):
        total += _conv(width * mult, width * mult // 2, 4, bias=False) + _norm2d(width * mult // 2, cbn, groups)
        mult //= 2
    return total + _conv(width, channels, 4, bias=False)


def _dcgan_d(cfg: RunConfig, channels: int, classes: int, groups: int) -> int:
    m = cfg.model
    w, n = m.width, int(math.log2(m.image_size)) - 2
    batchnorm = not m.spectral_norm and cfg.loss.kind != "wgan-gp"

    def block(cin: int, cout: int, k: int) -> int:
        return _conv(cin, cout, k, bias=not batchnorm) + (_bn(cout) if batchnorm else 0)

    total = _conv(channels * m.pack, w, 4, bias=False) + (m.d_depth - 1) * block(w, w, 3)
    f = w
    for _ in range(n - 1):
        total += block(f, 2 * f, 4) + (m.d_depth - 1) * block(2 * f, 2 * f, 3)
        f *= 2
    total += _conv(f + int(m.minibatch_std), 1, 4, bias=False)
    return total + _class_head(f, classes, m.d_conditioning, groups)


def _resnet_plan(image_size: int, width: int) -> tuple[list[int], list[int]]:
    if image_size == 32:
        return [width * 4] * 4, [width * 2] * 4
    return [width * 8, width * 8, width * 4, width * 2, width], [width, width * 2, width * 4, width * 8, width * 8]


def _resnet_g(cfg: RunConfig, channels: int, classes: int, groups: int) -> int:
    m = cfg.model
    plan, _ = _resnet_plan(m.image_size, m.g_width or m.width)
    cbn = classes if m.g_conditioning == "cbn" else 0
    concat = bool(classes) and m.g_conditioning == "concat"
    total = classes * groups if m.clusters else 0
    total += classes * groups * m.z_dim if concat else 0
    total += _linear(m.z_dim * (2 if concat else 1), 16 * plan[0])
    for a, b in itertools.pairwise(plan):
        total += _norm2d(a, cbn, groups) + _conv(a, b, 3) + _norm2d(b, cbn, groups) + _conv(b, b, 3) + _conv(a, b, 1)
    return total + _bn(plan[-1]) + _conv(plan[-1], channels, 3)


def _resnet_d(cfg: RunConfig, channels: int, classes: int, groups: int) -> int:
    m = cfg.model
    _, plan = _resnet_plan(m.image_size, m.width)
    downs = [True, True, False, False] if m.image_size == 32 else [True, True, True, True, False]
    total, cin = 0, channels * m.pack
    for cout, down in zip(plan, downs, strict=True):
        total += _conv(cin, cout, 3) + _conv(cout, cout, 3) + (_conv(cin, cout, 1) if cin != cout or down else 0)
        cin = cout
    return total + _linear(cin + int(m.minibatch_std), 1) + _class_head(cin, classes, m.d_conditioning, groups)


def _mlp_g(cfg: RunConfig) -> int:
    m = cfg.model
    width = m.g_width or m.width
    return _linear(m.z_dim, width) + (m.depth - 1) * _linear(width, width) + _linear(width, 2)


def _mlp_d(cfg: RunConfig, classes: int) -> int:
    m = cfg.model
    total = _linear(2 * m.pack, m.width) + (m.depth - 1) * _linear(m.width, m.width)
    return total + _linear(m.width + int(m.minibatch_std), 1) + _class_head(m.width, classes, m.d_conditioning, 1)


def _style_channels(image_size: int, width: int) -> list[int]:
    """Channels at 4, 8, ..., image_size px (core.networks_stylegan2.channels_at)."""
    sizes = [2**i for i in range(2, int(math.log2(image_size)) + 1)]
    return [min(width * image_size // r, max(512, width)) for r in sizes]


def _stylegan2_g(cfg: RunConfig, channels: int, classes: int) -> int:
    m = cfg.model
    w = m.w_dim or m.z_dim
    sizes = [m.z_dim + (w if classes else 0)] + [w] * m.mapping_layers
    total = classes * w + sum(_linear(a, b) for a, b in itertools.pairwise(sizes)) + w  # embed, net, w_avg
    ch = _style_channels(m.image_size, m.g_width or m.width)

    def layer(cin: int, cout: int, r: int) -> int:  # modulated 3x3 conv, noise strength, bias, noise_const
        return _linear(w, cin) + cin * cout * 9 + 1 + cout + r * r

    def to_rgb(cin: int) -> int:
        return _linear(w, cin) + cin * channels + channels

    total += ch[0] * 16 + layer(ch[0], ch[0], 4) + to_rgb(ch[0])
    for i, (a, b) in enumerate(itertools.pairwise(ch)):
        r = 2 ** (i + 3)
        total += layer(a, b, r) + layer(b, b, r) + to_rgb(b)
    return total + (2 if cfg.train.progressive is not None else 0)  # a growing G's phase buffer


def _stylegan2_d(cfg: RunConfig, channels: int, classes: int) -> int:
    m = cfg.model
    ch = _style_channels(m.image_size, m.width)[::-1]  # image_size, ..., 4 px
    total = _conv(channels, ch[0], 1)
    if cfg.train.progressive is not None:  # a fromRGB at each lower resolution it grows through
        lowest = int(math.log2(m.image_size // cfg.train.progressive.start_resolution))
        total += sum(_conv(channels, c, 1) for c in ch[1 : lowest + 1])
    for a, b in itertools.pairwise(ch):
        total += _conv(a, a, 3) + _conv(a, b, 3) + _conv(a, b, 1, bias=False)
    c4 = ch[-1]
    return total + _conv(c4 + 1, c4, 3) + _linear(c4 * 16, c4) + _linear(c4, 1) + classes * c4


def _unet(cin: int, cout: int, image_size: int, width: int) -> int:
    depth = int(math.log2(image_size))
    chans = [width * min(2**i, MAX_MULT) for i in range(depth)]
    total = 0
    for i, c in enumerate(chans):
        norm = 0 < i < depth - 1
        total += _conv(cin if i == 0 else chans[i - 1], c, 4, bias=not norm) + (_bn(c) if norm else 0)
    for j, i in enumerate(range(depth - 2, -1, -1)):
        total += _conv(chans[i + 1] if j == 0 else 2 * chans[i + 1], chans[i], 4, bias=False) + _bn(chans[i])
    return total + _conv(2 * chans[0], cout, 4)


def _patch(cin: int, layers: int, width: int, *, sn: bool, batchnorm: bool) -> int:
    total, c = _conv(cin, width, 4), width
    for n in range(1, layers + 1):
        c_next = width * min(2**n, MAX_MULT)
        total += _conv(c, c_next, 4, bias=sn) + (_bn(c_next) if batchnorm and not sn else 0)
        c = c_next
    return total + _conv(c, 1, 4)


def _cycle_g(cin: int, cout: int, width: int, blocks: int) -> int:
    w = width
    total = _conv(cin, w, 7) + _conv(w, 2 * w, 3) + _conv(2 * w, 4 * w, 3)
    total += blocks * 2 * _conv(4 * w, 4 * w, 3)
    return total + _conv(4 * w, 2 * w, 3) + _conv(2 * w, w, 3) + _conv(w, cout, 7)


def _warp(cin: int) -> int:
    """The spatial transformer's localisation net: two convolutions, pooled to 4x4, two linear layers to 3."""
    w = STN_WIDTH
    return _conv(cin, w, 3) + _conv(w, 2 * w, 3) + _linear(2 * w * 16, STN_HIDDEN) + _linear(STN_HIDDEN, 3)


def _srgan(cfg: RunConfig, channels: int) -> tuple[int, int]:
    """SRResNet (PReLU has one slope per channel; BatchNorm as model.g_batchnorm) and the SRGAN discriminator
    (core/networks_sr.py)."""
    m = cfg.model
    w = m.g_width or m.width
    blocks = m.res_blocks or SR_DEFAULT_BLOCKS
    bn = m.g_batchnorm
    conv_norm = _conv(w, w, 3, bias=not bn) + (_bn(w) if bn else 0)  # networks_sr.conv_norm
    g = _conv(channels, w, 9) + w
    g += blocks * (2 * conv_norm + w) + conv_norm
    g += int(math.log2(m.scale)) * (_conv(w, 4 * w, 3) + w) + _conv(w, channels, 9)
    mults = (1, 1, 2, 2, 4, 4, 8, 8)
    d = _conv(channels, m.width, 3)
    d += sum(_conv(m.width * a, m.width * b, 3, bias=False) + _bn(m.width * b) for a, b in itertools.pairwise(mults))
    side = max(1, min(m.image_size // 16, 6))
    return g, d + _linear(8 * m.width * side * side, 16 * m.width) + _linear(16 * m.width, 1)


def _biggan_plan(image_size: int, width: int) -> tuple[list[int], list[int], list[bool]]:
    """core.networks_biggan.plan: G's channels from 4 px up, D's after each block, and which D blocks pool."""
    w = width
    if image_size == 32:
        return [4 * w] * 4, [4 * w] * 4, [True, True, False, False]
    if image_size == 64:
        return [16 * w, 16 * w, 8 * w, 4 * w, 2 * w], [w, 2 * w, 4 * w, 8 * w, 16 * w], [True] * 4 + [False]
    return [16 * w, 16 * w, 8 * w, 4 * w, 2 * w, w], [w, 2 * w, 4 * w, 8 * w, 16 * w, 16 * w], [True] * 5 + [False]


def _attention(c: int) -> int:
    """core.networks_biggan.SelfAttention: query, key, value and output 1x1 convolutions without bias, and gamma."""
    k, v = max(c // 8, 1), max(c // 2, 1)
    return 2 * c * k + 2 * c * v + 1


def _biggan(cfg: RunConfig, channels: int, classes: int) -> tuple[int, int]:
    m = cfg.model
    g_plan, _, _ = _biggan_plan(m.image_size, m.g_width or m.width)
    _, d_plan, downs = _biggan_plan(m.image_size, m.width)
    blocks = len(g_plan) - 1
    chunk = m.z_dim // (blocks + 1)
    cond = chunk + (m.shared_dim if classes else 0)

    def cbn(f: int) -> int:  # BatchNorm's running statistics and counter, and the gain and bias maps from cond
        return 2 * f + 1 + 2 * cond * f

    g = classes * m.shared_dim + _linear(m.z_dim - blocks * chunk, 16 * g_plan[0])
    for i, (a, b) in enumerate(itertools.pairwise(g_plan)):
        g += cbn(a) + _conv(a, b, 3) + cbn(b) + _conv(b, b, 3) + _conv(a, b, 1)
        g += _attention(b) if 8 * 2**i == m.attention_resolution else 0
    g += _bn(g_plan[-1]) + _conv(g_plan[-1], channels, 3)

    d, cin, side, attended = 0, channels, m.image_size, False
    for cout, down in zip(d_plan, downs, strict=True):
        d += _conv(cin, cout, 3) + _conv(cout, cout, 3) + (_conv(cin, cout, 1) if cin != cout or down else 0)
        side //= 2 if down else 1
        if side == m.attention_resolution and not attended:
            d, attended = d + _attention(cout), True
        cin = cout
    return g, d + _linear(cin, 1) + classes * cin


def _ctgan(cfg: RunConfig, columns: int) -> tuple[int, int]:
    m = cfg.model
    data = cond = TABLE_COLUMN_WIDTH * columns
    width = m.g_width or m.width
    # G reads the Gumbel noise (B, D) too; null (an uploaded table's rows not known yet) is counted as on, the larger.
    g, dim = 0, m.z_dim + cond + (data if m.gumbel_input is not False else 0)
    for _ in range(m.depth):
        g += _linear(dim, width) + _bn(width)
        dim += width
    g += _linear(dim, data)
    d, dim = 0, (data + cond) * m.pack
    for _ in range(m.depth):
        d += _linear(dim, m.width)
        dim = m.width
    return g, d + _linear(dim, 1)


def network_sizes(cfg: RunConfig, *, channels: int, num_classes: int, columns: int = 0) -> tuple[int, int]:
    """The values in the state dicts of G and D for data with `channels` (0: points or a table), `num_classes`
    (the dataset's) and, for a table, `columns`. Paired and unpaired data have `channels` on each side."""
    m = cfg.model
    classes, groups = m.label_classes(num_classes), m.label_groups(channels)
    if m.arch == "mlp":
        return _mlp_g(cfg), _mlp_d(cfg, classes)
    if m.arch == "dcgan":
        return _dcgan_g(cfg, channels, classes, groups), _dcgan_d(cfg, channels, classes, groups)
    if m.arch == "resnet":
        return _resnet_g(cfg, channels, classes, groups), _resnet_d(cfg, channels, classes, groups)
    if m.arch == "biggan":
        return _biggan(cfg, channels, num_classes if m.conditional else 0)
    if m.arch == "stylegan2":
        codes = classes * groups  # one code per label id, or per cluster of each channel
        cdf = codes if m.clusters or m.class_clusters else 0  # a cluster-conditioned mapping network's cluster_cdf
        return _stylegan2_g(cfg, channels, codes) + cdf, _stylegan2_d(cfg, channels, codes)
    layers = m.patch_layers if m.patch_layers is not None else max(1, int(math.log2(m.image_size)) - 5)
    if m.arch == "pix2pix":
        g = _unet(channels, channels, m.image_size, m.g_width or m.width)
        return g, _patch(2 * channels, layers, m.width, sn=m.spectral_norm, batchnorm=True)
    if m.arch == "cyclegan":
        blocks = m.res_blocks if m.res_blocks is not None else (9 if m.image_size >= 256 else 6)
        g = 2 * _cycle_g(channels, channels, m.g_width or m.width, blocks)
        g += 2 * _warp(channels) if m.spatial_transform else 0
        if m.latent_dim:  # G_BA's FiLM layers (one per residual block) and the latent encoder
            c = 4 * (m.g_width or m.width)
            g += blocks * _linear(m.latent_dim, 4 * c)
            g += _linear(channels * POOLED_SIZE**2, POOLED_HIDDEN) + _linear(POOLED_HIDDEN, 2 * m.latent_dim)
        d = 2 * _patch(channels, layers, m.width, sn=m.spectral_norm, batchnorm=False)
        d += num_classes * m.width * min(2**layers, MAX_MULT) if m.class_projection else 0  # D_A's class embedding
        return g, d
    if m.arch == "srgan":
        return _srgan(cfg, channels)
    if m.arch == "ctgan":
        return _ctgan(cfg, columns)
    raise ValueError(f"model.arch: core.footprint has no count for {m.arch}'s networks")


def checkpoint_bytes(cfg: RunConfig, *, channels: int, num_classes: int, columns: int = 0) -> int:
    """About how many bytes one checkpoint of this run takes: G and D, the EMA copy of G when the run keeps one,
    srgan's pretrained copy of G (`G_psnr`) when it interpolates, and Adam's two moments of each, in float32, and
    cyclegan's classifiers of domain A (the RNG states, data order and metadata are a few KB more)."""
    g, d = network_sizes(cfg, channels=channels, num_classes=num_classes, columns=columns)
    copies_of_g = 3 + (1 if cfg.train.ema_decay is not None else 0)
    copies_of_g += 1 if cfg.model.arch == "srgan" and cfg.train.interpolation is not None else 0
    return BYTES_PER_VALUE * (copies_of_g * g + 3 * d + _cycle_classifiers(cfg, channels, num_classes))


def _cycle_classifiers(cfg: RunConfig, channels: int, classes: int) -> int:
    """The values a cyclegan checkpoint holds beside G and D: the information-maximization term's classifier with
    its Adam moments, and the semantic term's, frozen."""
    if cfg.model.arch != "cyclegan":
        return 0
    pooled = _linear(channels * POOLED_SIZE**2, POOLED_HIDDEN) + _linear(POOLED_HIDDEN, classes)
    w = SOURCE_WIDTH
    source = sum(_conv(cin, cout, 3) + _bn(cout) for cin, cout in ((channels, w), (w, 2 * w), (2 * w, 4 * w)))
    source += _linear(4 * w, SOURCE_HIDDEN) + _linear(SOURCE_HIDDEN, classes)
    return (3 * pooled if cfg.loss.info_max_weight > 0 else 0) + (source if cfg.loss.semantic_weight > 0 else 0)
