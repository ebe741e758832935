"""Exact resume: on the CPU in fp32, N steps == K steps + resume + N - K steps, bit for bit."""

from __future__ import annotations

import pytest

from core.config import RunConfig
from tests.utils.training import assert_resume_matches, checkpoint_tensors, run_events, tensors_that_differ

N, K = 6, 3


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
    _, first, _ = assert_resume_matches(tmp_path, cfg, N, K)
    assert [d["step"] for k, d in first if k == "checkpoint"] == [K]


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
    run_events(tmp_path / "a", quiet)
    events = run_events(tmp_path / "b", evaluated)
    assert [d["step"] for k, d in events if k == "metric" and d["name"] == "fid_digits"] == [2, 4, 6]
    assert [d["step"] for k, d in events if k == "metric" and d["name"] == "ppl_z_digits"] == [2, 4, 6]
    assert tensors_that_differ(checkpoint_tensors(tmp_path / "a", N), checkpoint_tensors(tmp_path / "b", N)) == []
