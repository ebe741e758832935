"""Uploaded datasets: their rows (the files live content-addressed in `store.layout.dataset_dir`).

Keyword-only; none commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import DATASET_ID_PATTERN
from store.models import Dataset, new_id


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
        id=new_id("ds"),
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
