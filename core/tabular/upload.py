"""Uploaded tables: check a CSV or Parquet file and store it content-addressed, as `core.uploads` stores images.

A table is told from an image archive by its content, not its name: a ZIP starts with `PK`, a Parquet file with
`PAR1`; anything else is read as a CSV (UTF-8, a header row, comma-separated). It is refused, with a sentence naming
the problem, when it is not a readable CSV or Parquet file, when a row's cells do not match the header, when a cell
is longer than MAX_CELL_CHARS, when it has fewer than MIN_UPLOAD_ROWS rows, or when a column holds one value in
every row (a constant column: the generator has nothing to learn from it; SDV keeps such columns, we ask for them to
be dropped and added back after sampling, since they are most often an export's artefact).

Storage, `{data_dir}/datasets/{content_hash}/` (the folder `core.uploads.place` renames into place):
- `table.csv` or `table.parquet`: the file as uploaded;
- `index.json`: `{"format": "ganforge-table/1", "source": "csv" | "parquet", "rows", "columns": [Column.to_json()]}`
  (the inferred types, before any override);
- `preview.png`: per-column histograms.
`content_hash` is the SHA-256 of the file's bytes (after a prefix that keeps it apart from image datasets).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.tabular.columns import HOLDOUT, MIN_ROWS, Column, Table, infer_columns, summarize, training_rows, typed
from core.tabular.io import read_csv, read_parquet

FORMAT = "ganforge-table/1"
MAX_CELL_CHARS = 64 * 1024  # one cell's length, in characters
# The fewest rows that leave MIN_ROWS for training once HOLDOUT of them are held out (core.tabular.data.split_rows).
# This module loads no torch: the API imports it.
MIN_UPLOAD_ROWS = next(n for n in range(MIN_ROWS, 10 * MIN_ROWS) if training_rows(n) >= MIN_ROWS)
ZIP_MAGIC = b"PK"
PARQUET_MAGIC = b"PAR1"


def sniff(head: bytes) -> str:
    """What a dataset upload is, from its first bytes: "zip", "parquet" or "csv" (anything else is tried as CSV)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    return "csv"


@dataclass
class PreparedTable:
    """A checked table written to `tmp_dir`, ready to be placed under its content hash (`core.uploads.place`)."""

    tmp_dir: Path
    content_hash: str
    rows: int
    columns: list[Column]
    stats: dict[str, Any]  # what the dataset row keeps: kind, source, rows, columns with their summaries


def read_upload(data: bytes, source: str) -> Table:
    """The uploaded file as a table (strings from a CSV, numbers and strings from Parquet), checked as the module
    docstring says; a ValueError (message "file: ...") says what is wrong."""
    if not data.strip():
        raise ValueError("file: the file is empty")
    if source == "parquet":
        table = read_parquet(data)
    else:
        if b"\x00" in data[: 1 << 20]:
            raise ValueError("file: not a ZIP of images, a Parquet file or a CSV (it holds binary data)")
        table = read_csv_capped(data)
    rows = len(next(iter(table.values())))
    for name, values in table.items():
        if values.dtype == object:
            for i, v in enumerate(values.tolist()):
                if isinstance(v, str) and len(v) > MAX_CELL_CHARS:
                    raise ValueError(
                        f"file: the cell in column {name!r}, row {i + 1} is {len(v)} characters long, over the limit "
                        f"of {MAX_CELL_CHARS}"
                    )
    if rows < MIN_UPLOAD_ROWS:
        raise ValueError(
            f"file: the table has {rows} rows; at least {MIN_UPLOAD_ROWS} are needed ({MIN_ROWS} to train on once "
            f"{HOLDOUT:.0%} are held out)"
        )
    return table


def read_csv_capped(data: bytes) -> Table:
    """read_csv, with the csv module's own error for an over-long cell said in our words."""
    import csv

    try:
        return read_csv(data)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise ValueError(f"file: a cell is over the limit of {MAX_CELL_CHARS} characters") from exc
        raise ValueError(f"file: not a readable CSV ({exc})") from exc


