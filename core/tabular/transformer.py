"""The reversible encoding of a table into a matrix the networks read and write (Xu et al. 2019, section 4.2).

- Numeric columns (continuous, discrete, datetime) get mode-specific normalization: a variational Gaussian mixture
  (scikit-learn's BayesianGaussianMixture, at most MAX_MODES components, a Dirichlet-process prior of weight 0.001)
  is fitted to the column and the modes weighing more than MODE_WEIGHT_THRESHOLD are kept. A value c is encoded as a
  mode k drawn from its posterior ρ_k ∝ π_k N(c; η_k, σ_k) (a one-hot β) and a scalar α = (c − η_k) / (4 σ_k) clipped
  to [−0.99, 0.99] (a tanh output). A missing value is one more state of β, with α = 0. Decoding clips α to [−1, 1],
  takes the likeliest state, rounds discrete values and keeps every number within the column's observed range.
- Categorical and boolean columns are one-hot over their categories (most frequent first), plus a missing state.

The fitted state (`state()`, `from_state`) is JSON of numbers, strings and lists: a checkpoint keeps it in its
metadata, so sampling needs nothing but the checkpoint. Encoding draws the modes from a generator seeded by the
caller, so the same state and seed give the same matrix.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.tabular.columns import Column, Table

MAX_MODES = 10  # components of each column's variational Gaussian mixture
MODE_WEIGHT_THRESHOLD = 0.005  # modes lighter than this are dropped (the paper's ε)
WEIGHT_PRIOR = 0.001  # the Dirichlet-process concentration: few modes unless the data asks for more
FIT_ROWS = 20_000  # a column's mixture is fitted on at most this many of its values (a seeded sample)
ALPHA_CLIP = 0.99
STATE_VERSION = 1


@dataclass(frozen=True)
class Span:
    """A block of the encoded matrix: `width` entries from `start`, activated by tanh (a scalar) or softmax (a
    one-hot). `role` is "value" (α), "mode" (β, with the missing state last when the column has one) or
    "category" (with the missing state last); `column` is the column's position."""

    start: int
    width: int
    activation: Literal["tanh", "softmax"]
    role: Literal["value", "mode", "category"]
    column: int


