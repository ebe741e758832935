"""Evaluation of generators: FID/KID/precision-recall/density-coverage on the digits classifier's features,
sliced Wasserstein distance on Laplacian pyramids, mode counts on 2-D mixtures and stacked-digits, and, when
`GANFORGE_INCEPTION_WEIGHTS` names pytorch-fid's Inception-v3 weights, FID/KID/Inception Score on image data
(inception.py, inception_net.py).

    from core.metrics import Evaluator
    ev = Evaluator(dataset, n_samples=2048, device=device, cache_dir=None)
    values = ev(sample_fn)      # sample_fn(n) -> (samples in [-1, 1], labels | None)
    ev.primary                  # ("fid_digits", "min"), ("modes", "max"), ...
    ev.floor                    # the same metrics for held-out real data against the reference set

See evaluator.py for which metrics each kind of data gets and how the reference statistics are cached.
"""

from __future__ import annotations

from core.metrics.evaluator import Evaluator, evaluate_checkpoint

__all__ = ["Evaluator", "evaluate_checkpoint"]
