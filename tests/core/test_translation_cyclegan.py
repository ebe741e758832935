"""CycleGAN through core: the unpaired digits-printed data, the ResNet generator, the history pool, the config's
refusals, a few steps through core.train.train with its grid, exact resume, and no generations from it."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Iterable

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from core import checkpoint
from core.config import RunConfig
from core.datasets import digit_bank, load_dataset
from core.families import Step, cyclegan
from core.families.cyclegan import ImagePool, brightness_moments, moment_gap
from core.losses import MODE_SEEKING_EPS, bounded_diversity, mode_seeking_ratio
from core.networks_translation import (
    STN_MAX_ZOOM,
    LatentEncoder,
    PatchDiscriminator,
    RenderedGenerator,
    ResnetGenerator,
    SourceClassifier,
    SpatialTransformer,
    WarpedGenerator,
    content_centroid,
    resnet_blocks,
)
from core.translate import load_translator, translate
from core.unpaired import UnpairedDataset, printed_digits
from tests.utils.training import (
    assert_resume_matches,
    checkpoint_tensors,
    losses_at,
    run_events,
    tensors_that_differ,
)

TINY = {
    "dataset": "digits-printed",
    "model": {"width": 4, "res_blocks": 1, "latent_dim": 0},  # the tests that want a latent code set it
    # The semantic term's classifier is trained before the run; the tests that want it, its refinements or the
    # diversity term set them.
    "loss": {
        "semantic_weight": 0.0,
        "semantic_matching": 0.0,
        "semantic_matching_push": "gap",
        "semantic_matching_moments": "mean",
        "semantic_anchor": "reading",
        "diversity": 0.0,
    },
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32", "pool_size": 3},
}


def _cfg(**over: dict) -> RunConfig:
    body = {key: (TINY[key] | over.get(key, {})) if isinstance(TINY[key], dict) else TINY[key] for key in TINY}
    return RunConfig.model_validate(body | {k: v for k, v in over.items() if k not in body})


def _digest(tensors: Iterable[torch.Tensor | None]) -> str:
    """A digest of the tensors' shapes and bytes, to recognize the same weights or data again."""
    h = hashlib.sha1()
    for t in tensors:
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


_TRAINED: dict[tuple, dict[str, torch.Tensor]] = {}
_MOMENTS: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}


@pytest.fixture(autouse=True)
def _source_classifiers_computed_once(monkeypatch):
    """The source classifiers' training and their class statistics are functions of the classifier's weights, the
    data, the seed and SOURCE_EPOCHS alone. This module's runs repeat them (a straight run and the first part of a
    resumed one train the same classifiers; most tests train seed 0's), so each is computed by the real function
    once and its result loaded from then on: the same tensors, in a fraction of the time."""
    train, moments = cyclegan.train_source_classifier, cyclegan.source_layer_moments

    def train_once(S: SourceClassifier, data: UnpairedDataset, *, seed: int) -> None:
        key = (_digest(S.state_dict().values()), _digest((data.store, data.labels)), seed, cyclegan.SOURCE_EPOCHS)
        if key not in _TRAINED:
            train(S, data, seed=seed)
            _TRAINED[key] = {name: t.clone() for name, t in S.state_dict().items()}
        S.load_state_dict(_TRAINED[key])
        S.train()

    def moments_once(S: SourceClassifier, data: UnpairedDataset, layers: tuple[int | None, ...]):
        key = (_digest(S.state_dict().values()), _digest((data.store, data.labels)), layers, S.training)
        if key not in _MOMENTS:
            _MOMENTS[key] = moments(S, data, layers)
        return [(mean.clone(), std.clone()) for mean, std in _MOMENTS[key]]

    monkeypatch.setattr(cyclegan, "train_source_classifier", train_once)
    monkeypatch.setattr(cyclegan, "source_layer_moments", moments_once)


def test_printed_digits_are_white_on_black_balanced_and_fixed_by_their_seed():
    x, labels = printed_digits(40, seed=3)
    assert x.shape == (40, 1, 32, 32) and x.min() == -1 and x.max() > 0.9
    assert torch.bincount(labels, minlength=10).tolist() == [4] * 10
    assert (x[:, 0, 0, :] == -1).all() and (x[:, 0, :, 0] == -1).all()  # black borders
    again, again_labels = printed_digits(40, seed=3)
    assert torch.equal(x, again) and torch.equal(labels, again_labels)
    with pytest.raises(ValueError, match="multiple of 10"):
        printed_digits(45, seed=3)


def test_digits_printed_holds_two_domains_and_held_out_images_of_each():
    ds = load_dataset("digits-printed", image_size=32)
    assert isinstance(ds, UnpairedDataset)
    assert (len(ds), ds.b_size, ds.channels, ds.b_channels) == (1437, 2000, 1, 1)
    assert ds.held_a.shape == (360, 1, 32, 32) and ds.held_b.shape == (500, 1, 32, 32)
    assert ds.held_a_labels.shape == (360,) and ds.held_b_labels.shape == (500,)
    # Each printed split holds every digit equally often: the held-out one is what fd_digits reads against
    # handwritten digits held out in equal proportions.
    assert torch.bincount(ds.other_labels, minlength=10).tolist() == [200] * 10
    assert torch.bincount(ds.held_b_labels, minlength=10).tolist() == [50] * 10
    assert not any(torch.equal(ds.held_b[i], ds.other[i]) for i in range(50))  # two draws, not one split twice
    assert ds.domain_b(torch.tensor([0, 3])).shape == (2, 1, 32, 32)
    assert ds.info()["pairing"] == "unpaired" and ds.info()["b_channels"] == 1
    assert load_dataset("digits-printed", image_size=64).other.shape == (2000, 1, 64, 64)


def test_resnet_generator_and_single_image_patchgan_shapes():
    G = ResnetGenerator(in_channels=1, out_channels=3, width=4, blocks=2)
    assert G(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)
    D = PatchDiscriminator(in_channels=3, layers=1, width=4, norm="instance")
    assert D(torch.randn(2, 3, 32, 32)).shape == (2, 1, 14, 14)
    assert (resnet_blocks(128, None), resnet_blocks(256, None), resnet_blocks(32, 2)) == (6, 9, 2)


def test_the_history_pool_fills_then_returns_half_old_images():
    torch.manual_seed(0)
    pool = ImagePool(4, (1, 2, 2), torch.device("cpu"))
    first = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and pool.count == 4  # filling: every image comes back
    later = first + 100
    out = pool.query(later)
    old = [i for i in range(4) if out[i, 0, 0, 0] < 100]
    assert 0 < len(old) < 4  # with this seed, some come back and some swap with stored ones
    assert sorted(pool.images[:, 0, 0, 0].tolist()) != [0.0, 1.0, 2.0, 3.0]
    assert torch.equal(ImagePool(0, (1, 2, 2), torch.device("cpu")).query(later), later)


