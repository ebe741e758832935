"""Alembic environment: the URL comes from GANFORGE_DATABASE_URL (or the caller's config), never from a file."""

from __future__ import annotations

from alembic import context

from store.db import make_engine
from store.models import Base
from store.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
