"""BigGAN (model.arch biggan): its networks' pieces, hierarchical latents and the shared class embedding, the
orthogonal regularizer, a few training steps, exact resume, generations with truncation, and its config errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from core import generate
from core.checkpoint import load_generator
from core.config import RunConfig
from core.losses import orthogonal_penalty
from core.networks import build_discriminator, build_generator
from core.networks_biggan import (
    BigGANDiscriminator,
    BigGANGenerator,
    ConditionalBatchNorm,
    GBlock,
    SelfAttention,
    latent_chunks,
)
from tests.utils.training import assert_resume_matches, checkpoint_tensors, run_events

TINY: dict[str, Any] = {"arch": "biggan", "width": 4, "z_dim": 16, "shared_dim": 8, "conditional": True}


def _cfg(**over: dict[str, Any]) -> RunConfig:
    body: dict[str, Any] = {
        "dataset": "digits",
        "model": dict(TINY),
        "train": {"steps": 4, "batch_size": 8, "precision": "fp32", "device": "cpu", "ema": 0.9},
        "schedule": {"sample_every": 2, "checkpoint_every": 100},
    }
    for section, fields in over.items():
        body[section] = body.get(section, {}) | fields
    return RunConfig.model_validate(body)


def test_shapes_of_each_piece():
    torch.manual_seed(0)
    x = torch.randn(3, 16, 8, 8)
    attention = SelfAttention(16)
    assert torch.equal(attention(x), x)  # gamma starts at 0: the identity
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    assert attention(x).shape == x.shape and not torch.equal(attention(x), x)

    cond = torch.randn(3, 12)
    assert ConditionalBatchNorm(16, 12)(x, cond).shape == (3, 16, 8, 8)
    assert GBlock(16, 8, 12)(x, cond).shape == (3, 8, 16, 16)
    assert latent_chunks(100, 3) == [25, 25, 25, 25]
    assert latent_chunks(120, 5) == [20] * 6
    assert latent_chunks(99, 5) == [19, 16, 16, 16, 16, 16]

    for size, blocks in ((32, 3), (64, 4), (128, 5)):
        G = BigGANGenerator(
            z_dim=32, width=2, image_size=size, channels=3, num_classes=5, shared_dim=8, attention_resolution=16
        )
        assert len(G.blocks) == blocks and G.attention_at == 1  # after the 8 -> 16 px block
        assert G(torch.randn(2, 32), torch.tensor([0, 4])).shape == (2, 3, size, size)
        D = BigGANDiscriminator(image_size=size, channels=3, width=2, num_classes=5, attention_resolution=16)
        logits, pooled, class_logits = D(torch.randn(2, 3, size, size), torch.tensor([1, 2]))
        assert logits.shape == (2,) and pooled.shape[0] == 2 and class_logits is None
    assert D.attention_at == math.log2(128 // 16) - 1  # the down-block that reaches 16 px

    plain = BigGANGenerator(
        z_dim=16, width=2, image_size=32, channels=1, num_classes=0, shared_dim=8, attention_resolution=None
    )
    assert plain.shared is None and plain.attention is None
    assert plain(torch.randn(2, 16)).shape == (2, 1, 32, 32)
    D = BigGANDiscriminator(image_size=32, channels=1, width=2, num_classes=0, attention_resolution=8)
    assert D.embed is None and D.attention_at == 1 and D(torch.randn(2, 1, 32, 32))[0].shape == (2,)


def test_every_layer_is_spectrally_normalised():
    cfg = _cfg()
    for net in (build_generator(cfg, channels=1, num_classes=10), build_discriminator(cfg, channels=1, num_classes=10)):
        layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert layers and all(hasattr(m, "parametrizations") for m in layers)


def test_each_block_reads_its_own_latent_chunk_and_the_shared_class_code():
    torch.manual_seed(0)
    G = BigGANGenerator(z_dim=16, width=2, image_size=32, channels=1, num_classes=10, shared_dim=8, **_attn())
    G.eval()
    z, labels = torch.randn(2, 16), torch.tensor([3, 7])
    base = G(z, labels)
    for chunk in range(4):  # [4, 4, 4, 4]: the input's chunk, then one per up-block
        moved = z.clone()
        moved[:, 4 * chunk : 4 * chunk + 4] += 1.0
        assert not torch.allclose(G(moved, labels), base, atol=1e-4)
    assert not torch.allclose(G(z, torch.tensor([4, 8])), base, atol=1e-4)
    # One embedding, shared by every block's conditional BatchNorms.
    assert sum(isinstance(m, nn.Embedding) for m in G.modules()) == 1
    assert G.blocks[0].norm1.gain.parametrizations.weight.original.shape == (G.c0, 8 + 4)
    with pytest.raises(AssertionError, match="needs labels"):
        G(z)


def _attn() -> dict[str, Any]:
    return {"attention_resolution": 16}


def test_orthogonal_penalty_counts_only_off_diagonal_filter_products():
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(3.0 * torch.eye(4)[:3])  # orthogonal filters of norm 3
    assert orthogonal_penalty(layer).item() == 0.0
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 0.0]])[:, :, None, None])
    # W Wᵀ = [[2, 1], [1, 1]]: the off-diagonal entries 1 and 1, squared and summed.
    assert orthogonal_penalty(conv).item() == pytest.approx(2.0)
    assert orthogonal_penalty(nn.Embedding(3, 4)).item() == 0.0  # class codes are not filters
    sn = torch.nn.utils.parametrizations.spectral_norm(nn.Conv2d(2, 2, 1, bias=False))
    with torch.no_grad():
        sn.parametrizations.weight.original.copy_(conv.weight)
    assert orthogonal_penalty(sn).item() == pytest.approx(2.0)  # on the weight before normalisation


def test_a_few_steps_train_and_report_the_orthogonal_term(tmp_path):
    cfg = _cfg()
    assert cfg.loss.ortho_weight == 1e-4 and cfg.loss.kind == "hinge" and cfg.model.image_size == 32
    events = run_events(tmp_path, cfg)
    stats = [d["values"] for kind, d in events if kind == "stats"]
    assert stats and all(v["ortho"] > 0 for v in stats if "ortho" in v)
    assert any("ortho" in v for v in stats)
    assert [d["step"] for kind, d in events if kind == "sample"] == [2, 4]
    tensors = checkpoint_tensors(tmp_path, 4)
    assert any(k.startswith("G.attention.") for k in tensors) and any(k.startswith("D.attention.") for k in tensors)
    assert "G.shared.weight" in tensors and "D.embed.parametrizations.weight.original" in tensors


def test_unconditional_runs_train_too(tmp_path):
    cfg = _cfg(model={"conditional": False, "attention_resolution": 8}, loss={"ortho_weight": 0.0})
    run_events(tmp_path, cfg)
    assert "G.shared.weight" not in checkpoint_tensors(tmp_path, 4)


def test_resuming_gives_the_same_losses_and_weights_bit_for_bit(tmp_path):
    cfg = _cfg(train={"steps": 6}, schedule={"sample_every": 2, "checkpoint_every": 100})
    _, first, _ = assert_resume_matches(tmp_path, cfg, 6, 3)
    assert [d["step"] for k, d in first if k == "checkpoint"] == [3]


def test_generations_with_truncation(tmp_path):
    cfg = _cfg(train={"steps": 2})
    run_events(tmp_path, cfg)
    G, loaded, info = load_generator(tmp_path / "checkpoints" / f"{2:08d}.safetensors")
    assert loaded.model.arch == "biggan" and not generate.truncates_in_w(G)
    common = {"z_dim": 16, "num_classes": info["num_classes"], "n": 6, "seed": 3, "labels": [2, 5]}
    out = generate.generate(G, truncation=0.5, **common)
    assert out.samples.shape == (6, 1, 32, 32) and out.samples.min() >= -1 and out.samples.max() <= 1
    again = generate.generate(G, truncation=0.5, **common)
    assert (out.samples == again.samples).all()
    assert not (generate.generate(G, truncation=None, **common).samples == out.samples).all()


@pytest.mark.parametrize(
    ("model", "loss", "message"),
    [
        pytest.param({"attention_resolution": 32}, {}, r"model\.attention_resolution: at 32 px .* 8, 16 px", id="32"),
        pytest.param({"attention_resolution": 12}, {}, r"model\.attention_resolution", id="not-a-side"),
        pytest.param({"image_size": 128, "z_dim": 5}, {}, r"model\.z_dim: .* 6 chunks", id="z-too-short"),
        pytest.param({"image_size": 16}, {}, r"model\.image_size: biggan supports 32, 64, 128", id="16px"),
        pytest.param({"conditional": False, "clusters": 10}, {}, r"model\.clusters", id="clusters"),
        pytest.param({"g_conditioning": "concat"}, {}, r"model\.g_conditioning", id="concat"),
        pytest.param({"d_conditioning": "acgan"}, {}, r"model\.d_conditioning", id="acgan"),
        pytest.param({"minibatch_std": True}, {}, r"model\.minibatch_std", id="mbstd"),
        pytest.param({"pack": 2, "conditional": False}, {}, r"model\.pack", id="pack"),
        pytest.param({"spectral_norm": False}, {}, r"model\.spectral_norm: biggan", id="no-sn"),
        pytest.param({}, {"kind": "wgan"}, r"loss\.kind: biggan", id="wgan"),
    ],
)
def test_impossible_biggan_configs_are_refused_with_the_field(model, loss, message):
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate({"dataset": "digits", "model": {"arch": "biggan", **model}, "loss": loss})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"model": {"shared_dim": 64}}, r"model\.shared_dim: only the biggan", id="shared-dim"),
        pytest.param(
            {"model": {"arch": "resnet", "attention_resolution": None}},
            r"model\.attention_resolution: only the biggan",
            id="attention",
        ),
        pytest.param(
            {"model": {"arch": "stylegan2"}, "loss": {"ortho_weight": 1e-4}}, r"loss\.ortho_weight", id="ortho-sg2"
        ),
    ],
)
def test_biggan_fields_elsewhere_are_refused(body, message):
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate({"dataset": "digits", **body})


def test_other_noise_architectures_may_take_the_orthogonal_term():
    cfg = RunConfig.model_validate({"dataset": "digits", "loss": {"ortho_weight": 1e-4}})
    assert cfg.model.arch == "dcgan" and cfg.loss.ortho_weight == 1e-4
    assert RunConfig.model_validate({"dataset": "digits"}).loss.ortho_weight == 0.0
