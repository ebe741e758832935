"""What a failure tells the user: one sentence, without the server's paths.

A run's or a job's `error` is shown to whoever owns it, who has no business knowing where the server keeps its
files (`/srv/ganforge/data/runs/...`); the traceback with every path goes to the worker's log instead.
"""

from __future__ import annotations

import re

# An absolute path of two or more components (`/a/b`, `/a/b/c.txt`), not part of a URL (`http://host/...`) or of
# an API route the user knows: those start with one component and a route's words.
_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"()<>,;:]+/)+([^\s/'\"()<>,;:]*)")
MAX_CHARS = 500


def without_paths(text: str) -> str:
    """The text with each absolute path replaced by its last component."""
    return _PATH.sub(lambda match: match.group(1) or "…", text)


def sentence(error: BaseException, *, prefix: str | None = None) -> str:
    """`prefix: Type: message` (our own ValueErrors: the message alone), paths removed, at most MAX_CHARS."""
    message = without_paths(str(error))
    if not isinstance(error, ValueError):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if prefix:
        message = f"{prefix}: {message}"
    return message if len(message) <= MAX_CHARS else message[: MAX_CHARS - 1] + "…"
