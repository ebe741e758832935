"""This worker in the registry (store/workers.py): what it reports about itself, its heartbeat thread, and its
current run or job.

GPUs are probed in a short-lived child process: initializing CUDA in the worker's main process would break CUDA
in the pool children it forks. A torch built for the CPU alone is answered in the main process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from store.db import get_sessionmaker
from store.settings import get_settings
from store.workers import heartbeat_worker, register_worker, remove_worker, set_current_job

log = logging.getLogger("ganforge.registry")

# Run by `python -c` in a child process: this host's GPUs as JSON, [] when CUDA sees none.
_PROBE = """
import json, torch
devices = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        devices.append({"kind": "cuda", "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
print(json.dumps(devices))
"""

# This worker's registry id (its Celery node name), set in the main process before the pool forks.
WORKER_ID: str | None = None
# Set at a clean shutdown: the heartbeat thread stops, and the lock keeps it from re-registering the removed row.
_left = threading.Event()
_lock = threading.Lock()


def probe_devices() -> list[dict[str, Any]]:
    """This host's GPUs (name, memory in GB), or its CPU (name, memory, cores) when it has none. A torch built
    without CUDA or ROCm has no GPU to find, and the child process (a second import of torch) is skipped."""
    import torch  # already imported by the tasks' modules; importing it initializes no device

    if torch.version.cuda is None and torch.version.hip is None:
        return [cpu_device()]
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
        gpus = list(json.loads(out.stdout))
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        log.warning("could not probe this host's devices: %s", exc)
        gpus = []
    return gpus or [cpu_device()]


def cpu_device() -> dict[str, Any]:
    """This host's CPU: its model name, memory in GB and the cores this process may run on."""
    name = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    try:
        memory: float | None = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"kind": "cpu", "name": name, "memory_gb": memory, "cores": cores}


def slots_of(devices: list[dict[str, Any]]) -> int:
    """The largest train.world_size a worker with these devices runs: one process per GPU; on a CPU-only worker,
    one gloo process per core."""
    gpus = [d for d in devices if d.get("kind") == "cuda"]
    if gpus:
        return len(gpus)
    return max(1, sum(int(d.get("cores") or 1) for d in devices))


def ganforge_version() -> str:
    try:
        return version("ganforge")
    except PackageNotFoundError:
        return "unknown"


def start_registry(*, worker_id: str, queues: list[str]) -> threading.Thread:
    """Probe the devices, register this worker, then renew its heartbeat every
    GANFORGE_WORKER_HEARTBEAT_INTERVAL_SECONDS on a daemon thread (re-registering if its row was removed)."""
    settings = get_settings()

    def loop() -> None:
        devices = probe_devices()
        registered = False
        while not _left.is_set():
            try:
                with _lock, get_sessionmaker()() as session:
                    if _left.is_set():
                        return
                    if registered:
                        registered = heartbeat_worker(session=session, worker_id=worker_id)
                    if not registered:
                        register_worker(
                            session=session,
                            worker_id=worker_id,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            devices=devices,
                            slots=slots_of(devices),
                            queues=sorted(queues),
                            version=ganforge_version(),
                        )
                        registered = True
                    session.commit()
            except Exception as exc:  # the database is away: try again next time
                log.warning("worker heartbeat failed: %s", exc)
            _left.wait(settings.worker_heartbeat_interval_seconds)

    thread = threading.Thread(target=loop, name="registry", daemon=True)
    thread.start()
    return thread


def leave_registry(worker_id: str) -> None:
    """A clean shutdown: remove this worker's row (a killed worker's row stays, and turns lost)."""
    _left.set()
    try:
        with _lock, get_sessionmaker()() as session:
            remove_worker(session=session, worker_id=worker_id)
            session.commit()
    except Exception as exc:
        log.warning("could not remove this worker from the registry: %s", exc)


def mark_current_job(job_id: str | None) -> None:
    """Set (or clear, with None) the run or job this worker is on; a failure only costs the listing."""
    if WORKER_ID is None:
        return
    try:
        with get_sessionmaker()() as session:
            set_current_job(session=session, worker_id=WORKER_ID, job_id=job_id)
            session.commit()
    except Exception as exc:
        log.warning("could not record the current job %s: %s", job_id, exc)
