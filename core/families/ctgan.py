"""The ctgan family: synthetic table rows (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN").

Rows are encoded by core.tabular.transformer (mode-specific normalization, one-hots). The generator maps a latent
z (B, Z) and a conditional vector cond (B, C) through residual blocks (each concatenates ReLU(BN(Linear(x))) to its
input) to raw outputs (B, D): tanh for the normalized scalars α and Gumbel-softmax (τ = TAU) for every one-hot.
The conditional vector picks one categorical column and one of its categories; training-by-sampling draws the
column uniformly, the category by the log of its frequency, and real rows that have that category, so that rare
categories are trained as often as their log-frequency says. The discriminator is an MLP with Leaky ReLU 0.2 and
dropout 0.5 that judges `model.pack` rows (each with its conditional vector) jointly (PacGAN); the default
objective is WGAN-GP with the penalty taken per pack, as the paper's. G's loss adds the cross-entropy between its
output for the conditioned column and the category asked for.

Every random draw comes from torch's global generator (or the loop's data order when a table has no categorical
column), so a checkpoint's RNG state resumes a run exactly. Sampling from a checkpoint: `load_table_generator`,
`sample_rows` (the same seed gives the same rows; `conditions` fix categorical values through the conditional
vector and other values by rejection) and core.tabular.io.write_csv.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from core.config import RunConfig, large_table, large_table_pack
from core.datasets import Dataset
from core.families import Step, StepStats, eval_mode, grad_norm
from core.losses import discriminator_loss, generator_loss, top_k
from core.tabular.columns import Table
from core.tabular.data import TableDataset
from core.tabular.plot import histograms
from core.tabular.transformer import Span, TableTransformer

EventFn = Callable[[str, dict[str, Any]], None]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]

TAU = 0.2  # Gumbel-softmax temperature of the one-hot outputs
GUMBEL_MEAN, GUMBEL_STD = 0.5772, 1.2825  # the standard Gumbel's mean (Euler's constant) and std (π / √6)
DROPOUT = 0.5
WEIGHT_DECAY = 1e-6  # Adam's L2 weight decay on G and D, as the paper's code
GRID_ROWS = 1000  # synthetic rows in each sample picture
GRID_SEED = 7  # the Gumbel draws of the sample picture, apart from the training's random streams
SAMPLE_BATCH = 500  # rows per forward pass when sampling
MAX_REJECTION_ROUNDS = 20  # rounds of conditional sampling before answering with the rows made so far


# Networks.


class Residual(nn.Module):
    """(B, I) -> (B, O + I): ReLU(BN(Linear(x))) concatenated to x."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class Generator(nn.Module):
    """G(z (B, Z), cond (B, C), noise (B, D) or None) -> raw outputs (B, D), activated by `activate` with the same
    noise. With `gumbel_input` G also reads the Gumbel noise that will pick each category and mode (standardized),
    so that the rest of a row can follow which category or mode the noise picks; without it each discrete output
    is drawn independently of the others given z and cond."""

    def __init__(
        self, *, z_dim: int, cond_dim: int, width: int, depth: int, data_dim: int, gumbel_input: bool = False
    ) -> None:
        super().__init__()
        self.gumbel_input = gumbel_input
        dim, blocks = z_dim + cond_dim + (data_dim if gumbel_input else 0), []
        for _ in range(depth):
            blocks.append(Residual(dim, width))
            dim += width
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(dim, data_dim)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        inputs = [z, cond]
        if self.gumbel_input:
            assert noise is not None, "a generator with gumbel_input reads the noise that activate uses"
            inputs.insert(1, (noise - GUMBEL_MEAN) / GUMBEL_STD)
        raw: torch.Tensor = self.out(self.body(torch.cat(inputs, dim=1)))  # (B, D)
        return raw


class Discriminator(nn.Module):
    """D(packed (B', pack · (D + C))) -> (logits (B',), features (B', width), None), as core.losses expects."""

    def __init__(self, *, in_dim: int, width: int, depth: int, pack: int, sn: bool) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = []
        dim = in_dim * pack
        for _ in range(depth):
            layers += [wrap(nn.Linear(dim, width)), nn.LeakyReLU(0.2), nn.Dropout(DROPOUT)]
            dim = width
        self.body = nn.Sequential(*layers)
        self.head = wrap(nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, None]:
        h = self.body(x)  # (B', width)
        return self.head(h).squeeze(1), h, None


