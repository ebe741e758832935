"""OpenAPI declarations of the binary responses, so that generated clients keep those routes.

Use as `@router.get(..., response_class=FileResponse, responses=binary("image/png", "A sample grid."))`.
"""

from __future__ import annotations

from typing import Any

BINARY_SCHEMA: dict[str, str] = {"type": "string", "format": "binary"}


def binary(*media_types: str, description: str = "The file.") -> dict[int | str, dict[str, Any]]:
    """A 200 response of one or more binary media types, each with a binary string schema."""
    return {200: {"description": description, "content": {m: {"schema": BINARY_SCHEMA} for m in media_types}}}
