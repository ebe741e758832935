from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.datasets
import core.train
from core import checkpoint
from core.config import RunConfig
from core.families import noise
from core.train import TrainingDiverged, train


def _cfg(dataset: str, **sections) -> RunConfig:
    return RunConfig.model_validate({"dataset": dataset, **sections})


def _events(out_dir: Path, cfg: RunConfig, **kwargs):
    events: list[tuple[str, dict]] = []
    result = train(cfg, out_dir=out_dir, on_event=lambda kind, data: events.append((kind, data)), **kwargs)
    json.dumps(events)  # every event is JSON-serialisable
    return result, events


def test_ring8_run_writes_grids_checkpoints_and_events(tmp_path):
    cfg = _cfg(
        "ring8",
        train={"steps": 200, "batch_size": 64},
        schedule={"sample_every": 100, "checkpoint_every": 100},
    )
    result, events = _events(tmp_path, cfg)
    assert (result.status, result.step, result.device) == ("completed", 200, "cpu")
    kinds = {kind for kind, _ in events}
    assert {"progress", "stats", "sample", "checkpoint"} <= kinds
    samples = [d for k, d in events if k == "sample"]
    assert [d["step"] for d in samples] == [100, 200]
    with Image.open(samples[-1]["path"]) as image:
        assert image.format == "PNG" and image.size == (512, 512)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "00000100.safetensors",
        "00000200.safetensors",
    ]
    last = [d for k, d in events if k == "progress"][-1]
    assert last["step"] == 200 and last["total_steps"] == 200 and set(last["losses"]) >= {"loss_d", "loss_g"}
    stats = [d for k, d in events if k == "stats"][-1]["values"]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "lr_g", "lr_d"} <= set(stats)
    assert RunConfig.model_validate_json((tmp_path / "config.json").read_text()) == cfg
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["torch"] == torch.__version__ and info["precision"] == "fp32" and info["seed"] == 0


def test_digits_dcgan_trains_a_few_steps_at_16px(tmp_path):
    cfg = _cfg(
        "digits",
        model={"image_size": 16, "width": 8},
        train={"steps": 3, "batch_size": 16},
        schedule={"sample_every": 2, "checkpoint_every": 10},
    )
    result, events = _events(tmp_path, cfg)
    assert result.status == "completed" and result.step == 3
    png = (tmp_path / "samples" / "00000003.png").read_bytes()
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "L" and image.size == (8 * 18 + 2, 8 * 18 + 2)
    assert [d["step"] for k, d in events if k == "checkpoint"] == [3]


def test_should_stop_stops_after_the_step_and_keeps_a_checkpoint(tmp_path):
    cfg = _cfg("ring8", train={"steps": 100, "batch_size": 16})
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) == 7

    result, events = _events(tmp_path, cfg, should_stop=should_stop)
    assert (result.status, result.step) == ("stopped", 7)
    assert [d["step"] for k, d in events if k == "checkpoint"] == [7]


def test_a_run_resumes_from_its_newest_checkpoint(tmp_path):
    cfg = _cfg("ring8", train={"steps": 30, "batch_size": 16}, schedule={"checkpoint_every": 10})
    result, _ = _events(tmp_path, cfg, should_stop=lambda: True)
    assert result.step == 1
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 40})})
    result, events = _events(tmp_path, longer)
    assert (result.status, result.step) == ("completed", 40)
    assert [d["step"] for k, d in events if k == "checkpoint"] == [10, 20, 30, 40]
    assert json.loads((tmp_path / "run_info.json").read_text())["resumed_from_step"] == 1


def _write_upload(folder: Path, images: np.ndarray) -> None:
    """An uploaded dataset's folder as the loader finds it once it has resized the images: its 16 px cache."""
    folder.mkdir(exist_ok=True)
    np.savez(folder / "cache_16px.npz", images=images, labels=np.zeros(0, np.int64), class_names=np.array([], str))


def _data_warnings(events) -> list[dict]:
    return [d for k, d in events if k == "warning" and "training data" in d["message"]]


