"""pix2pix through core: the paired digits-edges data, the U-Net and PatchGAN, the config's refusals, a few steps
through core.train.train with its grid and metrics, exact resume, and no generations from its checkpoints."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from core import checkpoint
from core.config import RunConfig
from core.datasets import DataOrder, load_dataset
from core.families import family_of
from core.networks_translation import PatchDiscriminator, UNetGenerator, patch_layers
from core.paired import PairedDataset, edge_map, sobel_magnitude
from core.train import train
from tests.utils.training import assert_resume_matches, checkpoint_tensors, run_events

TINY = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32"},
}


def _cfg(**over: dict) -> RunConfig:
    body = {key: (TINY[key] | over.get(key, {})) if isinstance(TINY[key], dict) else TINY[key] for key in TINY}
    return RunConfig.model_validate(body | {k: v for k, v in over.items() if k not in body})


def test_digits_edges_pairs_each_digit_with_its_edges_and_holds_out_the_classifier_split():
    ds = load_dataset("digits-edges", image_size=32)
    assert isinstance(ds, PairedDataset)
    assert (len(ds), ds.channels, ds.source_channels, ds.num_classes) == (1437, 1, 1, 10)
    assert ds.held_source.shape == ds.held_target.shape == (360, 1, 32, 32) and ds.held_labels.shape == (360,)
    indices = torch.tensor([0, 5, 7])
    target, labels = ds.batch(indices)
    source = ds.inputs(indices)
    assert target.shape == source.shape == (3, 1, 32, 32) and labels is not None
    assert torch.equal(source, edge_map(target))
    assert source.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0, 1.0] and source.min() >= -1
    # The held-out digits are not among the training ones.
    train_flat, held_flat = ds.store.flatten(1), ds.held_target.flatten(1)
    assert not any(bool((train_flat == h).all(1).any()) for h in held_flat[:20])
    assert ds.info() | {} == {
        "kind": "images",
        "channels": 1,
        "image_size": 32,
        "num_classes": 10,
        "pairing": "paired",
        "source_channels": 1,
    }
    moved = ds.to("cpu")
    assert isinstance(moved, PairedDataset) and torch.equal(moved.held_source, ds.held_source)


def test_sobel_magnitude_is_zero_on_flat_images_and_borders():
    flat = torch.full((2, 1, 8, 8), -1.0)
    assert sobel_magnitude(flat).abs().max() == 0
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    mag = sobel_magnitude(step)[0, 0]
    assert mag[:, [0, 1, 2, 5, 6, 7]].abs().max() == 0 and mag[:, 3:5].min() == 4.0


@pytest.mark.parametrize("size", [32, 64, 256])
def test_unet_maps_inputs_to_outputs_of_the_same_size(size):
    G = UNetGenerator(in_channels=1, out_channels=3, image_size=size, width=4)
    out = G(torch.randn(2, 1, size, size))
    assert out.shape == (2, 3, size, size) and out.abs().max() <= 1
    G.eval()
    x = torch.randn(2, 1, size, size)
    assert torch.equal(G(x), G(x))  # dropout, the only noise, is off in eval mode


@pytest.mark.parametrize(("size", "layers", "patches"), [(32, 1, 14), (32, 3, 2), (256, 3, 30)])
def test_patchgan_gives_one_logit_per_patch(size, layers, patches):
    D = PatchDiscriminator(in_channels=2, layers=layers, width=4)
    assert D(torch.randn(2, 1, size, size), torch.randn(2, 1, size, size)).shape == (2, 1, patches, patches)
    assert patch_layers(size, None) == {32: 1, 256: 3}[size]


def test_digits_edges_defaults_are_pix2pix_as_the_paper_trains_it():
    cfg = RunConfig.model_validate({"dataset": "digits-edges"})
    assert (cfg.model.arch, cfg.model.image_size, cfg.loss.kind, cfg.loss.l1_weight) == (
        "pix2pix",
        32,
        "nonsaturating",
        100.0,
    )
    assert (cfg.train.lr_g, cfg.train.beta1, cfg.schedule.eval_every > 0) == (2e-4, 0.5, True)
    assert cfg.loss.adversarial_weight == 0.03  # docs/benchmarks.md: below the L1-only U-Net's L1 at 0.03
    # docs/benchmarks.md: sharper than the L1-only U-Net, its L1 still below, on more seeds than without the term
    assert (cfg.loss.sharpness_weight, cfg.loss.sharpness_start) == (5.0, 0.8)
    # docs/benchmarks.md: the EMA generator with its own statistics meets the goals on more seeds than the live one
    assert (cfg.train.ema, cfg.train.ema_batchnorm) == (0.99, "recomputed")
    live = {"dataset": "digits-edges", "train": {"ema": None, "ema_batchnorm": "copied"}}
    assert RunConfig.model_validate(live).train.ema_decay is None
    over = {"dataset": "digits-edges", "loss": {"adversarial_weight": 1.0}}
    assert RunConfig.model_validate(over).loss.adversarial_weight == 1.0
    assert RunConfig.model_validate({"dataset": "digits-edges", "loss": {"kind": "lsgan"}}).loss.kind == "lsgan"
    assert RunConfig.model_validate({"dataset": "digits-edges", "model": {"image_size": 256}}).model.image_size == 256


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"dataset": "digits", "model": {"arch": "pix2pix"}}, "model.arch", id="unpaired-builtin"),
        pytest.param({"dataset": "ds_0123456789abcdef", "model": {"arch": "pix2pix"}}, "model.arch", id="upload"),
        pytest.param({"dataset": "digits-edges", "model": {"arch": "dcgan"}}, "model.arch", id="paired-noise-arch"),
        pytest.param({"dataset": "digits-edges", "preset": "dcgan"}, "model.arch", id="noise-preset"),
        pytest.param({"dataset": "digits-edges", "model": {"conditional": True}}, "model.conditional", id="cond"),
        pytest.param({"dataset": "digits-edges", "model": {"clusters": 5}}, "model.clusters", id="clusters"),
        pytest.param({"dataset": "digits-edges", "model": {"pack": 2}}, "model.pack", id="pack"),
        pytest.param({"dataset": "digits-edges", "model": {"minibatch_std": True}}, "model.minibatch_std", id="mbstd"),
        pytest.param({"dataset": "digits-edges", "model": {"image_size": 16}}, "model.image_size", id="16px"),
        pytest.param({"dataset": "digits-edges", "model": {"image_size": 48}}, "model.image_size", id="48px"),
        pytest.param({"dataset": "digits-edges", "model": {"patch_layers": 4}}, "model.patch_layers", id="patch"),
        pytest.param({"dataset": "digits-edges", "model": {"d_depth": 2}}, "model.d_depth", id="d_depth"),
        pytest.param({"dataset": "digits-edges", "loss": {"kind": "wgan-gp"}}, "loss.kind", id="wgan-gp"),
        pytest.param({"dataset": "digits-edges", "loss": {"top_k": 0.5}}, "loss.top_k", id="top_k"),
        pytest.param({"dataset": "digits-edges", "loss": {"mode_seeking": 1.0}}, "loss.mode_seeking", id="msgan"),
        pytest.param({"dataset": "digits-edges", "train": {"n_critic": 2}}, "train.n_critic", id="n_critic"),
        pytest.param({"dataset": "digits-edges", "train": {"diffaugment": "color"}}, "train.diffaugment", id="diffaug"),
    ],
)
def test_impossible_pix2pix_configs_name_their_field(body, field):
    with pytest.raises(ValidationError, match=rf"{field}: "):
        RunConfig.model_validate(body)


def test_pix2pix_trains_a_few_steps_with_its_grid_metrics_and_checkpoint(tmp_path):
    cfg = _cfg(
        train={"steps": 4, "ema": 0.9},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    events: list[tuple[str, dict]] = []
    result = train(cfg, out_dir=tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    assert result.status == "completed" and result.step == 4
    with Image.open(tmp_path / "samples" / "00000004.png") as grid:
        size = grid.size
    assert size == (12 * 34 + 2, 4 * 34 + 2)  # 4 rows of 4 (input | output | target) at 32 px, 2 px apart
    metrics = {(d["step"], d["name"]): d["value"] for kind, d in events if kind == "metric"}
    for name in ("l1", "psnr", "ssim", "sharpness", "digit_accuracy"):
        assert (2, name) in metrics and (4, name) in metrics
    assert metrics[(4, "n_fake")] == 64
    env = [d for kind, d in events if kind == "environment"]
    assert env[0]["primary_metric"] == ["l1", "min"] and env[0]["metric_floor"]["digit_accuracy"] > 0.9
    stats = [d["values"] for kind, d in events if kind == "stats"]
    assert {"loss_d", "loss_g", "loss_g_adv", "loss_g_l1", "d_real", "d_fake"} <= stats[0].keys()
    tensors = checkpoint_tensors(tmp_path, 4)
    assert any(k.startswith("G.down.") for k in tensors) and any(k.startswith("G_ema.up.") for k in tensors)
    assert any(k.startswith("D.net.") for k in tensors) and any(k.startswith("opt_d.state.") for k in tensors)


def test_a_pix2pix_checkpoint_makes_no_generations(tmp_path):
    cfg = _cfg(train={"steps": 1}, schedule={"checkpoint_every": 1})
    train(cfg, out_dir=tmp_path)
    with pytest.raises(ValueError, match="translates input images and does not sample from latents"):
        checkpoint.load_generator(tmp_path / "checkpoints" / "00000001.safetensors")


def test_adversarial_weight_zero_trains_the_unet_on_l1_alone(tmp_path):
    cfg = _cfg(train={"steps": 2}, loss={"adversarial_weight": 0.0}, schedule={"checkpoint_every": 100})
    events = run_events(tmp_path, cfg)
    stats = [d["values"] for kind, d in events if kind == "stats"]
    assert stats[-1]["loss_g"] == pytest.approx(100.0 * stats[-1]["loss_g_l1"], rel=1e-6)
    assert stats[-1]["loss_d"] > 0


def test_the_pix2pix_family_refuses_unpaired_data():
    cfg = _cfg()
    digits = load_dataset("digits", image_size=32)
    with pytest.raises(ValueError, match=r"model\.arch: pix2pix needs a paired dataset"):
        family_of("pix2pix").build(cfg, digits, device=torch.device("cpu"), latest=None, emit=lambda k, d: None)


N, K = 6, 3


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({"train": {"ema": 0.9, "lr_schedule": "linear"}}, id="nonsaturating-ema-linear"),
        pytest.param(
            {"loss": {"kind": "lsgan", "instance_noise": 0.1, "r1_gamma": 1.0}, "model": {"spectral_norm": True}},
            id="lsgan-sn-noise-r1",
        ),
    ],
)
def test_pix2pix_resumes_bit_for_bit(tmp_path, over: dict):
    over = over | {"train": {"steps": N} | over.get("train", {})}
    cfg = _cfg(**over, schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64})
    straight, first, rest = assert_resume_matches(tmp_path, cfg, N, K)
    assert [d["step"] for k, d in first if k == "checkpoint"][-1] == K  # after the best evaluation's own
    metrics_a = {(d["step"], d["name"]): d["value"] for k, d in straight if k == "metric"}
    metrics_b = {(d["step"], d["name"]): d["value"] for k, d in rest if k == "metric"}
    assert metrics_b[(N, "l1")] == metrics_a[(N, "l1")]


def test_the_data_order_of_a_paired_run_covers_only_the_training_pairs():
    ds = load_dataset("digits-edges", image_size=32)
    order = DataOrder(len(ds), seed=0)
    seen = torch.cat([order.next(100) for _ in range(15)])
    assert seen.max() < 1437 and len(set(seen[:1437].tolist())) == 1437
