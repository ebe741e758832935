"""A table in memory, its columns' types, and their summary statistics.

A `Table` maps column names (in order) to 1-D arrays of equal length: as read from a CSV, object arrays of strings;
from a library, numeric arrays. `infer_columns` gives each column a `Column` (its kind and how it is written back),
and `typed` turns the table into the form the transformer and the metrics use:

- `continuous`, `discrete` (integers): float64, NaN where missing;
- `datetime`: float64 seconds since 1970-01-01 UTC, NaN where missing;
- `categorical`, `boolean`: object arrays of strings, None where missing (a boolean is a categorical with two values
  spelled as true/false, yes/no, t/f, y/n or 0/1; its spelling is kept).

Missing values are empty cells and the usual markers (NA, N/A, NaN, null, None, ?), in any case.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Table = dict[str, np.ndarray]  # column name -> (N,) values
Kind = Literal["continuous", "discrete", "categorical", "boolean", "datetime"]
KINDS: tuple[str, ...] = ("continuous", "discrete", "categorical", "boolean", "datetime")

MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
BOOLEAN_SPELLINGS = [{"true", "false"}, {"yes", "no"}, {"t", "f"}, {"y", "n"}, {"0", "1"}]
MAX_DECIMALS = 6  # a continuous column is written with at most this many decimals
TOP_CATEGORIES = 20  # a categorical column's summary lists this many of its most frequent values
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# How a table is split for training (core/tabular/data.py), here so that torch-free code (uploads) can check it.
HOLDOUT = 0.2  # the fraction of a table's rows kept out of training


def training_rows(n: int) -> int:
    """How many of an n-row table's rows training sees (the rest, HOLDOUT of them, are held out)."""
    return n - round(n * HOLDOUT)


MIN_ROWS = 10  # fewer training rows than this cannot train


@dataclass(frozen=True)
class Column:
    """One column's type and how its values are written back."""

    name: str
    kind: Kind
    decimals: int = 0  # continuous: decimals written (the most the data shows, at most MAX_DECIMALS)
    date_only: bool = False  # datetime: every value was a date without a time

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Column:
        return cls(**data)


def is_missing(value: Any) -> bool:
    """A missing cell: None, NaN, or an empty or marker string."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in MISSING_MARKERS
    return False


def _present(values: np.ndarray) -> list[Any]:
    """The column's non-missing values, strings stripped."""
    if values.dtype.kind in "fiub":
        v = values.astype(np.float64)
        return v[~np.isnan(v)].tolist()
    return [v.strip() if isinstance(v, str) else v for v in values.tolist() if not is_missing(v)]


def _number(value: Any) -> float | None:
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _datetime(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) < 8 or value[:4].isdigit() is False:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _decimals(numbers: list[float], raw: list[Any]) -> int:
    """How many decimals the values show: counted in the text when they were read as text, else the fewest that
    represent every number exactly (at most MAX_DECIMALS)."""
    texts = [r for r in raw if isinstance(r, str)]
    if texts:
        most = 0
        for t in texts:
            mantissa = t.lower().split("e")[0]
            if "." in mantissa:
                most = max(most, len(mantissa.split(".")[1]))
        return min(most, MAX_DECIMALS)
    x = np.asarray(numbers, dtype=np.float64)
    for d in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(x, d), x, rtol=0, atol=1e-9):
            return d
    return MAX_DECIMALS


def infer_column(name: str, values: np.ndarray) -> Column:
    """A column's kind, from its non-missing values: boolean, numeric (discrete when every value is an integer),
    datetime (ISO 8601 text), else categorical."""
    present = _present(values)
    spelled = {str(_canonical(v)).lower() for v in present}
    if present and len(spelled) <= 2 and any(spelled <= s for s in BOOLEAN_SPELLINGS):
        return Column(name, "boolean")
    numbers = [_number(v) for v in present]
    if present and all(x is not None for x in numbers):
        xs = [float(x) for x in numbers if x is not None]
        texts_are_ints = all("." not in v and "e" not in v.lower() for v in present if isinstance(v, str))
        if all(x.is_integer() for x in xs) and texts_are_ints:
            return Column(name, "discrete")
        return Column(name, "continuous", decimals=_decimals(xs, present))
    stamps = [_datetime(v) for v in present]
    if present and all(s is not None for s in stamps):
        return Column(name, "datetime", date_only=all(len(str(v)) == 10 for v in present))
    return Column(name, "categorical")


