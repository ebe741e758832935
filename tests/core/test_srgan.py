"""srgan through core: the networks' shapes, the photos data and the low-resolution inputs, the config's defaults and
refusals, a few steps through core.train.train across the pretraining phase with its grid and metrics, exact
resume, the generator a translation job loads, and the feature networks."""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from core import checkpoint, networks_sr
from core.config import RunConfig
from core.datasets import load_dataset
from core.families import srgan
from core.metrics.superres import sr_metrics
from core.networks_sr import SRDiscriminator, SRResNet, load_vgg19_features
from core.superres import (
    PHOTO_HELD_COLUMNS,
    PHOTO_PATCHES,
    SRDataset,
    bicubic_upscale,
    downscale,
    downscaled_copies,
    held_out_count,
    hold_aside,
    sr_dataset,
)
from core.train import train
from core.translate import load_translator, translate
from tests.utils.training import assert_resume_matches, checkpoint_tensors, run_events

TINY = {
    "dataset": "photos",
    "model": {"image_size": 32, "width": 4, "g_width": 4, "res_blocks": 1, "scale": 4},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32"},
}


def _cfg(**over: dict) -> RunConfig:
    body = {key: (TINY[key] | over.get(key, {})) if isinstance(TINY[key], dict) else TINY[key] for key in TINY}
    return RunConfig.model_validate(body | {k: v for k, v in over.items() if k not in body})


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_upsamples_any_input_by_its_scale_deterministically_in_eval_mode(scale):
    G = SRResNet(channels=3, width=4, blocks=1, scale=scale)
    out = G(torch.randn(2, 3, 8, 12))
    assert out.shape == (2, 3, 8 * scale, 12 * scale) and out.abs().max() <= 1
    G.eval()
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(G(x), G(x))
    assert torch.allclose(G(x[:1]), G(x)[:1], atol=1e-6)  # running BatchNorm statistics: no batch dependence


def test_the_bicubic_skip_starts_as_bicubic_upsampling():
    G = SRResNet(channels=1, width=4, blocks=1, scale=2, bicubic_skip=True).eval()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.equal(G(x), expected)


def test_the_srresnet_without_batchnorm_has_biases_and_computes_the_same_in_train_and_eval_mode():
    G = SRResNet(channels=3, width=4, blocks=2, scale=2, batchnorm=False)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in G.modules())
    assert all(conv.bias is not None for conv in G.body.modules() if isinstance(conv, torch.nn.Conv2d))
    x = torch.randn(3, 3, 8, 8)
    train_out = G(x)
    assert train_out.shape == (3, 3, 16, 16) and torch.equal(train_out, G.eval()(x))
    with_norm = SRResNet(channels=3, width=4, blocks=2, scale=2)
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in with_norm.modules()) == 2 * 2 + 1


@pytest.mark.parametrize(("size", "deepest"), [(32, 2), (96, 6), (256, 16)])
def test_the_discriminator_gives_a_logit_and_its_eight_blocks(size, deepest):
    D = SRDiscriminator(channels=1, width=4, image_size=size)
    logits, features, aux = D(torch.randn(2, 1, size, size))
    assert logits.shape == (2,) and aux is None and len(features) == 8
    assert features[-1].shape == (2, 32, deepest, deepest)
    assert D.head[1].in_features == 32 * min(deepest, 6) ** 2  # pooled to the paper's 6 x 6 at most


def test_photos_are_patches_with_a_held_out_region_training_never_touches():
    ds = load_dataset("photos", image_size=32)
    assert isinstance(ds, SRDataset) and (ds.channels, ds.image_size, len(ds)) == (3, 32, 16384)
    assert ds.base is not None and ds.base.positions is not None and ds.held is not None
    assert int(ds.base.positions[:, 2].min()) >= PHOTO_HELD_COLUMNS  # training patches start right of the region
    x, labels = ds.batch(torch.tensor([0, 1, 16383]))
    assert x.shape == (3, 3, 32, 32) and labels is None and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, load_dataset("photos", image_size=32).batch(torch.tensor([0, 1, 16383]))[0])
    assert ds.held.shape == (256, 3, 32, 32)
    # Every held-out patch is a crop of the left 256 columns of one photo.
    from sklearn.datasets import load_sample_images

    photos = torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    for patch in ds.held[:4]:
        rows = photos[:, :, :, :PHOTO_HELD_COLUMNS].unfold(3, 32, 1)  # (2, 3, 427, 225, 32): every 32 px row piece
        starts = (rows == patch[:, 0, None, None, :]).all(-1).all(1).nonzero().tolist()  # (photo, top, left)s
        assert any(torch.equal(photos[p, :, t : t + 32, c : c + 32], patch) for p, t, c in starts)


def test_downscaled_copies_add_patches_of_the_training_region_at_each_factor():
    native = load_dataset("photos", image_size=32)
    assert downscaled_copies(native, []) is native
    cfg = _cfg(train={"downscaled_copies": [0.5, 0.8]})
    ds = srgan.split_data(native, cfg)
    assert isinstance(ds, SRDataset) and ds.base is not None and ds.base.positions is not None
    assert ds.held is not None and native.held is not None and torch.equal(ds.held, native.held)
    assert ds.held_low is not None and ds.held_low.shape == (256, 3, 8, 8)
    some = torch.arange(0, PHOTO_PATCHES, 97)
    assert torch.equal(ds.batch(some)[0], native.batch(some)[0])  # the native patches keep their indices
    positions = ds.base.positions[PHOTO_PATCHES:]  # (n, 3): the copies' patches, photos 2-3 then 4-5
    room = [(round(427 * f) - 31) * (round(384 * f) - 31) / ((427 - 31) * (384 - 31)) for f in (0.5, 0.8)]
    assert len(positions) == pytest.approx(PHOTO_PATCHES * sum(room), abs=4)
    half = positions[positions[:, 0] < 4]
    assert set(half[:, 0].tolist()) == {2, 3}  # the two photographs' copies at 0.5: 214 x 192 px
    assert int(half[:, 1].max()) <= 214 - 32 and int(half[:, 2].max()) <= 192 - 32
    # A patch of the 0.5 copy is a crop of the training region downscaled by Pillow's bicubic.
    from sklearn.datasets import load_sample_images

    photo, top, left = half[0].tolist()
    region = load_sample_images().images[photo - 2][:, PHOTO_HELD_COLUMNS:]
    small = np.array(Image.fromarray(region).resize((192, 214), Image.Resampling.BICUBIC))
    expected = torch.from_numpy(small[top : top + 32, left : left + 32]).permute(2, 0, 1).float() / 127.5 - 1
    index = PHOTO_PATCHES + int((positions[:, 0] < 4).nonzero()[0])
    assert torch.equal(ds.batch(torch.tensor([index]))[0][0], expected)
    again = srgan.split_data(load_dataset("photos", image_size=32), cfg)
    assert torch.equal(again.batch(torch.arange(len(again)))[0], ds.batch(torch.arange(len(ds)))[0])
    with pytest.raises(ValueError, match=r"train\.downscaled_copies: only photos"):
        downscaled_copies(load_dataset("digits", image_size=32), [0.5])