def test_digits_printed_defaults_are_cyclegan_as_the_paper_trains_it_with_warps_and_a_rendered_g_ba():
    cfg = RunConfig.model_validate({"dataset": "digits-printed"})
    assert (cfg.model.arch, cfg.loss.kind, cfg.loss.cycle_weight, cfg.loss.identity_weight) == (
        "cyclegan",
        "lsgan",
        2.5,
        0.5,
    )
    assert (cfg.train.pool_size, cfg.train.lr_schedule, cfg.train.beta1) == (50, "hold-then-linear", 0.5)
    assert (cfg.model.width, cfg.model.res_blocks, cfg.train.steps) == (8, 2, 6000)
    assert cfg.model.spatial_transform and (cfg.train.warp_share, cfg.loss.warp_moment_weight) == (0.2, 10.0)
    assert cfg.model.warp_centred and cfg.model.residual_generator and cfg.model.patch_layers == 2
    assert (cfg.model.a_render_size, cfg.loss.info_max_weight, cfg.loss.semantic_weight) == (8, 1.0, 1.0)
    assert (cfg.model.latent_dim, cfg.loss.latent_regression_weight, cfg.loss.latent_kl_weight) == (8, 1.0, 0.01)
    assert (cfg.loss.diversity, cfg.loss.semantic_matching, cfg.loss.semantic_matching_push) == (1.0, 0.1, "unit")
    assert cfg.loss.semantic_anchor == "clusters" and not cfg.model.class_projection
    assert cfg.loss.semantic_matching_moments == "std"
    # The terms that refine the semantic term and the diversity term give way to runs without what they need.
    loss = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_weight": 0}}).loss
    assert (loss.semantic_matching, loss.semantic_anchor, loss.semantic_matching_push) == (0.0, "reading", "gap")
    loss = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_matching": 0}}).loss
    assert (loss.semantic_matching_push, loss.semantic_anchor) == ("gap", "clusters")
    assert loss.semantic_matching_moments == "mean"
    plain_code = RunConfig.model_validate({"dataset": "digits-printed", "model": {"latent_dim": 0}})
    assert plain_code.loss.diversity == 0 and plain_code.loss.semantic_matching == 0.1
    with pytest.raises(ValidationError, match=r"loss\.semantic_anchor"):  # a chosen anchor does not give way
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_weight": 0, "semantic_anchor": "clusters"}}
        )
    assert cfg.schedule.eval_every > 0
    plain = RunConfig.model_validate({"dataset": "digits-printed", "model": {"spatial_transform": False}})
    assert (plain.train.warp_share, plain.loss.warp_moment_weight) == (0.0, 0.0)  # the warps' defaults give way
    uploaded = RunConfig.model_validate({"dataset": "unpaired_0123456789abcdef"})
    assert uploaded.model.arch == "cyclegan" and not uploaded.model.spatial_transform
    assert uploaded.model.a_render_size is None and uploaded.loss.info_max_weight == 0  # no labels, any content
    assert uploaded.loss.semantic_weight == 0 and uploaded.model.latent_dim == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"dataset": "digits", "model": {"arch": "cyclegan"}}, "model.arch", id="not-unpaired"),
        pytest.param({"dataset": "digits-edges", "model": {"arch": "cyclegan"}}, "model.arch", id="paired"),
        pytest.param({"dataset": "digits-printed", "model": {"arch": "pix2pix"}}, "model.arch", id="pix2pix"),
        pytest.param({"dataset": "digits-printed", "model": {"arch": "dcgan"}}, "model.arch", id="noise-arch"),
        pytest.param({"dataset": "ds_0123456789abcdef", "model": {"arch": "cyclegan"}}, "model.arch", id="upload"),
        pytest.param({"dataset": "digits-printed", "model": {"pack": 2}}, "model.pack", id="pack"),
        pytest.param({"dataset": "digits-printed", "model": {"image_size": 16}}, "model.image_size", id="16px"),
        pytest.param({"dataset": "digits-printed", "loss": {"kind": "wgan-gp"}}, "loss.kind", id="wgan-gp"),
        pytest.param({"dataset": "digits-printed", "train": {"compile": True}}, "train.compile", id="compile"),
        pytest.param({"dataset": "digits-printed", "model": {"a_render_size": 12}}, "model.a_render_size", id="12px"),
        pytest.param({"dataset": "digits-printed", "model": {"a_render_size": 64}}, "model.a_render_size", id="64px"),
        pytest.param({"dataset": "digits-edges", "model": {"a_render_size": 8}}, "model.a_render_size", id="render"),
        pytest.param({"dataset": "digits-edges", "loss": {"info_max_weight": 1}}, "loss.info_max_weight", id="info"),
        pytest.param(
            {"dataset": "digits-edges", "loss": {"semantic_weight": 1}}, "loss.semantic_weight", id="semantic"
        ),
    ],
)
def test_impossible_cyclegan_configs_name_their_field(body, field):
    with pytest.raises(ValidationError, match=rf"{field}: "):
        RunConfig.model_validate(body)


def test_cyclegan_trains_a_few_steps_with_its_grid_and_halves_then_decays_its_rates(tmp_path):
    cfg = _cfg(
        train={"steps": 4, "lr_schedule": "hold-then-linear"},
        schedule={"sample_every": 2, "eval_every": 2, "eval_samples": 64},
    )
    events = run_events(tmp_path, cfg)
    with Image.open(tmp_path / "samples" / "00000004.png") as grid:
        size = grid.size
    assert size == (12 * 34 + 2, 4 * 34 + 2)  # 2 rows of A triples and 2 of B triples, 4 triples a row, at 32 px
    stats = {d["step"]: d["values"] for kind, d in events if kind == "stats"}
    assert {"loss_d", "loss_g", "loss_g_adv", "loss_g_cycle", "loss_g_identity", "d_real_a", "d_fake_b"} <= set(
        stats[1]
    )
    assert stats[1]["lr_g"] == pytest.approx(2e-4) and stats[4]["lr_g"] == pytest.approx(1e-4)  # done 0.75
    metrics = {(d["step"], d["name"]): d["value"] for kind, d in events if kind == "metric"}
    for name in ("label_preservation", "label_preservation_b", "fd_digits", "fd_digits_b", "cycle_error_a"):
        assert (2, name) in metrics and (4, name) in metrics, name
    assert metrics[(4, "n_fake")] == 64
    env = next(d for kind, d in events if kind == "environment")
    assert env["primary_metric"] == ["label_preservation", "max"] and env["metric_floor"]["label_preservation"] > 0.9
    assert env["metric_floor"]["fd_digits_b"] < metrics[(4, "fd_digits_b")]  # real printed digits against real
    assert env["metric_floor"]["label_preservation_b"] > 0.9  # the printed read-out on held-out printed digits
    tensors = checkpoint_tensors(tmp_path, 4)
    assert {"pool.a", "pool.a.count", "pool.b", "pool.b.count"} <= tensors.keys()
    assert tensors["pool.a"].shape == (3, 1, 32, 32) and int(tensors["pool.b.count"][0]) == 3
    assert any(k.startswith("G.ab.") for k in tensors) and any(k.startswith("D.b.") for k in tensors)
    with pytest.raises(ValueError, match="translates input images and does not sample from latents"):
        checkpoint.load_generator(tmp_path / "checkpoints" / "00000004.safetensors")


