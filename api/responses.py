"""OpenAPI declarations of the responses that are not JSON models, so that every response in `/openapi.json`
has a schema and generated clients keep those routes: files are binary strings, text bodies are strings.

Use as `@router.get(..., response_class=FileResponse, responses=binary("image/png", description="A grid."))`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

BINARY_SCHEMA: dict[str, str] = {"type": "string", "format": "binary"}
TEXT_SCHEMA: dict[str, str] = {"type": "string"}
# FastAPI's own component for a 422 (present whenever a route takes parameters or a body, which several do).
VALIDATION_ERROR_REF: dict[str, str] = {"$ref": "#/components/schemas/HTTPValidationError"}


class ErrorPublic(BaseModel):
    """The body of every error but a 422: `{"detail": "what was wrong"}`."""

    detail: str


def binary(*media_types: str, description: str = "The file.") -> dict[int | str, dict[str, Any]]:
    """A 200 response of one or more binary media types, each with a binary string schema."""
    return {200: {"description": description, "content": {m: {"schema": BINARY_SCHEMA} for m in media_types}}}


def text(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 response of one or more text media types (CSV, server-sent events), each with a string schema."""
    return {200: {"description": description, "content": {m: {"schema": TEXT_SCHEMA} for m in media_types}}}


def error(description: str) -> dict[str, Any]:
    """An error response (not a 422) for a route's `responses`: `{"detail": str}`."""
    return {"model": ErrorPublic, "description": description}


def validation_errors(description: str) -> dict[str, Any]:
    """A 422 response for a route's `responses` that FastAPI would not add itself: the list of errors."""
    return {"description": description, "content": {"application/json": {"schema": VALIDATION_ERROR_REF}}}
