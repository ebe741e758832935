"""The upload processes (api/offload.py): heavy upload work runs there, at a lower CPU priority than the API's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio

from api import offload

ROOT = Path(__file__).resolve().parents[2]


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


def test_upload_processes_end_when_the_api_process_is_killed() -> None:
    """A pool process holds both ends of its task queue's pipe: without its watch on the parent it would wait for
    ever after a SIGKILL of the API."""
    code = (
        "import os, time, anyio\n"
        "from api import offload\n"
        "async def main():\n"
        "    return await offload.offload(os.getpid, processes=1)\n"
        "print(anyio.run(main), flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT, text=True) as api:
        try:
            assert api.stdout is not None
            pool_pid = int(api.stdout.readline())
            assert _running(pool_pid)
        finally:
            api.kill()
    deadline = time.monotonic() + 20
    while _running(pool_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(pool_pid)


def _running(pid: int) -> bool:
    """Whether a process is there and not a zombie (its reaper may not be this process)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
