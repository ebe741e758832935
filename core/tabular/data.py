"""Table datasets: a `core.datasets.Dataset` whose samples are a table's encoded rows.

A table is split once, under a fixed seed, into the rows training sees and a real holdout (HOLDOUT of the rows)
that it never sees: the privacy metric and the real-vs-real floor compare against the holdout. The transformer is
fitted on every row (so that the holdout's categories are known) with a fixed seed, and encodes the training rows
into `store` (N, D) float32, which `batch` serves as any dataset does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.datasets import DATA_SEED, Dataset
from core.tabular.columns import MIN_ROWS, Column, Table, infer_columns, training_rows, typed
from core.tabular.io import TARGET, builtin_table
from core.tabular.transformer import TableTransformer


@dataclass
class TableDataset(Dataset):
    """Encoded training rows in `store` (N, D); the typed training rows (`rows`) and holdout (`held`), the fitted
    transformer and the target column (None when unnamed)."""

    rows: Table = dataclasses.field(default_factory=dict)
    held: Table = dataclasses.field(default_factory=dict)
    transformer: TableTransformer | None = None
    target: str | None = None

    @property
    def columns(self) -> list[Column]:
        assert self.transformer is not None
        return self.transformer.columns

    def to(self, device: torch.device | str) -> TableDataset:
        """This dataset with its tensors on `device`."""
        return dataclasses.replace(self, store=self.store.to(device))

    def info(self) -> dict[str, Any]:
        """What a checkpoint records about the data: a Dataset's facts, the transformer's state and the target."""
        assert self.transformer is not None
        return super().info() | {"table": self.transformer.state(), "target": self.target}

    def reencode(self, state: dict[str, Any]) -> None:
        """Encode the rows with a transformer fitted before (a checkpoint's), when it differs from this one."""
        assert self.transformer is not None
        if state == self.transformer.state():
            return
        self.transformer = TableTransformer.from_state(state)
        encoded = self.transformer.encode(self.rows, seed=DATA_SEED)  # (N, D)
        self.store = torch.from_numpy(encoded).to(self.store.device)


def split_rows(n: int, *, seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The training and holdout row indices of an n-row table (HOLDOUT of them held out), each sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_held = n - training_rows(n)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def table_dataset(
    name: str,
    table: Table,
    *,
    overrides: dict[str, str] | None = None,
    target: str | None = None,
    state: dict[str, Any] | None = None,
) -> TableDataset:
    """A dataset from a table as read (strings or numbers): types inferred (with `overrides`), split, encoded with
    a transformer fitted here or rebuilt from its `state`."""
    columns = infer_columns(table, overrides)
    full = typed(table, columns)
    n = len(next(iter(full.values())))
    train_idx, held_idx = split_rows(n)
    if len(train_idx) < MIN_ROWS:
        raise ValueError(f"dataset: {name} has {n} rows; a table needs at least {MIN_ROWS} training rows")
    if state is not None:
        transformer = TableTransformer.from_state(state)
    else:
        transformer = TableTransformer.fit(full, columns, seed=DATA_SEED)
    rows = {k: v[train_idx] for k, v in full.items()}
    held = {k: v[held_idx] for k, v in full.items()}
    store = torch.from_numpy(transformer.encode(rows, seed=DATA_SEED))  # (N, D)
    return TableDataset(
        name=name,
        kind="table",
        store=store,
        labels=None,
        num_classes=0,
        channels=0,
        image_size=0,
        rows=rows,
        held=held,
        transformer=transformer,
        target=target,
    )


def builtin_dataset(name: str) -> TableDataset:
    """breast-cancer, wine or mixed, with their class as the categorical target column."""
    return table_dataset(name, builtin_table(name), target=TARGET, state=json.loads(_builtin_state(name)))


@functools.cache
def _builtin_state(name: str) -> str:
    """A built-in table's fitted transformer (JSON), fitted once per process: the fit is a pure function of the
    table and DATA_SEED, and costs a mixture fit per column."""
    table = builtin_table(name)
    columns = infer_columns(table)
    return json.dumps(TableTransformer.fit(typed(table, columns), columns, seed=DATA_SEED).state())
