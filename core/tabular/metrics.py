"""How close synthetic rows are to real ones, as SDMetrics' quality report defines it, and whether they copy rows.

- Column shapes: per column, 1 − the Kolmogorov–Smirnov statistic between the real and synthetic values for numeric
  and datetime columns (missing values left out), 1 − the total variation distance between the category frequencies
  for categorical and boolean ones (missing as a category). `column_shapes` is their mean.
- Column pair trends: per pair of columns, 1 − |ρ_real − ρ_synthetic| / 2 with Pearson's ρ when both are numeric
  (rows with a missing value in either left out), else 1 − the total variation distance between the two contingency
  tables, numeric columns cut into 10 bins on the real values' range. `column_pair_trends` is their mean.
- `quality_score`: the mean of the two.
- Privacy, `dcr_ratio`: the median distance from each synthetic row to its closest training row over the same for
  real holdout rows. Rows are compared on every column: numeric values scaled by the training range (|Δ|, at most 1),
  a different category or a missing value on one side counts 1. Near 1 the synthetic rows are as far from the
  training rows as unseen real rows are; far below 1 the model copies training rows.

- Machine-learning efficacy, `ml_efficacy`, when the table names a target column: a logistic regression (on every
  other column: numbers scaled by the training range with a missing flag, one-hot categories) trained on the
  synthetic rows predicts the target of the real holdout; the value is its ROC AUC (one-vs-rest, macro-averaged for
  more than two classes). Left out when the synthetic rows hold a single class.

`TableEvaluator` reports them during training; its `floor` holds the same metrics for the real holdout against the
training rows (the dcr_ratio of real unseen rows is 1 by definition; `ml_efficacy` is the same classifier trained on
the real training rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.tabular.columns import Column, Table

PAIR_BINS = 10
MAX_DCR_ROWS = 2000  # rows of each set in the distance computation (a seeded sample of larger sets)
MIN_HOLDOUT = 8  # fewer holdout rows give no floor and no privacy ratio

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


def _numeric(column: Column) -> bool:
    return column.kind in ("continuous", "discrete", "datetime")


def ks_complement(real: np.ndarray, fake: np.ndarray) -> float:
    """1 − the two-sample Kolmogorov–Smirnov statistic of two numeric samples (NaN left out)."""
    r, f = np.sort(real[~np.isnan(real)]), np.sort(fake[~np.isnan(fake)])
    if len(r) == 0 or len(f) == 0:
        return float(len(r) == len(f))
    grid = np.concatenate([r, f])
    cdf_r = np.searchsorted(r, grid, side="right") / len(r)
    cdf_f = np.searchsorted(f, grid, side="right") / len(f)
    return float(1.0 - np.abs(cdf_r - cdf_f).max())


def _codes(values: np.ndarray) -> np.ndarray:
    """Categories as strings, missing as one more value."""
    return np.array(["\0missing" if v is None else str(v) for v in values.tolist()], dtype=object)


def tv_complement(real: np.ndarray, fake: np.ndarray) -> float:
    """1 − the total variation distance between two samples' category frequencies (missing is a category)."""
    r, f = _codes(real), _codes(fake)
    cats = np.unique(np.concatenate([r, f]))
    pr = np.array([(r == c).mean() for c in cats])
    pf = np.array([(f == c).mean() for c in cats])
    return float(1.0 - 0.5 * np.abs(pr - pf).sum())


def _bins(real: np.ndarray, fake: np.ndarray, column: Column) -> tuple[np.ndarray, np.ndarray]:
    """Both samples as category codes: numeric values cut into PAIR_BINS bins on the real range (missing: -1)."""
    if not _numeric(column):
        return _codes(real), _codes(fake)
    present = real[~np.isnan(real)]
    lo, hi = (float(present.min()), float(present.max())) if len(present) else (0.0, 1.0)
    edges = np.linspace(lo, hi, PAIR_BINS + 1)[1:-1]

    def cut(x: np.ndarray) -> np.ndarray:
        out = np.digitize(np.nan_to_num(x, nan=lo), edges).astype(object)
        out[np.isnan(x)] = -1
        return out

    return cut(real), cut(fake)


def _contingency(a: np.ndarray, b: np.ndarray) -> dict[tuple[Any, Any], float]:
    keys, counts = np.unique(np.stack([a.astype(str), b.astype(str)], 1), axis=0, return_counts=True)
    return {(k[0], k[1]): c / len(a) for k, c in zip(keys.tolist(), counts.tolist(), strict=True)}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def quality(real: Table, fake: Table, columns: list[Column]) -> dict[str, float]:
    """`column_shapes`, `column_pair_trends` and their mean `quality_score` (see the module docstring)."""
    shapes = [
        ks_complement(real[c.name], fake[c.name]) if _numeric(c) else tv_complement(real[c.name], fake[c.name])
        for c in columns
    ]
    binned = {c.name: _bins(real[c.name], fake[c.name], c) for c in columns}
    trends = []
    for i, a in enumerate(columns):
        for b in columns[i + 1 :]:
            if _numeric(a) and _numeric(b):
                rho_r = _pearson(real[a.name], real[b.name])
                rho_f = _pearson(fake[a.name], fake[b.name])
                trends.append(1.0 - abs(rho_r - rho_f) / 2.0)
            else:
                pr = _contingency(binned[a.name][0], binned[b.name][0])
                pf = _contingency(binned[a.name][1], binned[b.name][1])
                tvd = 0.5 * sum(abs(pr.get(k, 0.0) - pf.get(k, 0.0)) for k in set(pr) | set(pf))
                trends.append(1.0 - tvd)
    out = {"column_shapes": float(np.mean(shapes))}
    if trends:
        out["column_pair_trends"] = float(np.mean(trends))
    out["quality_score"] = float(np.mean(list(out.values())))
    return out


