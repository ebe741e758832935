"""core.footprint counts what the builders build: each architecture's G and D, against their state dicts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from core import footprint, networks, networks_stylegan2
from core.config import ARCH_IMAGE_SIZES, RunConfig
from core.families import ctgan, cyclegan, srgan
from core.networks_sr import SRDiscriminator
from core.networks_translation import PatchDiscriminator, PooledClassifier, SourceClassifier, UNetGenerator


def _values(module: nn.Module) -> int:
    """What a state dict holds, without spectral norm's power-iteration vectors."""
    return sum(t.numel() for k, t in module.state_dict().items() if not k.endswith(("._u", "._v")))


def _built(cfg: RunConfig, channels: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    m = cfg.model
    with torch.device("meta"):
        if m.arch == "stylegan2":
            return (
                networks_stylegan2.build_generator(cfg, channels=channels, num_classes=num_classes),
                networks_stylegan2.build_discriminator(cfg, channels=channels, num_classes=num_classes),
            )
        if m.arch == "pix2pix":
            layers = m.patch_layers or max(1, m.image_size.bit_length() - 6)
            g = UNetGenerator(in_channels=channels, out_channels=channels, image_size=m.image_size, width=m.width)
            return g, PatchDiscriminator(in_channels=2 * channels, layers=layers, width=m.width)
        if m.arch == "srgan":
            g = srgan.generator(cfg, {"channels": channels})
            return g, SRDiscriminator(channels=channels, width=m.width, image_size=m.image_size)
        if m.arch == "cyclegan":
            layers = m.patch_layers or 1
            g = cyclegan.generator(cfg, {"channels": channels, "b_channels": channels})
            d = PatchDiscriminator(in_channels=channels, layers=layers, width=m.width, norm="instance")
            classes = num_classes if m.class_projection else 0
            d_a = PatchDiscriminator(
                in_channels=channels, layers=layers, width=m.width, norm="instance", classes=classes
            )
            return g, nn.ModuleList([d_a, d])
        return (
            networks.build_generator(cfg, channels=channels, num_classes=num_classes),
            networks.build_discriminator(cfg, channels=channels, num_classes=num_classes),
        )


CASES: list[Any] = [
    pytest.param({"dataset": "ring8"}, 0, 0, id="mlp"),
    pytest.param({"dataset": "digits"}, 1, 10, id="dcgan-clusters"),
    pytest.param({"dataset": "digits", "model": {"conditional": True, "g_conditioning": "concat"}}, 1, 10, id="concat"),
    pytest.param({"dataset": "stacked-digits"}, 3, 1000, id="dcgan-channel-clusters"),
    pytest.param({"dataset": "ds_0123456789", "model": {"image_size": 128, "d_depth": 2}}, 3, 0, id="dcgan"),
    pytest.param({"dataset": "ds_0123456789", "model": {"arch": "resnet", "image_size": 64}}, 3, 0, id="resnet64"),
    pytest.param({"dataset": "digits", "model": {"arch": "resnet", "conditional": True}}, 1, 10, id="resnet-cond"),
    pytest.param({"dataset": "digits", "model": {"arch": "biggan", "conditional": True}}, 1, 10, id="biggan-cond"),
    pytest.param(
        {"dataset": "ds_0123456789", "model": {"arch": "biggan", "image_size": 128, "width": 4, "z_dim": 99}},
        3,
        0,
        id="biggan128",
    ),
    pytest.param(
        {"dataset": "digits", "model": {"arch": "biggan", "image_size": 64, "attention_resolution": 32}},
        1,
        10,
        id="biggan64-unconditional",
    ),
    pytest.param({"dataset": "ds_0123456789", "model": {"arch": "stylegan2", "image_size": 64}}, 3, 0, id="stylegan2"),
    pytest.param({"dataset": "digits", "model": {"arch": "stylegan2", "conditional": True}}, 1, 10, id="sg2-cond"),
    pytest.param({"dataset": "digits", "model": {"arch": "stylegan2", "clusters": 50}}, 1, 10, id="sg2-clusters"),
    pytest.param(
        {"dataset": "digits", "model": {"arch": "stylegan2", "clusters": 50, "spectral_norm": True}},
        1,
        10,
        id="sg2-spectral-norm",
    ),
    pytest.param(
        {"dataset": "digits", "model": {"arch": "stylegan2", "conditional": True, "class_clusters": 4}},
        1,
        10,
        id="sg2-class-clusters",
    ),
    pytest.param(
        {"dataset": "stacked-digits", "model": {"arch": "stylegan2", "clusters": 5, "cluster_channels": True}},
        3,
        0,
        id="sg2-cluster-channels",
    ),
    pytest.param({"dataset": "digits-edges", "model": {"image_size": 64}}, 1, 10, id="pix2pix"),
    pytest.param({"dataset": "digits-printed"}, 1, 10, id="cyclegan"),
    pytest.param(
        {"dataset": "digits-printed", "model": {"spatial_transform": True, "res_blocks": None}},
        1,
        10,
        id="cyclegan-stn",
    ),
    pytest.param({"dataset": "digits-printed", "model": {"spatial_transform": False}}, 1, 10, id="cyclegan-no-stn"),
    pytest.param(
        {"dataset": "digits-printed", "model": {"latent_dim": 8, "class_projection": True}}, 1, 10, id="cyclegan-latent"
    ),
    pytest.param({"dataset": "photos"}, 3, 0, id="srgan"),
    pytest.param({"dataset": "photos", "model": {"g_batchnorm": True}}, 3, 0, id="srgan-batchnorm"),
    pytest.param(
        {"dataset": "ds_0123456789", "model": {"arch": "srgan", "image_size": 192, "scale": 8}}, 3, 0, id="sr8"
    ),
]


def test_every_architecture_is_counted() -> None:
    counted = {RunConfig.model_validate(p.values[0]).model.arch for p in CASES} | {"ctgan"}
    assert counted == set(ARCH_IMAGE_SIZES)


@pytest.mark.parametrize(("body", "channels", "num_classes"), CASES)
def test_network_sizes_match_the_builders(body: dict[str, Any], channels: int, num_classes: int) -> None:
    cfg = RunConfig.model_validate(body)
    g, d = _built(cfg, channels, num_classes)
    assert footprint.network_sizes(cfg, channels=channels, num_classes=num_classes) == (_values(g), _values(d))


def test_table_sizes_bound_the_encoded_width() -> None:
    """A ctgan's data width is estimated from its columns at their widest (a numeric column with ten modes)."""
    cfg = RunConfig.model_validate({"dataset": "wine"})
    m, width = cfg.model, footprint.TABLE_COLUMN_WIDTH * 14
    with torch.device("meta"):
        g = ctgan.Generator(
            z_dim=m.z_dim, cond_dim=width, width=m.width, depth=m.depth, data_dim=width, gumbel_input=m.gumbel_input
        )
        d = ctgan.Discriminator(in_dim=2 * width, width=m.width, depth=m.depth, pack=m.pack, sn=False)
    assert footprint.network_sizes(cfg, channels=0, num_classes=0, columns=14) == (_values(g), _values(d))


def test_checkpoint_bytes_count_the_ema_copy_and_adam() -> None:
    cfg = RunConfig.model_validate({"dataset": "digits"})  # EMA on
    g, d = footprint.network_sizes(cfg, channels=1, num_classes=10)
    assert footprint.checkpoint_bytes(cfg, channels=1, num_classes=10) == 4 * (4 * g + 3 * d)


def test_checkpoint_bytes_count_srgans_pretrained_copy_when_it_interpolates() -> None:
    plain = RunConfig.model_validate({"dataset": "photos", "train": {"interpolation": None}})
    blended = RunConfig.model_validate({"dataset": "photos", "train": {"interpolation": 0.5}})
    g, _ = footprint.network_sizes(plain, channels=3, num_classes=0)
    extra = footprint.checkpoint_bytes(blended, channels=3, num_classes=0)
    assert extra - footprint.checkpoint_bytes(plain, channels=3, num_classes=0) == 4 * g


def test_checkpoint_bytes_count_cyclegans_classifiers_of_domain_a() -> None:
    plain = RunConfig.model_validate(
        {"dataset": "digits-printed", "loss": {"info_max_weight": 0, "semantic_weight": 0}}
    )
    info = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"info_max_weight": 1, "semantic_weight": 0}})
    both = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"info_max_weight": 1, "semantic_weight": 1}})
    sizes = [footprint.checkpoint_bytes(cfg, channels=1, num_classes=10) for cfg in (plain, info, both)]
    pooled, source = PooledClassifier(channels=1, classes=10), SourceClassifier(channels=1, classes=10)
    assert sizes[1] - sizes[0] == 4 * 3 * _values(pooled)  # with its Adam moments
    assert sizes[2] - sizes[1] == 4 * _values(source)  # frozen: no optimizer