def test_a_resume_on_changed_data_says_so_and_goes_on(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 1), dtype=np.uint8)
    uploads, run_dir = tmp_path / "ds", tmp_path / "run"
    _write_upload(uploads, images)
    cfg = _cfg(
        "ds_0123abcd",
        model={"image_size": 16, "width": 8},
        train={"steps": 2, "batch_size": 8},
        schedule={"checkpoint_every": 1},
    )
    _events(run_dir, cfg, dataset_dir=uploads)
    fingerprint = core.datasets.load_dataset("ds_0123abcd", image_size=16, dataset_dir=uploads).fingerprint()
    assert checkpoint.read_data_info(run_dir / "checkpoints" / "00000002.safetensors")["fingerprint"] == fingerprint
    assert json.loads((run_dir / "run_info.json").read_text())["data_fingerprint"] == fingerprint

    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 3})})
    _, events = _events(run_dir, longer, dataset_dir=uploads)
    assert _data_warnings(events) == []

    images[0, 5, 5, 0] ^= 1  # one pixel of one image, as a rewritten upload would differ
    _write_upload(uploads, images)
    longest = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 5})})
    result, events = _events(run_dir, longest, dataset_dir=uploads)
    assert (result.status, result.step) == ("completed", 5)
    warnings = _data_warnings(events)
    assert len(warnings) == 1 and warnings[0]["step"] == 3
    assert "differ from those the checkpoint at step 3 was trained on" in warnings[0]["message"]
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["data_changed_at_step"] == 3 and info["data_fingerprint"] != fingerprint
    saved = checkpoint.read_data_info(run_dir / "checkpoints" / "00000005.safetensors")
    assert saved["fingerprint"] == info["data_fingerprint"]

    _write_upload(uploads, images[:16])
    even_longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 6})})
    with pytest.raises(ValueError, match="trained on 24 samples and the dataset now holds 16"):
        _events(run_dir, even_longer, dataset_dir=uploads)


def test_keep_checkpoints_keeps_only_the_newest(tmp_path):
    cfg = _cfg("ring8", train={"steps": 50, "batch_size": 8}, schedule={"checkpoint_every": 10, "keep_checkpoints": 2})
    _events(tmp_path, cfg)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["00000040.safetensors", "00000050.safetensors"]


def _poison_generator_loss(monkeypatch, *, at_call: int) -> None:
    """Make G's loss NaN at its `at_call`-th computation (1-based), which is that step's."""
    real_loss = noise.generator_loss
    calls = []

    def poisoned(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), stats) if len(calls) == at_call else (loss, stats)

    monkeypatch.setattr(noise, "generator_loss", poisoned)


def test_a_non_finite_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _poison_generator_loss(monkeypatch, at_call=13)
    cfg = _cfg("ring8", train={"steps": 50, "batch_size": 8}, schedule={"checkpoint_every": 10})
    message = r"^training diverged at step 13: loss_g is nan; the last good checkpoint is step 10$"
    with pytest.raises(TrainingDiverged, match=message):
        _events(tmp_path, cfg)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["00000010.safetensors"]


def test_stop_on_divergence_rolls_back_to_the_best_checkpoint(tmp_path, monkeypatch):
    _poison_generator_loss(monkeypatch, at_call=33)
    cfg = _cfg(
        "ring8",
        train={"steps": 50, "batch_size": 64},
        schedule={
            "checkpoint_every": 10,
            "keep_checkpoints": 1,
            "eval_every": 5,
            "eval_samples": 256,
            "stop_on_divergence": True,
        },
    )
    result, events = _events(tmp_path, cfg)
    assert result.status == "diverged"
    modes = [(d["step"], d["value"]) for k, d in events if k == "metric" and d["name"] == "modes"]
    best_step = max(modes, key=lambda sv: (sv[1], -sv[0]))[0]  # the first step with the most modes
    assert result.step == best_step
    assert result.message == (
        f"training diverged at step 33: loss_g is nan; rolled back to the best checkpoint (step {best_step})"
    )
    marked = [d["step"] for k, d in events if k == "checkpoint" and d["best"]]
    assert marked[-1] == best_step
    # The best survived pruning to one checkpoint, and nothing newer than it is left to resume from.
    steps = sorted(int(p.stem) for p in (tmp_path / "checkpoints").glob("*.safetensors"))
    assert steps[-1] == best_step
    environment = next(d for k, d in events if k == "environment")
    assert environment["primary_metric"] == ["modes", "max"] and "modes" in environment["metric_floor"]


