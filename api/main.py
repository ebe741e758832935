"""The FastAPI application: routers, the admin bootstrap, request limits."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import select

from api.routes import dashboard, datasets, docs, generations, health, metrics, runs, tokens
from store.db import get_sessionmaker
from store.models import User, hash_token, new_token
from store.settings import Settings, get_settings

log = logging.getLogger("ganforge.api")

# (method, status) → count, for GET /metrics.
REQUEST_COUNTS: Counter[tuple[str, int]] = Counter()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def ensure_admin(settings: Settings) -> str | None:
    """Make sure an admin token exists. Returns a newly generated token (to print once), else None."""
    with get_sessionmaker()() as session:
        if settings.admin_token:
            digest = hash_token(settings.admin_token)
            user = session.execute(select(User).where(User.token_hash == digest)).scalar_one_or_none()
            if user is None:
                session.add(User(name="admin", token_hash=digest, is_admin=True))
                session.commit()
            return None
        if session.execute(select(User.id).where(User.is_admin.is_(True)).limit(1)).first() is not None:
            return None
        token = new_token()
        session.add(User(name="admin", token_hash=hash_token(token), is_admin=True))
        session.commit()
        return token


class LimitsMiddleware:
    """Counts responses for /metrics and refuses request bodies over the limit with 413."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Uploads and anomaly scoring take archives: their own, larger cap, enforced while streaming.
        path: str = scope["path"]
        limit = self.max_upload_bytes if path == "/datasets" or path.endswith("/scores") else self.max_body_bytes
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reject(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        status_code = 500

        async def counting_send(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, limited_receive, counting_send)
        except _BodyTooLarge:
            await _reject(send, limit)
            status_code = 413
        REQUEST_COUNTS[(scope["method"], status_code)] += 1


class _BodyTooLarge(HTTPException):
    """Raised from the body stream. An HTTPException, so that FastAPI's body parsing passes it on as a 413
    instead of turning it into "400 There was an error parsing the body"."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"Request body too large: the limit is {limit} bytes")


async def _reject(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"Request body too large: the limit is {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _reconcile_quietly() -> None:
    from worker.reconcile import reconcile_once

    try:
        reconcile_once()
    except Exception as exc:  # the database or the broker is away; the workers reconcile periodically too
        log.warning("reconcile at start failed: %s", exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        token = ensure_admin(settings)
        if token is not None:
            print(f"ganforge: generated the admin token (shown once, only its hash is stored): {token}", flush=True)
        threading.Thread(target=_reconcile_quietly, name="reconcile-at-start", daemon=True).start()
        yield

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
    app.include_router(runs.router)
    app.include_router(metrics.router)
    app.include_router(datasets.router)
    app.include_router(generations.router)
    app.include_router(docs.router)
    app.include_router(dashboard.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    # Routes answer 422 with {"detail": "field: reason"} for checks beyond the request's shape: say so in the
    # schema, next to FastAPI's list of validation errors.
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            error = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
            if error is not None:
                error["properties"]["detail"] = {"anyOf": [error["properties"]["detail"], {"type": "string"}]}
        return app.openapi_schema or build_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app