def test_aside_columns_keep_a_slice_of_the_training_region_out_of_training():
    native = load_dataset("photos", image_size=32)
    assert hold_aside(native, 0) is native
    cfg = _cfg(train={"aside_columns": 64, "downscaled_copies": [0.5]})
    ds = srgan.split_data(native, cfg)
    assert isinstance(ds, SRDataset) and ds.base is not None and ds.base.positions is not None
    assert native.base is not None and native.base.positions is not None and native.held is not None
    edge = PHOTO_HELD_COLUMNS + 64
    kept = native.base.positions[native.base.positions[:, 2] >= edge]  # the native patches clear of the slice
    assert 0 < len(kept) < PHOTO_PATCHES and torch.equal(ds.base.positions[: len(kept)], kept)
    assert len(ds) == len(ds.base.positions) and ds.held is not None and torch.equal(ds.held, native.held)
    # The 0.5 copy is cut from the columns right of the slice alone: 320 columns, 160 px wide.
    copies = ds.base.positions[len(kept) :]
    room = (214 - 31) * (160 - 31) / ((427 - 31) * (320 - 31))
    assert len(copies) == pytest.approx(len(kept) * room, abs=4) and int(copies[:, 2].max()) <= 160 - 32
    from sklearn.datasets import load_sample_images

    pictures = load_sample_images().images
    photo, top, left = copies[0].tolist()
    small = np.array(Image.fromarray(pictures[photo - 2][:, edge:]).resize((160, 214), Image.Resampling.BICUBIC))
    expected = torch.from_numpy(small[top : top + 32, left : left + 32]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(ds.batch(torch.tensor([len(kept)]))[0][0], expected)
    # The held-aside patches are crops of the slice, the same in every run.
    photos = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert ds.aside is not None and ds.aside.shape == (256, 3, 32, 32)
    for patch in ds.aside[:4]:
        rows = photos[:, :, :, PHOTO_HELD_COLUMNS:edge].unfold(3, 32, 1)  # (2, 3, 427, 33, 32)
        starts = (rows == patch[:, 0, None, None, :]).all(-1).all(1).nonzero().tolist()  # (photo, top, left)s
        assert any(
            torch.equal(photos[p, :, t : t + 32, PHOTO_HELD_COLUMNS + c :][:, :, :32], patch) for p, t, c in starts
        )
    again = srgan.split_data(load_dataset("photos", image_size=32), cfg)
    assert again.aside is not None and torch.equal(again.aside, ds.aside)
    with pytest.raises(ValueError, match=r"train\.aside_columns: only photos"):
        hold_aside(load_dataset("digits", image_size=32), 64)


def test_a_sharpness_target_reads_the_aside_patches():
    cfg = _cfg(model={"bicubic_skip": True}, train={"aside_columns": 64, "interpolation": 0.5})
    data = srgan.split_data(load_dataset("photos", image_size=32), cfg)
    assert data.aside is not None
    data = dataclasses.replace(data, aside=data.aside[:32])  # a few, for speed
    torch.manual_seed(0)
    G, G_psnr = srgan.generator(cfg, {"channels": 3}), srgan.generator(cfg, {"channels": 3})
    with torch.no_grad():
        for noisy, value in zip(G.state_dict().values(), G_psnr.state_dict().values(), strict=True):
            noisy.add_(0.2 * torch.randn_like(noisy))  # a residual of noise: sharper than bicubic
            value.zero_()  # a residual of nothing: bicubic upscaling
    patches = srgan.sharpness_patches(data.aside, cfg)

    def sharpness(weight: float) -> float:
        blend = srgan.generator(cfg, {"channels": 3})
        blend.load_state_dict(G.state_dict())
        srgan.interpolate(blend, G_psnr, weight)
        return srgan.training_sharpness(blend, patches, device=torch.device("cpu"), autocast=nullcontext)

    assert sharpness(0.0) < sharpness(1.0)
    target = (sharpness(0.0) + sharpness(1.0)) / 2
    chosen = cfg.model_copy(update={"train": cfg.train.model_copy(update={"interpolation_sharpness": target})})
    weight = srgan.sharpness_weight(G, G_psnr, data, chosen, device=torch.device("cpu"), autocast=nullcontext)
    assert sharpness(weight) >= target > sharpness(weight - 1 / 1024)


def test_any_image_dataset_holds_out_a_share_for_super_resolution():
    digits = load_dataset("digits", image_size=32)
    ds = sr_dataset(digits, 2)
    assert ds.held is not None and ds.held_low is not None and ds.train_idx is not None
    assert ds.held.shape == (180, 1, 32, 32) and ds.held_low.shape == (180, 1, 16, 16) and len(ds) == 1797 - 180
    held_flat = ds.held.flatten(1)
    train_flat = digits.store[ds.train_idx].flatten(1)
    assert not any(bool((train_flat == h).all(1).any()) for h in held_flat[:20])
    assert ds.info()["scale"] == 2
    assert [held_out_count(n) for n in (10, 16, 100, 10_000)] == [0, 8, 10, 256]


def test_low_resolution_inputs_are_pillow_bicubic_of_the_8_bit_image():
    hr = torch.rand(2, 3, 32, 32) * 2 - 1
    low = downscale(hr, 4)
    assert low.shape == (2, 3, 8, 8)
    levels = ((hr[1] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    expected = np.array(Image.fromarray(levels).resize((8, 8), Image.Resampling.BICUBIC))
    assert torch.equal(((low[1] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(expected))
    assert bicubic_upscale(low, 4).shape == (2, 3, 32, 32)


def test_photos_defaults_are_srgan_x4_and_other_archs_drop_its_fields():
    cfg = RunConfig.model_validate({"dataset": "photos"})
    assert (cfg.model.arch, cfg.model.scale, cfg.model.image_size, cfg.loss.adversarial_weight) == (
        "srgan",
        4,
        64,
        1e-3,
    )
    assert (cfg.loss.content, cfg.loss.feature_net, cfg.train.pretrain_steps > 0) == ("l1", "discriminator", True)
    assert (cfg.loss.gradient_weight, cfg.train.flips, cfg.train.phase_schedule) == (1.0, True, "cosine")
    assert (cfg.train.lr_g, cfg.train.lr_g_adversarial, cfg.train.beta1) == (1e-3, 1e-4, 0.9)
    assert (cfg.schedule.eval_every > 0, cfg.model.bicubic_skip, cfg.train.interpolation) == (True, True, 0.9)
    assert 0 < cfg.train.pretrain_steps < cfg.train.steps and cfg.loss.energy_weight == 2.0
    assert (cfg.model.g_batchnorm, cfg.train.downscaled_copies) == (False, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert (cfg.train.detail_blend, cfg.train.detail_window) == (0.19, 127)  # served instead of the network blend
    # The default detail blend gives way to a chosen network blend, at a weight or at a sharpness target.
    network = RunConfig.model_validate({"dataset": "photos", "train": {"interpolation": 0.8}})
    assert (network.train.interpolation, network.train.detail_blend) == (0.8, None)
    target = RunConfig.model_validate({"dataset": "photos", "train": {"interpolation_sharpness": 0.8}})
    assert (target.train.interpolation, target.train.interpolation_sharpness, target.train.detail_blend) == (
        0.9,
        0.8,
        None,
    )
    unblended = RunConfig.model_validate({"dataset": "photos", "train": {"interpolation": None}})
    assert (unblended.train.interpolation, unblended.train.detail_blend) == (None, None)
    chosen = RunConfig.model_validate({"dataset": "photos", "train": {"detail_blend": 0.3, "detail_window": 33}})
    assert (chosen.train.interpolation, chosen.train.detail_blend, chosen.train.detail_window) == (0.9, 0.3, 33)
    # The default copies keep the factors that hold a patch of the run's size; a choice of them is checked as it is.
    large = RunConfig.model_validate({"dataset": "photos", "model": {"image_size": 256}})
    assert large.train.downscaled_copies == [0.7, 0.8, 0.9]
    with pytest.raises(ValidationError, match=r"train\.downscaled_copies: 0\.5 leaves 192 px"):
        RunConfig.model_validate(
            {"dataset": "photos", "model": {"image_size": 256}, "train": {"downscaled_copies": [0.5]}}
        )
    short = RunConfig.model_validate({"dataset": "photos", "train": {"steps": 10}})  # no adversarial phase to blend
    assert (short.train.interpolation, short.train.detail_blend, short.loss.energy_weight) == (None, None, 2.0)
    dcgan = RunConfig.model_validate({"dataset": "photos", "model": {"arch": "dcgan"}})
    assert (dcgan.model.scale, dcgan.train.pretrain_steps, dcgan.loss.feature_net) == (4, 0, "discriminator")
    assert (dcgan.loss.gradient_weight, dcgan.train.flips, dcgan.train.lr_g_adversarial) == (0.0, False, None)
    assert (dcgan.loss.energy_weight, dcgan.train.interpolation, dcgan.train.downscaled_copies) == (0.0, None, [])
    assert dcgan.train.detail_blend is None
    on_digits = RunConfig.model_validate({"dataset": "digits", "model": {"arch": "srgan", "scale": 2}})
    assert (on_digits.model.image_size, on_digits.model.clusters, on_digits.train.ema) == (32, 0, None)
    assert (on_digits.train.interpolation, on_digits.train.detail_blend) == (0.9, None)  # the blend of photos alone


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"dataset": "photos", "model": {"scale": 3}}, "model.scale", id="scale-3"),
        pytest.param({"dataset": "photos", "model": {"image_size": 32, "scale": 8}}, "model.scale", id="4px-input"),
        pytest.param({"dataset": "photos", "model": {"image_size": 40}}, "model.image_size", id="40px"),
        pytest.param({"dataset": "wine", "model": {"arch": "srgan"}}, "model.arch", id="table"),
        pytest.param({"dataset": "ring8", "model": {"arch": "srgan"}}, "model.arch", id="points"),
        pytest.param({"dataset": "digits-edges", "model": {"arch": "srgan"}}, "model.arch", id="paired"),
        pytest.param({"dataset": "digits-printed", "model": {"arch": "srgan"}}, "model.arch", id="unpaired"),
        pytest.param({"dataset": "paired_0123456789abcdef", "model": {"arch": "srgan"}}, "model.arch", id="upload-ab"),
        pytest.param({"dataset": "photos", "loss": {"feature_net": "digits"}}, "loss.feature_net", id="digits-rgb"),
        pytest.param({"dataset": "photos", "loss": {"kind": "wgan-gp"}}, "loss.kind", id="wgan-gp"),
        pytest.param({"dataset": "photos", "model": {"conditional": True}}, "model.conditional", id="conditional"),
        pytest.param({"dataset": "photos", "model": {"spectral_norm": True}}, "model.spectral_norm", id="sn"),
        pytest.param({"dataset": "photos", "train": {"compile": True}}, "train.compile", id="compile"),
        pytest.param({"dataset": "digits", "model": {"scale": 2}}, "model.scale", id="scale-on-dcgan"),
        pytest.param({"dataset": "digits", "train": {"pretrain_steps": 5}}, "train.pretrain_steps", id="pretrain"),
        pytest.param({"dataset": "digits", "loss": {"content": "l1"}}, "loss.content", id="content-on-dcgan"),
        pytest.param({"dataset": "digits", "loss": {"gradient_weight": 1}}, "loss.gradient_weight", id="gradient"),
        pytest.param({"dataset": "digits", "loss": {"energy_weight": 1}}, "loss.energy_weight", id="energy"),
        pytest.param({"dataset": "digits", "loss": {"energy_window": 4}}, "loss.energy_window", id="window"),
        pytest.param({"dataset": "digits", "loss": {"psnr_weighting": True}}, "loss.psnr_weighting", id="psnr-weights"),
        pytest.param({"dataset": "digits", "train": {"flips": True}}, "train.flips", id="flips-on-dcgan"),
        pytest.param({"dataset": "digits", "train": {"channel_orders": True}}, "train.channel_orders", id="orders"),
        pytest.param({"dataset": "digits", "loss": {"relativistic": True}}, "loss.relativistic", id="ra-on-dcgan"),
        pytest.param(
            {"dataset": "digits", "train": {"downscaled_copies": [0.5]}}, "train.downscaled_copies", id="copies-dcgan"
        ),
        pytest.param(
            {"dataset": "digits", "model": {"arch": "srgan", "scale": 2}, "train": {"downscaled_copies": [0.5]}},
            "train.downscaled_copies",
            id="copies-on-digits",
        ),
        pytest.param({"dataset": "photos", "train": {"downscaled_copies": [1.0]}}, "train.downscaled_copies", id="x1"),
        pytest.param(
            {"dataset": "photos", "train": {"downscaled_copies": [0.1]}}, "train.downscaled_copies", id="too-small"
        ),
        pytest.param(
            {"dataset": "photos", "loss": {"relativistic": True, "kind": "lsgan"}}, "loss.relativistic", id="ra-lsgan"
        ),
        pytest.param(
            {"dataset": "photos", "loss": {"relativistic": True, "instance_noise": 0.1}},
            "loss.relativistic",
            id="ra-noise",
        ),
        pytest.param({"dataset": "digits", "model": {"g_batchnorm": False}}, "model.g_batchnorm", id="batchnorm"),
        pytest.param({"dataset": "digits", "train": {"phase_schedule": "cosine"}}, "train.phase_schedule", id="phases"),
        pytest.param({"dataset": "digits", "train": {"lr_g_adversarial": 1e-4}}, "train.lr_g_adversarial", id="adv-lr"),
        pytest.param(
            {"dataset": "photos", "train": {"steps": 10, "pretrain_steps": 10, "interpolation": 0.5}},
            "train.interpolation",
            id="interpolation-without-adversarial-phase",
        ),
        pytest.param(
            {"dataset": "photos", "train": {"steps": 10, "interpolation_sharpness": 0.8}},
            "train.interpolation",
            id="sharpness-without-adversarial-phase",
        ),
        pytest.param(
            {"dataset": "photos", "train": {"interpolation": None, "interpolation_sharpness": 0.8}},
            "train.interpolation_sharpness",
            id="sharpness-without-blend",
        ),
        pytest.param(
            {"dataset": "digits", "train": {"interpolation_sharpness": 0.8}},
            "train.interpolation_sharpness",
            id="dcgan",
        ),
        pytest.param(
            {"dataset": "digits", "train": {"adversarial_ema": 0.99}}, "train.adversarial_ema", id="ema-dcgan"
        ),
        pytest.param(
            {"dataset": "photos", "train": {"interpolation": None, "detail_blend": 0.2}},
            "train.detail_blend",
            id="detail-without-blend",
        ),
        pytest.param(
            {"dataset": "photos", "train": {"detail_blend": 0.2, "interpolation_sharpness": 0.8}},
            "train.detail_blend",
            id="detail-and-sharpness",
        ),
        pytest.param(
            {"dataset": "photos", "train": {"steps": 10, "pretrain_steps": 10, "detail_blend": 0.2}},
            "train.interpolation",
            id="detail-without-adversarial-phase",
        ),
        pytest.param({"dataset": "photos", "train": {"detail_window": 32}}, "train.detail_window", id="even-window"),
        pytest.param({"dataset": "digits", "train": {"detail_blend": 0.2}}, "train.detail_blend", id="detail-dcgan"),
        pytest.param({"dataset": "digits", "train": {"aside_columns": 64}}, "train.aside_columns", id="aside-dcgan"),
        pytest.param(
            {"dataset": "digits", "model": {"arch": "srgan", "image_size": 32}, "train": {"aside_columns": 64}},
            "train.aside_columns",
            id="aside-digits",
        ),
        pytest.param({"dataset": "photos", "train": {"aside_columns": 32}}, "train.aside_columns", id="aside-narrow"),
        pytest.param({"dataset": "photos", "train": {"aside_columns": 330}}, "train.aside_columns", id="aside-wide"),
        pytest.param(
            {"dataset": "photos", "train": {"aside_columns": 300, "downscaled_copies": [0.5]}},
            "train.downscaled_copies",
            id="aside-copies",
        ),
        pytest.param(
            {"dataset": "photos", "train": {"steps": 10, "pretrain_steps": 10, "adversarial_ema": 0.99}},
            "train.adversarial_ema",
            id="ema-without-adversarial-phase",
        ),
    ],
)
def test_impossible_srgan_configs_name_their_field(body, field):
    with pytest.raises(ValidationError, match=rf"{field}: "):
        RunConfig.model_validate(body)


def test_srgan_pretrains_then_trains_adversarially_with_its_grid_and_metrics(tmp_path):
    cfg = _cfg(
        train={"steps": 4, "pretrain_steps": 2},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    events = run_events(tmp_path, cfg)
    with Image.open(tmp_path / "samples" / "00000004.png") as grid:
        size = grid.size
    assert size == (8 * 34 + 2, 4 * 34 + 2)  # 4 rows of 2 (low-res | bicubic | SR | HR) at 32 px, 2 px apart
    metrics = {(d["step"], d["name"]): d["value"] for kind, d in events if kind == "metric"}
    for name in ("psnr", "ssim", "sharpness", "psnr_bicubic", "ssim_bicubic", "sharpness_bicubic", "psnr_gain"):
        assert (2, name) in metrics and (4, name) in metrics
    assert metrics[(2, "psnr_bicubic")] == metrics[(4, "psnr_bicubic")] and metrics[(4, "n_fake")] == 64
    env = [d for kind, d in events if kind == "environment"]
    assert env[0]["primary_metric"] == ["psnr", "max"]
    stats = {d["step"]: d["values"] for kind, d in events if kind == "stats"}
    assert stats[1]["pretraining"] == 1.0 and stats[1]["loss_d"] == 0.0
    assert stats[1]["loss_g"] == pytest.approx(stats[1]["loss_g_pixel"] + stats[1]["loss_g_gradient"])  # weight 1
    assert stats[4]["pretraining"] == 0.0 and stats[4]["loss_d"] > 0
    assert {"loss_g_adv", "loss_g_feature", "d_real", "d_fake", "grad_norm_d"} <= stats[4].keys()
    tensors = checkpoint_tensors(tmp_path, 4)
    assert any(k.startswith("G.upsample.") for k in tensors) and any(k.startswith("D.blocks.") for k in tensors)


def test_the_generator_of_a_checkpoint_upsamples_for_translation_and_makes_no_generations(tmp_path):
    cfg = _cfg(model={"scale": 2}, train={"steps": 2, "pretrain_steps": 1}, schedule={"checkpoint_every": 2})
    train(cfg, out_dir=tmp_path)
    path = tmp_path / "checkpoints" / "00000002.safetensors"
    state, meta = checkpoint.read_generator_state(path)
    G = srgan.generator(cfg, json.loads(meta["data"]))
    G.load_state_dict(state)
    G.eval()
    x = torch.rand(3, 3, 10, 14) * 2 - 1
    out = G(x)
    assert out.shape == (3, 3, 20, 28) and torch.equal(out, G(x)) and not G.training
    with pytest.raises(ValueError, match="srgan, which translates input images and does not sample from latents"):
        checkpoint.load_generator(path)


N, K = 6, 2


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"loss": {"content": "mse", "gradient_weight": 0.0}}, id="mse-discriminator-features"),
        pytest.param({"loss": {"content": "l1", "kind": "lsgan", "instance_noise": 0.1}}, id="l1-lsgan-noise"),
        pytest.param(
            {
                "loss": {"content": "l1", "gradient_weight": 0.5, "energy_weight": 2.0, "energy_window": 4},
                "train": {"flips": True, "phase_schedule": "cosine", "lr_g_adversarial": 1e-4, "interpolation": 0.5},
            },
            id="gradient-flips-cosine",
        ),
        pytest.param({"loss": {"energy_weight": 2.0, "psnr_weighting": True}}, id="energy-psnr-weighting"),
        pytest.param({"model": {"g_batchnorm": False}, "train": {"interpolation": 0.5}}, id="no-batchnorm-blend"),
        pytest.param({"train": {"flips": True, "channel_orders": True}}, id="flips-channel-orders"),
        pytest.param({"loss": {"relativistic": True}}, id="relativistic"),
        pytest.param({"train": {"downscaled_copies": [0.6, 0.9]}}, id="downscaled-copies"),
        pytest.param({"train": {"adversarial_ema": 0.9, "interpolation": 0.5}}, id="adversarial-ema-blend"),
        pytest.param({"train": {"interpolation": 0.5, "detail_blend": 0.2}}, id="detail-blend"),
    ],
)
def test_srgan_resumes_bit_for_bit_across_the_pretraining(tmp_path, over: dict):
    cfg = _cfg(
        **{k: v for k, v in over.items() if k != "train"},
        train={"steps": N, "pretrain_steps": 3} | over.get("train", {}),
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    straight, _, rest = assert_resume_matches(tmp_path, cfg, N, K)  # stopped in the pretraining, resumed past it
    metrics_a = {(d["step"], d["name"]): d["value"] for k, d in straight if k == "metric"}
    metrics_b = {(d["step"], d["name"]): d["value"] for k, d in rest if k == "metric"}
    assert metrics_b[(N, "psnr")] == metrics_a[(N, "psnr")]


def test_the_digits_classifier_serves_as_the_feature_network_on_digits(tmp_path):
    cfg = RunConfig.model_validate(
        {
            "dataset": "digits",
            "model": {"arch": "srgan", "width": 4, "g_width": 4, "res_blocks": 1, "scale": 2},
            "loss": {"feature_net": "digits"},
            "train": {"steps": 2, "pretrain_steps": 1, "batch_size": 4, "device": "cpu", "precision": "fp32"},
            "schedule": {"checkpoint_every": 100},
        }
    )
    stats = [d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"]
    assert stats[-1]["loss_g_feature"] > 0


def test_vgg19_features_need_the_weights_file(tmp_path, monkeypatch):
    monkeypatch.delenv(networks_sr.VGG19_ENV_VAR, raising=False)
    cfg = _cfg(loss={"feature_net": "vgg19"}, train={"steps": 1})
    with pytest.raises(ValueError, match=r"loss\.feature_net: vgg19 needs torchvision's vgg19-dcbb9e9d\.pth"):
        train(cfg, out_dir=tmp_path / "run")
    wrong = tmp_path / "vgg19.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match="which does not begin with the dcbb9e9d"):
        load_vgg19_features(wrong)
    import hashlib

    monkeypatch.setattr(networks_sr, "VGG19_SHA256_PREFIX", hashlib.sha256(wrong.read_bytes()).hexdigest()[:8])
    with pytest.raises(ValueError, match="does not hold VGG-19's convolutional weights"):
        load_vgg19_features(wrong)
    net = networks_sr.VGG19Features()
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 512, 2, 2)
    assert sorted({k.split(".")[1] for k in net.state_dict()}, key=int)[-1] == "34"  # conv5_4, torchvision's index


def test_the_phase_schedule_falls_along_a_cosine_within_each_phase():
    cfg = _cfg(train={"steps": 10, "pretrain_steps": 4, "phase_schedule": "cosine"})
    scales = [srgan.phase_rate_scale(cfg, step) for step in range(1, 11)]
    assert scales[0] == 1.0 and scales[4] == 1.0  # the first step of each phase at the full rate
    assert scales[1] > scales[2] > scales[3] > 0 and scales[5] > scales[6] > scales[9] > 0
    assert scales[2] == pytest.approx(0.5)
    constant = _cfg(train={"steps": 10, "pretrain_steps": 4, "phase_schedule": "constant"})
    assert {srgan.phase_rate_scale(constant, step) for step in range(1, 11)} == {1.0}


def test_the_gradient_loss_and_the_symmetries_of_a_batch():
    hr = torch.rand(64, 3, 8, 8) * 2 - 1
    assert srgan.gradient_loss(hr, hr) == 0
    assert srgan.gradient_loss(hr.mean((2, 3), keepdim=True).expand_as(hr), hr) > 0  # a flat image has no edges
    out = srgan.random_symmetry(hr)
    symmetries = []
    for x in (hr, hr.transpose(-1, -2)):  # the eight symmetries of the square, as the transpose is applied last
        for flipped in (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)):
            symmetries.append(flipped)
    matches = torch.stack([(out == s).flatten(1).all(1) for s in symmetries])  # (8, 64)
    assert bool(matches.any(0).all())  # every image is one of its own symmetries
    assert int(matches[0].sum()) < 64  # and not every image was left as it was


