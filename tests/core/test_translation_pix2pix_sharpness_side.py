"""pix2pix's one-sided sharpness term (`loss.sharpness_one_sided`): only a batch blurrier than its targets counts in
G's loss; the field gives way to a run without the term where it comes from a default, and is refused where chosen
there or on another architecture."""

from __future__ import annotations

import contextlib

import pytest
import torch
from pydantic import ValidationError

from core.config import RunConfig
from core.families import Step, pix2pix
from core.families.pix2pix import sharpness_penalty
from core.paired import digits_edges

TINY = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32"},
}


def test_the_one_sided_penalty_counts_a_ratio_below_1_alone():
    gaps = torch.tensor([-0.2, -0.01, 0.0, 0.01, 0.3], requires_grad=True)
    torch.testing.assert_close(sharpness_penalty(gaps, one_sided=False), gaps.detach().square())
    one = sharpness_penalty(gaps, one_sided=True)
    torch.testing.assert_close(one, torch.tensor([0.04, 1e-4, 0.0, 0.0, 0.0]))
    one.sum().backward()
    assert gaps.grad is not None
    torch.testing.assert_close(gaps.grad, torch.tensor([-0.4, -0.02, 0.0, 0.0, 0.0]))  # no pull on sharp batches


@pytest.mark.parametrize(("fixed_gap", "counts"), [(-0.1, True), (0.1, False)])
def test_g_loss_takes_the_one_sided_term(monkeypatch, fixed_gap, counts):
    cfg = RunConfig.model_validate(
        TINY
        | {
            "loss": {
                "adversarial_weight": 0.0,
                "sharpness_weight": 50.0,
                "sharpness_start": 0.0,
                "sharpness_one_sided": True,
            }
        }
    )
    assert cfg.loss.sharpness_one_sided
    data = digits_edges(cfg.model.image_size)
    device = torch.device("cpu")
    torch.manual_seed(0)
    m = pix2pix.build(cfg, data, device=device, latest=None, emit=lambda kind, data: None)
    indices = torch.arange(cfg.train.batch_size)

    def gap_of(fake, target):  # a gap of fixed value that still carries G's graph
        return fake.float().mean() * 0.0 + fixed_gap

    monkeypatch.setattr(pix2pix, "sharpness_gap", gap_of)
    at = Step(1, 0.0, True, device, next_batch=lambda: (indices, *data.batch(indices)), autocast=contextlib.nullcontext)
    _, stats = pix2pix.train_step(m, cfg, at)
    assert float(stats["sharpness_gap"]) == pytest.approx(fixed_gap)  # the stat keeps the gap's sign
    term = 50.0 * fixed_gap**2 if counts else 0.0
    assert float(stats["loss_g"]) == pytest.approx(100.0 * float(stats["loss_g_l1"]) + term, rel=1e-6)


def test_digits_edges_takes_the_term_one_sided_and_the_l1_only_unet_drops_it():
    cfg = RunConfig.model_validate({"dataset": "digits-edges"})
    assert (cfg.loss.sharpness_weight, cfg.loss.sharpness_start, cfg.loss.sharpness_one_sided) == (5.0, 0.8, True)
    l1_only = RunConfig.model_validate(
        {"dataset": "digits-edges", "loss": {"adversarial_weight": 0.0, "sharpness_weight": 0.0}}
    )
    assert not l1_only.loss.sharpness_one_sided


def test_the_one_sided_field_gives_way_to_a_run_without_the_term():
    # Chosen beside the term it shapes, it is kept; a run whose term is off (the L1-only U-Net) keeps its default.
    on = RunConfig.model_validate({"dataset": "digits-edges", "loss": {"sharpness_one_sided": True}})
    assert on.loss.sharpness_one_sided and on.loss.sharpness_weight > 0
    off = RunConfig.model_validate({"dataset": "digits-edges", "loss": {"sharpness_weight": 0.0}})
    assert not off.loss.sharpness_one_sided


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            {"dataset": "digits-edges", "loss": {"sharpness_weight": 0.0, "sharpness_one_sided": True}},
            r"loss\.sharpness_one_sided: it shapes loss\.sharpness_weight's term",
        ),
        (
            {"dataset": "digits-printed", "loss": {"sharpness_one_sided": True}},
            r"loss\.sharpness_one_sided",
        ),
    ],
)
def test_the_one_sided_field_refuses_what_cannot_train(body, match):
    with pytest.raises(ValidationError, match=match):
        RunConfig.model_validate(body)
