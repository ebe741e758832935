"""pix2pix's sharpness options: a PatchGAN that also sees the Sobel gradient magnitude of the image it judges
(`model.d_sobel`), the adversarial term brought in after a share of the run on L1 alone, optionally on a linear
ramp (`loss.adversarial_start`, `loss.adversarial_ramp`), and the L1 distance of the Sobel derivatives
(`loss.edge_weight`), the squared distance from 1 of the batch's sharpness ratio (`loss.sharpness_weight`, on G in
eval mode, from `loss.sharpness_start` on); G's loss through a few steps of core.train.train, exact resume, and the
config's refusals."""

from __future__ import annotations

import contextlib

import pytest
import torch
from pydantic import ValidationError

from core.config import RunConfig
from core.families import Step, eval_mode, pix2pix
from core.families.pix2pix import (
    SOBEL_SCALE,
    adversarial_schedule,
    edge_loss,
    feature_matching,
    judged,
    late_share,
    sharpness_gap,
    sobel_channel,
)
from core.networks_translation import PatchDiscriminator
from core.paired import digits_edges, sobel_magnitude
from tests.utils.training import assert_resume_matches, run_events

TINY = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32"},
}


def _cfg(loss: dict, model: dict | None = None, **over: dict) -> RunConfig:
    return RunConfig.model_validate(
        TINY
        | {
            "model": TINY["model"] | (model or {}),
            # not digits-edges' late, one-sided term: the two-sided term, from the first step
            "loss": {"sharpness_weight": 0.0, "sharpness_start": 0.0, "sharpness_one_sided": False} | loss,
            "train": TINY["train"] | over.get("train", {}),
            "schedule": over.get("schedule", {}),
        }
    )


