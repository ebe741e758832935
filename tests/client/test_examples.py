"""The three httpx scripts in examples/ against the real service, as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import ROOT, Service


def run_example(service: Service, token: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        env={**os.environ, "GANFORGE_URL": service.url, "GANFORGE_TOKEN": token},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_launch_download_and_generate(postgres_service: Service, tmp_path: Path) -> None:
    token = postgres_service.new_user_token("examples")
    out = run_example(postgres_service, token, "examples/launch_and_watch.py", "100")
    run_id, status = out.splitlines()[-1].split()
    assert status == "succeeded"

    out = run_example(postgres_service, token, "examples/download_artifacts.py", run_id, str(tmp_path))
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{run_id}-100.safetensors").stat().st_size > 0

    out = run_example(postgres_service, token, "examples/generate_npz.py", run_id, str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz") as data:
        assert data["samples"].shape == (1000, 2)
