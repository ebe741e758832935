"""The style-based family: its networks' pieces, its lazy regularizers, training through the shared loop, exact
resume (path-length mean and tracked w included), its config errors and generations from its checkpoints."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from torch.nn.utils import parametrize

from core import generate, scoring
from core.checkpoint import load_generator
from core.config import RunConfig
from core.datasets import load_dataset
from core.device import pick_precision
from core.families import Step, family_of
from core.families import stylegan2 as family
from core.losses import bounded_diversity, mode_seeking_ratio
from core.metrics import Evaluator
from core.networks_stylegan2 import (
    MappingNetwork,
    ModulatedConv2d,
    StyleDiscriminator,
    StyleGenerator,
    build_generator,
    channels_at,
    downsample,
    fresh_noise,
    upsample,
)
from core.train import lr_scale, seed_evaluation, train
from tests.utils.training import assert_resume_matches

TINY = {"width": 8, "z_dim": 16, "w_dim": 16, "mapping_layers": 2}


def _cfg(**over: dict) -> RunConfig:
    body: dict = {
        "dataset": "digits",
        "model": {"arch": "stylegan2", **TINY},
        "train": {"steps": 6, "batch_size": 8, "precision": "fp32", "device": "cpu"},
        "loss": {"r1_every": 2, "pl_every": 2},
        "schedule": {"sample_every": 3, "checkpoint_every": 100},
    }
    for section, fields in over.items():
        body[section] = body.get(section, {}) | fields
    return RunConfig.model_validate(body)


def test_shapes_of_each_piece():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    assert upsample(x).shape == (2, 3, 16, 16)
    assert downsample(x).shape == (2, 3, 4, 4)
    # The binomial filter keeps a constant image constant away from the zero-padded border.
    assert torch.allclose(upsample(torch.ones(1, 1, 8, 8))[0, 0, 2:-2, 2:-2], torch.ones(12, 12))
    assert torch.allclose(downsample(torch.ones(1, 1, 8, 8))[0, 0, 1:-1, 1:-1], torch.ones(2, 2))
    assert [channels_at(r, image_size=1024, width=32) for r in (4, 64, 128, 1024)] == [512, 512, 256, 32]

    mapping = MappingNetwork(z_dim=16, w_dim=12, layers=3, num_classes=10)
    assert mapping(torch.randn(5, 16), torch.arange(5)).shape == (5, 12)
    # The mapping layers learn at model.mapping_lr_mul (the paper's 0.01 by default): stored at N(0, 1) / lr_mul.
    assert [layer.lr_mul for layer in mapping.net] == [0.01] * 3
    slow = RunConfig.model_validate({"dataset": "digits", "model": {"arch": "stylegan2", "mapping_lr_mul": 0.001}})
    G_slow = build_generator(slow, channels=1, num_classes=10)
    assert [layer.lr_mul for layer in G_slow.mapping.net] == [0.001] * 2
    assert 500 < float(G_slow.mapping.net[0].weight.detach().std()) < 2000

    G = StyleGenerator(z_dim=16, w_dim=12, mapping_layers=2, image_size=16, channels=1, width=8, num_classes=0)
    assert G.num_ws == 6  # 4 px: one layer; 8 and 16 px: two each; and the last toRGB
    assert G(torch.randn(3, 16)).shape == (3, 1, 16, 16)
    assert G.synthesis(torch.randn(3, G.num_ws, 12)).shape == (3, 1, 16, 16)

    D = StyleDiscriminator(image_size=32, channels=3, width=8, num_classes=4)
    logits, features, class_logits = D(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4,) and features.shape == (4, channels_at(4, image_size=32, width=8))
    assert class_logits is None


def test_spectral_norm_makes_every_discriminator_weight_1_lipschitz_without_the_equalized_gain():
    torch.manual_seed(0)
    plain = StyleDiscriminator(image_size=16, channels=1, width=8, num_classes=5)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())  # off: the paper's D, unchanged
    D = StyleDiscriminator(image_size=16, channels=1, width=8, num_classes=5, sn=True)
    layers = [m for m in D.modules() if hasattr(m, "weight_gain")]
    assert len(layers) == 1 + 3 * 2 + 3  # fromRGB, two blocks of three, the 3×3 conv and the two linear layers
    for layer in [*layers, D]:
        assert parametrize.is_parametrized(layer)
    with torch.no_grad():  # each forward in training mode runs one step of the power iteration
        for _ in range(100):
            logits, features, _ = D(torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4,) and features.shape == (4, channels_at(4, image_size=16, width=8))
    for layer in layers:
        assert layer.weight_gain == 1.0
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1.0) < 0.01, layer
    assert abs(float(torch.linalg.matrix_norm(D.embed.detach(), ord=2)) - 1.0) < 0.01  # the projection's codes
    # The power iteration moves in training mode only, so an evaluation leaves D's state as it was.
    D.eval()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    D(torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())


def test_demodulation_keeps_unit_variance():
    """Unit-variance inputs give unit-variance outputs whatever the styles' scale; without demodulation the styles'
    scale passes straight through."""
    torch.manual_seed(0)
    x = torch.randn(16, 32, 8, 8)
    w = torch.randn(16, 8)
    stds = {}
    for demodulate in (True, False):
        conv = ModulatedConv2d(32, 32, 3, w_dim=8, demodulate=demodulate)
        with torch.no_grad():
            conv.affine.bias.fill_(4.0)  # styles around 4
            stds[demodulate] = float(conv(x, w).std())
    assert 0.8 < stds[True] < 1.2
    assert stds[False] > 3.0


def test_eval_mode_is_deterministic_and_truncation_pulls_toward_the_mean():
    torch.manual_seed(0)
    G = StyleGenerator(z_dim=16, w_dim=16, mapping_layers=2, image_size=16, channels=1, width=8, num_classes=0).eval()
    z = torch.randn(4, 16)
    assert torch.equal(G(z), G(z))  # fixed noise in eval mode
    G.mapping.w_avg.copy_(torch.randn(16))
    mean_image = G.synthesis(G.mapping.w_avg.expand(4, G.num_ws, 16))
    assert torch.allclose(G(z, truncation=1e-9), mean_image, atol=1e-5)
    assert not torch.allclose(G(z, truncation=0.5), mean_image, atol=1e-3)


def test_the_evaluation_draws_each_samples_noise_from_its_seed_and_the_fixed_noise_stays_outside_it():
    torch.manual_seed(0)
    G = StyleGenerator(z_dim=16, w_dim=16, mapping_layers=2, image_size=16, channels=1, width=8, num_classes=0).eval()
    with torch.no_grad():
        for layer in G.layers:
            layer.noise_strength.fill_(1.0)
    z = torch.randn(1, 16).expand(3, 16)  # one latent, three times
    fixed = G(z)
    assert torch.equal(fixed[0], fixed[2])
    with fresh_noise(G, torch.Generator().manual_seed(5)):
        fresh = G(z)
    assert not torch.allclose(fresh[0], fresh[2], atol=1e-3)  # each sample its own noise
    with fresh_noise(G, torch.Generator().manual_seed(5)):
        assert torch.equal(G(z), fresh)  # the seed fixes them
    assert torch.equal(G(z), fixed)  # generations: the fixed maps again

    # The family's sampler (the run's evaluation): the same images for the same seeds, the latents of the global
    # stream as the noise family draws them, each with noise of its own.
    cfg = _cfg()
    sample = family.sampler(
        G, cfg, SimpleNamespace(num_classes=0), device=torch.device("cpu"), autocast=contextlib.nullcontext
    )
    draws = []
    for _ in range(2):
        with torch.random.fork_rng():
            torch.manual_seed(1)
            draws.append(sample(4)[0])
    assert torch.equal(draws[0], draws[1])
    with torch.random.fork_rng():
        torch.manual_seed(1)
        z = torch.randn(4, 16)
    with fresh_noise(G, torch.Generator().manual_seed(cfg.seed)), torch.no_grad():
        assert torch.equal(draws[0], G(z))
    assert not torch.allclose(draws[0], G(z).detach(), atol=1e-3)


def test_style_mixing_grid_and_walks_in_w():
    torch.manual_seed(0)
    G = StyleGenerator(z_dim=16, w_dim=16, mapping_layers=2, image_size=16, channels=1, width=8, num_classes=10).eval()
    G.mapping.w_avg.copy_(torch.randn(16))
    common = {"z_dim": 16, "num_classes": 10, "labels": [4], "truncation": 0.8}
    grid = generate.style_mix(G, row_seeds=[1, 2], col_seeds=[3, 4, 5], layers="0-5", **common)
    assert grid.samples.shape == (12, 1, 16, 16) and grid.rows == 3
    assert (grid.samples[0] == -1).all()  # the blank corner
    alone = generate.generate(G, n=1, seed=3, **common).samples[0]
    assert np.allclose(grid.samples[1], alone, atol=1e-5)  # a column seed's image, as a one-sample generation
    assert np.allclose(grid.samples[5], grid.samples[1], atol=1e-5)  # every layer from column 3: its image
    coarse = generate.style_mix(G, row_seeds=[1], col_seeds=[3], layers="0-1", **common)
    assert not np.allclose(coarse.samples[3], coarse.samples[1], atol=1e-3)
    assert generate.parse_layers(" 2 - 4 ", 6) == [2, 3, 4]
    for bad in ("x", "3-1", "0-6"):
        with pytest.raises(ValueError, match=r"style_mix\.layers"):
            generate.style_mix(G, row_seeds=[1], col_seeds=[2], layers=bad, **common)

    walk = generate.generate_walks(G, n=2, steps=4, mode="lerp", seed=9, space="w", **common)
    assert walk.samples.shape == (8, 1, 16, 16)
    ends = generate.generate_walks(G, n=2, steps=4, mode="lerp", seed=9, space="z", **common)
    assert np.allclose(walk.samples[[0, 3, 4, 7]], ends.samples[[0, 3, 4, 7]], atol=1e-5)  # same ends, other paths
    assert not np.allclose(walk.samples[1], ends.samples[1], atol=1e-4)


def test_style_mixing_uses_two_latents_after_a_cutoff():
    torch.manual_seed(0)
    G = StyleGenerator(z_dim=16, w_dim=16, mapping_layers=2, image_size=16, channels=1, width=8, num_classes=0)
    z = torch.randn(64, 16)
    w = G.mapping(z, None)
    ws = family.mixed_ws(G, z, None, mixing_prob=1.0)  # (B, L, W)
    assert torch.equal(ws[:, 0], w)  # the first layer always takes the first latent's w
    assert (ws[:, -1] != w).any(dim=1).all()  # and the last the second's, when every sample mixes
    assert torch.equal(family.mixed_ws(G, z, None, mixing_prob=0.0), w[:, None].expand(-1, G.num_ws, -1))


def test_lazy_regularizers_run_only_at_their_intervals(monkeypatch):
    cfg = _cfg(loss={"r1_every": 3, "pl_every": 2, "r1_gamma": 1.0})
    data = load_dataset("digits", image_size=16)
    device = torch.device("cpu")
    torch.manual_seed(0)
    m = family.build(cfg, data, device=device, latest=None, emit=lambda kind, data: None)
    calls: dict[str, list[int]] = {"pl": [], "r1": []}
    step = 0
    pl, r1 = family.path_length_penalty, family.r1_penalty
    monkeypatch.setattr(family, "path_length_penalty", lambda *a, **k: calls["pl"].append(step) or pl(*a, **k))
    monkeypatch.setattr(family, "r1_penalty", lambda *a, **k: calls["r1"].append(step) or r1(*a, **k))
    order = torch.Generator().manual_seed(0)

    def next_batch():
        indices = torch.randint(len(data), (cfg.train.batch_size,), generator=order)
        return (indices, *data.batch(indices))

    for step in range(1, 8):
        at = Step(step, 0.0, False, device, next_batch=next_batch, autocast=contextlib.nullcontext)
        family.train_step(m, cfg, at)
    assert calls == {"pl": [2, 4, 6], "r1": [3, 6]}
    assert float(m.pl_mean) > 0
    # Adam of a lazily regularized network: lr and betas scaled by interval / (interval + 1).
    assert m.opt_d.defaults["lr"] == pytest.approx(cfg.train.lr_d * 3 / 4)
    assert m.opt_g.defaults["betas"][1] == pytest.approx(cfg.train.beta2 ** (2 / 3))


def test_a_few_steps_train_through_the_loop_and_generate_from_the_checkpoint(tmp_path):
    cfg = _cfg(model={"conditional": True})
    events = []
    result = train(cfg, out_dir=tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    assert result.status == "completed" and result.checkpoint is not None
    assert [d["step"] for k, d in events if k == "sample"] == [3, 6]
    stats = [d["values"] for k, d in events if k == "stats"]
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= stats[-1].keys()
    assert all(math.isfinite(v) for v in stats[-1].values())

    G, loaded, _ = load_generator(result.checkpoint)
    assert loaded.model.arch == "stylegan2" and not G.training
    assert float(G.mapping.w_avg.abs().sum()) > 0  # tracked during training, kept in the checkpoint
    kwargs = {"z_dim": 16, "num_classes": 10, "n": 6, "seed": 3, "labels": [1, 2]}
    plain = generate.generate(G, **kwargs)
    truncated = generate.generate(G, truncation=0.5, **kwargs)
    again = generate.generate(G, truncation=0.5, **kwargs)
    assert truncated.samples.shape == (6, 1, 16, 16) and truncated.labels.tolist() == [1, 2, 1, 2, 1, 2]
    assert (truncated.samples == again.samples).all()
    assert not (truncated.samples == plain.samples).all()
    # ψ toward w_avg, not z resampled: ψ → 0 gives every latent of a class the same image.
    collapsed = generate.generate(G, truncation=1e-6, **kwargs).samples
    assert abs(collapsed[0] - collapsed[2]).max() < 1e-4
    walks = generate.generate_walks(G, steps=3, mode="lerp", truncation=0.7, **kwargs | {"n": 2})
    assert walks.samples.shape == (6, 1, 16, 16)

    # Anomaly scoring loads its discriminator too, and searches its latents.
    scorer = scoring.load_scorer(result.checkpoint)
    real = load_dataset("digits", image_size=16).batch(torch.arange(3))[0]  # (3, 1, 16, 16)
    scores = scoring.score_images(scorer, real, steps=2)
    assert all(values.shape == (3,) and np.isfinite(values).all() for values in scores.values())


@pytest.mark.parametrize(
    "augment, model",
    [
        pytest.param({"diffaugment": "translation"}, {"conditional": True}, id="diffaugment"),
        pytest.param({"augment": "ada"}, {"conditional": True, "class_clusters": 0}, id="ada"),  # classes alone
        pytest.param({}, {"clusters": 4}, id="clusters"),
        pytest.param({}, {"conditional": True, "class_clusters": 3}, id="class-clusters"),
        pytest.param({"lr_rampdown": 0.7}, {}, id="lr-rampdown"),  # the resume at step 3 falls inside the ramp
        pytest.param({}, {"spectral_norm": True, "clusters": 4}, id="spectral-norm"),  # D's power-iteration vectors
    ],
)
def test_resuming_gives_the_same_weights_path_length_mean_and_w_avg(tmp_path, augment: dict, model: dict):
    cfg = _cfg(model=model, loss={"r1_gamma": 0.5}, train=augment)
    n, k = cfg.train.steps, 3

    def run(out, stop_at=None):
        calls = []
        train(cfg, out_dir=out, should_stop=lambda: calls.append(1) or len(calls) == stop_at)

    run(tmp_path / "a")
    run(tmp_path / "b", stop_at=k)
    run(tmp_path / "b")
    a = load_file(str(tmp_path / "a" / "checkpoints" / f"{n:08d}.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / f"{n:08d}.safetensors"))
    assert a.keys() == b.keys()
    assert {"loss.pl_mean", "G.mapping.w_avg", "G_ema.mapping.w_avg"} <= a.keys()
    assert float(a["loss.pl_mean"]) > 0
    if cfg.train.augment == "ada":
        assert {"augment.p", "augment.signs"} <= a.keys()
    if cfg.model.clusters or cfg.model.class_clusters:
        assert {"data.clusters", "G.mapping.cluster_cdf", "G_ema.mapping.cluster_cdf"} <= a.keys()
    if cfg.model.spectral_norm:
        assert {"D.from_rgb.parametrizations.weight.0._u", "D.parametrizations.embed.0._v"} <= a.keys()
    assert [key for key in a if not torch.equal(a[key], b[key])] == []


def _diversity_step(cfg: RunConfig, monkeypatch) -> tuple[family.Models, dict, list, dict]:
    """One step of `cfg` from seed 0 with D's logits made a constant of its own (no gradient reaches G through
    them): the models after it, G's weights before it, the label ids D saw (G's step first), and the step's stats."""
    torch.manual_seed(0)
    data = load_dataset("digits", image_size=16)
    m = family.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda kind, data: None)
    bias = torch.nn.Parameter(torch.zeros(()))
    seen: list = []

    def constant(x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple:
        seen.append(labels)
        return 0.0 * x.sum(dim=(1, 2, 3)) + bias, None, None  # a graph to x, with zero gradient along it

    monkeypatch.setattr(m.D, "forward", constant)
    before = {k: v.clone() for k, v in m.G.state_dict().items()}
    order = torch.Generator().manual_seed(0)

    def next_batch():
        indices = torch.randint(len(data), (cfg.train.batch_size,), generator=order)
        return (indices, *data.batch(indices))

    at = Step(1, 0.0, True, torch.device("cpu"), next_batch=next_batch, autocast=contextlib.nullcontext)
    _, stats = family.train_step(m, cfg, at)
    return m, before, seen, stats


def test_the_diversity_term_pairs_fakes_within_a_cluster_and_alone_moves_g(monkeypatch):
    over = {"r1_gamma": 0.0, "pl_weight": 0.0, "diversity_cap": 5.0}  # no regularizer moves G; the cap out of reach
    model = {"clusters": 5, "mixing_prob": 0.9}
    m, before, seen, stats = _diversity_step(_cfg(model=model, loss=over | {"diversity": 2.0}), monkeypatch)
    ids = seen[0]  # G's step: fakes i and B/2 + i share a cluster, though their latents' own clusters differ
    assert ids is not None and torch.equal(ids[:4], ids[4:])
    spread = stats["mode_seeking_spread"]
    assert 0 < float(spread) < 5.0 and torch.equal(stats["loss_g_diversity"], spread)
    assert float(stats["loss_g"]) == pytest.approx(math.log(2) - 2.0 * float(spread), rel=1e-5)  # softplus(0) - λ r
    moved = [k for k, v in m.G.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("mapping.net") for k in moved) and any(k.startswith("layers") for k in moved)
    assert seen[1] is not None and not torch.equal(seen[1][:4], seen[1][4:])  # D's fakes are drawn as before

    # Without the term the step leaves G where it was (D's logits give it no gradient) and reports no spread.
    m, before, seen, stats = _diversity_step(
        _cfg(model=model, loss={"r1_gamma": 0.0, "pl_weight": 0.0, "diversity": 0.0}), monkeypatch
    )
    assert all(torch.equal(v, before[k]) for k, v in m.G.state_dict().items() if k != "mapping.w_avg")
    assert "mode_seeking_spread" not in stats and not torch.equal(seen[0][:4], seen[0][4:])


def test_the_diversity_term_pushes_g_apart_up_to_its_cap():
    z = torch.randn(8, 16)
    fake = torch.zeros(8, 1, 4, 4).requires_grad_(True)
    (-bounded_diversity(mode_seeking_ratio(fake + 0.01 * torch.arange(8.0)[:, None, None, None], z), 5.0)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # below the cap: a pull
    far = torch.cat([torch.ones(4, 1, 4, 4), -torch.ones(4, 1, 4, 4)]).requires_grad_(True)
    bounded_diversity(mode_seeking_ratio(far, z), 0.1).backward()
    assert far.grad is not None and not far.grad.any()  # above it: none


@pytest.mark.parametrize(
    "model",
    [
        pytest.param({"clusters": 4}, id="clusters"),
        pytest.param({"conditional": True, "class_clusters": 3}, id="class-clusters"),
    ],
)
def test_the_diversity_term_resumes_bit_for_bit_with_mixing_and_path_length_regularization(tmp_path, model: dict):
    cfg = _cfg(model=model | {"mixing_prob": 0.9}, loss={"diversity": 1.0, "pl_weight": 2.0, "r1_gamma": 0.5})
    straight, _, _ = assert_resume_matches(tmp_path, cfg, cfg.train.steps, 3)
    stats = [d["values"] for kind, d in straight if kind == "stats"]
    assert all(0 < s["loss_g_diversity"] <= cfg.loss.diversity_cap + 1e-6 for s in stats)  # fp32 of the cap
    assert any("pl_penalty" in s for s in stats)


def test_cluster_conditioning_labels_reals_by_k_means_and_fakes_by_their_latents(tmp_path):
    cfg = _cfg(model={"clusters": 5})
    result = train(cfg, out_dir=tmp_path)
    ids = load_file(str(result.checkpoint))["data.clusters"]
    assert ids.shape == (1797,) and set(ids.tolist()) == set(range(5))
    G, _, _ = load_generator(result.checkpoint)
    assert G.num_classes == 0 and G.mapping.embed.shape == (5, 16)  # callers pass no labels; w embeds 5 clusters
    counts = torch.bincount(ids, minlength=5).double()
    assert torch.allclose(G.cluster_cdf, counts.cumsum(0) / counts.sum())
    z = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    picked = G.clusters_of(z)
    # Without labels the mapping network embeds each latent's own cluster, the same as passing it.
    assert torch.equal(G.mapping(z, None), G.mapping(z, picked))
    assert not torch.equal(G.mapping(z, None), G.mapping(z, (picked + 1) % 5))
    # The clusters are drawn near the real frequencies.
    drawn = torch.bincount(picked, minlength=5).double() / 400
    assert (drawn - counts / counts.sum()).abs().max() < 0.1
    assert G(z[:4]).shape == (4, 1, 16, 16)
    D = family.build(
        cfg, load_dataset("digits", image_size=16), device=torch.device("cpu"), latest=None, emit=lambda *_: None
    ).D
    assert D.embed is not None and D.embed.shape[0] == 5  # projection on the clusters


def test_clusters_within_classes_label_reals_by_class_and_cluster_and_fakes_by_class_and_latent(tmp_path):
    cfg = _cfg(model={"conditional": True, "class_clusters": 3})
    result = train(cfg, out_dir=tmp_path)
    ids = load_file(str(result.checkpoint))["data.clusters"]
    labels = load_dataset("digits", image_size=16).labels
    assert torch.equal(torch.div(ids, 3, rounding_mode="floor"), labels)  # id = class · 3 + cluster
    assert set(ids.tolist()) == set(range(30))
    G, _, _ = load_generator(result.checkpoint)
    assert G.num_classes == 10 and G.mapping.embed.shape == (30, 16)  # callers pass classes; w embeds 30 ids
    z = torch.randn(600, 16, generator=torch.Generator().manual_seed(0))
    classes = torch.full((600,), 7)
    picked = G.label_ids(z, classes)
    # Given a class, each latent gets a cluster of that class, near the class's real frequencies.
    assert torch.equal(torch.div(picked, 3, rounding_mode="floor"), classes)
    real = torch.bincount(ids[labels == 7] - 21, minlength=3).double()
    drawn = torch.bincount(picked - 21, minlength=3).double() / 600
    assert (drawn - real / real.sum()).abs().max() < 0.1
    # The mapping network embeds that id: the same as passing it, not another cluster of the class.
    assert torch.equal(G.mapping(z, classes), G.mapping(z, None, ids=picked))
    assert not torch.equal(G.mapping(z, classes), G.mapping(z, None, ids=21 + (picked - 20) % 3))
    assert G(z[:4], classes[:4]).shape == (4, 1, 16, 16)
    D = family.build(
        cfg, load_dataset("digits", image_size=16), device=torch.device("cpu"), latest=None, emit=lambda *_: None
    ).D
    assert D.embed is not None and D.embed.shape[0] == 30  # projection on the (class, cluster) ids


def test_the_runs_own_evaluation_measures_the_saved_ema_generator(tmp_path):
    """The evaluation a run reports (its curves, its best checkpoint) is of the generator its checkpoint keeps as
    G_ema: the family's sampler on that generator, with the generators seeded as every evaluation of the run seeds
    them (`seed_evaluation`, the same latents at each step), gives the reported fid_digits, so a run's value and
    `evaluate_checkpoint`'s differ by their latents alone."""
    cfg = _cfg(
        model={"clusters": 4},
        schedule={"sample_every": 100, "checkpoint_every": 100, "eval_every": 3, "eval_samples": 64},
    )
    reported: dict[str, float] = {}
    result = train(
        cfg,
        out_dir=tmp_path,
        on_event=lambda kind, d: kind == "metric" and d["step"] == 6 and reported.update({d["name"]: d["value"]}),
    )
    assert result.checkpoint is not None and "fid_digits" in reported
    evaluator = Evaluator(load_dataset("digits", image_size=16), n_samples=64, cache_dir=tmp_path / "cache")
    measured = {}
    for ema in (True, False):
        G, loaded, _ = load_generator(result.checkpoint, ema=ema)
        sample = family.sampler(
            G, loaded, SimpleNamespace(num_classes=0), device=torch.device("cpu"), autocast=contextlib.nullcontext
        )
        with torch.random.fork_rng():
            seed_evaluation(cfg.seed)
            measured[ema] = evaluator(sample)["fid_digits"]
    # (to float error: the run's generator is channels-last in memory, the loaded one is not)
    assert measured[True] == pytest.approx(reported["fid_digits"], rel=1e-6)
    assert measured[False] != pytest.approx(reported["fid_digits"], rel=1e-3)  # the raw G, six steps in


def test_the_learning_rate_ramp_down_falls_along_half_a_cosine_over_the_last_share(tmp_path):
    assert [lr_scale("constant", done, 0.2) for done in (0.0, 0.8, 0.9)] == pytest.approx([1.0, 1.0, 0.5])
    assert lr_scale("constant", 0.95, 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_scale("linear", 0.9, 0.2) == pytest.approx(0.1 * 0.5)  # on top of train.lr_schedule
    assert lr_scale("constant", 0.99, 0.0) == 1.0  # 0: off, the default
    cfg = _cfg(train={"lr_rampdown": 0.5})
    rates: dict[int, float] = {}
    train(
        cfg,
        out_dir=tmp_path,
        on_event=lambda kind, d: kind == "stats" and rates.update({d["step"]: d["values"]["lr_g"]}),
    )
    # The rates start at the optimizers' own (lazy regularization scales them) and end on the ramp.
    assert rates[6] / rates[1] == pytest.approx(lr_scale("constant", 5 / 6, 0.5)) and 0 < rates[6] < rates[1]


def test_stylegan2_trains_in_fp32_on_a_cpu_unless_asked_otherwise():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu, arch="stylegan2") == "fp32"
    assert pick_precision("bf16", cpu, arch="stylegan2") == "bf16"  # a chosen precision is kept


def test_the_ema_half_life_sets_the_decay():
    cfg = _cfg()
    assert cfg.train.ema is None and cfg.train.ema_kimg == 10.0
    assert cfg.train.ema_decay == pytest.approx(0.5 ** (8 / 10_000))
    assert family_of("stylegan2") is family


def test_api_defaults_on_digits():
    cfg = RunConfig.model_validate({"dataset": "digits", "model": {"arch": "stylegan2"}})
    m, loss, t = cfg.model, cfg.loss, cfg.train
    assert (m.image_size, m.width, m.clusters, m.spectral_norm, m.mapping_layers, m.mixing_prob, m.mapping_lr_mul) == (
        16,
        16,
        100,
        False,
        2,
        0.9,
        0.001,
    )
    assert (loss.r1_every, loss.pl_weight, loss.pl_every, loss.diversity, loss.diversity_cap) == (16, 2.0, 4, 1.0, 0.2)
    assert loss.r1_gamma == 0.1  # measured on digits, in place of StyleGAN2-ADA's rule (0.0032 at this batch)
    assert (t.steps, t.batch_size, t.lr_g, t.lr_d, t.beta1, t.beta2, t.ema, t.ema_kimg) == (
        22000,
        16,
        0.00125,
        0.00125,
        0.0,
        0.99,
        None,
        10.0,
    )
    # A conditional run trades the default clusters for 10 within each class and keeps the recipe's steps; chosen
    # fields win over digits' own.
    cond = RunConfig.model_validate({"dataset": "digits", "model": {"arch": "stylegan2", "conditional": True}})
    assert (cond.model.clusters, cond.model.class_clusters, cond.train.steps, cond.train.batch_size) == (
        0,
        10,
        10000,
        32,
    )
    assert cond.loss.diversity == 0  # measured on the unconditional run alone
    assert cond.model.mapping_lr_mul == 0.01  # so was the slower mapping network
    assert cond.loss.r1_gamma == pytest.approx(0.0002 * 16 * 16 / 32)  # and R1's weight: the rule, by the batch
    # The term stays unless turned off, and gives way to nothing else a stylegan2 run on digits may choose.
    off = {"dataset": "digits", "model": {"arch": "stylegan2"}, "loss": {"diversity": 0}}
    assert RunConfig.model_validate(off).loss.diversity == 0
    no_clusters = {"dataset": "digits", "model": {"arch": "stylegan2", "clusters": 0}}
    assert RunConfig.model_validate(no_clusters).loss.diversity == 1.0
    plain = {"dataset": "digits", "model": {"arch": "stylegan2", "conditional": True, "class_clusters": 0}}
    assert RunConfig.model_validate(plain).model.class_clusters == 0
    assert RunConfig.model_validate({"dataset": "digits", "model": {"conditional": True}}).model.class_clusters == 0
    own = RunConfig.model_validate(
        {
            "dataset": "digits",
            "model": {"arch": "stylegan2", "clusters": 30, "mapping_lr_mul": 0.01},
            "train": {"steps": 500},
        }
    )
    assert (own.model.clusters, own.model.mapping_lr_mul, own.train.steps) == (30, 0.01, 500)
    # stacked-digits keeps its 50 clusters per channel under the recipe's steps; a chosen k stays per channel, and
    # a conditional run or a choice of no clusters drops the cluster per channel.
    stacked = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"arch": "stylegan2"}})
    assert (stacked.model.clusters, stacked.model.cluster_channels, stacked.train.steps) == (50, True, 10000)
    assert stacked.model.mapping_lr_mul == 0.01
    assert stacked.loss.r1_gamma == pytest.approx(0.0002 * stacked.model.image_size**2 / 32)  # the rule
    chosen_k = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"arch": "stylegan2", "clusters": 20}})
    assert (chosen_k.model.clusters, chosen_k.model.cluster_channels) == (20, True)
    none = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"arch": "stylegan2", "clusters": 0}})
    assert (none.model.clusters, none.model.cluster_channels) == (0, False)
    assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg  # as checkpoints and the API store it
    chosen = RunConfig.model_validate({"dataset": "digits", "model": {"arch": "stylegan2"}, "loss": {"r1_gamma": 3}})
    assert chosen.loss.r1_gamma == 3
    # Spectral norm in D is an option beside R1 (off by default above), kept as chosen.
    sn = RunConfig.model_validate({"dataset": "digits", "model": {"arch": "stylegan2", "spectral_norm": True}})
    assert sn.model.spectral_norm and sn.loss.r1_gamma == cfg.loss.r1_gamma
    # A chosen EMA decay replaces the default half-life.
    assert RunConfig.model_validate({"dataset": "digits", "model": {"arch": "stylegan2"}, "train": {"ema": 0.99}})


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"model": {"arch": "stylegan2", "image_size": 8}}, "model.image_size", id="size"),
        pytest.param({"model": {"arch": "stylegan2", "pack": 2}}, "model.pack", id="pack"),
        pytest.param({"model": {"arch": "stylegan2", "d_conditioning": "acgan"}}, "model.d_conditioning", id="acgan"),
        pytest.param({"model": {"arch": "stylegan2"}, "loss": {"kind": "hinge"}}, "loss.kind", id="hinge"),
        pytest.param({"model": {"arch": "stylegan2"}, "preset": "wgan-gp"}, "loss.kind", id="preset"),
        pytest.param({"model": {"arch": "stylegan2"}, "train": {"n_critic": 2}}, "train.n_critic", id="n-critic"),
        pytest.param({"model": {"arch": "stylegan2"}, "train": {"compile": True}}, "train.compile", id="compile"),
        pytest.param({"model": {"arch": "stylegan2"}, "loss": {"top_k": 0.5}}, "loss.top_k", id="top-k"),
        pytest.param({"model": {"arch": "stylegan2"}, "loss": {"mode_seeking": 1.0}}, "loss.mode_seeking", id="ms"),
        pytest.param(
            {"model": {"arch": "stylegan2"}, "loss": {"diversity": 0, "diversity_cap": 0.5}},
            "loss.diversity_cap",
            id="cap-alone",
        ),
        pytest.param({"loss": {"diversity": 1.0}}, "loss.diversity", id="dcgan-diversity"),
        pytest.param({"model": {"arch": "dcgan", "mixing_prob": 0.5}}, "model.mixing_prob", id="dcgan-mixing"),
        pytest.param({"loss": {"pl_weight": 1.0}}, "loss.pl_weight", id="dcgan-pl"),
        pytest.param({"train": {"ema": 0.9, "ema_kimg": 5}}, "train.ema_kimg", id="two-emas"),
        pytest.param(
            {"model": {"arch": "stylegan2"}, "train": {"augment": "ada", "diffaugment": "color"}},
            "train.augment",
            id="ada-and-diffaugment",
        ),
        pytest.param({"model": {"arch": "stylegan2"}, "train": {"ada_target": 0.5}}, "train.ada_target", id="target"),
        pytest.param({"model": {"arch": "stylegan2", "mixing_prob": 1.5}}, "mixing_prob", id="mixing-range"),
        pytest.param({"model": {"arch": "dcgan", "mapping_lr_mul": 0.1}}, "model.mapping_lr_mul", id="dcgan-map-lr"),
        pytest.param({"model": {"arch": "stylegan2", "mapping_lr_mul": 0}}, "mapping_lr_mul", id="map-lr-range"),
        pytest.param({"model": {"arch": "stylegan2", "class_clusters": 4}}, "model.class_clusters", id="cc-uncond"),
        pytest.param(
            {"model": {"arch": "stylegan2", "conditional": True, "class_clusters": 1}},
            "model.class_clusters",
            id="cc-one",
        ),
        pytest.param(
            {"model": {"arch": "dcgan", "conditional": True, "class_clusters": 4}},
            "model.class_clusters",
            id="cc-dcgan",
        ),
        pytest.param(
            {"model": {"arch": "stylegan2", "conditional": True, "class_clusters": 200}},
            "model.class_clusters",
            id="cc-too-many",
        ),
    ],
)
def test_impossible_configs_name_their_field(body: dict, field: str):
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate({"dataset": "digits", **body})
    assert field in str(info.value)


def test_points_are_refused():
    with pytest.raises(ValidationError, match=r"model\.arch"):
        RunConfig.model_validate({"dataset": "ring8", "model": {"arch": "stylegan2"}})
