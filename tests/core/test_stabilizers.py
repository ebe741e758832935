"""Each stabilizer and option, through the real training loop on a tiny model for a few steps."""

from __future__ import annotations

import collections
import json

import pytest
import torch
from safetensors.torch import load_file

from core.collapse import collapse_suspected
from core.config import RunConfig
from core.device import pick_precision
from core.losses import mode_seeking_ratio, paired
from core.train import train

# Plain networks unless a case asks for clusters (the digits default has them).
TINY_IMAGES = {
    "dataset": "digits",
    "model": {"image_size": 16, "width": 8, "z_dim": 8, "clusters": 0},
    "train": {"batch_size": 8},
}
TINY_POINTS = {"dataset": "ring8", "model": {"width": 16}, "train": {"batch_size": 16}}


def _merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in extra.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _train(tmp_path, body: dict, steps: int = 3):
    body = _merge(body, {"train": {"steps": steps}, "schedule": {"checkpoint_every": 1, "keep_checkpoints": 10}})
    cfg = RunConfig.model_validate(body)
    events: list[tuple[str, dict]] = []
    result = train(cfg, out_dir=tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    ckpts = [load_file(str(tmp_path / "checkpoints" / f"{s:08d}.safetensors")) for s in (1, steps)]
    stats = {d["step"]: d["values"] for k, d in events if k == "stats"}
    return cfg, result, ckpts, stats, events


def _changed(first: dict, last: dict, prefix: str) -> bool:
    keys = [k for k in first if k.startswith(prefix) and first[k].is_floating_point() and "running" not in k]
    return any(not torch.equal(first[k], last[k]) for k in keys)


@pytest.mark.parametrize(
    ("base", "extra"),
    [
        pytest.param(TINY_IMAGES, {"model": {"spectral_norm": True}, "loss": {"kind": "hinge"}}, id="spectral-norm"),
        pytest.param(TINY_IMAGES, {"loss": {"r1_gamma": 10.0}}, id="r1"),
        pytest.param(TINY_IMAGES, {"loss": {"label_smoothing": 0.1}}, id="label-smoothing"),
        pytest.param(TINY_IMAGES, {"loss": {"instance_noise": 0.2}}, id="instance-noise"),
        pytest.param(TINY_IMAGES, {"loss": {"feature_matching": 1.0}}, id="feature-matching"),
        pytest.param(TINY_IMAGES, {"model": {"minibatch_std": True}}, id="minibatch-std"),
        pytest.param(TINY_IMAGES, {"train": {"diffaugment": "color,translation,cutout"}}, id="diffaugment"),
        pytest.param(TINY_IMAGES, {"train": {"ema": 0.9}}, id="ema"),
        pytest.param(TINY_IMAGES, {"train": {"lr_g": 1e-4, "lr_d": 4e-4}}, id="ttur"),
        pytest.param(TINY_IMAGES, {"train": {"n_critic": 3}, "loss": {"kind": "wgan-gp"}}, id="n-critic-wgan-gp"),
        pytest.param(TINY_IMAGES, {"loss": {"kind": "wgan", "clip": 0.01}}, id="wgan-clipping"),
        pytest.param(TINY_IMAGES, {"train": {"lr_schedule": "linear"}}, id="linear-lr"),
        pytest.param(TINY_IMAGES, {"train": {"precision": "bf16"}}, id="bf16"),
        pytest.param(TINY_POINTS, {"model": {"pack": 4}}, id="pacgan"),
        pytest.param(TINY_POINTS, {"loss": {"kind": "lsgan"}, "model": {"minibatch_std": True}}, id="mlp-lsgan-mbstd"),
        pytest.param(
            TINY_IMAGES,
            {"model": {"conditional": True, "g_conditioning": "concat", "d_conditioning": "acgan"}},
            id="conditional-concat-acgan",
        ),
        pytest.param(
            TINY_IMAGES,
            {"model": {"conditional": True, "g_conditioning": "cbn", "d_conditioning": "projection"}},
            id="conditional-cbn-projection",
        ),
        pytest.param(TINY_IMAGES, {"model": {"clusters": 4}}, id="clusters"),
        pytest.param(
            _merge(TINY_IMAGES, {"dataset": "stacked-digits"}),
            {"model": {"clusters": 3, "cluster_channels": True, "g_conditioning": "concat"}},
            id="cluster-per-channel-concat",
        ),
        pytest.param(TINY_IMAGES, {"loss": {"mode_seeking": 1.0}}, id="mode-seeking"),
        pytest.param(
            TINY_IMAGES, {"model": {"clusters": 4}, "loss": {"mode_seeking": 1.0}}, id="clusters-mode-seeking"
        ),
        pytest.param(
            TINY_IMAGES, {"loss": {"mode_seeking": 1.0}, "train": {"n_critic": 2}}, id="mode-seeking-n-critic"
        ),
        pytest.param(
            _merge(TINY_IMAGES, {"model": {"arch": "resnet", "image_size": 32, "width": 4}}),
            {"model": {"spectral_norm": True}, "loss": {"kind": "hinge"}},
            id="resnet-sngan",
        ),
    ],
)
def test_each_option_trains_with_finite_losses_and_updates_both_networks(tmp_path, base: dict, extra: dict):
    cfg, result, (first, last), stats, _ = _train(tmp_path, _merge(base, extra))
    assert result.status == "completed"
    final = stats[3]
    assert all(v == v and abs(v) != float("inf") for k, v in final.items() if k != "instance_noise"), final
    assert _changed(first, last, "G.") and _changed(first, last, "D.")
    if cfg.loss.kind == "wgan":
        assert all(v.abs().max() <= cfg.loss.clip for k, v in last.items() if k.startswith("D.") and "weight" in k)
    if cfg.train.ema:
        ema_keys = [k for k in last if k.startswith("G_ema.") and "running" not in k and "num_batches" not in k]
        assert ema_keys and any(not torch.equal(last[k], last["G." + k[6:]]) for k in ema_keys)
    if cfg.train.lr_schedule == "linear":
        assert stats[1]["lr_g"] == cfg.train.lr_g and final["lr_g"] == pytest.approx(cfg.train.lr_g / 3)
    if cfg.loss.instance_noise:
        assert final["instance_noise"] < stats[1]["instance_noise"] == cfg.loss.instance_noise
    if cfg.loss.kind == "wgan-gp":
        assert final["gp"] >= 0
    if cfg.loss.r1_gamma:
        assert final["r1"] > 0
    if cfg.loss.mode_seeking:
        assert final["mode_seeking_ratio"] > 0
    assert (final["lr_g"], final["lr_d"]) == (cfg.train.lr_g, cfg.train.lr_d) or cfg.train.lr_schedule == "linear"
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["precision"] == result.precision == ("bf16" if cfg.train.precision == "bf16" else info["precision"])


def test_auto_precision_keeps_the_mlp_in_fp32_and_explicit_choices_win():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu, arch="mlp") == "fp32"
    assert pick_precision("fp32", cpu, arch="dcgan") == "fp32"
    assert pick_precision("bf16", cpu, arch="mlp") == "bf16"
    assert pick_precision("auto", cpu, arch="dcgan") in ("fp32", "bf16")