def _canonical(value: Any) -> Any:
    """Numbers as their shortest text (1.0 -> "1"), so that a 0/1 numeric column reads as boolean."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return value


def infer_columns(table: Table, overrides: dict[str, str] | None = None) -> list[Column]:
    """Every column's type, inferred, with `overrides` (column -> kind) applied; a ValueError names a column an
    override cannot apply to."""
    overrides = overrides or {}
    unknown = [name for name in overrides if name not in table]
    if unknown:
        raise ValueError(f"columns.{unknown[0]}: no such column; the table has {', '.join(table)}")
    columns = []
    for name, values in table.items():
        column = infer_column(name, values)
        kind = overrides.get(name)
        if kind is not None and kind != column.kind:
            column = _override(column, values, kind)
        columns.append(column)
    return columns


def _override(column: Column, values: np.ndarray, kind: str) -> Column:
    """The column read as `kind`, when its values allow it."""
    name, present = column.name, _present(values)
    if kind not in KINDS:
        raise ValueError(f"columns.{name}: unknown type {kind!r}; use one of {', '.join(KINDS)}")
    if kind in ("continuous", "discrete"):
        numbers = [_number(v) for v in present]
        if any(x is None for x in numbers):
            raise ValueError(f"columns.{name}: not every value is a number, so the column cannot be {kind}")
        xs = [float(x) for x in numbers if x is not None]
        if kind == "discrete" and not all(x.is_integer() for x in xs):
            raise ValueError(f"columns.{name}: some values have decimals, so the column cannot be discrete")
        return Column(name, kind, decimals=_decimals(xs, present) if kind == "continuous" else 0)  # type: ignore[arg-type]
    if kind == "datetime":
        if not present or any(_datetime(v) is None for v in present):
            raise ValueError(f"columns.{name}: not every value is an ISO 8601 date or time")
        return Column(name, "datetime", date_only=all(len(str(v)) == 10 for v in present))
    if kind == "boolean":
        spelled = {str(_canonical(v)).lower() for v in present}
        if len(spelled) > 2:
            raise ValueError(f"columns.{name}: {len(spelled)} distinct values, so the column cannot be boolean")
    return Column(name, kind)  # type: ignore[arg-type]


def typed(table: Table, columns: list[Column]) -> Table:
    """The table in its typed form (see the module docstring)."""
    out: Table = {}
    for column in columns:
        values = table[column.name]
        if column.kind in ("continuous", "discrete"):
            out[column.name] = np.array(
                [np.nan if is_missing(v) else float(_number(v) or 0.0) for v in values.tolist()], dtype=np.float64
            )
        elif column.kind == "datetime":
            stamps = [None if is_missing(v) else _datetime(str(v).strip()) for v in values.tolist()]
            out[column.name] = np.array(
                [np.nan if s is None else (s - EPOCH).total_seconds() for s in stamps], dtype=np.float64
            )
        else:
            out[column.name] = np.array(
                [None if is_missing(v) else str(_canonical(v)).strip() for v in values.tolist()], dtype=object
            )
    return out


def format_value(column: Column, value: Any) -> str:
    """One typed value as CSV text: empty when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column.kind == "discrete":
        return str(round(float(value)))
    if column.kind == "continuous":
        return f"{value:.{column.decimals}f}"
    if column.kind == "datetime":
        stamp = EPOCH + dt.timedelta(seconds=round(float(value)))
        return stamp.date().isoformat() if column.date_only else stamp.replace(tzinfo=None).isoformat()
    return str(value)


def summarize(values: np.ndarray, column: Column) -> dict[str, Any]:
    """Summary statistics of one typed column: counts, and min/max/mean/std/quartiles of numbers and times, or the
    most frequent categories."""
    n = len(values)
    if column.kind in ("continuous", "discrete", "datetime"):
        present = values[~np.isnan(values)]
        stats: dict[str, Any] = {"kind": column.kind, "count": n, "missing": int(n - len(present))}
        stats["distinct"] = len(np.unique(present))
        if len(present):
            q = np.quantile(present, [0.0, 0.25, 0.5, 0.75, 1.0])
            keys = ("min", "q25", "median", "q75", "max")
            if column.kind == "datetime":
                stats |= {k: format_value(column, float(v)) for k, v in zip(keys, q, strict=True)}
            else:
                stats |= {k: float(v) for k, v in zip(keys, q, strict=True)}
                stats |= {"mean": float(present.mean()), "std": float(present.std())}
        return stats
    present_list = [v for v in values.tolist() if v is not None]
    names, counts = np.unique(np.array(present_list, dtype=str), return_counts=True) if present_list else ([], [])
    order = sorted(zip(names, counts, strict=True), key=lambda nc: (-nc[1], nc[0]))
    return {
        "kind": column.kind,
        "count": n,
        "missing": n - len(present_list),
        "distinct": len(order),
        "top": [{"value": str(v), "count": int(c)} for v, c in order[:TOP_CATEGORIES]],
    }