def test_random_channel_orders_permute_each_images_channels():
    torch.manual_seed(0)
    hr = torch.rand(64, 3, 4, 4) * 2 - 1
    out = srgan.random_channel_order(hr)
    orders = torch.stack(
        [torch.stack([(out[:, i] == hr[:, j]).flatten(1).all(1) for j in range(3)], 1) for i in range(3)], 1
    )  # (64, 3, 3): output channel i is input channel j
    assert bool((orders.sum(1) == 1).all() and (orders.sum(2) == 1).all())  # each image's channels, reordered
    picked = {tuple(int(j) for j in o.float().argmax(2)[0]) for o in orders.split(1)}
    assert len(picked) == 6  # all six orders of three channels among 64 images
    gray = torch.rand(4, 1, 4, 4)
    assert torch.equal(srgan.random_channel_order(gray), gray)


def test_the_relativistic_loss_compares_each_side_with_the_others_average():
    same = torch.zeros(8)
    assert float(srgan.relativistic_loss(same, same)) == pytest.approx(math.log(2))  # no side rated above the other
    real, fake = torch.full((8,), 3.0), torch.full((8,), -3.0)
    assert float(srgan.relativistic_loss(real, fake)) < 0.01 < float(srgan.relativistic_loss(fake, real))
    shifted = srgan.relativistic_loss(real + 5, fake + 5)  # only the differences count, not D's absolute rating
    assert float(shifted) == pytest.approx(float(srgan.relativistic_loss(real, fake)))
    one_real = torch.tensor([3.0, -3.0])  # a real rated below the fakes' average costs D
    assert float(srgan.relativistic_loss(one_real, torch.zeros(2))) > float(srgan.relativistic_loss(real[:2], fake[:2]))