def test_cyclegan_resumes_bit_for_bit_with_its_history_pools(tmp_path):
    n, k = 6, 3
    cfg = _cfg(
        train={"steps": n, "ema": 0.9, "lr_schedule": "hold-then-linear"},
        loss={"instance_noise": 0.1},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    _, first, _ = assert_resume_matches(tmp_path, cfg, n, k)
    assert [d["step"] for kind, d in first if kind == "checkpoint"][-1] == k


def test_the_spatial_transformer_starts_as_the_identity_and_warps_by_its_parameters():
    torch.manual_seed(0)
    warp = SpatialTransformer(channels=1)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert torch.allclose(warp.theta(x), torch.eye(2, 3).expand(3, 2, 3))
    assert torch.allclose(warp(x), x, atol=1e-6)  # the identity, up to rounding
    square = torch.full((1, 1, 32, 32), -1.0)
    square[..., 12:20, 12:20] = 1.0  # an 8 px square in the middle
    with torch.no_grad():
        warp.head[-1].bias.copy_(
            torch.tensor([math.atanh(math.log(0.5) / math.log(STN_MAX_ZOOM)), 0.0, 0.0])
        )  # sample half the frame
    big = warp(square)
    assert big.shape == square.shape and big[..., 0, :].eq(-1).all()
    assert int((big > 0).sum()) == pytest.approx(4 * int((square > 0).sum()), rel=0.15)  # enlarged 2x: 4x the area
    G = WarpedGenerator(warp, ResnetGenerator(in_channels=1, out_channels=3, width=4, blocks=1))
    assert G(square).shape == (1, 3, 32, 32)


def test_a_centred_warp_starts_by_centring_the_content_of_its_image():
    torch.manual_seed(0)
    warp = SpatialTransformer(channels=1, centred=True)
    middle = torch.full((1, 1, 32, 32), -1.0)
    middle[..., 12:20, 12:20] = 1.0  # an 8 px square in the middle
    assert torch.allclose(warp(middle), middle, atol=1e-6)  # content already centred: the identity
    corner = torch.full((1, 1, 32, 32), -1.0)
    corner[..., 2:10, 20:28] = 1.0  # the same square, up and to the right
    assert content_centroid(corner)[0].tolist() == pytest.approx([0.5, -0.625])
    assert torch.allclose(warp(corner), middle, atol=1e-5)  # moved to the middle, whole pixels at zoom 1
    assert torch.allclose(SpatialTransformer(channels=1)(corner), corner, atol=1e-6)  # uncentred: the identity
    assert torch.equal(content_centroid(torch.full((2, 1, 8, 8), 0.3)), torch.zeros(2, 2))  # nothing to centre


def test_a_residual_generator_starts_as_the_identity_and_stays_in_range():
    torch.manual_seed(0)
    G = ResnetGenerator(in_channels=1, out_channels=1, width=4, blocks=1, residual=True)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.equal(G(x), x)
    with torch.no_grad():
        G.net[-1].bias.fill_(5.0)
    assert torch.equal(G(x), torch.ones_like(x))  # clipped to [-1, 1]
    with pytest.raises(ValueError, match="output channels"):
        ResnetGenerator(in_channels=1, out_channels=3, width=4, blocks=1, residual=True)


def test_cyclegan_with_warps_trains_the_warps_alone_first_then_the_generators_behind_them(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "residual_generator": False},  # every layer of a ResNet learns at once
        loss={"identity_weight": 0.0},  # the generators behind the warps then learn nothing in the warp-only steps
        train={"steps": 4, "warp_share": 0.75},  # steps 1-3 with the warps alone
        schedule={"sample_every": 4, "checkpoint_every": 1, "eval_every": 100},
    )
    events = run_events(tmp_path, cfg)
    at = {step: checkpoint_tensors(tmp_path, step) for step in (1, 3, 4)}
    warps = [k for k in at[4] if k.startswith(("G.ab.warp.", "G.ba.warp."))]
    nets = [k for k in at[4] if k.startswith(("G.ab.net.", "G.ba.net."))]
    assert "G.ba.warp.head.2.bias" in warps and "G.ab.net.net.1.weight" in nets
    assert tensors_that_differ({k: at[1][k] for k in nets}, at[3]) == []
    assert "G.ba.warp.head.2.bias" in tensors_that_differ({k: at[1][k] for k in warps}, at[3])
    assert "G.ab.net.net.1.weight" in tensors_that_differ({k: at[3][k] for k in nets}, at[4])
    assert any(k.startswith("opt_warp.state.") for k in at[4])  # the warps' own optimizer, for resuming
    stats = {d["step"]: d["values"] for kind, d in events if kind == "stats"}
    assert {"warp_zoom_ab", "warp_zoom_ba"} <= set(stats[4])
    assert stats[1]["lr_warp"] == pytest.approx(2e-3) and stats[1]["lr_g"] == pytest.approx(2e-4)


def test_the_self_regularization_term_follows_the_warp_only_steps(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "residual_generator": True},
        loss={"self_regularization_weight": 1.0, "cycle_noise": 0.1},
        train={"steps": 3, "warp_share": 0.25},  # step 1 with the warps alone
        schedule={"sample_every": 3, "checkpoint_every": 3, "eval_every": 100},
    )
    stats = {d["step"]: d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"}
    assert "loss_g_self" not in stats[1] and stats[3]["loss_g_self"] > 0


def test_cyclegan_with_warps_resumes_bit_for_bit_across_its_warp_only_steps(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True},
        loss={"self_regularization_weight": 1.0, "cycle_noise": 0.1},
        train={"steps": 6, "warp_share": 0.6, "ema": 0.9},  # steps 1-4 with the warps alone
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 100},
    )
    assert_resume_matches(tmp_path, cfg, 6, 3)


def test_the_moment_term_measures_where_the_brightness_lies():
    small, big = torch.full((2, 1, 32, 32), -1.0), torch.full((2, 1, 32, 32), -1.0)
    small[..., 12:20, 12:20] = 1.0  # 8 px squares in the middle
    big[..., 8:24, 8:24] = 1.0  # 16 px ones
    centre, spread = brightness_moments(small)
    assert torch.allclose(centre, torch.zeros(2, 2), atol=1e-6)
    assert brightness_moments(big)[1] - spread == pytest.approx(torch.full((2,), math.log(2.0)), abs=0.01)
    assert float(moment_gap(small, small)) == pytest.approx(0.0, abs=1e-6)
    assert float(moment_gap(small, big)) == pytest.approx(math.log(2.0), abs=0.01)
    moved = torch.roll(big, 4, dims=-1)  # 4 px right: 0.25 in [-1, 1] coordinates
    assert float(moment_gap(moved, big)) == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"dataset": "digits-edges", "model": {"spatial_transform": True}}, "model.spatial_transform", id="pix2pix"
        ),
        pytest.param(
            {"dataset": "digits-printed", "model": {"spatial_transform": False}, "train": {"warp_share": 0.5}},
            "train.warp_share",
            id="no-warp",
        ),
        pytest.param(
            {"dataset": "digits-printed", "model": {"spatial_transform": False}, "loss": {"warp_moment_weight": 1}},
            "loss.warp_moment_weight",
            id="moments",
        ),
        pytest.param(
            {"dataset": "digits-printed", "model": {"spatial_transform": False}, "train": {"lr_warp": 0.01}},
            "train.lr_warp",
            id="rate",
        ),
        pytest.param(
            {"dataset": "digits-printed", "model": {"spatial_transform": False, "warp_centred": True}},
            "model.warp_centred",
            id="centred",
        ),
        pytest.param(
            {"dataset": "digits-edges", "model": {"residual_generator": True}},
            "model.residual_generator",
            id="residual",
        ),
        pytest.param(
            {"dataset": "digits-edges", "loss": {"self_regularization_weight": 1}},
            "loss.self_regularization_weight",
            id="self-regularization",
        ),
    ],
)
def test_warp_fields_need_a_cyclegan_with_warps(body, field):
    with pytest.raises(ValidationError, match=rf"{field}: "):
        RunConfig.model_validate(body)


def test_a_rendered_generator_draws_small_and_upsamples_as_the_digits_are():
    torch.manual_seed(0)
    G = RenderedGenerator(ResnetGenerator(in_channels=1, out_channels=1, width=4, blocks=1, residual=True), size=8)
    small, big = digit_bank(8)[0][:4], digit_bank(32)[0][:4]  # (4, 1, 8, 8), their Pillow upscales (4, 1, 32, 32)
    shown = torch.nn.functional.interpolate(small, size=32, mode="bilinear", align_corners=False)
    assert torch.allclose(shown, big, atol=0.02)  # torch's bilinear upscaling is Pillow's
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    out = G(x)  # the identity at start: x pooled to 8 px, shown at 32
    assert out.shape == x.shape
    assert torch.allclose(torch.nn.functional.avg_pool2d(out, 4), torch.nn.functional.avg_pool2d(x, 4), atol=0.25)
    assert float((G(big) - big).detach().abs().mean()) < 0.15  # an upscale of a small image comes back blurred a little


def test_cyclegan_with_a_rendered_g_ba_trains_and_resumes_bit_for_bit(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "a_render_size": 8},
        loss={"self_regularization_weight": 1.0},
        train={"steps": 4, "warp_share": 0.25, "ema": 0.9},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    straight, _, _ = assert_resume_matches(tmp_path, cfg, 4, 2)
    metrics = {(d["step"], d["name"]) for kind, d in straight if kind == "metric"}
    assert (4, "label_preservation") in metrics and (4, "fd_digits") in metrics
    tensors = checkpoint_tensors(tmp_path / "a", 4)
    assert any(k.startswith("G.ba.net.net.net.") for k in tensors)  # G_BA's ResNet, inside its renderer


