"""pix2pix's EMA generator with its own BatchNorm statistics (`train.ema_batchnorm` recomputed): what
`recompute_batchnorm` sets, the checkpoint's `G_ema` holding them, exact resume, and the config's refusals."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from pydantic import ValidationError

from core.config import RunConfig
from core.families import pix2pix
from core.families.pix2pix import recompute_batchnorm
from core.paired import digits_edges
from tests.utils.training import assert_resume_matches, checkpoint_tensors

TINY = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "loss": {"sharpness_weight": 0.0},
    "train": {"batch_size": 4, "device": "cpu", "precision": "fp32", "ema": 0.9, "ema_batchnorm": "recomputed"},
}


def _cfg(**over: dict) -> RunConfig:
    return RunConfig.model_validate(
        TINY | {"train": TINY["train"] | over.get("train", {}), "schedule": over.get("schedule", {})}
    )


def test_the_recomputed_statistics_are_the_mean_of_the_batches_with_dropout_off():
    cfg = _cfg()
    data = digits_edges(image_size=32)
    torch.manual_seed(0)
    m = pix2pix.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda *_: None)
    G = m.G
    first = G.down[1][1]  # the first BatchNorm: its input does not depend on any statistics
    batches = []
    hook = first.register_forward_hook(lambda _mod, inputs, _out: batches.append(inputs[0].detach().clone()))
    rng = torch.get_rng_state()
    recompute_batchnorm(G, m, cfg, autocast=contextlib.nullcontext)
    hook.remove()
    assert torch.equal(torch.get_rng_state(), rng)  # dropout off: no random numbers drawn
    assert len(batches) == len(data.source) // 4 and not G.training and first.momentum == 0.1
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    variances = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(first.running_mean, means, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(first.running_var, variances, rtol=1e-4, atol=1e-6)
    # Deterministic: a second pass over the same weights sets the same statistics everywhere.
    before = {k: v.clone() for k, v in G.state_dict().items()}
    recompute_batchnorm(G, m, cfg, autocast=contextlib.nullcontext)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_uploaded_pairs_stored_as_bytes_are_read_as_training_reads_them():
    """An upload keeps its training inputs as uint8: the statistics are those of the same inputs in [-1, 1]."""
    cfg = _cfg()
    data = digits_edges(image_size=32)
    assert data.source is not None
    as_bytes = ((data.source + 1) * 127.5).round().to(torch.uint8)
    statistics = []
    for source in (as_bytes, as_bytes.float() / 127.5 - 1.0):
        torch.manual_seed(0)
        m = pix2pix.build(
            cfg, dataclasses.replace(data, source=source), device=torch.device("cpu"), latest=None, emit=lambda *_: None
        )
        recompute_batchnorm(m.G, m, cfg, autocast=contextlib.nullcontext)
        statistics.append({key: t for key, t in m.G.state_dict().items() if "running" in key})
    assert statistics[0].keys() == statistics[1].keys() and statistics[0]
    assert all(torch.equal(statistics[0][key], statistics[1][key]) for key in statistics[0])


def test_the_checkpoint_holds_the_ema_generator_with_its_own_statistics_and_resumes_bit_for_bit(tmp_path):
    n, k = 4, 2
    cfg = _cfg(
        train={"steps": n},
        schedule={"sample_every": 2, "checkpoint_every": 100, "eval_every": 2, "eval_samples": 64},
    )
    assert_resume_matches(tmp_path, cfg, n, k)
    tensors = checkpoint_tensors(tmp_path / "a", n)
    data = digits_edges(image_size=32)
    m = pix2pix.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda *_: None)
    G = m.G
    G.load_state_dict({key[len("G_ema.") :]: t for key, t in tensors.items() if key.startswith("G_ema.")})
    stored = {key: t.clone() for key, t in G.state_dict().items()}
    recompute_batchnorm(G, m, cfg, autocast=contextlib.nullcontext)
    assert all(torch.equal(stored[key], t) for key, t in G.state_dict().items())
    name = "down.1.1.running_var"
    assert not torch.equal(tensors[f"G_ema.{name}"], tensors[f"G.{name}"])  # not the live G's, copied


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            {"dataset": "digits-edges", "train": {"ema": None, "ema_batchnorm": "recomputed"}},
            r"train\.ema_batchnorm: recomputed .* set train\.ema or train\.ema_kimg",
        ),
        (
            {"dataset": "digits", "train": {"ema": 0.99, "ema_batchnorm": "recomputed"}},
            r"train\.ema_batchnorm: only the pix2pix",
        ),
    ],
)
def test_the_recomputed_statistics_refuse_what_they_cannot_set(body, match):
    with pytest.raises(ValidationError, match=match):
        RunConfig.model_validate(body)