def _features(table: Table, columns: list[Column], train: Table) -> np.ndarray:
    """Rows (N, F) whose L1 distance is the privacy metric's: numbers scaled by the training range, a one-hot of
    halves per category (a different category differs by 1), a missing flag per numeric column."""
    parts = []
    for c in columns:
        x = table[c.name]
        if _numeric(c):
            t = train[c.name][~np.isnan(train[c.name])]
            lo, span = (float(t.min()), float(t.max() - t.min())) if len(t) else (0.0, 1.0)
            missing = np.isnan(x)
            parts.append(np.where(missing, 0.0, (np.nan_to_num(x) - lo) / (span or 1.0))[:, None])
            parts.append(missing[:, None].astype(np.float64))
        else:
            codes, ref = _codes(x), np.unique(_codes(train[c.name]))
            parts.append(0.5 * (codes[:, None] == ref[None, :]).astype(np.float64))
            parts.append(0.5 * ~np.isin(codes, ref)[:, None])  # a category training never had
    return np.concatenate(parts, 1)


def _closest(rows: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Each row's L1 distance to its closest training row (N,)."""
    a, b = torch.from_numpy(rows), torch.from_numpy(train)
    return torch.cat([torch.cdist(chunk, b, p=1).min(1).values for chunk in a.split(256)]).numpy()


def _sample(table: Table, n: int, seed: int) -> Table:
    size = len(next(iter(table.values())))
    if size <= n:
        return table
    pick = np.sort(np.random.default_rng(seed).choice(size, n, replace=False))
    return {k: v[pick] for k, v in table.items()}


def dcr_ratio(fake: Table, train: Table, held: Table, columns: list[Column]) -> float:
    """Median distance of synthetic rows to their closest training row over that of the holdout rows."""
    train_s = _sample(train, MAX_DCR_ROWS, 1)
    ref = _features(train_s, columns, train)
    d_fake = _closest(_features(_sample(fake, MAX_DCR_ROWS, 2), columns, train), ref)
    d_held = _closest(_features(_sample(held, MAX_DCR_ROWS, 3), columns, train), ref)
    return float(np.median(d_fake) / max(float(np.median(d_held)), 1e-12))


def ml_efficacy(fit_rows: Table, held: Table, columns: list[Column], target: str, train: Table) -> float | None:
    """ROC AUC on the holdout's target of a logistic regression fitted on `fit_rows`; None when `fit_rows` or the
    holdout hold a single class."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    features = [c for c in columns if c.name != target]
    y_fit, y_held = _codes(fit_rows[target]), _codes(held[target])
    classes = sorted(set(y_fit.tolist()))
    if len(classes) < 2 or len(set(y_held.tolist())) < 2 or not features:
        return None
    model = LogisticRegression(max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_features(fit_rows, features, train), y_fit)
    proba = model.predict_proba(_features(held, features, train))  # (N, classes the model saw)
    everything = sorted(set(classes) | set(y_held.tolist()))
    full = np.zeros((len(y_held), len(everything)))
    for j, c in enumerate(model.classes_.tolist()):
        full[:, everything.index(c)] = proba[:, j]
    if len(everything) == 2:
        return float(roc_auc_score(y_held == everything[1], full[:, 1]))
    full /= full.sum(1, keepdims=True).clip(1e-12)
    return float(roc_auc_score(y_held, full, multi_class="ovr", average="macro", labels=everything))


class TableEvaluator:
    """`TableEvaluator(dataset, n_samples)` then `values = ev(sample_fn)`, sample_fn(n) giving encoded rows (n, D)
    as core.families.ctgan's sampler does; `floor`, `primary` and `skipped` as core.metrics.Evaluator's."""

    def __init__(self, dataset: Any, n_samples: int = 1000) -> None:
        self.data = dataset
        self.n_samples = n_samples
        self.primary: tuple[str, str] = ("quality_score", "max")
        self.skipped: dict[str, str] = {}
        n_held = len(next(iter(dataset.held.values()))) if dataset.held else 0
        self.floor: dict[str, float] = {}
        if n_held >= MIN_HOLDOUT:
            self.floor = quality(dataset.rows, dataset.held, dataset.columns) | {"dcr_ratio": 1.0}
        else:
            for name in ("dcr_ratio", "ml_efficacy"):
                self.skipped[name] = f"the table holds out {n_held} rows; {name} needs at least {MIN_HOLDOUT}"
        if dataset.target is None:
            self.skipped["ml_efficacy"] = "the table names no target column"
        if "ml_efficacy" not in self.skipped:
            real = ml_efficacy(dataset.rows, dataset.held, dataset.columns, dataset.target, dataset.rows)
            if real is not None:
                self.floor["ml_efficacy"] = real

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        rows, _ = sample_fn(self.n_samples)
        fake = self.data.transformer.decode(rows.detach().float().cpu().numpy())
        values = quality(self.data.rows, fake, self.data.columns)
        if "dcr_ratio" not in self.skipped:
            values["dcr_ratio"] = dcr_ratio(fake, self.data.rows, self.data.held, self.data.columns)
        if "ml_efficacy" not in self.skipped:
            auc = ml_efficacy(fake, self.data.held, self.data.columns, self.data.target, self.data.rows)
            if auc is not None:
                values["ml_efficacy"] = auc
        return values | {"n_fake": float(self.n_samples)}