def test_the_information_maximization_term_trains_a_classifier_of_domain_a_and_resumes_bit_for_bit(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "a_render_size": 8},
        loss={"info_max_weight": 1.0},
        train={"steps": 4, "warp_share": 0.25, "ema": 0.9},  # step 1 with the warps alone
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 100},
    )
    straight, _, _ = assert_resume_matches(tmp_path, cfg, 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert "loss_g_info" not in stats[1] and stats[1]["loss_c"] > 0  # the classifier learns from the first step
    assert math.isfinite(stats[4]["loss_g_info"]) and stats[1]["lr_c"] == pytest.approx(1e-3)
    tensors = checkpoint_tensors(tmp_path / "a", 4)
    assert "C.net.2.weight" in tensors and any(k.startswith("opt_c.state.") for k in tensors)


def test_the_semantic_term_anchors_translations_with_a_frozen_classifier_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "a_render_size": 8},
        loss={"semantic_weight": 1.0, "info_max_weight": 1.0},
        train={"steps": 4, "warp_share": 0.25, "ema": 0.9},  # step 1 with the warps alone
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 100},
    )
    straight = run_events(tmp_path / "a", cfg)
    run_events(tmp_path / "b", cfg, stop_at=2)

    def retrain(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run trained its classifier again")

    monkeypatch.setattr(cyclegan, "train_source_classifier", retrain)
    rest = run_events(tmp_path / "b", cfg)  # reads the classifier from its checkpoint
    last = checkpoint_tensors(tmp_path / "a", 4)
    assert tensors_that_differ(last, checkpoint_tensors(tmp_path / "b", 4)) == []
    assert losses_at(rest, 4) == losses_at(straight, 4)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert "loss_g_semantic" not in stats[1] and math.isfinite(stats[4]["loss_g_semantic"])
    assert 0 <= stats[4]["semantic_anchored"] <= 1 and "lr_s" not in stats[4]  # frozen: no optimizer
    classifier = [k for k in last if k.startswith("S.net.")]
    assert "S.net.0.weight" in classifier and "S.net.1.running_mean" in classifier
    first = checkpoint_tensors(tmp_path / "b", 2)
    assert tensors_that_differ({k: first[k] for k in classifier}, last) == []  # frozen during the run
    assert not torch.equal(last["S.net.1.running_mean"], torch.zeros(32))  # trained before step 1


def test_the_source_classifier_learns_domain_a_from_its_labels_alone():
    data = load_dataset("digits-printed", image_size=32)
    assert isinstance(data, UnpairedDataset)
    torch.manual_seed(0)
    S = SourceClassifier(channels=1, classes=10)
    cyclegan.train_source_classifier(S, data, seed=0)
    with torch.no_grad():
        read = S.eval()(data.held_a).argmax(1)
    assert float((read == data.held_a_labels).float().mean()) > 0.95  # held-out handwritten digits
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    gen = torch.Generator().manual_seed(1)
    moved = cyclegan.jitter(x, gen)
    assert moved.shape == x.shape and moved.min() >= -1 and moved.max() <= 1 and not torch.equal(moved, x)
    assert torch.equal(moved, cyclegan.jitter(x, torch.Generator().manual_seed(1)))  # its generator alone


@pytest.mark.parametrize("term", ["info_max_weight", "semantic_weight"])
def test_the_class_aware_terms_refuse_data_without_labels_of_domain_a(term):
    data = dataclasses.replace(load_dataset("digits-printed", image_size=32), labels=None, num_classes=0)
    cfg = _cfg(loss={"info_max_weight": 0.0, term: 1.0})
    with pytest.raises(ValueError, match=rf"loss.{term}: the term's classifier learns domain A's labels"):
        cyclegan.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda kind, payload: None)


def test_a_latent_code_modulates_g_ba_from_zero_and_the_encoder_reads_codes():
    G = ResnetGenerator(in_channels=1, out_channels=1, width=4, blocks=2, latent_dim=3)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(G(x), G(x, torch.randn(2, 3)))  # FiLM starts at zero: the code changes nothing yet
    torch.nn.init.normal_(G.net[10].film.weight)  # the first residual block after c7s1 and the two downsamplings
    assert not torch.equal(G(x, torch.zeros(2, 3)), G(x, torch.ones(2, 3)))
    assert torch.equal(G(x), G(x, torch.zeros(2, 3)))  # no code reads as zeros
    mu, logvar = LatentEncoder(channels=1, latent_dim=3)(torch.rand(5, 1, 32, 32))
    assert mu.shape == logvar.shape == (5, 3)
    codes = cyclegan.image_latents(5, 3, seed=7)
    assert torch.equal(codes[2:], cyclegan.image_latents(3, 3, seed=7, start=2))  # one code per image, any batch
    assert not torch.equal(codes, cyclegan.image_latents(5, 3, seed=8))


