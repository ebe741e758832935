"""The FastAPI application: routers, middleware, and the admin bootstrap at start."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import errors, offload
from api.limits import LimitsMiddleware
from api.polled import PolledReads, close_loop_connection
from api.ratelimit import RateLimitMiddleware
from api.routes import (
    dashboard,
    datasets,
    docs,
    generations,
    health,
    me,
    metrics,
    projections,
    runs,
    scores,
    tokens,
    translations,
    workers,
)
from store.db import get_sessionmaker
from store.settings import Settings, get_settings
from store.tokens import ensure_admin


def _bootstrap_admin(admin_token: str | None) -> str | None:
    """ensure_admin, committed. API processes started together (`--workers N`) race here: the loser's insert
    or update fails on the unique bootstrap mark (or SQLite's write lock), and its retry finds the winner's row."""
    for attempt in range(5):
        with get_sessionmaker()() as session:
            try:
                token = ensure_admin(session=session, admin_token=admin_token)
                session.commit()
                return token
            except (IntegrityError, OperationalError):
                session.rollback()
                if attempt == 4:
                    raise
        time.sleep(0.2 * (attempt + 1))
    return None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Synchronous routes and dependencies run in anyio's thread pool: no more threads than database
        # connections (store/db.py), so that a thread that needs a connection never waits for one.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size
        token = _bootstrap_admin(settings.admin_token)
        if token is not None:
            print(f"ganforge: generated the admin token (shown once, only its hash is stored): {token}", flush=True)
        yield
        await close_loop_connection()
        offload.shutdown()

    app = FastAPI(
        title="ganforge",
        version="0.1.0",
        summary="Train GANs over REST: runs, samples, checkpoints, metrics and generations.",
        lifespan=lifespan,
        docs_url=None,  # /docs comes from api/routes/docs.py, with Swagger UI served from this server
        redoc_url=None,
    )
    app.include_router(health.router)
    app.include_router(tokens.router)
    app.include_router(me.router)
    app.include_router(runs.router)
    app.include_router(metrics.router)
    app.include_router(datasets.router)
    app.include_router(generations.router)
    app.include_router(scores.router)
    app.include_router(translations.router)
    app.include_router(projections.router)
    app.include_router(workers.router)
    app.include_router(docs.router)
    app.include_router(dashboard.router)
    # Innermost: the polled reads a signed-in owner makes of its rows skip FastAPI's routing (api/polled.py).
    app.add_middleware(PolledReads)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    # Every HTTPException answers {"detail": ...}, and a 422's detail is always the list of errors.
    app.add_exception_handler(StarletteHTTPException, errors.http_exception_handler)
    app.add_exception_handler(RequestValidationError, errors.request_validation_exception_handler)
    # Inside the counting middleware, so that a 429 is counted too.
    app.add_middleware(
        RateLimitMiddleware, limit=settings.rate_limit, storage_url=settings.rate_limit_url or settings.broker_url
    )
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app
