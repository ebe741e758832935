"""The route class of every router: a synchronous route gives its database connection back in its own thread.

FastAPI runs a synchronous route in a thread of the pool, then validates its answer in another hop through the
pool, then closes the request's session. A read that did not commit still holds its pooled connection through
those hops: with as many threads as connections (api/main.py), 64 clients of `GET /runs` left every thread
waiting for a connection held by a request waiting for a thread, and the API answered nothing again
(bench/read_path.py). Closing the session as the route returns, in the thread that used it, ends the request's
use of the database before it waits for anything.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import Session


def _releasing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        finally:
            for value in kwargs.values():
                # Objects the route loaded stay readable (the sessions do not expire them); the answer was built.
                if isinstance(value, Session) and value.in_transaction():
                    value.close()

    return call


class ReleasingRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _releasing(endpoint)
        super().__init__(path, endpoint, **kwargs)
