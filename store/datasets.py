"""Uploaded datasets: their rows (the files live content-addressed in `store.layout.dataset_dir`).

A table's row keeps what describes it in `stats` (core/tabular/upload.py makes it): `{"kind": "table", "source",
"rows", "columns": [{"name", "kind", "inferred", "missing_share", "stats"}], "overrides": {column: kind},
"target": column | None}`; its id starts with `tbl_`, an image dataset's with `ds_`, a translation upload's with
`paired_` or `unpaired_` (its stats' `kind`, with `layout`, `held_out` and the other side's channels).

Keyword-only; none commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import DATASET_ID_PATTERN
from store.models import ACTIVE_STATUSES, Dataset, Run, new_id

# A dataset's id says its kind, so that a run's config resolves alone (core.config.DATASET_ID_PATTERN): `ds_` images,
# `tbl_` a table, `paired_` and `unpaired_` images for translation (their stats' `kind`).
ID_PREFIXES = {"table": "tbl", "paired": "paired", "unpaired": "unpaired"}


def owned_dataset(*, session: Session, dataset_id: str, owner_id: int) -> Dataset | None:
    """The uploaded dataset with this id if it belongs to the owner, else None (built-in names are never rows)."""
    dataset = session.get(Dataset, dataset_id) if DATASET_ID_PATTERN.match(dataset_id) else None
    if dataset is None or dataset.owner_id != owner_id:
        return None
    return dataset


def dataset_with_content(*, session: Session, owner_id: int, content_hash: str) -> Dataset | None:
    """The owner's dataset of these images, if they uploaded them before."""
    return session.execute(
        select(Dataset).where(Dataset.owner_id == owner_id, Dataset.content_hash == content_hash)
    ).scalar_one_or_none()


def create_dataset(
    *,
    session: Session,
    owner_id: int,
    name: str,
    content_hash: str,
    num_images: int,
    classes: list[str],
    image_size: int,
    channels: int,
    stats: dict[str, Any],
) -> Dataset:
    dataset = Dataset(
        id=new_id(ID_PREFIXES.get(str(stats.get("kind")), "ds")),
        owner_id=owner_id,
        name=name,
        content_hash=content_hash,
        num_images=num_images,
        classes=classes,
        image_size=image_size,
        channels=channels,
        stats=stats,
    )
    session.add(dataset)
    return dataset


def is_table(dataset: Dataset) -> bool:
    return bool((dataset.stats or {}).get("kind") == "table")


def set_table_columns(
    *, dataset: Dataset, columns: list[dict[str, Any]], overrides: dict[str, str], target: str | None
) -> None:
    """A table's column types and statistics as overridden, and its target (a new dict: JSON columns change only
    when assigned)."""
    dataset.stats = {**(dataset.stats or {}), "columns": columns, "overrides": overrides, "target": target}


def active_run_using(*, session: Session, dataset_id: str, owner_id: int) -> Run | None:
    """A queued or running run of the owner's that trains on this dataset, if any."""
    return session.execute(
        select(Run)
        .where(
            Run.owner_id == owner_id,
            Run.status.in_(ACTIVE_STATUSES),
            Run.config["dataset"].as_string() == dataset_id,
        )
        .limit(1)
    ).scalar_one_or_none()
