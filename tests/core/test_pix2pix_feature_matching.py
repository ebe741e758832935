"""pix2pix's feature-matching term (pix2pixHD's): the PatchGAN's hidden activations, the loss on them, G's loss with
it through a few steps of core.train.train, exact resume, and the config's refusal outside pix2pix."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from core.config import RunConfig
from core.families.pix2pix import feature_matching
from core.networks_translation import PatchDiscriminator
from tests.utils.training import assert_resume_matches, run_events

TINY = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32"},
}


def _cfg(loss: dict, **over: dict) -> RunConfig:
    return RunConfig.model_validate(
        TINY | {"loss": loss, "train": TINY["train"] | over.get("train", {}), "schedule": over.get("schedule", {})}
    )


@pytest.mark.parametrize(("layers", "sides"), [(1, [16, 15]), (2, [16, 8, 7])])
def test_the_patchgan_hidden_layers_lead_to_its_logits(layers, sides):
    torch.manual_seed(0)
    D = PatchDiscriminator(in_channels=2, layers=layers, width=4).eval()
    a, b = torch.randn(3, 1, 32, 32), torch.randn(3, 1, 32, 32)
    hidden = D.hidden(a, b)
    assert [h.shape[-1] for h in hidden] == sides and all(h.shape[0] == 3 for h in hidden)
    torch.testing.assert_close(D.net[-1](hidden[-1]), D(a, b))


def test_feature_matching_is_zero_on_the_target_and_moves_g_alone():
    torch.manual_seed(0)
    D = PatchDiscriminator(in_channels=2, layers=1, width=4).requires_grad_(False)
    source, target = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    assert float(feature_matching(D, source, fake=target, target=target)) == 0.0
    fake = (target + 0.5 * torch.randn_like(target)).requires_grad_(True)
    fm = feature_matching(D, source, fake=fake, target=target)
    assert float(fm.detach()) > 0
    fm.backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert all(p.grad is None for p in D.parameters())


def test_g_loss_adds_the_weighed_feature_matching_to_l1(tmp_path):
    cfg = _cfg({"adversarial_weight": 0.0, "feature_matching": 5.0}, train={"steps": 2})
    stats = [d["values"] for kind, d in run_events(tmp_path, cfg) if kind == "stats"]
    last = stats[-1]
    assert last["feature_matching"] > 0
    assert last["loss_g"] == pytest.approx(100.0 * last["loss_g_l1"] + 5.0 * last["feature_matching"], rel=1e-5)


def test_pix2pix_with_feature_matching_resumes_bit_for_bit(tmp_path):
    n, k = 6, 3
    cfg = _cfg(
        {"adversarial_weight": 0.1, "feature_matching": 10.0},
        train={"steps": n},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    straight, _, rest = assert_resume_matches(tmp_path, cfg, n, k)
    stats = [d["values"] for kind, d in straight if kind == "stats"]
    assert stats and "feature_matching" in stats[-1]
    metrics_a = {(d["step"], d["name"]): d["value"] for kind, d in straight if kind == "metric"}
    metrics_b = {(d["step"], d["name"]): d["value"] for kind, d in rest if kind == "metric"}
    assert metrics_b[(n, "l1")] == metrics_a[(n, "l1")]


def test_feature_matching_is_refused_on_cyclegan_with_why():
    with pytest.raises(ValidationError, match=r"loss\.feature_matching: cyclegan matches no discriminator features"):
        RunConfig.model_validate({"dataset": "digits-printed", "loss": {"feature_matching": 1.0}})
    assert RunConfig.model_validate(
        {"dataset": "digits-edges", "loss": {"feature_matching": 1.0}}
    ).loss.feature_matching
