"""Data-parallel training on the CPU (gloo), world_size 2, a tiny DCGAN: the ranks hold the same weights after
every step, rank 0 alone writes one set of artifacts and the events, the ranks stop together when asked, and a
resume continues at the right step. (Exact resume of a same-size run: the per-step seeds of core/distributed.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.config import RunConfig
from core.train import train

Events = list[tuple[str, dict[str, Any]]]


def tiny(steps: int, **train_fields: Any) -> RunConfig:
    return RunConfig.model_validate(
        {
            "dataset": "digits",
            "seed": 5,
            "model": {"arch": "dcgan", "width": 8, "image_size": 16},  # BatchNorm in G and D
            "train": {"steps": steps, "batch_size": 8, "world_size": 2, "precision": "fp32", **train_fields},
            "schedule": {"sample_every": 2, "checkpoint_every": 2, "keep_checkpoints": 5},
        }
    )


def test_two_ranks_train_in_step_write_once_stop_together_and_resume_at_the_right_step(tmp_path: Path) -> None:
    events: Events = []

    def stop_after_a_checkpoint() -> bool:  # as a cancel or a worker's shutdown asks, while the ranks train
        return any(kind == "checkpoint" for kind, _ in events)

    result = train(
        tiny(100_000),
        out_dir=tmp_path,
        on_event=lambda kind, data: events.append((kind, data)),
        should_stop=stop_after_a_checkpoint,
    )
    # Both ranks stopped at the same step, after every rank's weights were compared at each step (a difference
    # raises ReplicasDiverged), and the last step was checkpointed.
    stopped = result.step
    assert (result.status, result.replica_checks) == ("stopped", stopped) and stopped >= 2
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert (info["world_size"], info["backend"]) == (2, "gloo")
    # One set of artifacts, each announced once: only rank 0 writes and reports.
    sampled = [d["step"] for kind, d in events if kind == "sample"]
    saved = [d["step"] for kind, d in events if kind == "checkpoint"]
    assert sampled == sorted(set(sampled)) and saved == sorted(set(saved)) and saved[-1] == stopped
    assert sorted(int(p.stem) for p in (tmp_path / "samples").iterdir()) == sampled
    assert sorted(int(p.stem) for p in (tmp_path / "checkpoints").iterdir()) == saved[-5:]  # keep_checkpoints

    resumed: Events = []
    result = train(tiny(stopped + 2), out_dir=tmp_path, on_event=lambda kind, data: resumed.append((kind, data)))
    assert (result.status, result.step, result.replica_checks) == ("completed", stopped + 2, 2)
    assert json.loads((tmp_path / "run_info.json").read_text())["resumed_from_step"] == stopped
    resumed_saves = [d["step"] for kind, d in resumed if kind == "checkpoint"]  # every 2 steps, and the last
    assert resumed_saves == [s for s in (stopped + 1, stopped + 2) if s % 2 == 0 or s == stopped + 2]


def test_a_fenced_out_run_stops_every_rank_before_it_writes_again(tmp_path: Path) -> None:
    """The worker's lease fence reaches rank 0: once it answers False (another worker took the run), the ranks are
    stopped at once and nothing more is written."""
    answers: list[bool] = []

    def may_write() -> bool:  # the lease holds for the first two writes (a grid and a checkpoint at step 2)
        answers.append(len(answers) < 2)
        return answers[-1]

    result = train(tiny(100_000), out_dir=tmp_path, may_write=may_write)
    assert result.status == "stopped" and result.message == "the run's lease was lost: another worker holds it"
    assert answers == [True, True, False]
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["00000002.png"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["00000002.safetensors"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"batch_size": 9}, "train.batch_size: 9 does not split evenly over world_size 2", id="uneven"),
        pytest.param({"augment": "ada"}, "train.world_size: ADA steers one augmentation probability", id="ada"),
    ],
)
def test_a_batch_that_does_not_split_or_ada_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny(2, **fields)
