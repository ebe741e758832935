"""The one error shape: every 4xx body is `{"detail": ...}`, and a 422's detail is always FastAPI's list form
`[{"loc": [...], "msg": ..., "type": ...}]`, so that a client parses one shape."""

from __future__ import annotations

from fastapi import HTTPException


def unprocessable(field: str, message: str, *, where: str = "body") -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field (dotted for nested fields)."""
    return HTTPException(
        status_code=422, detail=[{"type": "value_error", "loc": [where, *field.split(".")], "msg": message}]
    )