def test_cyclegan_with_a_latent_code_trains_resumes_bit_for_bit_and_translates_deterministically(tmp_path):
    cfg = _cfg(
        model={
            "spatial_transform": True,
            "warp_centred": True,
            "residual_generator": True,
            "a_render_size": 8,
            "latent_dim": 4,
        },
        train={"steps": 4, "warp_share": 0.25, "ema": 0.9},  # step 1 with the warps alone
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    straight, _, _ = assert_resume_matches(tmp_path, cfg, 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert "loss_g_latent" not in stats[1] and math.isfinite(stats[4]["loss_g_latent"])
    assert stats[4]["loss_g_kl"] >= 0
    metrics = {(d["step"], d["name"]) for kind, d in straight if kind == "metric"}
    assert (4, "label_preservation") in metrics and (4, "cycle_error_a") in metrics
    tensors = checkpoint_tensors(tmp_path / "a", 4)
    assert "G.enc.net.2.weight" in tensors and any(".film." in k for k in tensors)
    path = sorted((tmp_path / "a" / "checkpoints").glob("*.safetensors"))[-1]
    tr = load_translator(path)
    x = load_dataset("digits-printed", image_size=32).held_b[:20]
    out = translate(tr, x, direction="BtoA", seed=3)
    assert out.shape == (20, 1, 32, 32)
    assert torch.equal(out, translate(tr, x, direction="BtoA", seed=3))  # deterministic
    assert not torch.equal(out, translate(tr, x, direction="BtoA", seed=4))  # the code shows
    with torch.no_grad():  # input i's code is drawn for it alone, whatever batch it is in
        last = tr.G.ba(x[16:], cyclegan.image_latents(4, 4, seed=3, start=16)).clamp(-1, 1)
    assert torch.equal(out[16:], last)


def test_the_mode_seeking_term_spreads_two_codes_translations_and_resumes_bit_for_bit(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "residual_generator": True, "latent_dim": 4},
        loss={"mode_seeking": 1.0},
        train={"steps": 4, "warp_share": 0.25},  # step 1 with the warps alone, where there is no code
        schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
    )
    straight, _, _ = assert_resume_matches(tmp_path, cfg, 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert "loss_g_mode_seeking" not in stats[1]
    spread, term = stats[4]["mode_seeking_spread"], stats[4]["loss_g_mode_seeking"]
    assert spread > 0 and term == pytest.approx(1 / (spread + MODE_SEEKING_EPS), rel=1e-4)
    with pytest.raises(ValidationError, match=r"loss\.mode_seeking: cyclegan has no latents"):
        _cfg(loss={"mode_seeking": 1.0})  # no code to compare translations under


def test_the_diversity_term_is_bounded_pushes_two_codes_translations_apart_and_stops_at_its_cap():
    z = torch.randn(8, 3)
    same = torch.rand(4, 1, 8, 8).repeat(2, 1, 1, 1)  # pairs (i, 4 + i) that the code does not change yet
    fake = (same + 1e-6 * torch.randn_like(same)).requires_grad_(True)
    term = bounded_diversity(mode_seeking_ratio(fake, z), cap=0.1)
    (-term).backward()  # G's loss subtracts it
    step = fake - 0.5 * fake.grad  # a step down G's loss moves each pair apart
    assert mode_seeking_ratio(step.detach(), z) > mode_seeking_ratio(fake.detach(), z)
    bound = 1 / (fake.numel() / 2 * (z[:4] - z[4:]).abs().mean())  # |d ratio / d pixel|: one pixel's share
    assert fake.grad.abs().max() == pytest.approx(float(bound), rel=1e-4)
    inverse = fake.detach().clone().requires_grad_(True)
    (1 / (mode_seeking_ratio(inverse, z) + MODE_SEEKING_EPS)).backward()  # loss.mode_seeking's term, unbounded
    assert inverse.grad.abs().max() > 1e4 * fake.grad.abs().max()
    apart = torch.cat([same[:4], -same[:4]]).requires_grad_(True)  # ratio well above the cap: no pull
    capped = bounded_diversity(mode_seeking_ratio(apart, z), cap=0.1)
    capped.backward()
    assert float(capped.detach()) == pytest.approx(0.1) and not apart.grad.any()


def test_the_diversity_term_trains_reports_its_ratio_and_resumes_bit_for_bit(tmp_path):
    cfg = _cfg(
        model={"spatial_transform": True, "latent_dim": 4},
        loss={"diversity": 1.0, "diversity_cap": 0.05},
        train={"steps": 4, "warp_share": 0.25},  # step 1 with the warps alone, where there is no code
        schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
    )
    straight, _, _ = assert_resume_matches(tmp_path, cfg, 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert "loss_g_diversity" not in stats[1] and "mode_seeking_spread" not in stats[1]
    spread, term = stats[4]["mode_seeking_spread"], stats[4]["loss_g_diversity"]
    assert spread > 0 and term == pytest.approx(min(spread, 0.05), rel=1e-6)
    for loss, field in (
        ({"diversity": 1.0}, "loss.diversity: it spreads the translations of a latent code"),  # no model.latent_dim
        ({"diversity": 1.0, "mode_seeking": 1.0}, "loss.diversity: it is a bounded form"),
        ({"diversity_cap": 0.5}, "loss.diversity_cap: it bounds loss.diversity's term"),
    ):
        with pytest.raises(ValidationError, match=field):
            _cfg(model={"latent_dim": 4} if "mode_seeking" in loss else {}, loss=loss)
    with pytest.raises(ValidationError, match=r"loss\.diversity: "):
        RunConfig.model_validate({"dataset": "digits", "loss": {"diversity": 1.0}})


def _three_steps(cfg: RunConfig, data: UnpairedDataset, *, want_stats: bool) -> tuple[dict, list]:
    """G's weights after three steps past the warp-only share (from seed 0), and each step's mode_seeking_spread."""
    torch.manual_seed(0)
    m = cyclegan.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda kind, payload: None)
    order = torch.Generator().manual_seed(0)

    def next_batch():
        indices = torch.randint(len(data), (cfg.train.batch_size,), generator=order)
        return (indices, *data.batch(indices))

    spreads = []
    for step in (1, 2, 3):
        at = Step(step, 0.5, want_stats, torch.device("cpu"), next_batch=next_batch, autocast=contextlib.nullcontext)
        spreads.append(cyclegan.train_step(m, cfg, at)[1].get("mode_seeking_spread"))
    return {k: v.clone() for k, v in m.G.state_dict().items()}, spreads


def test_a_latent_run_reports_its_codes_spread_without_changing_its_training():
    cfg = _cfg(model={"latent_dim": 4})
    data = load_dataset("digits-printed", image_size=32)
    assert isinstance(data, UnpairedDataset)
    reported, spreads = _three_steps(cfg, data, want_stats=True)
    quiet, none = _three_steps(cfg, data, want_stats=False)
    assert float(spreads[2]) > 0 and none == [None] * 3  # the residual ResNet's code shows from step 3
    assert all(torch.equal(reported[k], quiet[k]) for k in reported)  # measuring it changed nothing


@pytest.mark.parametrize("body", [{"model": {"arch": "pix2pix", "latent_dim": 4}, "dataset": "digits-edges"}])
def test_a_latent_code_needs_a_cyclegan(body):
    with pytest.raises(ValidationError, match=r"model\.latent_dim"):
        RunConfig.model_validate(body)


def test_a_projection_patchgan_starts_unconditional_and_reads_the_class():
    D = PatchDiscriminator(in_channels=1, layers=2, width=4, norm="instance", classes=10)
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([0, 4, 9])
    assert torch.equal(D(x), D(x, labels=y))  # the class embedding starts at zero
    torch.nn.init.normal_(D.embed.weight)
    assert D(x, labels=y).shape == D(x).shape and not torch.equal(D(x, labels=y), D(x, labels=y.flip(0)))


def test_cyclegan_with_a_class_projection_d_a_keeps_classes_in_its_pool_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    cfg = _cfg(
        model={
            "spatial_transform": True,
            "warp_centred": True,
            "residual_generator": True,
            "a_render_size": 8,
            "class_projection": True,
            "latent_dim": 2,
        },
        loss={"semantic_weight": 1.0},
        train={"steps": 4, "warp_share": 0.25},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 100},
    )
    assert_resume_matches(tmp_path, cfg, 4, 2)
    tensors = checkpoint_tensors(tmp_path / "a", 4)
    assert "D.a.embed.weight" in tensors and "D.b.embed.weight" not in tensors
    assert tensors["pool.a.labels"].shape == (3,) and "pool.b.labels" not in tensors
    with pytest.raises(ValidationError, match=r"model\.class_projection"):
        _cfg(model={"class_projection": True}, loss={"semantic_weight": 0.0})


def test_a_class_projection_d_a_judges_translations_on_the_cluster_anchor_s_class(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    readings: list[torch.Tensor] = []  # the anchor's class of each step's inputs, as the semantic term reads them
    judged: list[torch.Tensor] = []  # the classes D_A judges G_BA's translations on in G's update
    original_reading, original_judge = cyclegan.semantic_reading, cyclegan.class_judge

    def reading(m, inputs, picks):
        out = original_reading(m, inputs, picks)
        readings.append(out[0].clone())
        assert torch.equal(out[0], m.anchor.assignment()[m.anchor.clusters[picks]]) and bool(out[1].all())
        return out

    def judge(D):
        inner = original_judge(D)

        def record(x, labels):
            if not any(p.requires_grad for p in D.parameters()):  # G's update (D's own judges reals and the pool)
                judged.append(labels.clone())
            return inner(x, labels)

        return record

    monkeypatch.setattr(cyclegan, "semantic_reading", reading)
    monkeypatch.setattr(cyclegan, "class_judge", judge)
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "class_projection": True},
        loss={"semantic_weight": 1.0, "semantic_anchor": "clusters"},
        train={"steps": 4, "warp_share": 0.25},  # step 1 with the warps alone: D_A reads S's reading of them
        schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
    )
    run_events(tmp_path, cfg)
    assert len(readings) == 3 and len(judged) == 4  # no anchor in the warp-only step
    assert all(torch.equal(r, j) for r, j in zip(readings, judged[1:], strict=True))


def test_the_class_means_move_each_anchored_class_along_its_gap_and_skip_the_others():
    real = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # 3 classes, 2 features
    means = cyclegan.ClassFeatureMeans(real.clone())
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    classes, anchored = torch.tensor([0, 0, 1, 2]), torch.tensor([1.0, 1.0, 1.0, 0.0])
    gap = means.update(feats, classes, anchored)
    assert torch.equal(means.seen, torch.tensor([1.0, 1.0, 0.0]))  # class 2's only image was not anchored
    assert torch.allclose(gap, torch.tensor([[2.0, 0.0], [4.0, 4.0], [0.0, 0.0]]))  # first batch: its means
    gap = means.update(torch.tensor([[12.0, 0.0]]), torch.tensor([0]), torch.tensor([1.0]))
    decay = cyclegan.SEMANTIC_MATCHING_DECAY
    assert torch.allclose(gap[0], torch.tensor([decay * 2.0 + (1 - decay) * 12.0, 0.0]))  # running, not replaced
    assert torch.allclose(gap[1], torch.tensor([4.0, 4.0]))  # a class absent from the batch keeps its mean
    # The push's gradient on each feature is its class's gap, the same for every image of the class: the class
    # moves as a whole, its spread untouched (an L2 pull to the real mean would draw each image to one point).
    hidden = torch.tensor([[0.0, 1.0], [5.0, -1.0]], requires_grad=True)
    (hidden * gap[torch.tensor([1, 1])]).sum(1).mean().backward()
    assert hidden.grad is not None and torch.equal(hidden.grad[0], hidden.grad[1])