def test_a_relativistic_discriminator_trains_with_its_stats(tmp_path):
    cfg = _cfg(loss={"relativistic": True}, train={"steps": 3, "pretrain_steps": 1}, schedule={"checkpoint_every": 100})
    stats = {d["step"]: d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"}
    assert {"loss_d", "loss_g_adv", "d_real", "d_fake", "loss_g_feature"} <= stats[3].keys()
    # An untrained D rates all alike: log 2 for the relativistic loss, where the standard one has 2 log 2.
    assert stats[3]["loss_d"] == pytest.approx(math.log(2), abs=0.1) and 0 < stats[3]["d_real"] < 1


def test_the_gradient_energy_loss_asks_for_as_much_detail_not_the_same_pixels():
    hr, other = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # two textures
    assert srgan.gradient_energy_loss(hr, hr) == 0
    assert srgan.gradient_energy_loss(other, hr) < 0.25 * srgan.gradient_loss(other, hr)  # misplaced detail is fine
    flat = hr.mean((2, 3), keepdim=True).expand_as(hr)
    assert srgan.gradient_energy_loss(flat, hr) > 5 * srgan.gradient_energy_loss(other, hr)  # missing detail is not
    sr = flat.clone().requires_grad_(True)
    srgan.gradient_energy_loss(sr, hr).backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all()  # finite on a flat image


def test_the_gradient_energy_loss_compares_detail_over_its_window():
    hr = torch.zeros(1, 1, 16, 16)
    hr[..., 0:4, :] = torch.rand(1, 1, 4, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    shifted = hr.roll(2, dims=-2)  # the same detail 2 px lower: inside the same 8 px windows, not the same 4 px ones
    assert srgan.gradient_energy_loss(shifted, hr, 8) < 0.2 * srgan.gradient_energy_loss(shifted, hr, 4)


def test_psnr_weighting_weighs_each_image_by_its_inverse_squared_error():
    hr = torch.zeros(3, 1, 8, 8)
    sr = hr + torch.tensor([0.01, 0.1, 0.1]).view(3, 1, 1, 1)  # the first image is 100x closer in squared error
    weights = srgan.psnr_weights(sr, hr)
    assert weights.mean() == pytest.approx(1.0) and weights[0] > 90 * weights[1] and weights[1] == weights[2]
    cfg = _cfg(loss={"content": "l1"})
    assert srgan.pixel_loss(cfg, sr, hr, torch.ones(3)) == pytest.approx(float(srgan.pixel_loss(cfg, sr, hr)))
    assert srgan.pixel_loss(cfg, sr, hr, weights) == pytest.approx(float((weights * sr.mean((1, 2, 3))).mean()))
    assert srgan.gradient_loss(sr, hr, weights) == pytest.approx(0, abs=1e-8)  # constant offsets have no edges
    sr = sr.clone().requires_grad_(True)
    srgan.pixel_loss(cfg, sr, hr, srgan.psnr_weights(sr, hr)).backward()
    assert sr.grad is not None and sr.grad[0].abs().sum() > 90 * sr.grad[1].abs().sum()  # the weights are constants


def test_gradient_loss_and_an_adversarial_rate_show_in_the_stats(tmp_path):
    cfg = _cfg(
        loss={"gradient_weight": 0.5, "energy_weight": 2.0},
        train={"steps": 4, "pretrain_steps": 2, "lr_g": 1e-3, "lr_g_adversarial": 1e-4, "phase_schedule": "constant"},
        schedule={"checkpoint_every": 100},
    )
    stats = {d["step"]: d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"}
    assert stats[1]["loss_g_gradient"] > 0
    assert stats[1]["loss_g"] == pytest.approx(stats[1]["loss_g_pixel"] + 0.5 * stats[1]["loss_g_gradient"])
    assert stats[1]["lr_g"] == pytest.approx(1e-3) and stats[4]["lr_g"] == pytest.approx(1e-4)
    assert "loss_g_energy" not in stats[1] and stats[4]["loss_g_energy"] > 0  # the energy term after pretraining


def test_network_interpolation_blends_the_pretrained_and_the_adversarial_generator(tmp_path):
    def final_g(run: str, alpha: float) -> dict[str, torch.Tensor]:
        cfg = _cfg(train={"steps": 4, "pretrain_steps": 2, "interpolation": alpha}, schedule={"checkpoint_every": 2})
        train(cfg, out_dir=tmp_path / run)
        pretrained = checkpoint_tensors(tmp_path / run, 2)
        final = checkpoint_tensors(tmp_path / run, 4)
        g = {k[2:]: v for k, v in final.items() if k.startswith("G.")}
        assert all(torch.equal(final[f"G_psnr.{k}"], pretrained[f"G.{k}"]) for k in g)  # kept from step 2
        return g

    zero, half, one = final_g("zero", 0.0), final_g("half", 0.5), final_g("one", 1.0)
    pretrained = checkpoint_tensors(tmp_path / "zero", 2)
    floats = [k for k in zero if zero[k].is_floating_point()]  # BatchNorm's batch counts stay the trained G's
    assert all(torch.equal(zero[k], pretrained[f"G.{k}"]) for k in floats)  # 0: the pretrained generator
    assert all(torch.allclose(half[k], (zero[k] + one[k]) / 2, atol=1e-6) for k in floats)
    assert any(not torch.equal(zero[k], one[k]) for k in floats)


def test_a_sharpness_target_chooses_the_lightest_blend_that_reaches_it(tmp_path):
    # A fast adversarial phase with a strong energy term, so that the adversarial generator is the sharper one.
    fast = {"steps": 4, "pretrain_steps": 2, "lr_g_adversarial": 1e-2}
    plain = _cfg(train=fast | {"interpolation": 1.0}, loss={"energy_weight": 10.0})
    train(plain, out_dir=tmp_path / "one")
    one = {k[2:]: v for k, v in checkpoint_tensors(tmp_path / "one", 4).items() if k.startswith("G.")}
    pretrained = {k[7:]: v for k, v in checkpoint_tensors(tmp_path / "one", 4).items() if k.startswith("G_psnr.")}
    patches = srgan.training_patches(srgan.split_data(load_dataset("photos", image_size=32), plain), plain)

    def sharpness(weight: float) -> float:
        G = srgan.generator(plain, {"channels": 3})
        G.load_state_dict(
            {k: torch.lerp(pretrained[k], v, weight) if v.is_floating_point() else v for k, v in one.items()}
        )
        return srgan.training_sharpness(G, patches, device=torch.device("cpu"), autocast=nullcontext)

    target = sharpness(0.6)
    assert sharpness(0.0) < target < sharpness(1.0)  # the adversarial steps moved the sharpness
    cfg = _cfg(train=fast | {"interpolation": 0.1, "interpolation_sharpness": target}, loss={"energy_weight": 10.0})
    events = run_events(tmp_path / "auto", cfg)
    chosen = [d["values"]["interpolation"] for kind, d in events if kind == "stats" and "interpolation" in d["values"]]
    assert len(chosen) == 1 and chosen[0] != 0.1
    weight = chosen[0]
    assert sharpness(weight) >= target > sharpness(weight - 1 / 1024)  # the lightest weight that reaches it
    final = {k[2:]: v for k, v in checkpoint_tensors(tmp_path / "auto", 4).items() if k.startswith("G.")}
    floats = [k for k in final if final[k].is_floating_point()]
    assert all(torch.allclose(final[k], torch.lerp(pretrained[k], one[k], weight), atol=1e-6) for k in floats)
    # A target beyond the adversarially trained generator's sharpness keeps it whole.
    beyond = _cfg(train=fast | {"interpolation": 0.1, "interpolation_sharpness": 2.0}, loss={"energy_weight": 10.0})
    events = run_events(tmp_path / "beyond", beyond)
    assert [d["values"]["interpolation"] for k, d in events if k == "stats" and "interpolation" in d["values"]] == [1.0]


def test_the_adversarial_average_ends_the_run_and_then_is_blended(tmp_path):
    # The same run with and without the average: its G until the last step is the same (the average only watches),
    # and the run ends with the average of G over the adversarial phase, blended with the pretrained G.
    decay, base = 0.5, {"steps": 5, "pretrain_steps": 2, "interpolation": 0.5}
    plain = _cfg(train=base | {"interpolation": 1.0}, schedule={"checkpoint_every": 1, "keep_checkpoints": 10})
    train(plain, out_dir=tmp_path / "plain")
    prefix = "G."
    trained = [
        {k[len(prefix) :]: v for k, v in checkpoint_tensors(tmp_path / "plain", step).items() if k.startswith(prefix)}
        for step in range(1, 6)
    ]  # G after steps 1 to 5
    G_avg = srgan.generator(plain, {"channels": 3})
    G_avg.load_state_dict(trained[1])  # whatever it starts from, the first adversarial step replaces it
    G = srgan.generator(plain, {"channels": 3})
    for k in (1, 2, 3):  # the adversarial phase's steps 3 to 5
        G.load_state_dict(trained[1 + k])
        srgan.update_average(G_avg, G, decay, k)
    expected = G_avg.state_dict()
    averaged = _cfg(train=base | {"adversarial_ema": decay}, schedule={"checkpoint_every": 1, "keep_checkpoints": 10})
    train(averaged, out_dir=tmp_path / "averaged")
    tensors = checkpoint_tensors(tmp_path / "averaged", 5)
    final = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    before = {k[2:]: v for k, v in checkpoint_tensors(tmp_path / "averaged", 4).items() if k.startswith("G.")}
    assert all(torch.equal(before[k], trained[3][k]) for k in before)  # training itself is unchanged
    assert all(torch.allclose(tensors[f"G_avg.{k}"], expected[k], atol=1e-6) for k in expected)
    floats = [k for k in final if final[k].is_floating_point()]
    blend = {k: torch.lerp(trained[1][k], expected[k], 0.5) for k in floats}
    assert all(torch.allclose(final[k], blend[k], atol=1e-6) for k in floats)
    assert any(not torch.allclose(expected[k], trained[4][k]) for k in floats)  # the average is not the last G
    # The running mean first, then the moving average: after steps 3, 4, 5 at decay 0.5, G_3 / 4 + G_4 / 4 + G_5 / 2.
    mean = {k: trained[2][k] / 4 + trained[3][k] / 4 + trained[4][k] / 2 for k in floats}
    assert all(torch.allclose(expected[k], mean[k], atol=1e-6) for k in floats)


@pytest.mark.parametrize("window", [0, 33])
def test_a_detail_blend_serves_both_generators_outputs_mixed_by_the_pretrained_ones_detail(tmp_path, window):
    # The same run with train.interpolation 1 (G ends as the adversarially trained generator) and with detail_blend:
    # the training is the same, G ends unblended, and grids, evaluations and translations serve the blend.
    base = {"steps": 4, "pretrain_steps": 2, "interpolation": 1.0}
    schedule = {"sample_every": 2, "checkpoint_every": 2, "eval_every": 2, "eval_samples": 64}
    plain = _cfg(train=base, schedule=schedule)
    plain_events = run_events(tmp_path / "plain", plain)
    d0 = 0.05
    cfg = _cfg(train=base | {"detail_blend": d0, "detail_window": window}, schedule=schedule)
    events = run_events(tmp_path / "detail", cfg)
    pretrained_g = checkpoint_tensors(tmp_path / "plain", 2)
    for step in (2, 4):
        ours, theirs = checkpoint_tensors(tmp_path / "detail", step), checkpoint_tensors(tmp_path / "plain", step)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs if k.startswith("G."))
        assert all(torch.equal(ours[f"G_psnr.{k[2:]}"], pretrained_g[k]) for k in theirs if k.startswith("G."))
    # Until the adversarial phase G_psnr is G, so the blend is G's outputs; after it, the blend.
    metrics = {(d["step"], d["name"]): d["value"] for kind, d in events if kind == "metric"}
    plain_metrics = {(d["step"], d["name"]): d["value"] for kind, d in plain_events if kind == "metric"}
    assert metrics[(2, "psnr")] == plain_metrics[(2, "psnr")]
    assert metrics[(4, "psnr")] != plain_metrics[(4, "psnr")]
    path = tmp_path / "detail" / "checkpoints" / "00000004.safetensors"
    tr = load_translator(path)
    data = srgan.split_data(load_dataset("photos", image_size=32), cfg)
    assert data.held is not None and data.held_low is not None
    low = data.held_low[:64]
    out = translate(tr, low, direction="AtoB")
    tensors = checkpoint_tensors(tmp_path / "detail", 4)
    G, G_psnr = srgan.generator(cfg, {"channels": 3}), srgan.generator(cfg, {"channels": 3})
    G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    G_psnr.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("G_psnr.")})
    with torch.no_grad():
        pretrained, adversarial = G_psnr.eval()(low), G.eval()(low)
    expected = srgan.detail_blend(pretrained, adversarial, d0, window)
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, adversarial, atol=1e-4) and not torch.allclose(out, pretrained, atol=1e-4)
    assert metrics[(4, "psnr")] == pytest.approx(sr_metrics(expected, data.held[:64])["psnr"], abs=1e-4)
    # The weight: 0 where the pretrained output is flat, towards 1 where it has much more detail than d0.
    flat = torch.zeros(1, 3, 32, 32)
    assert torch.equal(srgan.detail_blend(flat, torch.ones_like(flat), d0, window), flat)


