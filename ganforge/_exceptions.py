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
detail is FastAPI's list of validation errors.
"""

from __future__ import annotations

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
    """A job (a generation) ended in `failed`; `error` is the server's reason."""

    def __init__(self, job_id: str, error: str | None) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"{job_id} failed: {error or 'no reason given'}")


def field_errors(detail: Any) -> list[tuple[str, str]]:
    """Turn a `detail` into (field, message) pairs.

    FastAPI sends `[{"loc": ["body", "train", "steps"], "msg": "..."}]`; the run config's cross-field checks
    arrive as `loc: ["body"]` with a message `"Value error, model.arch: reason"`, whose prefix names the field.
    """
    if not isinstance(detail, list):
        return [_named_field("", str(detail))]
    pairs: list[tuple[str, str]] = []
    for item in detail:
        if not isinstance(item, dict):
            pairs.append(_named_field("", str(item)))
            continue
        loc = [str(part) for part in item.get("loc", []) if part not in ("body", "query", "path", "header")]
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        pairs.append(_named_field(".".join(loc), message))
    return pairs


def _named_field(field: str, message: str) -> tuple[str, str]:
    """A message that starts with `field.path: ` names its field (the API's own checks write them so)."""
    head, sep, rest = message.partition(": ")
    if sep and head and head.replace(".", "").replace("_", "").isalnum():
        return head, rest
    return field, message


def detail_text(detail: Any) -> str:
    """One line for a person: a string detail as is, a list of validation errors as `field: message; ...`."""
    if isinstance(detail, str):
        return detail
    pairs = field_errors(detail)
    return "; ".join(f"{field}: {message}" if field else message for field, message in pairs)
