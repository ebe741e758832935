"""CycleGAN through core: the unpaired digits-printed data, the ResNet generator, the history pool, the config's
refusals, a few steps through core.train.train with its grid, exact resume, and no generations from it."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from core import checkpoint
from core.config import RunConfig
from core.datasets import load_dataset
from core.families.cyclegan import ImagePool
from core.networks_translation import PatchDiscriminator, ResnetGenerator, resnet_blocks
from core.unpaired import UnpairedDataset, printed_digits
from tests.utils.training import assert_resume_matches, checkpoint_tensors, run_events

TINY = {
    "dataset": "digits-printed",
    "model": {"width": 4, "res_blocks": 1},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32", "pool_size": 3},
}


def _cfg(**over: dict) -> RunConfig:
    body = {key: (TINY[key] | over.get(key, {})) if isinstance(TINY[key], dict) else TINY[key] for key in TINY}
    return RunConfig.model_validate(body | {k: v for k, v in over.items() if k not in body})


def test_printed_digits_are_white_on_black_balanced_and_fixed_by_their_seed():
    x, labels = printed_digits(40, seed=3)
    assert x.shape == (40, 1, 32, 32) and x.min() == -1 and x.max() > 0.9
    assert torch.bincount(labels, minlength=10).tolist() == [4] * 10
    assert (x[:, 0, 0, :] == -1).all() and (x[:, 0, :, 0] == -1).all()  # black borders
    again, again_labels = printed_digits(40, seed=3)
    assert torch.equal(x, again) and torch.equal(labels, again_labels)


def test_digits_printed_holds_two_domains_and_held_out_images_of_each():
    ds = load_dataset("digits-printed", image_size=32)
    assert isinstance(ds, UnpairedDataset)
    assert (len(ds), ds.b_size, ds.channels, ds.b_channels) == (1437, 2000, 1, 1)
    assert ds.held_a.shape == (360, 1, 32, 32) and ds.held_b.shape == (500, 1, 32, 32)
    assert ds.held_a_labels.shape == (360,) and ds.held_b_labels.shape == (500,)
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


def test_digits_printed_defaults_are_cyclegan_as_the_paper_trains_it():
    cfg = RunConfig.model_validate({"dataset": "digits-printed"})
    assert (cfg.model.arch, cfg.loss.kind, cfg.loss.cycle_weight, cfg.loss.identity_weight) == (
        "cyclegan",
        "lsgan",
        10.0,
        0.5,
    )
    assert (cfg.train.pool_size, cfg.train.lr_schedule, cfg.train.beta1) == (50, "hold-then-linear", 0.5)
    assert cfg.schedule.eval_every > 0


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
