"""Helpers for core tests that train a run in-process: the events it emits, stopping it after a number of steps,
and comparing the checkpoints and sample grids of two runs."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from core.config import RunConfig
from core.train import train

Events = list[tuple[str, dict]]


def run_events(out_dir: Path, cfg: RunConfig, stop_at: int | None = None) -> Events:
    """Train `cfg` into `out_dir` (resuming what is there), asked to stop at its `stop_at`-th check; its events."""
    events: Events = []
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) == stop_at

    train(cfg, out_dir=out_dir, on_event=lambda kind, data: events.append((kind, data)), should_stop=should_stop)
    return events


def checkpoint_tensors(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"{step:08d}.safetensors"))


def tensors_that_differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """The names in `a` whose tensor is not bit for bit the one of `b`."""
    return [key for key in a if not torch.equal(a[key], b[key])]


def losses_at(events: Events, step: int) -> dict:
    return {d["step"]: d["losses"] for kind, d in events if kind == "progress"}[step]


def same_sample(dir_a: Path, dir_b: Path, step: int) -> bool:
    png = f"{step:08d}.png"
    return (dir_a / "samples" / png).read_bytes() == (dir_b / "samples" / png).read_bytes()


def assert_resume_matches(tmp_path: Path, cfg: RunConfig, n: int, k: int) -> tuple[Events, Events, Events]:
    """Train `cfg` for `n` steps in one go (into a/), and stopped after `k` then resumed (into b/), and assert that
    the two end with the same tensors, losses and sample grid at step `n`. Returns the events of the straight run,
    of the stopped part and of the resumed part."""
    straight = run_events(tmp_path / "a", cfg)
    first = run_events(tmp_path / "b", cfg, stop_at=k)
    rest = run_events(tmp_path / "b", cfg)
    a, b = checkpoint_tensors(tmp_path / "a", n), checkpoint_tensors(tmp_path / "b", n)
    assert a.keys() == b.keys()
    assert tensors_that_differ(a, b) == []
    assert losses_at(rest, n) == losses_at(straight, n)
    assert same_sample(tmp_path / "a", tmp_path / "b", n)
    return straight, first, rest
