"""What an upload leaves behind: for tests that a refused upload leaves no files and no rows."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, func, select

from store.models import Dataset


def tree(root: Path) -> list[str]:
    """Every path below `root`, relative to it, sorted ([] when it does not exist)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def dataset_rows(database_url: str) -> int:
    """How many rows the datasets table holds."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Dataset)).scalar_one())
    finally:
        engine.dispose()