def test_a_unit_push_has_the_same_size_however_far_its_class_lies():
    gap = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 0.5]])  # class 1 not read yet
    unit = cyclegan.unit_rows(gap)
    assert torch.allclose(unit, torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(cyclegan.unit_rows(100 * gap), unit)  # the gap's direction alone
    # Each translation's gradient from the push is its class's direction at unit length: the gradient of the
    # distance between the class means, where the gap itself is that of half its square.
    hidden = torch.tensor([[1.0, 2.0], [2.0, 1.0]], requires_grad=True)
    (hidden * unit[torch.tensor([0, 2])]).sum(1).sum().backward()
    assert hidden.grad is not None and torch.allclose(hidden.grad.norm(dim=1), torch.ones(2))


def test_the_semantic_matching_term_trains_and_resumes_bit_for_bit_with_its_class_means(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "a_render_size": 8},
        loss={"semantic_weight": 1.0, "semantic_matching": 1.0},
        train={"steps": 4, "warp_share": 0.25},  # step 1 with the warps alone, where there is no anchor
        schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
    )
    straight, _, _ = assert_resume_matches(tmp_path, cfg, 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert "semantic_gap" not in stats[1]
    saved = checkpoint_tensors(tmp_path / "a", 4)
    assert saved["semantic.real"].shape == (10, 128) and saved["semantic.real"].abs().sum() > 0
    seen = int(saved["semantic.seen"].sum())
    assert (seen == 0) == (stats[4]["semantic_gap"] == 0)
    # The real means are S's on domain A's training images, by class.
    data = load_dataset("digits-printed", image_size=32)
    S = SourceClassifier(channels=1, classes=10)
    S.load_state_dict({k[2:]: v for k, v in saved.items() if k.startswith("S.")})
    assert torch.allclose(
        cyclegan.source_layer_moments(S.eval(), data, (None,))[0][0], saved["semantic.real"], atol=1e-5
    )


@pytest.mark.parametrize(
    "loss, arch",
    [({"semantic_matching": 1.0, "semantic_weight": 0.0}, "cyclegan"), ({"semantic_matching": 1.0}, "pix2pix")],
)
def test_the_semantic_matching_term_needs_the_semantic_term(loss, arch):
    body = {"dataset": "digits-printed" if arch == "cyclegan" else "digits-edges", "loss": loss}
    with pytest.raises(ValidationError, match=r"loss\.semantic_matching: it matches features"):
        RunConfig.model_validate(body)


def test_a_unit_push_trains_otherwise_than_the_gap_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    monkeypatch.setattr(cyclegan, "SEMANTIC_CONFIDENCE", 0.0)  # every translation matched, however unsure S is

    def cfg(push: str) -> RunConfig:
        return _cfg(
            model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "a_render_size": 8},
            loss={"semantic_weight": 1.0, "semantic_matching": 1.0, "semantic_matching_push": push},
            train={"steps": 4, "warp_share": 0.25},
            schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
        )

    straight, _, _ = assert_resume_matches(tmp_path, cfg("unit"), 4, 2)
    run_events(tmp_path / "gap", cfg("gap"))
    unit, gap = checkpoint_tensors(tmp_path / "a", 4), checkpoint_tensors(tmp_path / "gap", 4)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert stats[4]["semantic_gap"] > 0  # classes were read, so there was a push
    assert torch.equal(unit["semantic.real"], gap["semantic.real"])  # the same classifier and real means
    assert any(name.startswith("G.ba.") for name in tensors_that_differ(unit, gap))  # but another push on G_BA


def test_the_push_field_needs_the_semantic_matching_term():
    with pytest.raises(ValidationError, match=r"loss\.semantic_matching_push: it sets the size"):
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_matching": 0, "semantic_matching_push": "unit"}}
        )
    with pytest.raises(ValidationError, match=r"semantic_matching_push"):
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_matching": 0.1, "semantic_matching_push": "sign"}}
        )
    cfg = RunConfig.model_validate(
        {"dataset": "digits-printed", "loss": {"semantic_matching": 0.1, "semantic_matching_push": "unit"}}
    )
    assert cfg.loss.semantic_matching_push == "unit"


def test_a_mean_push_of_its_own_weight_trains_otherwise_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    monkeypatch.setattr(cyclegan, "SEMANTIC_CONFIDENCE", 0.0)  # every translation matched, however unsure S is

    def cfg(mean: float | None) -> RunConfig:
        loss = {"semantic_weight": 1.0, "semantic_matching": 1.0, "semantic_matching_moments": "std"}
        return _cfg(
            loss=loss | {"semantic_matching_mean": mean},
            train={"steps": 4},
            schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
        )

    straight, _, _ = assert_resume_matches(tmp_path, cfg(3.0), 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert stats[4]["semantic_gap"] > 0 and stats[4]["semantic_std_gap"] > 0
    run_events(tmp_path / "shared", cfg(None))  # one weight for both pushes
    own, shared = checkpoint_tensors(tmp_path / "a", 4), checkpoint_tensors(tmp_path / "shared", 4)
    assert torch.equal(own["semantic.real"], shared["semantic.real"])  # the same classifier and real means
    assert any(name.startswith("G.ba.") for name in tensors_that_differ(own, shared))  # but a stronger mean push


def test_the_mean_weight_needs_the_standard_deviation_push():
    with pytest.raises(ValidationError, match=r"loss\.semantic_matching_mean: it weighs"):
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_matching": 0, "semantic_matching_mean": 0.3}}
        )
    with pytest.raises(ValidationError, match=r"loss\.semantic_matching_mean: it weighs"):
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_matching_moments": "mean", "semantic_matching_mean": 0.3}}
        )
    with pytest.raises(ValidationError, match=r"semantic_matching_mean"):
        RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_matching_mean": -0.1}})
    assert RunConfig.model_validate({"dataset": "digits-printed"}).loss.semantic_matching_mean is None
    loss = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_matching_mean": 0.3}}).loss
    assert (loss.semantic_matching, loss.semantic_matching_mean, loss.semantic_matching_moments) == (0.1, 0.3, "std")


def test_the_cluster_anchor_matches_clusters_to_classes_one_to_one_on_their_mean_probabilities():
    anchor = cyclegan.ClusterAnchor(torch.tensor([0, 0, 1, 1, 2, 2]), classes=3)
    picks = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2])
    probs = torch.tensor(
        [
            [0.0, 0.0, 1.0],  # cluster 0: surely 2
            [0.0, 0.1, 0.9],
            [0.9, 0.1, 0.0],  # cluster 1: surely 0
            [1.0, 0.0, 0.0],
            [0.6, 0.4, 0.0],  # cluster 2: read as 0 most, never as 1 with confidence
            [0.5, 0.3, 0.2],
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0],
        ]
    )
    anchors = anchor.classes(picks, probs)
    assert torch.allclose(anchor.readings, torch.tensor([[0.0, 0.1, 2.9], [2.9, 0.1, 0.0], [1.1, 0.7, 0.2]]))
    assert anchor.assignment().tolist() == [2, 0, 1]  # cluster 2 gets the class left that it reads most like
    assert anchors.tolist() == [2, 2, 0, 0, 1, 1, 2, 0]
    # Mean probabilities, not sums: a cluster drawn more often does not outweigh a surer one.
    anchor = cyclegan.ClusterAnchor(torch.tensor([0, 1]), classes=2)
    anchor.classes(torch.tensor([0, 0, 0, 1]), torch.tensor([[0.7, 0.3]] * 3 + [[0.95, 0.05]]))
    assert anchor.assignment().tolist() == [1, 0]


