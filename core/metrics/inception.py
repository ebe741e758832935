"""Paper-comparable FID, KID and Inception Score on the Inception-v3 weights that pytorch-fid and torch-fidelity
use (`pt_inception-2015-12-05-6726825d.pth`, 95,628,359 bytes). ganforge never downloads them: the operator
points `GANFORGE_INCEPTION_WEIGHTS` at a local copy. The file is read once, its SHA-256 is checked against
`INCEPTION_SHA256`, and only then are those same bytes handed to `torch.load(..., weights_only=True)` and
loaded into `FIDInceptionV3` (inception_net.py) with `strict=True`.

With a valid file the Evaluator reports, on image data, `fid_inception` and `kid_inception` (+ `_std`) on the
2,048-d pool3 features and `inception_score` (+ `_std`) from the 1,008-way logits; without one it reports none
of them and `Evaluator.skipped` says why (`inception_status()`). No other network's numbers are ever reported
under these names.

- **Inception Score** (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over 10 consecutive splits, mean
  and population std of the splits, in float64. The logits are taken *without* the fc bias, as the original
  TensorFlow code does (`tf.matmul(pool3, w)` on the `softmax/logits/MatMul` weights) and torch-fidelity
  follows (`logits_unbiased`); `FIDInceptionV3.features_and_logits` returns the biased fc output.
- **FID** in float64. When either set has fewer samples than the 2,048 feature dimensions (every covariance
  is then singular), tr((Σr Σf)^½) is computed exactly as the nuclear norm of the centred cross-Gram matrix
  Af Arᵀ / √((n−1)(m−1)) — the non-zero eigenvalues of Σr Σf are the squared singular values of that
  n × m matrix — which takes milliseconds where a 2,048 × 2,048 eigendecomposition takes seconds. Otherwise
  it goes through `distances.fid` (torchmetrics, float64) like `fid_digits`.

Cost: one feature pass takes about 0.13 s wall (0.085 CPU-s) per image on one thread of the 2-core dev VM,
33 s per 256 images (`OMP_NUM_THREADS=1 .venv/bin/python bench/inception_cost.py`; docs/benchmarks.md), so an
evaluation of 2,048 samples adds minutes on a CPU; the reference features are cached (evaluator.py).

The network was checked against the published layout (keys, shapes and parameter count of pytorch-fid's FID
Inception, tests/core/test_inception.py), not against the real weights, which could not be obtained where it
was written: a first run with the real file should compare a few features against pytorch-fid's.

The expected hash is the module constant `INCEPTION_SHA256`; tests replace it with monkeypatch. There is no
environment variable or argument that changes it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path

import torch

from core.metrics.distances import fid
from core.metrics.inception_net import FEATURE_DIM, FIDInceptionV3

ENV_VAR = "GANFORGE_INCEPTION_WEIGHTS"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_NAME = "pt_inception-2015-12-05"
INCEPTION_METRICS = ("fid_inception", "kid_inception", "inception_score")
IS_SPLITS = 10


def _verified_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes and SHA-256, if it is the expected weights file; ValueError naming the problem otherwise."""
    if not path.is_file():
        raise ValueError(f"{ENV_VAR}: {path} is not a file")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != INCEPTION_SHA256:
        raise ValueError(
            f"{ENV_VAR}: {path} has SHA-256 {digest}, not that of pytorch-fid's pt_inception-2015-12-05 weights "
            f"({INCEPTION_SHA256})"
        )
    return data, digest


def check_inception_weights(path: Path) -> Path:
    """The path, if it is the expected weights file; ValueError naming the problem otherwise."""
    _verified_bytes(path)
    return path


