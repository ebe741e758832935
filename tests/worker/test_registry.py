"""What a worker reports about its devices to the registry."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from worker import registry


def test_a_cpu_build_of_torch_reports_the_cpu_without_a_child_process(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.version.cuda is not None or torch.version.hip is not None:
        pytest.skip("a GPU build of torch: its devices are probed in a child process")

    def child(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError("a CPU-only torch was probed in a child process")

    monkeypatch.setattr(subprocess, "run", child)
    (cpu,) = registry.probe_devices()
    assert cpu["kind"] == "cpu" and cpu["name"] and cpu["name"] != "cpu"  # the model name from /proc/cpuinfo
    assert cpu["memory_gb"] > 0 and cpu["cores"] == len(os.sched_getaffinity(0))
    assert registry.slots_of([cpu]) == cpu["cores"]
