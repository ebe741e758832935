"""The upload processes (api/offload.py): heavy upload work runs there, at a lower CPU priority than the API's."""

from __future__ import annotations

import os

import anyio

from api import offload


def test_upload_work_runs_in_another_process_at_a_lower_priority() -> None:
    async def main() -> tuple[int, int]:
        return await offload.offload(_pid_and_niceness, processes=1)

    try:
        pid, niceness = anyio.run(main)
    finally:
        offload.shutdown()
    assert pid != os.getpid()
    assert niceness == min(os.nice(0) + offload.UPLOAD_NICENESS, 19)


def _pid_and_niceness() -> tuple[int, int]:
    return os.getpid(), os.nice(0)