def test_collapse_watch_fires_when_d_wins_and_g_loss_climbs():
    recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=10)
    for i in range(10):
        recent.append((0.01, 1.0 + i))
    assert collapse_suspected("nonsaturating", recent)
    assert not collapse_suspected("wgan-gp", recent)
    healthy: collections.deque[tuple[float, float]] = collections.deque([(1.2, 0.8)] * 10, maxlen=10)
    assert not collapse_suspected("nonsaturating", healthy)


def test_evaluation_emits_metric_events_without_changing_the_training(tmp_path, monkeypatch):
    pytest.importorskip("core.metrics")
    monkeypatch.setenv("GANFORGE_METRICS_CACHE", str(tmp_path / "cache"))
    body = _merge(TINY_POINTS, {"train": {"steps": 4, "precision": "fp32"}, "schedule": {"checkpoint_every": 100}})
    cfg = RunConfig.model_validate(body)
    evaluated = cfg.model_copy(
        update={"schedule": cfg.schedule.model_copy(update={"eval_every": 2, "eval_samples": 64})}
    )
    plain, with_eval = [], []
    train(cfg, out_dir=tmp_path / "a", on_event=lambda k, d: plain.append((k, d)))
    train(evaluated, out_dir=tmp_path / "b", on_event=lambda k, d: with_eval.append((k, d)))
    metrics = [d for k, d in with_eval if k == "metric"]
    assert {d["step"] for d in metrics} == {2, 4}
    assert "modes" in {d["name"] for d in metrics}
    a = load_file(str(tmp_path / "a" / "checkpoints" / "00000004.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "00000004.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mode_seeking_pairs_share_labels_and_its_ratio_is_the_image_distance_over_the_latent_distance():
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    assert paired(labels).tolist() == [3, 1, 4, 3, 1, 4, 2]  # fakes i and 3 + i share a label; the odd one stays
    assert paired(None) is None
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [1.0, 3.0]])  # pairs (0, 2) and (1, 3): |dz| means 1, 1
    fake = torch.zeros(4, 1, 2, 2)
    fake[2] = 3.0  # the first pair's images differ by 3 everywhere, the second's by 0
    assert float(mode_seeking_ratio(fake, z)) == pytest.approx(1.5)
