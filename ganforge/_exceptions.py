"""The exceptions that the ganforge client raises: one small tree.

```
GanforgeError                 anything this client raises on purpose
├── APIError                  the server answered with a 4xx/5xx; .status and .detail (the server's words)
│   ├── Unauthorized          401: no token, or a wrong one
│   ├── NotFound              404: no such run/dataset/generation, or it belongs to someone else
│   ├── Conflict              409: the resource is in use (a dataset a queued or running run needs, ...)
│   └── ValidationError       422 (and 400): the request was refused; .errors lists (field, message) pairs
├── TransportError            the server could not be reached, or the connection broke
├── WaitTimeout               wait() or result() gave up after its timeout; the job goes on on the server
└── JobFailed                 a generation ended in "failed"; .error is the server's reason
```

`str(exc)` is a sentence fit to print to a user: the status code and the server's `detail`, flattened when the
detail is FastAPI's list of validation errors (`422: model.width: reason; train.steps: reason`).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "APIError",
    "Conflict",
    "GanforgeError",
    "JobFailed",
    "NotFound",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "WaitTimeout",
]


class GanforgeError(Exception):
    """Base of every exception the client raises on purpose."""


class APIError(GanforgeError):
    """The server answered with an error status; `detail` is its `{"detail": ...}` as sent."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {detail_text(detail)}")


class Unauthorized(APIError):
    """401: the token is missing or wrong."""


class NotFound(APIError):
    """404: the resource does not exist, or is not yours."""


class Conflict(APIError):
    """409: the resource is in a state that forbids the request."""


class ValidationError(APIError):
    """422 or 400: the request body or parameters were refused."""

    @property
    def errors(self) -> list[tuple[str, str]]:
        """(field, message) pairs; field is a dotted path such as `train.steps`, or "" when none is known."""
        return field_errors(self.detail)


class TransportError(GanforgeError):
    """The server could not be reached, or the connection broke mid-request."""


class WaitTimeout(GanforgeError):
    """A wait gave up after its timeout; the job itself goes on on the server."""


class JobFailed(GanforgeError):
    """A job (a generation, a translation or a projection) ended in `failed`; `error` is the server's reason."""

    def __init__(self, job_id: str, error: str | None) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"{job_id} failed: {error or 'no reason given'}")


def for_status(status: int, detail: Any) -> APIError:
    """The APIError subclass that an error status calls for, carrying the server's `detail`."""
    kind = {401: Unauthorized, 404: NotFound, 409: Conflict, 400: ValidationError, 422: ValidationError}
    return kind.get(status, APIError)(status, detail)


def field_errors(detail: Any) -> list[tuple[str, str]]:
    """Turn a `detail` into (field, message) pairs.

    A 422's detail is FastAPI's list `[{"loc": ["body", "train", "steps"], "msg": "...", "type": ...}]`: the
    field is `loc` joined with dots, without its leading part ("body", "query", "path", "header"), and list
    indices as `[i]`. A check on the whole body arrives as `loc: ["body"]` with a message such as
    `"Value error, model.arch: reason"`, whose prefix names the field; a message that repeats its own field
    (`"model.width: reason"` at `loc: ["body", "model", "width"]`) is not repeated. A string detail (older
    servers, other statuses) that starts with `field.path: ` names its field the same way.
    """
    if not isinstance(detail, list):
        return [_split_field("", str(detail))]
    pairs: list[tuple[str, str]] = []
    for item in detail:
        if not isinstance(item, dict):
            pairs.append(_split_field("", str(item)))
            continue
        message = str(item.get("msg", ""))
        for prefix in _PYDANTIC_PREFIXES:
            message = message.removeprefix(prefix)
        pairs.append(_split_field(_loc_field(item.get("loc")), message))
    return pairs


# Pydantic puts these before the text of a ValueError or an assert raised by a validator.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")
# The first item of a FastAPI `loc` says where in the request the field is, not which field it is.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
# "model.arch: reason" names its field; "Run has no checkpoint yet: reason" does not.
_FIELD_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:(?:\.[A-Za-z0-9_]+)|(?:\[[0-9]+\]))*): (.*)", re.DOTALL)


def _loc_field(loc: Any) -> str:
    """`["body", "model", "width"]` -> `model.width`; `["body", "labels", 0]` -> `labels[0]`."""
    parts = list(loc) if isinstance(loc, list | tuple) else []
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _split_field(field: str, message: str) -> tuple[str, str]:
    """(field, message), taking the field from a `field.path: ` prefix of the message when it names one.

    The prefix wins when `loc` named no field or a less precise one; a prefix that is the tail of the field
    (`width: ...` at `model.width`) is dropped; a prefix about some other field is left in the message.
    """
    match = _FIELD_PREFIX.fullmatch(message)
    if match is None:
        return field, message
    named, rest = match.group(1), match.group(2)
    if not field or named == field or named.startswith((f"{field}.", f"{field}[")):
        return named, rest
    if field.endswith(f".{named}"):
        return field, rest
    return field, message


def detail_text(detail: Any) -> str:
    """One line for a person: a string detail as is, a list of validation errors as `field: message; ...`."""
    if isinstance(detail, str):
        return detail
    pairs = field_errors(detail)
    return "; ".join(f"{field}: {message}" if field else message for field, message in pairs)
