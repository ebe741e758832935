"""The migrations and the models agree: a database migrated to head, the way production migrates it
(`ganforge migrate`), has exactly the tables, columns, indexes and constraints of store/models.py, on SQLite and
PostgreSQL. A model change without its migration fails here."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from store.models import Base
from tests.conftest import ROOT


def migrate(url: str) -> None:
    """`ganforge migrate` in its own process, as production runs it."""
    env = {"GANFORGE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "ganforge", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ganforge.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"ganforge_mig_{uuid.uuid4().hex[:12]}"
    admin = sa.make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_autogenerate_finds_no_difference(empty_database: str) -> None:
    migrate(empty_database)
    engine = sa.create_engine(empty_database, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