def test_the_collapse_watch_reports_sample_diversity_and_warns_when_it_collapses(tmp_path, monkeypatch):
    cfg = _cfg("ring8", train={"steps": 20, "batch_size": 64}, schedule={"sample_every": 10})
    _, events = _events(tmp_path / "healthy", cfg)
    diversity = [d["value"] for k, d in events if k == "metric" and d["name"] == "sample_diversity"]
    assert len(diversity) == 2 and all(v > 0 for v in diversity)

    real_sample_grid = noise.sample_grid

    def collapsed(*args, **kwargs):  # every latent maps to the same point
        image, samples = real_sample_grid(*args, **kwargs)
        return image, torch.zeros_like(samples)

    monkeypatch.setattr(noise, "sample_grid", collapsed)
    _, events = _events(tmp_path / "collapsed", cfg)
    assert [d["value"] for k, d in events if k == "metric" and d["name"] == "sample_diversity"] == [0.0, 0.0]
    warnings = [d["message"] for k, d in events if k == "warning"]
    assert "possible mode collapse at step 10: the fixed-seed samples spread only 0.00× as much as the real data" in (
        warnings
    )


def test_a_resumed_run_keeps_the_best_evaluation_from_before_the_resume(tmp_path, monkeypatch):
    # The evaluator's values are scripted (lower is better), so the bookkeeping alone is under test.
    scripted = iter([5.0, 3.0, 4.0, 3.5, 2.5, 6.0])

    class Scripted:
        def __init__(self):
            self.primary, self.floor = ("fid_digits", "min"), {}

        def __call__(self, sample_fn):
            return {"fid_digits": next(scripted)}

    monkeypatch.setattr(core.train, "_make_evaluator", lambda *args: Scripted())
    schedule = {"checkpoint_every": 10, "keep_checkpoints": 1, "eval_every": 10, "eval_samples": 64}
    _, first = _events(tmp_path, _cfg("ring8", train={"steps": 30, "batch_size": 16}, schedule=schedule))
    assert [d["step"] for k, d in first if k == "checkpoint" and d["best"]] == [10, 20]
    # Step 40's 3.5 is worse than step 20's 3.0 from before the resume: only step 50 is a new best.
    _, second = _events(tmp_path, _cfg("ring8", train={"steps": 60, "batch_size": 16}, schedule=schedule))
    assert [d["step"] for k, d in second if k == "checkpoint" and d["best"]] == [50]
    steps = sorted(int(p.stem) for p in (tmp_path / "checkpoints").glob("*.safetensors"))
    assert steps == [50, 60]


def test_sample_grids_are_thinned_evenly_keeping_the_first_and_the_last(tmp_path):
    from core import layout

    assert layout.thinned(list(range(1, 11)), 4) == [1, 5, 9, 10]
    assert layout.thinned([5, 6], 4) == [5, 6]
    cfg = _cfg(
        "ring8",
        train={"steps": 24, "batch_size": 32},
        schedule={"sample_every": 2, "checkpoint_every": 24, "keep_samples": 5},
    )
    result, events = _events(tmp_path, cfg)
    assert result.status == "completed"
    assert len([d for k, d in events if k == "sample"]) == 12  # each grid was written and announced
    kept = layout.sample_steps(tmp_path)
    assert len(kept) <= 5 and kept[0] == 2 and kept[-1] == 24
    assert kept[1] <= 12  # spread over the run, not the newest five
