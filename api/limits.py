"""Request limits and counts: bodies over the limit answer 413, a NUL character in the path or the query string
422, and every response is counted for GET /metrics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from api.errors import validation_error

# (method, status) → count, for GET /metrics.
REQUEST_COUNTS: Counter[tuple[str, int]] = Counter()
# The method is the client's to choose: any other than these is counted as "other", so that a client cannot grow
# the counter (and the /metrics page) without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LimitsMiddleware:
    """Counts responses for /metrics, refuses request bodies over the limit with 413 and a NUL character in the
    path or the query string with 422.

    No id, name or query value holds a NUL, and PostgreSQL cannot compare one: refused here, before any route or
    the polled reads (api/polled.py) take it to the database, it is a 422 that says so instead of a 500.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        # Uploads and anomaly scoring take archives: their own, larger cap, enforced while streaming.
        path: str = scope["path"]
        limit = self.max_upload_bytes if path == "/datasets" or path.endswith("/scores") else self.max_body_bytes
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reject(send, limit)
            REQUEST_COUNTS[(method, 413)] += 1
            return
        nul = nul_in_target(path, scope.get("query_string", b""))
        if nul is not None:
            body = json.dumps(
                {"detail": [validation_error("", f"{nul}: a NUL character (%00) is not allowed", where=nul)]}
            )
            await send_json(send, 422, body.encode())
            REQUEST_COUNTS[(method, 422)] += 1
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
        REQUEST_COUNTS[(method, status_code)] += 1


def nul_in_target(path: str, query_string: bytes) -> str | None:
    """ "path" or "query", where the request's target holds a NUL character (the path as the server decoded it,
    the query string as sent, raw or percent-encoded); None where neither does."""
    if "\x00" in path:
        return "path"
    if b"\x00" in query_string or b"%00" in query_string:
        return "query"
    return None


class _BodyTooLarge(HTTPException):
    """Raised from the body stream. An HTTPException, so that FastAPI's body parsing passes it on as a 413
    instead of turning it into "400 There was an error parsing the body"."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"Request body too large: the limit is {limit} bytes")


async def _reject(send: Send, limit: int) -> None:
    await send_json(send, 413, json.dumps({"detail": f"Request body too large: the limit is {limit} bytes"}).encode())


async def send_json(send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer a request with a JSON body from an ASGI layer, before or instead of the app."""
    content = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": content + list(headers)})
    await send({"type": "http.response.body", "body": body})
