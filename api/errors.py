"""The one error shape: every 4xx body is `{"detail": ...}`, and a 422's detail is always FastAPI's list form
`[{"loc": [...], "msg": ..., "type": ...}]`, so that a client parses one shape.

Routes raise `unprocessable(field, "field: reason")` for checks beyond the request's shape: `loc` names the
field and `msg` is the sentence as written, which names it too (as the run config's own checks do), so that
it reads whole where it is shown alone. `http_exception_handler` (registered by `api.main.create_app`) answers
every HTTPException as `{"detail": ...}` and turns a 422 that still carries a string detail into the list form,
so that no route can send the other shape by mistake. `request_validation_exception_handler` answers a request
that fails validation as FastAPI does, with the inputs it echoes made writable as JSON.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler as fastapi_http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

# A string detail that starts with "field.path: " names its field (the API's own checks write them so).
FIELD_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*): .*", re.DOTALL)


def unprocessable(field: str, message: str, *, where: str = "body") -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field (dotted for nested fields).

    `where` is the part of the request the field is in: "body" (JSON or multipart form), "query" or "path".
    """
    return HTTPException(status_code=422, detail=[validation_error(field, message, where=where)])


def invalid_body(error: ValidationError) -> HTTPException:
    """A 422 of pydantic's errors for a body a route validates by hand (a multipart form's fields, a JSON body read
    from the request), in FastAPI's list form with each loc under "body"."""
    return HTTPException(
        status_code=422,
        detail=[
            {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ],
    )


def validation_error(field: str, message: str, *, where: str = "body") -> dict[str, Any]:
    """One item of a 422's detail list; an empty field names the whole `where`."""
    loc = [where, *field.split(".")] if field else [where]
    return {"type": "value_error", "loc": loc, "msg": message}


def as_validation_errors(detail: str) -> list[dict[str, Any]]:
    """A string detail in the list form: a leading "field.path: " names the loc, else loc is ["body"]."""
    match = FIELD_PREFIX.fullmatch(detail)
    return [validation_error(match.group(1) if match else "", detail)]


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's `{"detail": ...}` answer, with a 422's string detail turned into the list form."""
    assert isinstance(exc, StarletteHTTPException)  # registered for it; Starlette types handlers loosely
    if exc.status_code == 422 and isinstance(exc.detail, str):
        exc = HTTPException(status_code=422, detail=as_validation_errors(exc.detail), headers=exc.headers)
    return await fastapi_http_exception_handler(request, exc)


async def request_validation_exception_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a request that fails validation. Python's JSON reader takes NaN and Infinity, which JSON
    cannot write, and an error echoes its input: such numbers are echoed as the strings "nan", "inf" and "-inf"."""
    assert isinstance(exc, RequestValidationError)  # registered for it
    return JSONResponse(status_code=422, content={"detail": finite_json(jsonable_encoder(exc.errors()))})


def finite_json(value: Any) -> Any:
    """`value` (JSON-shaped: dicts, lists, scalars) with each NaN or infinite float as its string."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_json(item) for item in value]
    return value
