"""Data-parallel training on the CPU (gloo), world_size 2, a tiny DCGAN: the ranks hold the same weights after
every step, rank 0 alone writes one set of artifacts and the events, and a resume continues at the right step."""

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


def test_two_ranks_train_in_step_write_once_and_resume_at_the_right_step(tmp_path: Path) -> None:
    events: Events = []
    result = train(tiny(2), out_dir=tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    # Every rank's weights were compared after each step (a difference raises ReplicasDiverged).
    assert (result.status, result.step, result.replica_checks) == ("completed", 2, 2)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert (info["world_size"], info["backend"]) == (2, "gloo")
    # One set of artifacts and one event each: only rank 0 writes and reports.
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["checkpoints/00000002.safetensors", "config.json", "run_info.json", "samples/00000002.png"]
    assert [d["step"] for kind, d in events if kind in ("checkpoint", "sample")] == [2, 2]

    resumed: Events = []
    result = train(tiny(4), out_dir=tmp_path, on_event=lambda kind, data: resumed.append((kind, data)))
    assert (result.status, result.step, result.replica_checks) == ("completed", 4, 2)
    assert json.loads((tmp_path / "run_info.json").read_text())["resumed_from_step"] == 2
    assert [d["step"] for kind, d in resumed if kind == "stats"] == [4]  # steps 3 and 4, reported at the last
    assert [d["step"] for kind, d in resumed if kind == "checkpoint"] == [4]


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
