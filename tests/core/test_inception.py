"""The FID Inception-v3: its layout against pytorch-fid's, the hash-checked loader, the features, the Inception
Score, and the Evaluator's Inception metrics. The real weights cannot be had here, so the network runs with
random weights saved in pytorch-fid's file format and the expected hash is monkeypatched to theirs."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.datasets import Dataset
from core.metrics import Evaluator
from core.metrics import inception as inc
from core.metrics.distances import feature_stats, frechet_distance
from core.metrics.inception_net import FIDInceptionV3, prepare

# --- The reference layout, written from the published sources -------------------------------------------------
# torchvision/models/inception.py (Inception3, InceptionA-E, BasicConv2d) as pytorch-fid's fid_inception_v3()
# builds it in src/pytorch_fid/inception.py: Inception3(num_classes=1008, aux_logits=False), with Mixed_5b-d,
# 6b-e, 7b, 7c swapped for FIDInceptionA/C/E_1/E_2, which subclass InceptionA/C/E and so keep their parameters.
# Each entry is one BasicConv2d: (name, in channels, out channels, kernel height, kernel width).


def _block_a(cin: int, pool_features: int) -> list[tuple[str, int, int, int, int]]:
    return [
        ("branch1x1", cin, 64, 1, 1),
        ("branch5x5_1", cin, 48, 1, 1),
        ("branch5x5_2", 48, 64, 5, 5),
        ("branch3x3dbl_1", cin, 64, 1, 1),
        ("branch3x3dbl_2", 64, 96, 3, 3),
        ("branch3x3dbl_3", 96, 96, 3, 3),
        ("branch_pool", cin, pool_features, 1, 1),
    ]


def _block_b(cin: int) -> list[tuple[str, int, int, int, int]]:
    return [
        ("branch3x3", cin, 384, 3, 3),
        ("branch3x3dbl_1", cin, 64, 1, 1),
        ("branch3x3dbl_2", 64, 96, 3, 3),
        ("branch3x3dbl_3", 96, 96, 3, 3),
    ]


def _block_c(cin: int, c7: int) -> list[tuple[str, int, int, int, int]]:
    return [
        ("branch1x1", cin, 192, 1, 1),
        ("branch7x7_1", cin, c7, 1, 1),
        ("branch7x7_2", c7, c7, 1, 7),
        ("branch7x7_3", c7, 192, 7, 1),
        ("branch7x7dbl_1", cin, c7, 1, 1),
        ("branch7x7dbl_2", c7, c7, 7, 1),
        ("branch7x7dbl_3", c7, c7, 1, 7),
        ("branch7x7dbl_4", c7, c7, 7, 1),
        ("branch7x7dbl_5", c7, 192, 1, 7),
        ("branch_pool", cin, 192, 1, 1),
    ]


def _block_d(cin: int) -> list[tuple[str, int, int, int, int]]:
    return [
        ("branch3x3_1", cin, 192, 1, 1),
        ("branch3x3_2", 192, 320, 3, 3),
        ("branch7x7x3_1", cin, 192, 1, 1),
        ("branch7x7x3_2", 192, 192, 1, 7),
        ("branch7x7x3_3", 192, 192, 7, 1),
        ("branch7x7x3_4", 192, 192, 3, 3),
    ]


def _block_e(cin: int) -> list[tuple[str, int, int, int, int]]:
    return [
        ("branch1x1", cin, 320, 1, 1),
        ("branch3x3_1", cin, 384, 1, 1),
        ("branch3x3_2a", 384, 384, 1, 3),
        ("branch3x3_2b", 384, 384, 3, 1),
        ("branch3x3dbl_1", cin, 448, 1, 1),
        ("branch3x3dbl_2", 448, 384, 3, 3),
        ("branch3x3dbl_3a", 384, 384, 1, 3),
        ("branch3x3dbl_3b", 384, 384, 3, 1),
        ("branch_pool", cin, 192, 1, 1),
    ]


REFERENCE_CONVS: list[tuple[str, int, int, int, int]] = [
    ("Conv2d_1a_3x3", 3, 32, 3, 3),
    ("Conv2d_2a_3x3", 32, 32, 3, 3),
    ("Conv2d_2b_3x3", 32, 64, 3, 3),
    ("Conv2d_3b_1x1", 64, 80, 1, 1),
    ("Conv2d_4a_3x3", 80, 192, 3, 3),
]
for _block, _convs in [
    ("Mixed_5b", _block_a(192, 32)),
    ("Mixed_5c", _block_a(256, 64)),
    ("Mixed_5d", _block_a(288, 64)),
    ("Mixed_6a", _block_b(288)),
    ("Mixed_6b", _block_c(768, 128)),
    ("Mixed_6c", _block_c(768, 160)),
    ("Mixed_6d", _block_c(768, 160)),
    ("Mixed_6e", _block_c(768, 192)),
    ("Mixed_7a", _block_d(768)),
    ("Mixed_7b", _block_e(1280)),
    ("Mixed_7c", _block_e(2048)),
]:
    REFERENCE_CONVS += [(f"{_block}.{name}", *spec) for name, *spec in _convs]  # type: ignore[misc]


def _reference_state_dict_shapes() -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = []
    for name, cin, cout, kh, kw in REFERENCE_CONVS:
        out.append((f"{name}.conv.weight", (cout, cin, kh, kw)))  # bias=False
        for buf in ("weight", "bias", "running_mean", "running_var"):
            out.append((f"{name}.bn.{buf}", (cout,)))
        out.append((f"{name}.bn.num_batches_tracked", ()))
    return [*out, ("fc.weight", (1008, 2048)), ("fc.bias", (1008,))]


# torchvision publishes num_params = 27,161,264 for inception_v3 (1,000 classes, with AuxLogits). AuxLogits holds
# conv0 (768→128, 1x1, + BN 2·128) = 98,560, conv1 (128→768, 5x5, + BN 2·768) = 2,459,136 and fc (768→1000)
# = 769,000, together 3,326,696; 1,008 classes add 8 rows to fc (8·2048 + 8 = 16,392).
TORCHVISION_NUM_PARAMS = 27_161_264
AUX_PARAMS = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
FID_INCEPTION_PARAMS = TORCHVISION_NUM_PARAMS - AUX_PARAMS + 8 * 2048 + 8


def _random_net(seed: int = 0) -> FIDInceptionV3:
    """Random weights that keep activations of order one through the 94 layers (PyTorch's default init shrinks
    them to ~1e-7), with non-trivial batch-norm statistics so that loading them is visible."""
    gen = torch.Generator().manual_seed(seed)
    net = FIDInceptionV3()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                assert m.running_mean is not None and m.running_var is not None
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return net.eval()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A random-weights state dict saved the way pytorch-fid's file is (torch.save), and its SHA-256."""
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(_random_net().state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_state_dict_has_exactly_pytorch_fids_keys_and_shapes() -> None:
    net = FIDInceptionV3()
    got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    want = _reference_state_dict_shapes()
    assert len(REFERENCE_CONVS) == 94 and len(want) == 94 * 6 + 2 == 566
    assert [k for k, _ in got] == [k for k, _ in want]  # same keys, same order
    assert got == want
    assert FID_INCEPTION_PARAMS == 23_850_960
    assert sum(p.numel() for p in net.parameters()) == FID_INCEPTION_PARAMS
    # What the table itself adds up to: conv weights, BN weight + bias, fc.
    table_params = sum(cout * cin * kh * kw + 2 * cout for _, cin, cout, kh, kw in REFERENCE_CONVS) + 1008 * 2049
    assert table_params == FID_INCEPTION_PARAMS
    # The float32 payload (parameters + BN running statistics) is 95,541,568 bytes; pytorch-fid's file is
    # 95,628,359 bytes, the rest being the pickle's framing of 566 (or 472, without num_batches_tracked) entries.
    floats = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert 4 * floats == 95_541_568 < 95_628_359
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"


def test_weights_round_trip_through_the_hash_checked_loader(
    weights_file: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, digest = weights_file
    # Not the expected hash: refused before anything unpickles the file.
    with pytest.raises(ValueError, match=r"has SHA-256 [0-9a-f]{64}, not that of pytorch-fid's pt_inception"):
        inc.load_inception(path)
    with pytest.raises(ValueError, match="is not a file"):
        inc.load_inception(tmp_path / "missing.pth")

    monkeypatch.setattr(inc, "INCEPTION_SHA256", digest)
    net, got_digest = inc.load_inception(path)
    assert got_digest == digest and not net.training
    assert all(not p.requires_grad for p in net.parameters())
    want = torch.load(path, map_location="cpu", weights_only=True)
    loaded = net.state_dict()
    assert list(loaded) == list(want)
    assert all(torch.equal(loaded[k], want[k]) for k in want)
    assert inc.check_inception_weights(path) == path
    assert "checks out" in inc.inception_status({inc.ENV_VAR: str(path)})

    # The right hash but the wrong layout: refused by the strict load, as a ValueError.
    partial = tmp_path / "partial.pth"
    torch.save({"fc.bias": want["fc.bias"], "fc.extra": torch.zeros(3)}, partial)
    monkeypatch.setattr(inc, "INCEPTION_SHA256", hashlib.sha256(partial.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match=r"(?s)does not fit ganforge's Inception-v3 layout.*Missing.*fc\.weight"):
        inc.load_inception(partial)
    # Not a state dict of tensors (read with weights_only, so nothing else is unpickled).
    odd = tmp_path / "odd.pth"
    torch.save([1, 2, 3], odd)
    monkeypatch.setattr(inc, "INCEPTION_SHA256", hashlib.sha256(odd.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match="does not hold a state dict of tensors"):
        inc.load_inception(odd)


def test_preprocessing_follows_pytorch_fid() -> None:
    gray = torch.full((2, 1, 8, 8), 0.25)
    x = prepare(gray)
    assert x.shape == (2, 3, 299, 299)
    assert torch.allclose(x, torch.full_like(x, 0.25), atol=1e-6)  # [-1, 1] → [0, 1] → resize → [-1, 1]
    ramp = torch.linspace(-1, 1, 16).expand(1, 3, 16, 16)
    y = prepare(ramp)
    assert y.abs().max() <= 1 + 1e-6 and y[0, 0, 0, 0] == pytest.approx(-1) and y[0, 0, 0, -1] == pytest.approx(1)
    rgb = prepare(torch.rand(1, 1, 5, 5) * 2 - 1)  # gray is repeated into R, G and B
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    with pytest.raises(ValueError, match="takes"):
        prepare(torch.zeros(1, 4, 8, 8))


def test_features_are_2048_d_and_finite_and_logits_1008_d() -> None:
    net = _random_net()
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        feats, logits = net.features_and_logits(images)
    assert feats.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    assert (feats >= 0).all() and feats.std() > 1e-3  # pooled ReLU outputs, not collapsed by the init
    assert not torch.allclose(feats[0], feats[1])
    # In eval mode BasicConv2d folds batch norm into the convolution: the same as conv → BN → ReLU.
    block = net.Mixed_6b.branch7x7_2  # a (1, 7) kernel with (0, 3) padding
    h = torch.randn(2, 128, 9, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(block(h), torch.relu(block.bn(block.conv(h))), rtol=1e-4, atol=1e-5)
    assert torch.allclose(logits, feats @ net.fc.weight.T + net.fc.bias, atol=1e-4)
    # The Evaluator's path: channels-last, batched, logits without the fc bias (the original IS).
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (not in torch's stubs)
    f2, unbiased = inc.inception_features(net, images, batch=2)
    assert torch.allclose(f2, feats, rtol=1e-3, atol=1e-4)
    assert torch.allclose(unbiased, logits - net.fc.bias, rtol=1e-3, atol=1e-3)


def test_inception_score_of_known_predictions() -> None:
    same = torch.zeros(100, 1008)
    same[:, 7] = 30.0  # every image confidently the same class
    mean, std = inc.inception_score(same)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    for k in (2, 10, 50):
        n = 10 * k * 2  # every split holds each of the k classes twice
        one_hot = torch.zeros(n, 1008)
        one_hot[torch.arange(n), torch.arange(n) % k] = 60.0  # p(y|x) one-hot to within e^-60
        mean, std = inc.inception_score(one_hot)
        assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(40, 1008)  # every prediction uniform: nothing is learnt from the image
    assert inc.inception_score(uniform)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 10 samples"):
        inc.inception_score(same[:9])


def test_low_rank_fid_equals_the_eigendecomposition() -> None:
    gen = torch.Generator().manual_seed(0)
    dim = 32
    real = torch.randn(24, dim, generator=gen) * torch.linspace(0.5, 2, dim)
    fake = torch.randn(20, dim, generator=gen) + 0.3
    total = real.double()
    got = inc.fid_from_features(real, total.sum(0), total.T @ total, fake)  # 20, 24 < 32: nuclear-norm form
    mu_r, s_r = feature_stats(real)
    mu_f, s_f = feature_stats(fake)
    # rel 1e-7: the eigendecomposition takes square roots of the rounding noise in the 12 zero eigenvalues.
    assert got == pytest.approx(frechet_distance(mu_r.numpy(), s_r.numpy(), mu_f.numpy(), s_f.numpy()), rel=1e-7)
    assert inc.fid_from_features(real, total.sum(0), total.T @ total, real) == pytest.approx(0.0, abs=1e-9)


def _images_dataset(n: int = 40) -> Dataset:
    gen = torch.Generator().manual_seed(3)
    store = (torch.rand(n, 3, 16, 16, generator=gen) * 255).to(torch.uint8)
    return Dataset(
        name="ds_inception_test", kind="images", store=store, labels=None, num_classes=0, channels=3, image_size=16
    )


def test_evaluator_reports_inception_metrics_only_with_valid_weights(
    weights_file: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, digest = weights_file
    monkeypatch.setenv("GANFORGE_METRICS_CACHE", str(tmp_path / "cache"))
    ds = _images_dataset()  # 40 images: 16 reference, 8 held out (the floor), 16 generated
    noise = torch.Generator().manual_seed(5)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.rand(n, 3, 16, 16, generator=noise) * 2 - 1, None

    # No file: the names are never reported and `skipped` says why.
    monkeypatch.delenv(inc.ENV_VAR, raising=False)
    plain = Evaluator(ds, n_samples=16)
    values = plain(sample)
    assert "is not set" in plain.skipped["inception_score"]
    assert not any("inception" in k for k in [*values, *plain.floor])
    # A file with the wrong hash: the same, and the reason names the hash; evaluation goes on.
    monkeypatch.setenv(inc.ENV_VAR, str(path))
    wrong = Evaluator(ds, n_samples=16)
    assert "has SHA-256" in wrong.skipped["fid_inception"] and wrong.cache_hit
    assert not any("inception" in k for k in wrong(sample))

    monkeypatch.setattr(inc, "INCEPTION_SHA256", digest)
    ev = Evaluator(ds, n_samples=16)
    assert not ev.cache_hit and ev.cache_path != plain.cache_path  # the weights' hash is part of the key
    assert not any("inception" in k for k in ev.skipped)
    assert ev.primary == ("swd", "min")
    values = ev(sample)
    for name in ("fid_inception", "kid_inception", "inception_score", "inception_score_std"):
        assert name in values and np.isfinite(values[name]), name
    assert values["fid_inception"] > 0 and values["inception_score"] >= 1.0
    assert {k for k in values if "inception" not in k} == set(plain(sample))  # the other metrics are unchanged
    # The floor: 8 held-out images against the reference, too few for 10 IS splits.
    assert ev.floor["n_fake"] == 8 and np.isfinite(ev.floor["fid_inception"]) and "kid_inception_std" in ev.floor
    assert "inception_score" not in ev.floor

    again = Evaluator(ds, n_samples=16)
    assert again.cache_hit and again.floor == ev.floor and again.cache_path == ev.cache_path
    assert torch.equal(again.ref["inception_feats"], ev.ref["inception_feats"])
