"""Rate limits per token, counted in Redis (the broker's, unless GANFORGE_RATE_LIMIT_URL names another) by the
`limits` library, so that every API process shares one count and no client can fill the thread pool.

A request is counted against its bearer token (by the token's hash: the token itself never reaches Redis), or
against its address when it has none. Probes, Prometheus, the dashboard's files and the API docs are not counted.
Over the limit: 429 with `Retry-After`, before any database work. When Redis does not answer, requests pass (the
limit protects the service; it must not become the reason it is down): /readyz reports the broker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from api.limits import ASGIApp, Receive, Scope, Send, send_json

log = logging.getLogger("ganforge.api")

# Paths that are never counted: liveness and readiness probes, metrics scrapes, static files and docs.
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/metrics", "/ui", "/docs", "/openapi.json", "/favicon")


def limits_storage_url(url: str) -> str | None:
    """The `limits` async storage URL of a Redis URL as Celery and redis-py spell it; None for other brokers."""
    for scheme, storage in (
        ("redis+socket://", "async+redis+unix://"),
        ("redis://", "async+redis://"),
        ("rediss://", "async+rediss://"),
    ):
        if url.startswith(scheme):
            return storage + url[len(scheme) :]
    return None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit: str, storage_url: str) -> None:
        self.app = app
        self.items: list[RateLimitItem] = parse_many(limit) if limit.strip() else []
        self.storage_url = limits_storage_url(storage_url)
        self.limiter: SlidingWindowCounterRateLimiter | None = None

    def _get_limiter(self) -> SlidingWindowCounterRateLimiter:
        # Made on first use, inside the event loop whose Redis connections it will hold.
        if self.limiter is None:
            storage: Storage
            if self.storage_url is None:  # not a Redis broker: each process counts on its own
                storage = MemoryStorage()
            else:
                storage = RedisStorage(self.storage_url, implementation="redispy", key_prefix="ganforge:ratelimit")
            self.limiter = SlidingWindowCounterRateLimiter(storage)
        return self.limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.items or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = _client_key(scope)
        try:
            limiter = self._get_limiter()
            for item in self.items:
                if not await limiter.hit(item, key):
                    stats = await limiter.get_window_stats(item, key)
                    await _refuse(send, item, retry_after=max(1, math.ceil(stats.reset_time - time.time())))
                    return
        except Exception as exc:  # Redis down or unreachable: let the request through
            log.warning("rate limit not checked (%s: %s)", type(exc).__name__, exc)
        await self.app(scope, receive, send)


def _client_key(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    client: Any = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}"


async def _refuse(send: Send, item: RateLimitItem, *, retry_after: int) -> None:
    detail = f"Rate limit exceeded: at most {item} for one token; retry after {retry_after} s"
    await send_json(send, 429, json.dumps({"detail": detail}).encode(), ((b"retry-after", str(retry_after).encode()),))
