"""The compose files as an operator relies on them (no Docker engine runs here: their structure is what is
checked): services restart, training workers get the time to checkpoint, the TLS front is there and off by
default, and the API and the workers share no volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def services(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded["services"]  # type: ignore[no-any-return]


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]


def test_the_stack_restarts_stops_gracefully_and_fronts_tls() -> None:
    stack = services("docker-compose.yml")
    assert all(s.get("restart") == "unless-stopped" for name, s in stack.items() if name != "migrate")
    assert seconds(stack["worker"]["stop_grace_period"]) >= 300
    assert stack["tls"]["profiles"] == ["tls"] and "api:8000" in stack["tls"]["command"]
    api_volumes = {v.split(":")[0] for v in stack["api"].get("volumes", [])}
    worker_volumes = {v.split(":")[0] for v in stack["worker"].get("volumes", [])}
    assert not api_volumes & worker_volumes


def test_a_worker_host_restarts_and_stops_gracefully() -> None:
    for worker in services("worker.yml").values():
        assert worker["restart"] == "unless-stopped" and seconds(worker["stop_grace_period"]) >= 300
