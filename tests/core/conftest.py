"""One intra-op thread for the trainer's tests: on a machine shared by many processes, two OpenMP threads that
wait for each other run tiny models about ten times slower than one."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_inception_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests say when Inception weights exist: an operator's GANFORGE_INCEPTION_WEIGHTS must not leak in."""
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