def test_the_printed_digits_cluster_by_their_glyph_and_the_clusters_are_fixed_by_the_seed():
    data = load_dataset("digits-printed", image_size=32)
    clusters = cyclegan.domain_clusters(data, 10, seed=0)
    assert clusters.shape == (data.b_size,) and torch.equal(clusters, cyclegan.domain_clusters(data, 10, seed=0))
    assert data.other_labels is not None  # read here to judge the clusters; training never reads them
    together = torch.zeros(10, 10)
    together.index_put_((clusters, data.other_labels), torch.ones(data.b_size), accumulate=True)
    assert together.max(1).values.sum() / data.b_size > 0.95  # each cluster nearly one digit


def test_the_cluster_anchor_trains_and_resumes_bit_for_bit_with_its_clusters_and_readings(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    monkeypatch.setattr(cyclegan, "CLUSTER_RESTARTS", 1)
    cfg = _cfg(
        model={"spatial_transform": True, "warp_centred": True, "residual_generator": True, "a_render_size": 8},
        loss={"semantic_weight": 1.0, "semantic_matching": 1.0, "semantic_anchor": "clusters"},
        train={"steps": 4, "warp_share": 0.25},  # step 1 with the warps alone, where nothing is read
        schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
    )
    straight = run_events(tmp_path / "a", cfg)
    run_events(tmp_path / "b", cfg, stop_at=2)

    def recluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run clustered domain B again")

    monkeypatch.setattr(cyclegan, "domain_clusters", recluster)
    rest = run_events(tmp_path / "b", cfg)  # reads the clusters and their readings from its checkpoint
    last = checkpoint_tensors(tmp_path / "a", 4)
    assert tensors_that_differ(last, checkpoint_tensors(tmp_path / "b", 4)) == []
    assert losses_at(rest, 4) == losses_at(straight, 4)
    assert last["anchor.clusters"].shape == (2000,) and set(last["anchor.clusters"].tolist()) == set(range(10))
    assert torch.isclose(last["anchor.readings"].sum(), torch.tensor(3.0 * 4))  # steps 2-4, a batch of 4 each
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert stats[4]["semantic_anchored"] == 1 and stats[4]["semantic_matched"] == 1  # every translation


@pytest.mark.parametrize(
    "loss, arch",
    [
        ({"semantic_anchor": "clusters", "semantic_weight": 0.0}, "cyclegan"),
        ({"semantic_anchor": "clusters"}, "pix2pix"),
    ],
)
def test_the_cluster_anchor_needs_the_semantic_term(loss, arch):
    body = {"dataset": "digits-printed" if arch == "cyclegan" else "digits-edges", "loss": loss}
    with pytest.raises(ValidationError, match=r"loss\.semantic_anchor: it anchors"):
        RunConfig.model_validate(body)


def test_the_class_standard_deviations_run_beside_the_means_and_widen_a_class_too_narrow():
    real = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # 2 classes, 2 features
    real_std = torch.tensor([[2.0, 0.5], [1.0, 1.0]])
    means = cyclegan.ClassFeatureMeans(real.clone(), real_std=real_std)
    means.update(torch.tensor([[1.0, 0.0], [3.0, 2.0]]), torch.tensor([0, 0]), torch.tensor([1.0, 1.0]))
    gap, scale = means.std_gap()  # the first batch alone: class 0's stds are 1 and 1, class 1 not read yet
    assert torch.allclose(gap, torch.tensor([[-1.0, 0.5], [0.0, 0.0]]))
    assert torch.allclose(scale, torch.tensor([math.sqrt((4.0 + 0.25) / 2), 1.0]))
    means.update(torch.tensor([[5.0, 1.0]]), torch.tensor([0]), torch.tensor([1.0]))
    decay = cyclegan.SEMANTIC_MATCHING_DECAY
    mean = decay * torch.tensor([2.0, 1.0]) + (1 - decay) * torch.tensor([5.0, 1.0])
    square = decay * torch.tensor([5.0, 2.0]) + (1 - decay) * torch.tensor([25.0, 1.0])
    assert torch.allclose(means.fake[0], mean) and torch.allclose(means.fake_sq[0], square)  # running, not replaced
    assert torch.allclose(means.std_gap()[0][0], (square - mean.square()).sqrt() - real_std[0])
    # Without real_std nothing more is kept or stored (a run with moments mean).
    plain = cyclegan.ClassFeatureMeans(real.clone())
    assert plain.fake_sq is None and set(plain.state()) == {"semantic.real", "semantic.fake", "semantic.seen"}


def test_the_standard_deviation_push_spreads_a_narrow_class_on_its_narrow_unit_and_gathers_a_wide_one():
    means = cyclegan.ClassFeatureMeans(torch.zeros(2, 2), real_std=torch.tensor([[2.0, 0.5], [1.0, 1.0]]))
    batch = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # class 0: stds 1 and 1, too narrow on unit 0, too wide on 1
    means.update(batch, torch.tensor([0, 0]), torch.ones(2))
    for unit in (True, False):
        hidden = batch.clone().requires_grad_(True)
        push, gap = cyclegan.spread_push(hidden, torch.tensor([0, 0]), torch.ones(2), means, unit=unit)
        push.backward()
        assert hidden.grad is not None
        deviation = batch - means.fake[0]  # (-1, -1) and (1, 1)
        step = -hidden.grad  # where gradient descent moves each translation
        assert ((step[:, 0] * deviation[:, 0]) > 0).all()  # away from the class mean on unit 0
        assert ((step[:, 1] * deviation[:, 1]) < 0).all()  # towards it on unit 1
    # Translations not counted (weight 0) get no push; a class not read yet has no gap.
    hidden = batch.clone().requires_grad_(True)
    push, gap = cyclegan.spread_push(hidden, torch.tensor([0, 1]), torch.tensor([0.0, 1.0]), means, unit=True)
    push.backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() == 0 and gap[1].abs().sum() == 0


def test_the_standard_deviations_train_and_resume_bit_for_bit_with_their_running_squares(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifier's training before the run, shortened
    monkeypatch.setattr(cyclegan, "SEMANTIC_CONFIDENCE", 0.0)  # every translation matched, however unsure S is

    def cfg(moments: str) -> RunConfig:
        return _cfg(
            loss={"semantic_weight": 1.0, "semantic_matching": 1.0, "semantic_matching_moments": moments},
            train={"steps": 4},
            schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
        )

    straight, _, _ = assert_resume_matches(tmp_path, cfg("std"), 4, 2)  # the running squares resume bit for bit
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert stats[4]["semantic_std_gap"] > 0
    saved = checkpoint_tensors(tmp_path / "a", 4)
    assert saved["semantic.real_std"].shape == (10, 128) and saved["semantic.fake_sq"].abs().sum() > 0
    data = load_dataset("digits-printed", image_size=32)
    S = SourceClassifier(channels=1, classes=10)
    S.load_state_dict({k[2:]: v for k, v in saved.items() if k.startswith("S.")})
    real, real_std = cyclegan.source_layer_moments(S.eval(), data, (None,))[0]
    assert torch.allclose(real, saved["semantic.real"], atol=1e-5)
    assert torch.allclose(real_std, saved["semantic.real_std"], atol=1e-4) and real_std.sum() > 0
    # The mean alone: the same classifier and real means, no second moments stored, another push on G_BA.
    run_events(tmp_path / "mean", cfg("mean"))
    mean = checkpoint_tensors(tmp_path / "mean", 4)
    assert "semantic.fake_sq" not in mean and torch.equal(mean["semantic.real"], saved["semantic.real"])
    shared = {k: v for k, v in saved.items() if k in mean}
    assert any(name.startswith("G.ba.") for name in tensors_that_differ(shared, mean))


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"semantic_matching_moments": "std"}, r"loss\.semantic_matching_moments std"),
        ({"semantic_matching_layers": "conv"}, r"holds no class means semantic_conv0"),
    ],
    ids=["standard-deviations", "blocks"],
)
def test_a_run_with_more_statistics_does_not_resume_from_a_checkpoint_without_them(
    tmp_path, monkeypatch, extra, message
):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)
    over = {"train": {"steps": 4}, "schedule": {"sample_every": 100, "checkpoint_every": 2, "eval_every": 100}}
    run_events(tmp_path, _cfg(loss={"semantic_weight": 1.0, "semantic_matching": 1.0}, **over), stop_at=2)
    more = _cfg(loss={"semantic_weight": 1.0, "semantic_matching": 1.0, **extra}, **over)
    with pytest.raises(ValueError, match=message):
        run_events(tmp_path, more)


