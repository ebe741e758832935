"""Exact resume: on the CPU in fp32, N steps == K steps + resume + N - K steps, bit for bit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from core.config import RunConfig
from core.train import train

N, K = 6, 3


def _run(out_dir, cfg: RunConfig, stop_at: int | None = None) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) == stop_at

    train(cfg, out_dir=out_dir, on_event=lambda kind, data: events.append((kind, data)), should_stop=should_stop)
    return events


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {
                "dataset": "ring8",
                "model": {"pack": 2, "minibatch_std": True},
                "train": {"ema": 0.9, "lr_schedule": "linear", "batch_size": 32},
                "loss": {"instance_noise": 0.1, "label_smoothing": 0.1},
            },
            id="mlp-pack-ema-noise",
        ),
        pytest.param(
            {
                "dataset": "digits",
                "model": {"image_size": 16, "width": 8, "conditional": True, "d_conditioning": "acgan"},
                "train": {"ema": 0.9, "diffaugment": "color,translation,cutout", "n_critic": 2, "batch_size": 16},
                "loss": {"r1_gamma": 1.0, "feature_matching": 1.0},
            },
            id="dcgan-conditional-diffaugment-r1",
        ),
        pytest.param(
            {
                "dataset": "digits",
                "model": {"arch": "resnet", "image_size": 32, "width": 4, "spectral_norm": True},
                "train": {"batch_size": 8},
                "loss": {"kind": "wgan-gp"},
            },
            id="resnet-sn-wgan-gp",
        ),
        pytest.param(
            {
                "dataset": "digits",
                "model": {"image_size": 16, "width": 8, "clusters": 5, "g_conditioning": "concat"},
                "train": {"ema": 0.9, "batch_size": 16},
            },
            id="dcgan-clusters",
        ),
        pytest.param(
            {
                "dataset": "stacked-digits",
                "model": {"width": 8, "clusters": 4, "cluster_channels": True},
                "train": {"ema": 0.9, "batch_size": 16},
            },
            id="dcgan-cluster-per-channel",
        ),
    ],
)
def test_resuming_gives_the_same_losses_and_weights_bit_for_bit(tmp_path, body: dict):
    body = body | {"train": body["train"] | {"steps": N, "precision": "fp32", "device": "cpu"}}
    body["schedule"] = {"sample_every": 2, "checkpoint_every": 100}
    cfg = RunConfig.model_validate(body)
    straight = _run(tmp_path / "a", cfg)
    first = _run(tmp_path / "b", cfg, stop_at=K)
    assert [d["step"] for k, d in first if k == "checkpoint"] == [K]
    rest = _run(tmp_path / "b", cfg)

    a = load_file(str(tmp_path / "a" / "checkpoints" / f"{N:08d}.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / f"{N:08d}.safetensors"))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    losses_a = {d["step"]: d["losses"] for k, d in straight if k == "progress"}
    losses_b = {d["step"]: d["losses"] for k, d in rest if k == "progress"}
    assert losses_b[N] == losses_a[N]
    png = "00000006.png"
    assert (tmp_path / "a" / "samples" / png).read_bytes() == (tmp_path / "b" / "samples" / png).read_bytes()


def test_evaluating_during_a_run_does_not_change_its_training(tmp_path):
    """Building the evaluator (its classifier) and sampling for it draw random numbers; none of them may come
    from the training's streams, or switching eval_every on would change the weights a seed trains."""
    body = {
        "dataset": "digits",
        "model": {"image_size": 16, "width": 8},
        "train": {"steps": N, "batch_size": 16, "precision": "fp32", "device": "cpu"},
    }
    quiet = RunConfig.model_validate(body | {"schedule": {"checkpoint_every": 100}})
    evaluated = RunConfig.model_validate(
        body | {"schedule": {"checkpoint_every": 100, "eval_every": 2, "eval_samples": 64}}
    )
    _run(tmp_path / "a", quiet)
    events = _run(tmp_path / "b", evaluated)
    assert [d["step"] for k, d in events if k == "metric" and d["name"] == "fid_digits"] == [2, 4, 6]
    a = load_file(str(tmp_path / "a" / "checkpoints" / f"{N:08d}.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / f"{N:08d}.safetensors"))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