def inception_weights_path(environ: dict[str, str] | None = None) -> Path | None:
    """The configured weights file (not yet checked), or None when `GANFORGE_INCEPTION_WEIGHTS` is not set."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR, "")
    return Path(raw) if raw else None


def load_inception(path: Path, device: str | torch.device = "cpu") -> tuple[FIDInceptionV3, str]:
    """(network in eval mode with frozen weights, the file's SHA-256). The hash is checked on the bytes that are
    then unpickled (weights_only), so the file cannot change in between. ValueError on any problem."""
    data, digest = _verified_bytes(path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # a file with the right hash always loads; anything else is reported, not raised
        raise ValueError(f"{ENV_VAR}: {path} could not be read as a PyTorch state dict: {err}") from err
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{ENV_VAR}: {path} does not hold a state dict of tensors")
    net = FIDInceptionV3()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{ENV_VAR}: {path} does not fit ganforge's Inception-v3 layout: {err}") from err
    net.eval().requires_grad_(False)
    # channels_last runs the convolutions about a quarter faster on CPU; the values are the same up to rounding.
    net = net.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # (not in stubs)
    return net, digest


def inception_status(environ: dict[str, str] | None = None) -> str:
    """What becomes of the Inception metrics: not computed (no file configured), or computed (the file checks
    out). A configured file that is missing or has the wrong hash raises ValueError saying so."""
    path = inception_weights_path(environ)
    if path is None:
        return f"{ENV_VAR} is not set (no Inception-v3 weights, nothing is downloaded)"
    check_inception_weights(path)
    return f"{ENV_VAR}: {path} checks out; {', '.join(INCEPTION_METRICS)} are computed on image data"


@torch.no_grad()
def inception_features(
    net: FIDInceptionV3, images: torch.Tensor, *, batch: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1 | 3, H, W) in [-1, 1] → pool3 features (N, 2048) and logits without the fc bias (N, 1008),
    both float32 on the CPU, computed `batch` images at a time on the network's device."""
    device = next(net.parameters()).device
    weight = net.fc.weight  # (1008, 2048)
    feats, logits = [], []
    for start in range(0, images.shape[0], batch):
        xb = images[start : start + batch].to(device)
        f, _ = net.features_and_logits(xb.contiguous(memory_format=torch.channels_last))
        feats.append(f.float().cpu())
        logits.append((f @ weight.T).float().cpu())
    return torch.cat(feats), torch.cat(logits)


def inception_score(logits: torch.Tensor, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception Score of (N, C) logits: exp(mean KL(p(y|x) || p(y))) in each of `splits` consecutive parts, then
    the mean and the population std over the parts. float64; p(y) is the part's mean prediction."""
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"the Inception Score takes at least {splits} samples ({splits} splits), not {n}")
    log_p = torch.log_softmax(logits.double(), dim=1)  # (N, C)
    scores = []
    for k in range(splits):
        part = log_p[k * n // splits : (k + 1) * n // splits]  # (n_k, C)
        log_py = torch.logsumexp(part, dim=0) - math.log(part.shape[0])  # (C,) log of the mean prediction
        kl = (part.exp() * (part - log_py)).sum(1).mean()
        scores.append(math.exp(float(kl)))
    mean = sum(scores) / splits
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / splits)
    return mean, std


def fid_from_features(
    real_feats: torch.Tensor, real_sum: torch.Tensor, real_cov_sum: torch.Tensor, fake_feats: torch.Tensor
) -> float:
    """FID between a real set (features (M, D) and their cached sum (D,) and sum of outer products (D, D)) and
    generated features (N, D), float64. Below D samples in either set: the exact nuclear-norm form (see the
    module docstring); otherwise `distances.fid`."""
    m, n, dim = real_feats.shape[0], fake_feats.shape[0], fake_feats.shape[1]
    if min(m, n) >= dim:
        return fid(real_sum, real_cov_sum, m, fake_feats)
    real, fake = real_feats.double(), fake_feats.double()
    mu_r, mu_f = real.mean(0), fake.mean(0)
    a_r, a_f = real - mu_r, fake - mu_f  # centred (M, D), (N, D)
    trace_r = float((a_r * a_r).sum()) / (m - 1)
    trace_f = float((a_f * a_f).sum()) / (n - 1)
    trace_sqrt = float(torch.linalg.svdvals(a_f @ a_r.T).sum()) / math.sqrt((n - 1) * (m - 1))
    value = float(((mu_r - mu_f) ** 2).sum()) + trace_r + trace_f - 2 * trace_sqrt
    return max(value, 0.0)


__all__ = [
    "ENV_VAR",
    "FEATURE_DIM",
    "INCEPTION_METRICS",
    "INCEPTION_NAME",
    "INCEPTION_SHA256",
    "check_inception_weights",
    "fid_from_features",
    "inception_features",
    "inception_score",
    "inception_status",
    "inception_weights_path",
    "load_inception",
]