def test_a_sobel_patchgan_judges_the_input_the_image_and_its_gradient_magnitude():
    torch.manual_seed(0)
    D = PatchDiscriminator(in_channels=3, layers=1, width=4).eval()
    source, image = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(sobel_channel(image), sobel_magnitude(image) * SOBEL_SCALE, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(judged(D, source, True, image), D(source, image, sobel_channel(image)))
    plain = PatchDiscriminator(in_channels=2, layers=1, width=4).eval()
    torch.testing.assert_close(judged(plain, source, False, image), plain(source, image))
    # A step from -1 to 1 reads about 2 in the channel D sees.
    step = torch.cat([-torch.ones(1, 1, 8, 4), torch.ones(1, 1, 8, 4)], dim=3)
    assert float(sobel_channel(step).max()) == pytest.approx(2.0)
    # G's gradient through the channel is finite on a flat image (the magnitude's square root is not at 0).
    flat = torch.zeros(1, 1, 8, 8, requires_grad=True)
    sobel_channel(flat).sum().backward()
    assert flat.grad is not None and bool(torch.isfinite(flat.grad).all())
    # Feature matching compares the same three-part pairs, and is zero on the target.
    D.requires_grad_(False)
    assert float(feature_matching(D, source, fake=image, target=image, sobel=True)) == 0.0


def test_the_adversarial_schedule_waits_then_ramps():
    cfg = _cfg({"adversarial_start": 0.5, "adversarial_ramp": 0.25})
    shares = [adversarial_schedule(cfg, done) for done in (0.0, 0.49, 0.5, 0.625, 0.75, 0.99)]
    assert shares == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    assert adversarial_schedule(_cfg({"adversarial_start": 0.5}), 0.5) == 1.0
    assert adversarial_schedule(_cfg({}), 0.0) == 1.0


def test_g_trains_on_l1_alone_before_the_adversarial_start(tmp_path):
    cfg = _cfg(
        {"adversarial_weight": 1.0, "adversarial_start": 0.5},
        {"d_sobel": True},
        train={"steps": 20},
        schedule={"checkpoint_every": 100, "sample_every": 100},
    )
    stats = {d["step"]: d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"}
    assert stats[1]["adversarial_weight"] == 0.0 and stats[10]["adversarial_weight"] == 0.0  # done 0, 0.45
    assert stats[10]["loss_g"] == pytest.approx(100.0 * stats[10]["loss_g_l1"], rel=1e-6)
    assert stats[1]["loss_d"] > 0  # D trains from the first step
    assert stats[20]["adversarial_weight"] == 1.0
    assert stats[20]["loss_g"] == pytest.approx(100.0 * stats[20]["loss_g_l1"] + stats[20]["loss_g_adv"], rel=1e-5)


def test_the_edge_loss_is_zero_on_the_target_and_counts_in_g_loss(tmp_path):
    target = torch.randn(2, 1, 16, 16)
    assert float(edge_loss(target, target)) == 0.0
    assert float(edge_loss(target + 1.0, target)) == pytest.approx(0.0, abs=1e-5)  # a shift keeps the edges
    assert float(edge_loss(target * 2, target)) > 0
    cfg = _cfg({"adversarial_weight": 0.0, "edge_weight": 20.0}, train={"steps": 2})
    last = [d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"][-1]
    assert last["loss_g_edge"] > 0
    assert last["loss_g"] == pytest.approx(100.0 * last["loss_g_l1"] + 20.0 * last["loss_g_edge"], rel=1e-5)


def test_the_sharpness_gap_is_the_batch_ratio_less_1_and_its_square_counts_in_g_loss(tmp_path):
    torch.manual_seed(0)
    target = torch.randn(4, 1, 16, 16).clamp(-1, 1)
    assert float(sharpness_gap(target, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(sharpness_gap(target + 0.5, target)) == pytest.approx(0.0, abs=1e-4)  # a shift keeps the edges
    assert float(sharpness_gap(target * 0.8, target)) == pytest.approx(-0.2, abs=1e-4)  # edges 20 % less steep
    assert float(sharpness_gap(target * 1.1, target)) == pytest.approx(0.1, abs=1e-4)  # too steep
    # It is the metric's ratio over the batch: the same pixels moved to other places leave it unchanged.
    assert float(sharpness_gap(target.flip(0), target)) == pytest.approx(0.0, abs=1e-4)
    # Its gradient steepens a blurred output's edges: a step of descent raises the outputs' Sobel magnitude.
    fake = (0.8 * target).requires_grad_(True)
    sharpness_gap(fake, target).square().backward()
    assert fake.grad is not None
    steeper = (fake - 0.5 * fake.grad).detach()
    assert float(sobel_magnitude(steeper).mean()) > float(sobel_magnitude(fake.detach()).mean())
    cfg = _cfg({"adversarial_weight": 0.0, "sharpness_weight": 500.0}, train={"steps": 2})
    last = [d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"][-1]
    assert last["sharpness_gap"] != 0
    assert last["loss_g"] == pytest.approx(100.0 * last["loss_g_l1"] + 500.0 * last["sharpness_gap"] ** 2, rel=1e-5)


def test_the_sharpness_term_comes_in_at_its_start_and_its_pass_is_skipped_before(tmp_path, monkeypatch):
    assert [late_share(0.8, 0.0, done) for done in (0.0, 0.79, 0.8, 0.95)] == [0.0, 0.0, 1.0, 1.0]
    passes = []
    gap = pix2pix.sharpness_gap

    def counted(fake, target):
        passes.append(1)
        return gap(fake, target)

    monkeypatch.setattr(pix2pix, "sharpness_gap", counted)
    cfg = _cfg(
        {"adversarial_weight": 0.0, "sharpness_weight": 500.0, "sharpness_start": 0.5},
        train={"steps": 20},
        schedule={"checkpoint_every": 100, "sample_every": 100},
    )
    stats = {d["step"]: d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"}
    assert len(passes) == 10  # steps 11-20 (done 0.5-0.95) take the gap, steps 1-10 not
    assert "sharpness_gap" not in stats[10]  # done 0.45: L1 alone
    assert stats[10]["loss_g"] == pytest.approx(100.0 * stats[10]["loss_g_l1"], rel=1e-6)
    last = stats[20]
    assert last["sharpness_gap"] != 0
    assert last["loss_g"] == pytest.approx(100.0 * last["loss_g_l1"] + 500.0 * last["sharpness_gap"] ** 2, rel=1e-5)


def test_the_sharpness_term_is_taken_on_g_as_it_is_evaluated(monkeypatch):
    cfg = _cfg({"adversarial_weight": 0.0, "sharpness_weight": 50.0})
    data = digits_edges(cfg.model.image_size)
    device = torch.device("cpu")
    torch.manual_seed(0)
    m = pix2pix.build(cfg, data, device=device, latest=None, emit=lambda kind, data: None)
    indices = torch.arange(cfg.train.batch_size)
    source = data.inputs(indices)
    seen = []

    def gap_of(fake, target):
        # G is back in training mode here and not yet updated: its eval-mode output is what the term was given.
        assert m.G.training
        with torch.no_grad(), eval_mode(m.G):
            torch.testing.assert_close(fake, m.G(source))
            assert not torch.equal(fake, m.G.train()(source))  # the dropout pass is another output
        assert fake.requires_grad  # the term trains G
        gap = sharpness_gap(fake, target)
        seen.append(float(gap.detach()))
        return gap

    monkeypatch.setattr(pix2pix, "sharpness_gap", gap_of)
    at = Step(1, 0.0, True, device, next_batch=lambda: (indices, *data.batch(indices)), autocast=contextlib.nullcontext)
    _, stats = pix2pix.train_step(m, cfg, at)
    assert len(seen) == 1 and m.G.training
    assert float(stats["sharpness_gap"]) == seen[0]
    assert float(stats["loss_g"]) == pytest.approx(100.0 * float(stats["loss_g_l1"]) + 50.0 * seen[0] ** 2)


def test_pix2pix_with_a_sobel_patchgan_and_a_ramp_resumes_bit_for_bit(tmp_path):
    n, k = 6, 3
    cfg = _cfg(
        {
            "adversarial_weight": 0.1,
            "adversarial_start": 0.25,
            "adversarial_ramp": 0.5,
            "feature_matching": 1.0,
            "edge_weight": 20.0,
            "sharpness_weight": 10.0,
            "sharpness_start": 0.5,
        },
        {"d_sobel": True},
        train={"steps": n},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    straight, _, rest = assert_resume_matches(tmp_path, cfg, n, k)
    metrics_a = {(d["step"], d["name"]): d["value"] for kind, d in straight if kind == "metric"}
    metrics_b = {(d["step"], d["name"]): d["value"] for kind, d in rest if kind == "metric"}
    assert metrics_b[(n, "l1")] == metrics_a[(n, "l1")]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"dataset": "digits-printed", "model": {"d_sobel": True}}, r"model\.d_sobel: only the pix2pix"),
        (
            {"dataset": "digits-printed", "loss": {"adversarial_start": 0.5}},
            r"loss\.adversarial_start: only the pix2pix",
        ),
        ({"dataset": "digits", "loss": {"adversarial_ramp": 0.5}}, r"loss\.adversarial_ramp: only the pix2pix"),
        ({"dataset": "digits-printed", "loss": {"edge_weight": 1.0}}, r"loss\.edge_weight: only the pix2pix"),
        ({"dataset": "photos", "loss": {"sharpness_weight": 1.0}}, r"loss\.sharpness_weight: only the pix2pix"),
        (
            {"dataset": "digits-edges", "loss": {"adversarial_start": 0.75, "adversarial_ramp": 0.5}},
            r"loss\.adversarial_ramp: .* their sum must be at most 1",
        ),
        ({"dataset": "digits-edges", "loss": {"adversarial_start": 1.0}}, r"adversarial_start"),
        ({"dataset": "photos", "loss": {"sharpness_start": 0.5}}, r"loss\.sharpness_start: only the pix2pix"),
        ({"dataset": "digits-edges", "loss": {"sharpness_start": 1.0}}, r"sharpness_start"),
        ({"dataset": "digits-edges", "loss": {"sharpness_start": -0.1}}, r"sharpness_start"),
    ],
)
def test_the_sharpness_options_refuse_what_cannot_train(body, match):
    with pytest.raises(ValidationError, match=match):
        RunConfig.model_validate(body)