def check_columns(table: Table, overrides: dict[str, str] | None = None) -> list[Column]:
    """The columns' types (with `overrides`); a ValueError names a column that holds one value in every row, or an
    override that cannot apply."""
    columns = infer_columns(table, overrides)
    full = typed(table, columns)
    for column in columns:
        values = full[column.name]
        if values.dtype == object:
            states = {v for v in values.tolist()}
        else:
            present = values[~np.isnan(values)]
            states = set(np.unique(present).tolist()) | ({None} if len(present) < len(values) else set())
        if len(states) <= 1:
            only = next(iter(states), None)
            shown = "missing" if only is None else f"{only:g}" if isinstance(only, float) else repr(only)
            raise ValueError(
                f"file: column {column.name!r} is {shown} in every row; a constant column gives the generator "
                "nothing to learn: drop it (and add it back to the synthetic rows)"
            )
    return columns


def describe(table: Table, columns: list[Column], inferred: list[Column] | None = None) -> list[dict[str, Any]]:
    """Each column's name, type (and the `inferred` one, when overrides changed it), share of missing cells and
    summary statistics (core.tabular.columns.summarize)."""
    full = typed(table, columns)
    out = []
    for column, guess in zip(columns, inferred or columns, strict=True):
        stats = summarize(full[column.name], column)
        missing = stats["missing"] / max(stats["count"], 1)
        out.append(
            {
                "name": column.name,
                "kind": column.kind,
                "inferred": guess.kind,
                "missing_share": round(missing, 6),
                "stats": stats,
            }
        )
    return out


def prepare_table(path: Path, *, source: str, datasets_dir: Path) -> PreparedTable:
    """Check the uploaded file at `path` (source "csv" or "parquet") and write the stored form into a new temporary
    folder inside `datasets_dir`. A ValueError ("file: ...") when it is refused; nothing is left behind then."""
    data = path.read_bytes()
    table = read_upload(data, source)
    columns = check_columns(table)
    content_hash = hashlib.sha256(FORMAT.encode() + b"\0" + data).hexdigest()
    tmp_dir = datasets_dir / f".tmp-{uuid.uuid4().hex}"
    tmp_dir.mkdir(parents=True)
    try:
        (tmp_dir / f"table.{source}").write_bytes(data)
        rows = len(next(iter(table.values())))
        index = {"format": FORMAT, "source": source, "rows": rows, "columns": [c.to_json() for c in columns]}
        (tmp_dir / "index.json").write_text(json.dumps(index, indent=1))
        (tmp_dir / "preview.png").write_bytes(preview_png(table, columns))
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    stats = {"kind": "table", "source": source, "rows": rows, "columns": describe(table, columns)}
    return PreparedTable(tmp_dir=tmp_dir, content_hash=content_hash, rows=rows, columns=columns, stats=stats)


def preview_png(table: Table, columns: list[Column]) -> bytes:
    """Per-column histograms of a table's rows, as PNG bytes (one set of bars: the real rows)."""
    import io

    from core.tabular.plot import histograms

    full = typed(table, columns)
    empty = {c.name: full[c.name][:0] for c in columns}
    buffer = io.BytesIO()
    histograms(full, empty, columns).save(buffer, format="PNG")
    return buffer.getvalue()


def read_stored(dataset_dir: Path) -> Table:
    """An uploaded table from its storage folder, as read at upload."""
    dataset_dir = Path(dataset_dir)
    index_path = dataset_dir / "index.json"
    if not index_path.is_file():
        raise ValueError(f"dataset: the uploaded table is missing from {dataset_dir}; was it deleted?")
    index = json.loads(index_path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"dataset: {dataset_dir} is not a ganforge table ({FORMAT})")
    source = index["source"]
    data = (dataset_dir / f"table.{source}").read_bytes()
    return read_parquet(data) if source == "parquet" else read_csv(data)