class TableTransformer:
    """`fit(typed_table, columns, seed)` once, then `encode` and `decode`; see the module docstring."""

    def __init__(self, columns: list[Column], codes: list[dict[str, Any]]) -> None:
        self.columns = columns
        self.codes = codes  # per column: numeric {"weights", "means", "stds", "lo", "hi", "missing"} or
        # categorical {"categories", "counts", "missing", "missing_count"}
        self.spans: list[Span] = []
        start = 0
        for i, (column, code) in enumerate(zip(columns, codes, strict=True)):
            if _numeric(column):
                self.spans.append(Span(start, 1, "tanh", "value", i))
                width = len(code["means"]) + int(code["missing"])
                self.spans.append(Span(start + 1, width, "softmax", "mode", i))
                start += 1 + width
            else:
                width = len(code["categories"]) + int(code["missing"])
                self.spans.append(Span(start, width, "softmax", "category", i))
                start += width
        self.width = start

    @classmethod
    def fit(cls, table: Table, columns: list[Column], *, seed: int) -> TableTransformer:
        """Fit every column of a typed table (core.tabular.columns.typed)."""
        rng = np.random.default_rng(seed)
        codes = []
        for column in columns:
            values = table[column.name]
            if _numeric(column):
                codes.append(_fit_numeric(values.astype(np.float64), rng=rng, seed=seed))
            else:
                codes.append(_fit_categorical(values))
        return cls(columns, codes)

    def state(self) -> dict[str, Any]:
        """The fitted state as JSON-ready numbers, strings and lists."""
        return {"version": STATE_VERSION, "columns": [c.to_json() for c in self.columns], "codes": self.codes}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TableTransformer:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"table transformer state version {state.get('version')!r} is not {STATE_VERSION}")
        return cls([Column.from_json(c) for c in state["columns"]], state["codes"])

    def condition_values(self, conditions: dict[str, Any]) -> dict[str, Any]:
        """Sampling conditions ({column: value}) as the typed values rows must hold: a category's text (None for
        the missing state) or a discrete column's number; a ValueError ("conditions.<column>: ...") names one that
        cannot be met."""
        by_name = {c.name: (i, c) for i, c in enumerate(self.columns)}
        wanted: dict[str, Any] = {}
        for name, value in conditions.items():
            if name not in by_name:
                raise ValueError(f"conditions.{name}: no such column; the table has {', '.join(by_name)}")
            index, column = by_name[name]
            code = self.codes[index]
            if column.kind in ("categorical", "boolean"):
                text = None if value is None else str(value)
                if text is None and not code["missing"]:
                    raise ValueError(f"conditions.{name}: the column has no missing values to ask for")
                if text is not None and text not in code["categories"]:
                    shown = ", ".join(code["categories"][:20])
                    raise ValueError(f"conditions.{name}: {text!r} is not one of its categories ({shown})")
                wanted[name] = text
            elif column.kind == "discrete":
                try:
                    number = float(value)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"conditions.{name}: {value!r} is not an integer") from exc
                if not number.is_integer() or not code["lo"] <= number <= code["hi"]:
                    raise ValueError(
                        f"conditions.{name}: {value!r} is not an integer within {code['lo']:g}..{code['hi']:g}"
                    )
                wanted[name] = number
            else:
                raise ValueError(
                    f"conditions.{name}: a {column.kind} column cannot be fixed to one value; condition on "
                    "categorical, boolean or discrete columns"
                )
        return wanted

    @property
    def category_spans(self) -> list[Span]:
        """The one-hot spans of categorical and boolean columns: what the conditional vector chooses from."""
        return [s for s in self.spans if s.role == "category"]

    def encode(self, table: Table, *, seed: int) -> np.ndarray:
        """A typed table (N rows) as an (N, width) float32 matrix; a ValueError names a category the fit never
        saw."""
        n = len(next(iter(table.values()))) if table else 0
        out = np.zeros((n, self.width), dtype=np.float32)
        rng = np.random.default_rng(seed)
        for span in self.spans:
            column, code = self.columns[span.column], self.codes[span.column]
            values = table[column.name]
            if span.role == "value":
                if not code["missing"] and np.isnan(values.astype(np.float64)).any():
                    raise ValueError(f"columns.{column.name}: a missing value, which the fit never saw")
                alpha, state = _encode_numeric(values.astype(np.float64), code, rng)
                out[:, span.start] = alpha
                out[np.arange(n), span.start + 1 + state] = 1.0  # the mode span follows the value
            elif span.role == "category":
                index = {c: j for j, c in enumerate(code["categories"])}
                missing = len(code["categories"])
                for row, value in enumerate(values.tolist()):
                    if value is None:
                        if not code["missing"]:
                            raise ValueError(f"columns.{column.name}: a missing value, which the fit never saw")
                        out[row, span.start + missing] = 1.0
                    elif value in index:
                        out[row, span.start + index[value]] = 1.0
                    else:
                        raise ValueError(f"columns.{column.name}: category {value!r} was not in the fitted data")
        return out

    def decode(self, matrix: np.ndarray) -> Table:
        """An (N, width) matrix (activated: α in [−1, 1], one-hots or scores) as a typed table."""
        table: Table = {}
        for span in self.spans:
            column, code = self.columns[span.column], self.codes[span.column]
            if span.role == "value":
                alpha = np.clip(matrix[:, span.start].astype(np.float64), -1.0, 1.0)
                state = matrix[:, span.start + 1 : span.start + 1 + len(code["means"]) + int(code["missing"])]
                table[column.name] = _decode_numeric(alpha, state.argmax(1), code, column)
            elif span.role == "category":
                picks = matrix[:, span.start : span.start + span.width].argmax(1)
                names = [*code["categories"], None]
                table[column.name] = np.array([names[j] for j in picks.tolist()], dtype=object)
        return {c.name: table[c.name] for c in self.columns}


def _numeric(column: Column) -> bool:
    return column.kind in ("continuous", "discrete", "datetime")