def activate(
    raw: torch.Tensor, spans: list[Span], *, hard: bool = False, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, D) raw outputs -> rows: tanh for scalars, Gumbel-softmax for one-hots (one-hot samples when `hard`),
    with the Gumbel `noise` (B, D) given (gumbel_noise) or drawn here."""
    parts = []
    for s in spans:
        x = raw[:, s.start : s.start + s.width]
        if s.activation == "tanh":
            parts.append(torch.tanh(x))
        elif noise is None:
            parts.append(F.gumbel_softmax(x.float(), tau=TAU, hard=hard))
        else:
            soft = F.softmax((x.float() + noise[:, s.start : s.start + s.width]) / TAU, dim=1)
            if hard:  # the one-hot of the Gumbel-max draw, with the soft sample's gradient (straight-through)
                one = torch.zeros_like(soft).scatter_(1, soft.argmax(1, keepdim=True), 1.0)
                soft = one - soft.detach() + soft
            parts.append(soft)
    return torch.cat(parts, dim=1)


def gumbel_noise(b: int, width: int, device: torch.device | str) -> torch.Tensor:
    """Standard Gumbel draws (B, width), -log of Exp(1) draws, as F.gumbel_softmax makes them."""
    return -torch.empty(b, width, device=device).exponential_().log()


def generate(
    G: Callable[..., torch.Tensor],
    z: torch.Tensor,
    cond: torch.Tensor,
    spans: list[Span],
    *,
    gumbel_input: bool,
    hard: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """G's raw outputs (B, D) and its rows (activate's); with `gumbel_input` the Gumbel noise is drawn first and
    read by G as well as by activate."""
    if not gumbel_input:
        raw = G(z, cond)
        return raw, activate(raw.float(), spans, hard=hard)
    noise = gumbel_noise(z.shape[0], spans[-1].start + spans[-1].width, z.device)  # (B, D): the one-hots' entries used
    raw = G(z, cond, noise)
    return raw, activate(raw.float(), spans, hard=hard, noise=noise)


def pack_rows(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(B, F) -> (B / pack, pack · F): consecutive rows judged jointly (PacGAN)."""
    return x.reshape(x.shape[0] // pack, pack * x.shape[1])


# The conditional vector.


class CondSpace:
    """The categorical columns' one-hots as the conditional vector (width C): draws (cond, column, category) by
    log-frequency (training-by-sampling) or by frequency (sampling the data's own mix). With a `target` span and
    a `target_share`, that share of the training draws picks the target column, and sampling always does."""

    def __init__(
        self,
        spans: list[Span],
        counts: list[list[int]],
        device: torch.device | str = "cpu",
        *,
        target: int | None = None,
        target_share: float | None = None,
    ) -> None:
        self.spans = spans
        self.counts = counts
        self.target = target if target_share is not None else None
        self.target_share = target_share
        self.widths = [s.width for s in spans]
        self.width = sum(self.widths)
        self.offsets = torch.tensor(np.cumsum([0, *self.widths[:-1]]), dtype=torch.long, device=device)  # (K,)
        most = max(self.widths, default=1)
        freq = torch.zeros(len(spans), most, dtype=torch.float64)  # (K, W) zero-padded
        for j, c in enumerate(counts):
            freq[j, : len(c)] = torch.tensor(c, dtype=torch.float64)
        self.freq = (freq / freq.sum(1, keepdim=True).clamp_min(1)).float().to(device)
        log = torch.log1p(freq)
        self.log_freq = (log / log.sum(1, keepdim=True).clamp_min(1e-12)).float().to(device)

    def draw(
        self, b: int, *, log_freq: bool, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """cond (B, C), the conditioned column (B,) and its category (B,); (B, 0) and zeros without categorical
        columns, drawing nothing."""
        device = self.freq.device
        if not self.spans:
            none = torch.zeros(b, dtype=torch.long, device=device)
            return torch.zeros(b, 0, device=device), none, none
        col = torch.randint(len(self.spans), (b,), device=device, generator=generator)
        if self.target is not None:  # the target column: a share of the training draws, every sampling draw
            if log_freq:
                on_target = torch.rand(b, device=device, generator=generator) < (self.target_share or 0.0)
                col = torch.where(on_target, self.target, col)
            else:
                col = torch.full_like(col, self.target)
        probs = (self.log_freq if log_freq else self.freq)[col]  # (B, W)
        cat = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return self.one_hot(col, cat), col, cat

    def one_hot(self, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        cond = torch.zeros(col.shape[0], self.width, device=col.device)
        cond[torch.arange(col.shape[0], device=col.device), self.offsets[col] + cat] = 1.0
        return cond


class RowIndex:
    """The training rows of each (column, category), to draw real rows that have a category."""

    def __init__(self, cats: torch.Tensor, widths: list[int]) -> None:
        k, n = cats.shape[1], cats.shape[0]
        most = max(widths, default=1)
        self.sorted = torch.argsort(cats.T, dim=1, stable=True)  # (K, N): each column's rows by category
        counts = torch.zeros(k, most, dtype=torch.long, device=cats.device)
        for j in range(k):
            counts[j] = torch.bincount(cats[:, j], minlength=most)[:most]
        self.counts = counts  # (K, W)
        self.starts = torch.cumsum(counts, 1) - counts  # (K, W)
        self.n = n

    def draw(self, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """A random training row (B,) with category cat[i] in column col[i]."""
        count = self.counts[col, cat].clamp_min(1)
        pos = self.starts[col, cat] + (torch.rand(col.shape[0], device=col.device) * count).long().clamp_max(count - 1)
        return self.sorted[col, pos]


def _categories(store: torch.Tensor, spans: list[Span]) -> torch.Tensor:
    """Each encoded row's category in every categorical column (N, K)."""
    cols = [store[:, s.start : s.start + s.width].argmax(1) for s in spans]
    return torch.stack(cols, 1) if cols else torch.zeros(store.shape[0], 0, dtype=torch.long, device=store.device)


def _target_span(transformer: TableTransformer, target: str | None) -> int | None:
    """The index among the categorical spans of the target column, None when it has none (a numeric target)."""
    names = [transformer.columns[s.column].name for s in transformer.category_spans]
    return names.index(target) if target in names else None


def _state_counts(transformer: TableTransformer) -> list[list[int]]:
    """Each categorical column's category counts from the fitted state, the missing state last."""
    out = []
    for s in transformer.category_spans:
        code = transformer.codes[s.column]
        out.append([*code["counts"], *([code["missing_count"]] if code["missing"] else [])])
    return out


# Building and training.


@dataclass
class Models:
    """A ctgan's networks and optimizers, the output layout and the conditional vector's sampling."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    g_fn: Callable[..., Any]
    d_fn: Callable[..., Any]
    spans: list[Span]  # the encoded row's layout
    cond: CondSpace  # width 0 when the table has no categorical column
    rows: RowIndex | None  # None when the table has no categorical column
    store: torch.Tensor  # (N, D) the encoded training rows

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}  # everything else derives from the data and the transformer state in the metadata


def build(cfg: RunConfig, data: Dataset, *, device: torch.device, latest: Path | None, emit: EventFn) -> Models:
    """Check that the data is a table, take the transformer from the newest checkpoint `latest` when resuming, and
    build the networks on `device` and their optimizers."""
    if not isinstance(data, TableDataset) or data.transformer is None:
        raise ValueError(f"model.arch: ctgan synthesizes table rows, and {cfg.dataset} is not a table")
    if latest is not None:
        from core.checkpoint import read_data_info

        data.reencode(read_data_info(latest)["table"])
    if cfg.model.gumbel_input is None:
        # An uploaded table's config validated before its rows were known: decided here from the training rows, in
        # the config that the run's checkpoints store, so that a resume and a loaded checkpoint build the same G
        # and D (a large table's default pack, as the config's own resolution makes it: large_table_pack).
        cfg.model.gumbel_input = large_table(training=len(data))
        if cfg.model.gumbel_input:
            cfg.model.pack = large_table_pack(cfg.model.pack)
    tf = data.transformer
    spans = tf.category_spans
    cats = _categories(data.store, spans)  # (N, K)
    counts = [torch.bincount(cats[:, j], minlength=s.width).tolist() for j, s in enumerate(spans)]
    target = _target_span(tf, data.target)
    cond = CondSpace(spans, counts, device=device, target=target, target_share=cfg.model.target_share)
    emit(
        "environment",
        {
            "table": {
                "rows": len(data),
                "holdout": _rows(data.held),
                "encoded_width": tf.width,
                "conditioned": len(spans),
            }
        },
    )
    m = cfg.model
    G = _generator(cfg, cond_dim=cond.width, data_dim=tf.width)
    D = Discriminator(in_dim=tf.width + cond.width, width=m.width, depth=m.depth, pack=m.pack, sn=m.spectral_norm)
    G, D = G.to(device), D.to(device)
    betas = (cfg.train.beta1, cfg.train.beta2)
    return Models(
        G=G,
        D=D,
        opt_g=torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=betas, weight_decay=WEIGHT_DECAY),
        opt_d=torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas, weight_decay=WEIGHT_DECAY),
        g_fn=torch.compile(G) if cfg.train.compile else G,
        d_fn=torch.compile(D) if cfg.train.compile else D,
        spans=tf.spans,
        cond=cond,
        rows=RowIndex(cats, cond.widths) if spans else None,
        store=data.store,
    )


def _generator(cfg: RunConfig, *, cond_dim: int, data_dim: int) -> Generator:
    """The run's generator for a conditional vector and an encoded row of these widths (training and loading)."""
    m = cfg.model
    return Generator(
        z_dim=m.z_dim,
        cond_dim=cond_dim,
        width=m.g_width or m.width,
        depth=m.depth,
        data_dim=data_dim,
        gumbel_input=_reads_noise(cfg),
    )


def _reads_noise(cfg: RunConfig) -> bool:
    """model.gumbel_input, which build has decided by now when the config left it null."""
    if cfg.model.gumbel_input is None:
        raise ValueError("model.gumbel_input: null until the table's rows decide it")
    return cfg.model.gumbel_input


def _rows(table: Table) -> int:
    return len(next(iter(table.values()))) if table else 0


def train_step(m: Models, cfg: RunConfig, at: Step) -> tuple[dict[str, torch.Tensor], StepStats]:
    """`train.n_critic` critic updates on real rows drawn by training-by-sampling and fakes of the same conditions,
    then one generator update on fresh conditions. Returns `{"loss_d", "loss_g"}` and the step's stats."""
    b, pack = cfg.train.batch_size, cfg.model.pack
    noise_std = cfg.loss.instance_noise * (1.0 - at.done)

    # Train the discriminator on (real row, its condition) against (fake row, the condition it was asked for).
    m.D.requires_grad_(True)
    for _ in range(cfg.train.n_critic):
        z = torch.randn(b, cfg.model.z_dim, device=at.device)  # (B, Z)
        cond, col, cat = m.cond.draw(b, log_freq=True)  # (B, C), (B,), (B,)
        if m.rows is not None:  # real rows with the same conditions, in another order
            perm = torch.randperm(b, device=at.device)
            real = m.store[m.rows.draw(col[perm], cat[perm])]  # (B, D)
            real_cond = cond[perm]
        else:
            real, real_cond = at.next_batch().x, cond
        real_in = pack_rows(torch.cat([real, real_cond], 1), pack)  # (B / pack, pack · (D + C))
        with at.autocast():
            with torch.no_grad():
                fake = generate(m.g_fn, z, cond, m.spans, gumbel_input=_reads_noise(cfg))[1]
            fake_in = pack_rows(torch.cat([fake.float(), cond], 1), pack)
            loss_d, stats_d = discriminator_loss(
                cfg.loss, D=m.d_fn, real=real_in, fake=fake_in, labels=None, fake_labels=None, noise_std=noise_std
            )
        m.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_norm_d = grad_norm(m.D) if at.want_stats else None
        m.opt_d.step()
        if cfg.loss.kind == "wgan":  # weight clipping keeps the critic Lipschitz
            with torch.no_grad():
                for p in m.D.parameters():
                    p.clamp_(-cfg.loss.clip, cfg.loss.clip)

    # Train the generator on fresh conditions: fool D, and produce the category each condition asks for.
    m.D.requires_grad_(False)
    z = torch.randn(b, cfg.model.z_dim, device=at.device)
    cond, col, cat = m.cond.draw(b, log_freq=True)
    with at.autocast():
        raw, fake = generate(m.g_fn, z, cond, m.spans, gumbel_input=_reads_noise(cfg))  # (B, D) each
        loss_g, stats_g = generator_loss(
            cfg.loss,
            D=m.d_fn,
            fake=pack_rows(torch.cat([fake.float(), cond], 1), pack),
            fake_labels=None,
            real=real_in,
            noise_std=noise_std,
            top_k=top_k(cfg.loss.top_k, b // pack, at.done),
        )
    loss_cond = conditional_loss(raw.float(), m.cond, col, cat)
    loss_g = loss_g + loss_cond
    m.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    grad_norm_g = grad_norm(m.G) if at.want_stats else None
    m.opt_g.step()

    stats: StepStats = {**stats_d, **stats_g, "loss_g": loss_g.detach(), "loss_cond": loss_cond.detach()}
    if grad_norm_d is not None and grad_norm_g is not None:
        stats |= {"grad_norm_d": grad_norm_d, "grad_norm_g": grad_norm_g}
    return {"loss_d": loss_d, "loss_g": loss_g}, stats


def conditional_loss(raw: torch.Tensor, space: CondSpace, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """The mean over the batch of the cross-entropy between G's logits for each row's conditioned column and the
    category asked for (0 without categorical columns)."""
    total = raw.new_zeros(())
    for j, s in enumerate(space.spans):
        chosen = col == j  # (B,)
        ce = F.cross_entropy(raw[:, s.start : s.start + s.width], cat.clamp_max(s.width - 1), reduction="none")
        total = total + (ce * chosen).sum()
    return total / raw.shape[0]


# Sample pictures, evaluation and sampling.


@dataclass(frozen=True)
class GridInputs:
    """The fixed latents (N, Z) and conditional vectors (N, C) of a run's sample pictures."""

    z: torch.Tensor
    cond: torch.Tensor
    spans: list[Span]
    gumbel_input: bool  # G reads the Gumbel noise (model.gumbel_input)


def grid_inputs(cfg: RunConfig, data: TableDataset, m: Models, device: torch.device) -> GridInputs:
    """GRID_ROWS latents and conditions at the data's frequencies, from a generator of their own."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    z = torch.randn(GRID_ROWS, cfg.model.z_dim, generator=gen)
    cpu_space = CondSpace(m.cond.spans, m.cond.counts, target=m.cond.target, target_share=m.cond.target_share)
    cond = cpu_space.draw(GRID_ROWS, log_freq=False, generator=gen)[0] if m.cond.width else torch.zeros(GRID_ROWS, 0)
    return GridInputs(z=z.to(device), cond=cond.to(device), spans=m.spans, gumbel_input=_reads_noise(cfg))


@torch.no_grad()
def sample_grid(
    G: nn.Module, inputs: GridInputs, data: TableDataset, *, autocast: Autocast
) -> tuple[Image.Image, torch.Tensor]:
    """Per-column histograms of the training rows and of G's rows from the fixed inputs, and those rows (N, D)."""
    with eval_mode(G):
        devices = [inputs.z.device] if inputs.z.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), autocast():  # the Gumbel draws leave the training's RNG alone
            torch.manual_seed(GRID_SEED)
            rows = generate(G, inputs.z, inputs.cond, inputs.spans, gumbel_input=inputs.gumbel_input, hard=True)[1]
    assert data.transformer is not None
    fake = data.transformer.decode(rows.cpu().numpy())
    return histograms(data.rows, fake, data.columns), rows


def sampler(
    G: nn.Module, cfg: RunConfig, m: Models, *, device: torch.device, autocast: Autocast
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]:
    """sample_fn(n) -> (encoded rows (n, D) with one-hot categories, None), conditions at the data's frequencies."""

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with eval_mode(G):
            outs = []
            for start in range(0, n, SAMPLE_BATCH):
                b = min(SAMPLE_BATCH, n - start)
                z = torch.randn(b, cfg.model.z_dim, device=device)
                cond = m.cond.draw(b, log_freq=False)[0] if m.cond.width else torch.zeros(b, 0, device=device)
                with autocast():
                    outs.append(generate(G, z, cond, m.spans, gumbel_input=_reads_noise(cfg), hard=True)[1])
        return torch.cat(outs), None

    return sample


def evaluator(data: TableDataset, cfg: RunConfig, device: torch.device) -> Any:
    """The table metrics (core.tabular.metrics), in place of the image Evaluator."""
    from core.tabular.metrics import TableEvaluator

    return TableEvaluator(data, n_samples=cfg.schedule.eval_samples)


@dataclass
class TableGenerator:
    """A trained ctgan from a checkpoint: the generator (eval mode), its config, transformer and conditions."""

    G: nn.Module
    cfg: RunConfig
    transformer: TableTransformer
    cond: CondSpace
    target: str | None


def load_table_generator(path: Path | str, *, ema: bool = True, device: str | torch.device = "cpu") -> TableGenerator:
    """The generator of a ctgan checkpoint (its EMA copy when `ema` and present)."""
    from core.checkpoint import read_generator_state

    path = Path(path)
    state, meta = read_generator_state(path, ema=ema)
    cfg = RunConfig.model_validate_json(meta["config"])
    if cfg.model.arch != "ctgan":
        raise ValueError(f"{path.name} is a {cfg.model.arch} checkpoint, not a ctgan one")
    info = json.loads(meta["data"])
    tf = TableTransformer.from_state(info["table"])
    target = info.get("target")
    cond = CondSpace(
        tf.category_spans,
        _state_counts(tf),
        device=device,
        target=_target_span(tf, target),
        target_share=cfg.model.target_share,
    )
    G = _generator(cfg, cond_dim=cond.width, data_dim=tf.width)
    G.load_state_dict(state)
    return TableGenerator(G=G.to(device).eval(), cfg=cfg, transformer=tf, cond=cond, target=target)


def sample_rows(
    tg: TableGenerator, n: int, *, seed: int, conditions: dict[str, Any] | None = None
) -> tuple[Table, int]:
    """`n` synthetic rows as a typed table (core.tabular.columns.typed) and how many were made: fewer than `n` only
    when `conditions` ({column: value}) are too rare to meet in MAX_REJECTION_ROUNDS rounds. A categorical or
    boolean value is asked for through the conditional vector (the first such condition), every condition is then
    checked on the decoded rows; a discrete integer is met by rejection alone. The same seed gives the same rows."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    tf, device = tg.transformer, next(tg.G.parameters()).device
    wanted, fixed = _conditions(tf, conditions or {}, tg.cond)
    parts: list[Table] = []
    made = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        for _ in range(MAX_REJECTION_ROUNDS if wanted else 1):
            need = n - made
            batch = need if not wanted else max(2 * need, 64)
            encoded = []
            for start in range(0, batch, SAMPLE_BATCH):
                b = min(SAMPLE_BATCH, batch - start)
                z = torch.randn(b, tg.cfg.model.z_dim).to(device)
                if fixed is not None:
                    col, cat = fixed
                    cond = tg.cond.one_hot(torch.full((b,), col, device=device), torch.full((b,), cat, device=device))
                elif tg.cond.width:
                    cond = tg.cond.draw(b, log_freq=False)[0]
                else:
                    cond = torch.zeros(b, 0, device=device)
                rows_b = generate(tg.G, z, cond, tf.spans, gumbel_input=_reads_noise(tg.cfg), hard=True)[1]
                encoded.append(rows_b.cpu().numpy())
            rows = tf.decode(np.concatenate(encoded))
            keep = np.ones(batch, dtype=bool)
            for name, value in wanted.items():
                keep &= np.array([_same(v, value) for v in rows[name].tolist()], dtype=bool)
            take = np.flatnonzero(keep)[:need]
            parts.append({k: v[take] for k, v in rows.items()})
            made += len(take)
            if made >= n:
                break
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, made


def _same(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return value is None or (isinstance(value, float) and np.isnan(value))
    return bool(value == wanted)


def _conditions(
    tf: TableTransformer, conditions: dict[str, Any], space: CondSpace
) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The conditions as typed values to check (TableTransformer.condition_values, which names a condition that
    cannot be met), and the (conditioned column, category) of the first categorical one."""
    wanted = tf.condition_values(conditions)
    index_of = {c.name: i for i, c in enumerate(tf.columns)}
    for name, text in wanted.items():
        index = index_of[name]
        if tf.columns[index].kind in ("categorical", "boolean"):
            categories = tf.codes[index]["categories"]
            j = next(k for k, s in enumerate(space.spans) if s.column == index)
            return wanted, (j, len(categories) if text is None else categories.index(text))
    return wanted, None