def test_a_detail_window_that_covers_the_whole_image_blends_as_the_whole_image():
    # A 127 px window (half-width 63) around any pixel of a 64 px image holds the whole image, so its detail is the
    # whole image's mean detail (window 0) at every pixel, up to the order of the sums: the same blend.
    torch.manual_seed(0)
    for scale in (0.02, 0.1, 0.5):  # flat to detailed outputs, d about 0.06 to 1.5
        pretrained = torch.nn.functional.interpolate(torch.randn(8, 3, 16, 16) * scale, scale_factor=4, mode="bicubic")
        pretrained = pretrained.clamp(-1, 1)
        adversarial = pretrained + 0.05 * torch.randn_like(pretrained)
        whole, window = srgan.detail(pretrained, 0), srgan.detail(pretrained, 127)
        assert window.shape == (8, 1, 64, 64)
        assert torch.allclose(window, whole.expand_as(window), rtol=1e-5, atol=0)
        blend = srgan.detail_blend(pretrained, adversarial, 0.19, 127)
        assert torch.allclose(blend, srgan.detail_blend(pretrained, adversarial, 0.19, 0), rtol=0, atol=1e-6)
    # A window short of the whole image is not: 33 px around a corner pixel misses the far side.
    lopsided = torch.zeros(1, 3, 64, 64)
    lopsided[..., 40:, 40:] = torch.rand(1, 3, 24, 24)
    assert not torch.allclose(srgan.detail(lopsided, 33), srgan.detail(lopsided, 0).expand(1, 1, 64, 64))
