"""Paper-comparable FID, KID and Inception Score need the Inception-v3 weights that pytorch-fid and torch-fidelity
use (`pt_inception-2015-12-05-6726825d.pth`, 95,628,359 bytes). ganforge never downloads them: the operator
points `GANFORGE_INCEPTION_WEIGHTS` at a local copy, which is checked by SHA-256 before anything reads it.

ganforge does not yet ship an Inception-v3 definition matching those weights (torchvision's would pull a
multi-GB CUDA torch into the CPU install), so even with a valid file `fid_inception`, `kid_inception` and
`inception_score` are not reported; `inception_status()` says why, and the evaluator lists the reason under
`Evaluator.skipped`. No other network's numbers are ever reported under these names.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.metrics.classifier import file_sha256

ENV_VAR = "GANFORGE_INCEPTION_WEIGHTS"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_METRICS = ("fid_inception", "kid_inception", "inception_score")


def check_inception_weights(path: Path) -> Path:
    """The path, if it is the expected weights file; ValueError naming the problem otherwise."""
    if not path.is_file():
        raise ValueError(f"{ENV_VAR}: {path} is not a file")
    digest = file_sha256(path)
    if digest != INCEPTION_SHA256:
        raise ValueError(
            f"{ENV_VAR}: {path} has SHA-256 {digest}, not that of pytorch-fid's pt_inception-2015-12-05 weights "
            f"({INCEPTION_SHA256})"
        )
    return path


def inception_status(environ: dict[str, str] | None = None) -> str:
    """Why the Inception metrics are not computed: no file configured, a wrong file, or no network definition."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR, "")
    if not raw:
        return f"{ENV_VAR} is not set (no Inception-v3 weights, nothing is downloaded)"
    check_inception_weights(Path(raw))
    return "the Inception-v3 weights check out, but ganforge has no Inception-v3 network definition yet"