def test_the_moments_field_needs_the_semantic_matching_term():
    with pytest.raises(ValidationError, match=r"loss\.semantic_matching_moments: it says what"):
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_matching": 0, "semantic_matching_moments": "std"}}
        )
    with pytest.raises(ValidationError, match=r"semantic_matching_moments"):
        RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_matching_moments": "covariance"}})
    assert RunConfig.model_validate({"dataset": "digits-printed"}).loss.semantic_matching_moments == "std"
    assert (
        RunConfig.model_validate(
            {"dataset": "digits-printed", "loss": {"semantic_matching": 0}}
        ).loss.semantic_matching_moments
        == "mean"
    )
    off = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_weight": 0}})
    assert off.loss.semantic_matching_moments == "mean"
    cfg = RunConfig.model_validate({"dataset": "digits-printed", "loss": {"semantic_matching_moments": "std"}})
    assert (cfg.loss.semantic_matching, cfg.loss.semantic_matching_moments) == (0.1, "std")


def test_the_source_classifier_gives_its_blocks_averaged_over_space_and_its_hidden_layer_in_one_pass():
    torch.manual_seed(0)
    S = SourceClassifier(channels=1, classes=10, width=4, hidden=6).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    pooled, hidden = S.activations(x)
    assert [tuple(p.shape) for p in pooled] == [(3, 4), (3, 8), (3, 16)]
    assert torch.equal(hidden, S.features(x))
    assert torch.equal(pooled[0], S.net[:4](x).mean((2, 3)))  # the first block's output, averaged over space
    assert all(bool((p >= 0).all()) for p in pooled)  # after each block's ReLU


def test_the_class_means_decay_by_their_own_rate():
    means = cyclegan.ClassFeatureMeans(torch.zeros(2, 1), decay=0.5)
    means.update(torch.tensor([[4.0]]), torch.tensor([0]), torch.tensor([1.0]))
    gap = means.update(torch.tensor([[8.0]]), torch.tensor([0]), torch.tensor([1.0]))
    assert torch.allclose(gap, torch.tensor([[6.0], [0.0]]))  # 0.5 of the old mean, 0.5 of the batch's
    scaled = cyclegan.ClassFeatureMeans(torch.zeros(2, 1), scale=torch.tensor([3.0]), name="semantic1_conv2")
    assert torch.equal(scaled.features(torch.tensor([[2.0]])), torch.tensor([[6.0]]))
    assert set(scaled.state()) == {f"semantic1_conv2.{k}" for k in ("real", "fake", "seen", "scale")}


def test_blocks_and_more_classifiers_train_and_resume_bit_for_bit_with_their_class_statistics(tmp_path, monkeypatch):
    monkeypatch.setattr(cyclegan, "SOURCE_EPOCHS", 1)  # the classifiers' training before the run, shortened
    monkeypatch.setattr(cyclegan, "SEMANTIC_CONFIDENCE", 0.0)  # every translation matched, however unsure S is

    def cfg(**extra: object) -> RunConfig:
        return _cfg(
            loss={"semantic_weight": 1.0, "semantic_matching": 1.0, "semantic_matching_moments": "std", **extra},
            train={"steps": 4},
            schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 100},
        )

    more = {"semantic_matching_layers": "conv", "semantic_classifiers": 2, "semantic_matching_decay": 0.9}
    straight, _, _ = assert_resume_matches(tmp_path, cfg(**more), 4, 2)
    stats = {d["step"]: d["values"] for kind, d in straight if kind == "stats"}
    assert stats[4]["semantic_gap"] > 0 and stats[4]["semantic_std_gap"] > 0
    saved = checkpoint_tensors(tmp_path / "a", 4)
    assert "S1.net.0.weight" in saved and not torch.equal(saved["S1.net.0.weight"], saved["S.net.0.weight"])
    for k in ("", "1"):  # each classifier's hidden layer and blocks, with the blocks' scales
        assert saved[f"semantic{k}.real"].shape == (10, 128) and f"semantic{k}.scale" not in saved
        for block, width in enumerate((32, 64, 128)):
            name = f"semantic{k}_conv{block}"
            assert saved[f"{name}.real"].shape == (10, width) and saved[f"{name}.fake_sq"].abs().sum() > 0
            # scaled so that the block's real standard deviations are of the hidden layer's size
            size = cyclegan.feature_scale(saved[f"{name}.real_std"])
            assert torch.allclose(size, cyclegan.feature_scale(saved[f"semantic{k}.real_std"]), rtol=1e-4)
    data = load_dataset("digits-printed", image_size=32)
    S = SourceClassifier(channels=1, classes=10)
    S.load_state_dict({k[2:]: v for k, v in saved.items() if k.startswith("S.")})
    real, _ = cyclegan.source_layer_moments(S.eval(), data, (1,))[0]
    assert torch.allclose(real * saved["semantic_conv1.scale"], saved["semantic_conv1.real"], atol=1e-4)
    # Without them: the same first classifier and real means, no other statistics, another push on G_BA.
    run_events(tmp_path / "plain", cfg())
    plain = checkpoint_tensors(tmp_path / "plain", 4)
    assert "S1.net.0.weight" not in plain and "semantic_conv0.real" not in plain
    assert torch.equal(saved["S.net.0.weight"], plain["S.net.0.weight"])
    assert torch.equal(saved["semantic.real"], plain["semantic.real"])
    assert any(k.startswith("G.ba.") for k in tensors_that_differ({k: saved[k] for k in plain}, plain))


@pytest.mark.parametrize(
    "loss, message",
    [
        ({"semantic_matching": 0, "semantic_matching_layers": "conv"}, r"loss\.semantic_matching_layers: it refines"),
        ({"semantic_matching": 0, "semantic_matching_decay": 0.99}, r"loss\.semantic_matching_decay: it refines"),
        ({"semantic_weight": 0, "semantic_classifiers": 2}, r"loss\.semantic_classifiers: it counts"),
        ({"semantic_matching_layers": "all"}, r"semantic_matching_layers"),
        ({"semantic_matching_decay": 1.0}, r"semantic_matching_decay"),
        ({"semantic_matching_decay": 0.0}, r"semantic_matching_decay"),
        ({"semantic_classifiers": 0}, r"semantic_classifiers"),
        ({"semantic_classifiers": 5}, r"semantic_classifiers"),
    ],
)
def test_the_block_decay_and_classifier_fields_refuse_impossible_values(loss, message):
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate({"dataset": "digits-printed", "loss": loss})


def test_the_block_decay_and_classifier_fields_default_to_the_hidden_layer_alone():
    loss = RunConfig.model_validate({"dataset": "digits-printed"}).loss
    assert (loss.semantic_matching_layers, loss.semantic_matching_decay, loss.semantic_classifiers) == (
        "hidden",
        0.98,
        1,
    )
    with pytest.raises(ValidationError, match=r"loss\.semantic_classifiers: it counts"):
        RunConfig.model_validate({"dataset": "digits-edges", "loss": {"semantic_classifiers": 2}})
