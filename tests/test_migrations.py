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


def test_0002_marks_the_first_admin_of_an_older_database_as_the_bootstrap_admin(empty_database: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", empty_database.replace("%", "%%"))
    command.upgrade(config, "0001")
    engine = sa.create_engine(empty_database, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for name, is_admin in (("admin", True), ("bob", False), ("admin", True)):
                conn.execute(
                    sa.text(
                        "INSERT INTO users (name, token_hash, is_admin, created_at) VALUES (:name, :hash, :admin, :at)"
                    ),
                    {"name": name, "hash": uuid.uuid4().hex, "admin": is_admin, "at": "2026-01-01 00:00:00+00:00"},
                )
        migrate(empty_database)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, bootstrap FROM users ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [bool(bootstrap) for _id, bootstrap in rows] == [True, False, False]
    command.downgrade(config, "0001")  # and back
    command.upgrade(config, "head")


def test_every_update_of_a_run_bumps_its_version_at_head(empty_database: str) -> None:
    """The trigger behind runs.version, which the polled page of runs trusts to tell a changed row (a later
    migration that rebuilds the runs table on SQLite would drop it)."""
    migrate(empty_database)
    engine = sa.create_engine(empty_database, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO users (name, token_hash, is_admin, created_at) VALUES ('u', 'h', false, :at)"),
                {"at": "2026-01-01 00:00:00+00:00"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO runs (id, owner_id, name, status, config, created_at, step, total_steps, "
                    "latest_metrics, attempts, queue, cancel_requested, environment) "
                    "SELECT 'r', id, '', 'queued', '{}', :at, 0, 0, '{}', 0, 'train', false, '{}' FROM users"
                ),
                {"at": "2026-01-01 00:00:00+00:00"},
            )
        versions = []
        for change in ("step = 1", "status = 'running'", "name = 'renamed'"):
            with engine.begin() as conn:
                conn.execute(sa.text(f"UPDATE runs SET {change} WHERE id = 'r'"))
                versions.append(conn.execute(sa.text("SELECT version FROM runs WHERE id = 'r'")).scalar_one())
    finally:
        engine.dispose()
    assert versions == [1, 2, 3]
