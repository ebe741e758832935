from __future__ import annotations

import pytest
import torch

from core.config import RunConfig
from core.networks import build_discriminator, build_generator, minibatch_std


def _nets(model: dict, dataset: str = "digits", loss: dict | None = None, channels: int = 1, classes: int = 10):
    model = {"clusters": 0, **model}  # plain networks unless a test asks for clusters (the digits default has them)
    cfg = RunConfig.model_validate({"dataset": dataset, "model": model, "loss": loss or {}})
    return (
        cfg,
        build_generator(cfg, channels=channels, num_classes=classes),
        build_discriminator(cfg, channels=channels, num_classes=classes),
    )


@pytest.mark.parametrize(
    ("arch", "size", "channels"),
    [
        pytest.param("dcgan", 16, 1, id="dcgan16"),
        pytest.param("dcgan", 32, 3, id="dcgan32-rgb"),
        pytest.param("dcgan", 64, 1, id="dcgan64"),
        pytest.param("dcgan", 128, 3, id="dcgan128"),
        pytest.param("resnet", 32, 3, id="resnet32"),
        pytest.param("resnet", 64, 1, id="resnet64"),
    ],
)
def test_image_networks_map_latents_to_images_and_images_to_logits(arch: str, size: int, channels: int):
    _, G, D = _nets({"arch": arch, "image_size": size, "width": 8, "z_dim": 16}, channels=channels)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    logits, features, aux = D(x)
    assert logits.shape == (4,) and features.shape[0] == 4 and aux is None


def test_dcgan_follows_the_pytorch_examples_layout():
    _, G, D = _nets({"arch": "dcgan", "image_size": 64, "width": 64, "z_dim": 100, "spectral_norm": False}, channels=3)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    layers = list(D.body)
    assert isinstance(layers[0], torch.nn.Conv2d) and isinstance(layers[1], torch.nn.LeakyReLU)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules()) == 3


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "resnet"])
def test_g_width_widens_the_generator_and_leaves_the_discriminator(arch: str):
    model = {"arch": arch, "image_size": 32, "width": 8, "z_dim": 16}
    data = {"dataset": "ring8", "channels": 0} if arch == "mlp" else {}
    _, G, D = _nets(model, **data)
    _, wide_G, same_D = _nets({**model, "g_width": 16}, **data)

    def shapes(net: torch.nn.Module) -> list[tuple[int, ...]]:
        return [tuple(p.shape) for p in net.parameters()]

    assert shapes(same_D) == shapes(D)
    assert sum(p.numel() for p in wide_G.parameters()) > 2 * sum(p.numel() for p in G.parameters())
    _, width_16_G, _ = _nets({**model, "width": 16}, **data)
    assert shapes(wide_G) == shapes(width_16_G)


def test_dcgan_d_depth_adds_a_3x3_convolution_at_each_resolution():
    _, _, shallow = _nets({"arch": "dcgan", "image_size": 32, "width": 8, "spectral_norm": True}, channels=3)
    _, _, deep = _nets({"arch": "dcgan", "image_size": 32, "width": 8, "spectral_norm": True, "d_depth": 2}, channels=3)

    def convs(D: torch.nn.Module) -> list[tuple[int, int, int, int]]:
        return [
            (c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0])
            for c in D.body
            if isinstance(c, torch.nn.Conv2d)
        ]

    assert convs(shallow) == [(3, 8, 4, 2), (8, 16, 4, 2), (16, 32, 4, 2)]
    assert convs(deep) == [(3, 8, 4, 2), (8, 8, 3, 1), (8, 16, 4, 2), (16, 16, 3, 1), (16, 32, 4, 2), (32, 32, 3, 1)]
    logits, features, _ = deep(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4,) and features.shape == (4, 32 * 4 * 4)


@pytest.mark.parametrize("g_cond", ["concat", "cbn"])
@pytest.mark.parametrize("d_cond", ["projection", "acgan"])
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_conditional_networks_use_the_labels(arch: str, g_cond: str, d_cond: str):
    model = {"arch": arch, "image_size": 32, "width": 8, "z_dim": 16, "conditional": True}
    _, G, D = _nets(model | {"g_conditioning": g_cond, "d_conditioning": d_cond})
    z = torch.randn(4, 16).repeat(2, 1)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    with torch.no_grad():  # conditional BatchNorm starts as the identity for every class; training moves it
        for m in G.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_()
    G.eval()
    x = G(z, labels)
    assert not torch.allclose(x[:4], x[4:])
    logits, _, aux = D(x, labels)
    assert logits.shape == (8,)
    assert (aux is None) == (d_cond == "projection")
    if aux is not None:
        assert aux.shape == (8, 10)


def test_mlp_packs_samples_and_adds_minibatch_std():
    model = {"arch": "mlp", "pack": 4, "minibatch_std": True, "width": 16}
    _, G, D = _nets(model, dataset="ring8", channels=0, classes=0)
    points = G(torch.randn(8, 2))
    assert points.shape == (8, 2)
    logits, features, _ = D(points)
    assert logits.shape == (2,) and features.shape == (2, 16)


def test_spectral_norm_wraps_every_discriminator_weight():
    _, _, D = _nets({"arch": "dcgan", "image_size": 32, "width": 8, "spectral_norm": True})
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())


def test_minibatch_std_adds_one_channel_that_sees_the_batch():
    h = torch.randn(8, 5, 4, 4)
    out = minibatch_std(h)
    assert out.shape == (8, 6, 4, 4)
    assert torch.equal(out[:, :5], h)
    assert float(minibatch_std(h.new_zeros(8, 5, 4, 4))[:, 5].max()) < 1e-3


@pytest.mark.parametrize(("batch", "group", "size"), [(8, 4, 4), (6, 4, 3), (24, 32, 24), (30, 16, 15), (7, 4, 1)])
def test_minibatch_std_groups_are_the_largest_size_that_divides_the_batch(batch: int, group: int, size: int) -> None:
    # The samples of one group share the feature, the std over that group (a group of one: 0, plus the 1e-8 floor).
    h = torch.randn(batch, 3, 2, 2, generator=torch.Generator().manual_seed(batch))
    feature = minibatch_std(h, group)[:, 3, 0, 0]  # (B,)
    column = torch.arange(batch) % (batch // size)  # sample i sits in group column i mod (B / size)
    for c in range(batch // size):
        assert torch.allclose(feature[column == c], feature[column == c][0].expand(size))
    variance = h.reshape(size, batch // size, 3, 2, 2).var(0, unbiased=False)  # (B/G, 3, 2, 2)
    expected = variance.add(1e-8).sqrt().flatten(1).mean(1)
    assert torch.allclose(feature[: batch // size], expected, rtol=1e-5, atol=1e-7)
