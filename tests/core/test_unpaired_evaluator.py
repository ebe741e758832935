"""The unpaired evaluator's reference on digits-printed: measured once per distinct dataset in a process."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.datasets import load_dataset
from core.metrics.unpaired import Reference, UnpairedEvaluator, reference_key
from core.unpaired import UnpairedDataset


def test_the_reference_is_measured_once_per_dataset_and_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("digits-printed", image_size=32)
    assert isinstance(data, UnpairedDataset) and data.held_b is not None and data.held_a_labels is not None
    held_b = data.held_b.clone()
    held_b[0] = -held_b[0]  # a dataset no other evaluator in this process has measured
    data = dataclasses.replace(data, held_b=held_b)
    measured: list[Reference] = []
    measure = UnpairedEvaluator.measure_reference

    def counted(self: UnpairedEvaluator, dataset: UnpairedDataset) -> Reference:
        measured.append(measure(self, dataset))
        return measured[-1]

    monkeypatch.setattr(UnpairedEvaluator, "measure_reference", counted)
    first = UnpairedEvaluator(data, n_samples=64)
    again = UnpairedEvaluator(data, n_samples=64)
    assert len(measured) == 1 and again.floor == first.floor and again.printed is first.printed
    assert all(torch.equal(x, y) for d in "ab" for x, y in zip(again.ref[d][:2], first.ref[d][:2], strict=True))
    assert first.floor["label_preservation"] > 0.9 and first.floor["label_preservation_b"] > 0.9

    # Any image or label changed is another dataset, and another reference.
    key = reference_key(data)
    for field in ("store", "other", "held_a", "held_b"):
        images = getattr(data, field).clone()
        images[-1] = images[-1].flip(-1)
        assert reference_key(dataclasses.replace(data, **{field: images})) != key, field
    labels = torch.as_tensor(data.held_a_labels).clone()
    labels[0] = (labels[0] + 1) % 10
    assert reference_key(dataclasses.replace(data, held_a_labels=labels)) != key
