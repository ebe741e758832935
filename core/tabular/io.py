"""Tables in and out: CSV text (the csv module, every cell a string) and the built-in tables.

Built-ins, from what scikit-learn ships (nothing is downloaded): `breast-cancer` (569 rows, 30 continuous
measurements and the diagnosis, malignant or benign) and `wine` (178 rows, 13 continuous measurements and the
cultivar, class_0 to class_2). Their class is a categorical column named `target`.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from core.tabular.columns import Column, Table, format_value

BUILTIN_TABLES = ("breast-cancer", "wine")
TARGET = "target"  # the built-ins' class column


def read_csv(data: bytes) -> Table:
    """A CSV (UTF-8, a header row, comma-separated) as a table of strings; a ValueError says what is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"file: not UTF-8 text (byte {exc.start})") from exc
    rows = list(csv.reader(io.StringIO(text, newline="")))
    rows = [row for row in rows if row]  # blank lines
    if not rows:
        raise ValueError("file: the CSV is empty")
    header = [name.strip() for name in rows[0]]
    if len(set(header)) != len(header) or any(not name for name in header):
        raise ValueError("file: the header row needs a distinct, non-empty name for every column")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"file: row {line} has {len(row)} cells, the header {len(header)}")
    if len(rows) < 2:
        raise ValueError("file: the CSV has a header but no rows")
    return {name: np.array([row[j] for row in rows[1:]], dtype=object) for j, name in enumerate(header)}


def write_csv(table: Table, columns: list[Column]) -> bytes:
    """A typed table as CSV bytes: a header, then one line per row; missing values are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    n = len(table[columns[0].name]) if columns else 0
    cells = [[format_value(c, v) for v in table[c.name].tolist()] for c in columns]
    for i in range(n):
        writer.writerow([col[i] for col in cells])
    return out.getvalue().encode()


def builtin_table(name: str) -> Table:
    """A built-in table: scikit-learn's features as numbers and the class, by name, as the `target` column."""
    from sklearn.datasets import load_breast_cancer, load_wine

    loaders = {"breast-cancer": load_breast_cancer, "wine": load_wine}
    if name not in loaders:
        raise ValueError(f"dataset: {name!r} is not a built-in table; use one of {', '.join(BUILTIN_TABLES)}")
    bunch = loaders[name]()
    table: Table = {str(f): bunch.data[:, j].astype(np.float64) for j, f in enumerate(bunch.feature_names)}
    table[TARGET] = np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    return table