def _fit_numeric(values: np.ndarray, *, rng: np.random.Generator, seed: int) -> dict[str, Any]:
    """A numeric column's kept modes (weights, means, stds), its range and whether it has missing values."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    present = values[~np.isnan(values)]
    missing = bool(len(present) < len(values))
    if len(present) == 0:
        return {"weights": [1.0], "means": [0.0], "stds": [1.0], "lo": 0.0, "hi": 0.0, "missing": missing}
    lo, hi = float(present.min()), float(present.max())
    # A floor on the stds, relative to the column's spread, keeps α finite for point masses (a constant value).
    floor = max((hi - lo) * 1e-3, abs(hi) * 1e-6, 1e-6)
    sample = present if len(present) <= FIT_ROWS else rng.choice(present, FIT_ROWS, replace=False)
    k = min(MAX_MODES, len(np.unique(sample)))
    if k < 2:
        return {"weights": [1.0], "means": [lo], "stds": [floor], "lo": lo, "hi": hi, "missing": missing}
    gmm = BayesianGaussianMixture(
        n_components=k,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=WEIGHT_PRIOR,
        n_init=1,
        max_iter=100,
        random_state=seed,
        covariance_type="diag",  # one dimension: the same model as "full", without a Cholesky per component
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a mixture that stops early is still a good encoding
        gmm.fit(sample.reshape(-1, 1))
    keep = gmm.weights_ > MODE_WEIGHT_THRESHOLD
    weights = gmm.weights_[keep] / gmm.weights_[keep].sum()
    means = gmm.means_[keep, 0]
    stds = np.maximum(np.sqrt(gmm.covariances_[keep].reshape(-1)), floor)
    order = np.argsort(means)
    return {
        "weights": [float(w) for w in weights[order]],
        "means": [float(m) for m in means[order]],
        "stds": [float(s) for s in stds[order]],
        "lo": lo,
        "hi": hi,
        "missing": missing,
    }


def _fit_categorical(values: np.ndarray) -> dict[str, Any]:
    """A categorical column's categories, most frequent first (ties by name), their counts and its missing state."""
    present = [v for v in values.tolist() if v is not None]
    names, counts = np.unique(np.array(present, dtype=str), return_counts=True) if present else ([], [])
    order = sorted(zip(names, counts, strict=True), key=lambda nc: (-nc[1], nc[0]))
    missing_count = len(values) - len(present)
    return {
        "categories": [str(n) for n, _ in order],
        "counts": [int(c) for _, c in order],
        "missing": missing_count > 0,
        "missing_count": int(missing_count),
    }


def _encode_numeric(
    values: np.ndarray, code: dict[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """α (N,) and the state (N,): a mode drawn from each value's posterior, or the missing state."""
    weights, means, stds = (np.asarray(code[k], dtype=np.float64) for k in ("weights", "means", "stds"))
    k = len(means)
    nan = np.isnan(values)
    x = np.where(nan, means[0], values)[:, None]  # (N, 1)
    log_p = np.log(weights)[None] - np.log(stds)[None] - 0.5 * ((x - means[None]) / stds[None]) ** 2  # (N, K)
    post = np.exp(log_p - log_p.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    u = rng.random(len(values))[:, None]  # (N, 1)
    state = np.minimum((post.cumsum(1) < u).sum(1), k - 1)  # (N,) inverse-CDF draw of the mode
    alpha = np.clip((x[:, 0] - means[state]) / (4.0 * stds[state]), -ALPHA_CLIP, ALPHA_CLIP)
    alpha[nan] = 0.0
    state[nan] = k
    return alpha.astype(np.float32), state


def _decode_numeric(alpha: np.ndarray, state: np.ndarray, code: dict[str, Any], column: Column) -> np.ndarray:
    means, stds = np.asarray(code["means"]), np.asarray(code["stds"])
    k = len(means)
    mode = np.minimum(state, k - 1)
    x = np.clip(alpha * 4.0 * stds[mode] + means[mode], code["lo"], code["hi"])
    if column.kind == "discrete":
        x = np.round(x)
    elif column.kind == "continuous":
        x = np.round(x, column.decimals)
    x[state >= k] = math.nan
    return x
