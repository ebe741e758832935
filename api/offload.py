"""Heavy upload work off the API process: ZIP decoding, image normalisation and table parsing run in a small pool of
worker processes of the API's own, at most GANFORGE_UPLOAD_PROCESSES at once.

In a thread of the API process that work would hold the interpreter's lock for most of its seconds, and every
other request waits for that lock: the read routes' latency under one 200 MB upload is what this bounds
(bench/read_path.py --upload-mb). The processes start on first use (spawn: the API process has threads and an
event loop, which a fork would copy mid-flight) and are kept for the next upload; uploads beyond the bound wait
their turn on the event loop, holding no thread. They run at a lower CPU priority (UPLOAD_NICENESS): on a box
with few cores a decoding process and the API's event loop share them, and the requests should win. Each ends when
the API process does, however that ends: a pool process holds both ends of its task queue's pipe, so a killed
API's pool would otherwise wait on it for ever.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

# The niceness the upload processes add to their own: the kernel then gives the API process (and the workers)
# about nine times their share of a contended core.
UPLOAD_NICENESS = 10

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_limiter: anyio.CapacityLimiter | None = None


def _executor(processes: int) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_upload_process,
            )
        return _pool


def _start_upload_process() -> None:
    """In each upload process as it starts: lower its priority, and exit when the API process has."""
    os.nice(UPLOAD_NICENESS)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # ready once the parent process has ended
    os._exit(0)


def _discard_broken(pool: ProcessPoolExecutor) -> None:
    """A pool whose process died (killed, out of memory) refuses all later work: the next upload makes a new one."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


async def offload(function: Callable[..., T], /, *args: Any, processes: int, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` in an upload process (its arguments, result and exceptions are pickled)."""
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(processes)
    async with _limiter:
        pool = _executor(processes)
        try:
            return await asyncio.wrap_future(pool.submit(functools.partial(function, *args, **kwargs)))
        except BrokenProcessPool:
            _discard_broken(pool)
            raise


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
