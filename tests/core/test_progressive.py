"""Progressive growing of stylegan2 runs (train.progressive): the phase schedule, the fade-in of both networks and
of the reals, training through the loop with the phase in the stats, generations from a checkpoint taken while
growing, exact resume across a fade, the footprint count and the config errors."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from torch.nn import functional as F

from core import footprint
from core.checkpoint import load_generator
from core.config import ProgressiveConfig, RunConfig
from core.networks_stylegan2 import (
    StyleDiscriminator,
    StyleGenerator,
    build_discriminator,
    build_generator,
    fade_reals,
    upsample,
)
from core.train import train

TINY = {"width": 8, "z_dim": 16, "w_dim": 16, "mapping_layers": 2}
GROW = {"start_resolution": 4, "fade_steps": 2, "stable_steps": 1}  # 4 px: step 1; 8 px fades in at 2-3; ...


def _cfg(**over: dict) -> RunConfig:
    body: dict = {
        "dataset": "digits",
        "model": {"arch": "stylegan2", **TINY},
        "train": {"steps": 8, "batch_size": 8, "precision": "fp32", "device": "cpu", "progressive": GROW},
        "loss": {"r1_every": 2, "pl_every": 2, "r1_gamma": 0.5},
        "schedule": {"sample_every": 4, "checkpoint_every": 2},
    }
    for section, fields in over.items():
        body[section] = body.get(section, {}) | fields
    return RunConfig.model_validate(body)


def test_the_phase_is_a_function_of_the_step():
    grow = ProgressiveConfig(start_resolution=8, fade_steps=4, stable_steps=2)
    phases = [grow.phase(step, 32) for step in range(1, 15)]
    assert phases == [
        (8, 1.0),
        (8, 1.0),
        (16, 0.25),
        (16, 0.5),
        (16, 0.75),
        (16, 1.0),
        (16, 1.0),
        (16, 1.0),
        (32, 0.25),
        (32, 0.5),
        (32, 0.75),
        (32, 1.0),
        (32, 1.0),
        (32, 1.0),
    ]
    assert grow.growing_steps(32) == 12  # the last fade ends at step 12
    assert ProgressiveConfig(start_resolution=4, fade_steps=3, stable_steps=0).phase(4, 8) == (8, 1.0)


def test_a_new_resolution_fades_in_from_the_lower_ones_output():
    """At α = 0, G's image is its lower resolution's image upsampled, D judges an image as the lower resolution's D
    does, and the reals are what G can make; at α = 1 the new block is all there is."""
    torch.manual_seed(0)
    G = StyleGenerator(
        z_dim=16, w_dim=16, mapping_layers=2, image_size=32, channels=1, width=8, num_classes=0, progressive=True
    ).eval()
    D = StyleDiscriminator(image_size=32, channels=1, width=8, num_classes=0, start_resolution=8)
    assert len(D.grow_from_rgb) == 2  # fromRGB at 16 and 8 px besides the top one
    z = torch.randn(3, 16)
    full = G(z)

    G.grow(8, 1.0)
    low = G(z)  # (3, 1, 32, 32): an 8 px image, each pixel repeated 4x4 times
    assert low.shape == (3, 1, 32, 32)
    native = F.avg_pool2d(low, 4)  # (3, 1, 8, 8)
    assert torch.allclose(F.interpolate(native, scale_factor=4.0, mode="nearest"), low, atol=1e-6)
    G.grow(16, 0.0)
    assert torch.allclose(G(z), F.interpolate(upsample(native), scale_factor=2.0, mode="nearest"), atol=1e-6)
    G.grow(16, 0.5)
    assert not torch.allclose(G(z), F.interpolate(upsample(native), scale_factor=2.0, mode="nearest"), atol=1e-4)
    G.grow(32, 1.0)
    assert torch.equal(G(z), full)
    assert G.active_ws() == G.num_ws

    x = torch.randn(4, 1, 32, 32)
    D.grow(8, 1.0)
    at_8 = D(x)[0]
    assert torch.allclose(D(F.avg_pool2d(x, 4))[0], at_8, atol=1e-5)  # any multiple of the side is averaged down
    D.grow(16, 0.0)
    assert torch.allclose(D(x)[0], at_8, atol=1e-5)
    D.grow(16, 0.5)
    assert not torch.allclose(D(x)[0], at_8, atol=1e-4)

    reals = fade_reals(x, 16, 0.0)
    assert torch.allclose(reals, F.interpolate(upsample(F.avg_pool2d(x, 4)), scale_factor=2.0), atol=1e-6)
    assert torch.allclose(fade_reals(x, 16, 1.0), F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0))
    assert torch.equal(fade_reals(x, 32, 1.0), x)
    with pytest.raises(ValueError, match="grows from 8 px"):
        D.grow(4, 1.0)


def test_training_grows_and_reports_the_phase(tmp_path):
    cfg = _cfg()
    events: list = []
    result = train(cfg, out_dir=tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    assert result.status == "completed"
    stats = {d["step"]: d["values"] for k, d in events if k == "stats"}
    assert (stats[1]["resolution"], stats[1]["fade_alpha"]) == (4.0, 1.0)
    assert (stats[8]["resolution"], stats[8]["fade_alpha"]) == (16.0, 1.0)
    assert [d["step"] for k, d in events if k == "sample"] == [4, 8]

    # A checkpoint taken while growing generates at its phase (the EMA generator carries it): step 2 fades 8 px in.
    G, _, _ = load_generator(tmp_path / "checkpoints" / f"{2:08d}.safetensors")
    assert G.phase() == (8, 0.5)
    images = G(torch.randn(4, 16))  # (4, 1, 16, 16)
    assert torch.allclose(F.interpolate(F.avg_pool2d(images, 2), scale_factor=2.0), images, atol=1e-6)
    G, _, _ = load_generator(tmp_path / "checkpoints" / f"{8:08d}.safetensors")
    images = G(torch.randn(4, 16))
    assert G.phase() == (16, 1.0)
    assert not torch.allclose(F.interpolate(F.avg_pool2d(images, 2), scale_factor=2.0), images, atol=1e-3)


def test_resuming_mid_fade_gives_the_same_checkpoint(tmp_path):
    cfg = _cfg(schedule={"checkpoint_every": 100})
    n, k = cfg.train.steps, 3  # step 3 is inside the fade-in of 8 px

    def run(out, stop_at=None):
        calls = []
        train(cfg, out_dir=out, should_stop=lambda: calls.append(1) or len(calls) == stop_at)

    run(tmp_path / "a")
    run(tmp_path / "b", stop_at=k)
    run(tmp_path / "b")
    a = load_file(str(tmp_path / "a" / "checkpoints" / f"{n:08d}.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / f"{n:08d}.safetensors"))
    assert a.keys() == b.keys()
    assert {"G.growth", "G_ema.growth", "D.grow_from_rgb.0.weight"} <= a.keys()
    assert [key for key in a if not torch.equal(a[key], b[key])] == []


def test_the_footprint_counts_the_growing_networks():
    cfg = RunConfig.model_validate(
        {
            "dataset": "digits",
            "model": {"arch": "stylegan2", "image_size": 32, "conditional": True},
            "train": {"progressive": {"start_resolution": 4, "fade_steps": 10, "stable_steps": 10}},
        }
    )
    with torch.device("meta"):
        G = build_generator(cfg, channels=1, num_classes=10)
        D = build_discriminator(cfg, channels=1, num_classes=10)
    values = [sum(t.numel() for t in net.state_dict().values()) for net in (G, D)]
    assert footprint.network_sizes(cfg, channels=1, num_classes=10) == tuple(values)


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"model": {"arch": "dcgan"}}, "train.progressive", id="dcgan"),
        pytest.param(
            {"dataset": "ring8", "model": {"arch": "stylegan2"}}, "model.arch", id="points"
        ),  # refused as points first
        pytest.param({"train": {"progressive": {"start_resolution": 12}}}, "start_resolution", id="not-power-of-2"),
        pytest.param({"train": {"progressive": {"start_resolution": 16}}}, "start_resolution", id="not-below-size"),
        pytest.param({"train": {"progressive": {"start_resolution": 2}}}, "start_resolution", id="below-4"),
        pytest.param(
            {"train": {"steps": 1000, "progressive": {"start_resolution": 4}}}, "train.progressive", id="too-short"
        ),
        pytest.param({"train": {"progressive": {"fade_steps": 0}}}, "fade_steps", id="no-fade"),
    ],
)
def test_impossible_configs_name_their_field(body: dict, field: str):
    base: dict = {"dataset": "digits", "model": {"arch": "stylegan2"}, "train": {"progressive": {}}}
    for section, fields in body.items():
        base[section] = base[section] | fields if isinstance(fields, dict) else fields
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate(base)
    assert field in str(info.value)
