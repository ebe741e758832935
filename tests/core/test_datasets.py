from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from core.datasets import DataOrder, center_crop_resize, load_dataset
from core.unpaired import UnpairedDataset


def test_ring8_is_eight_gaussians_on_the_unit_circle():
    ds = load_dataset("ring8", image_size=32)
    assert ds.kind == "points" and ds.channels == 0 and ds.labels is None and ds.num_classes == 0
    assert ds.modes is not None and ds.modes.shape == (8, 2)
    assert torch.allclose(ds.modes.norm(dim=1), torch.ones(8), atol=1e-6)
    assert ds.mode_std == 0.01
    nearest = torch.cdist(ds.data, ds.modes).min(dim=1).values
    assert nearest.max() < 0.01 * 6
    assert math.isclose(float(nearest.square().mean() / 2), 0.01**2, rel_tol=0.05)


def test_grid25_is_twenty_five_gaussians_on_a_grid():
    ds = load_dataset("grid25", image_size=32)
    assert ds.modes is not None and ds.modes.shape == (25, 2)
    assert sorted(set(ds.modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert ds.mode_std == 0.05
    counts = torch.bincount(torch.cdist(ds.data, ds.modes).argmin(dim=1), minlength=25)
    assert counts.min() > 0.8 * len(ds) / 25


@pytest.mark.parametrize("size", [16, 32])
def test_digits_are_the_sklearn_digits_in_minus_one_to_one(size: int):
    ds = load_dataset("digits", image_size=size)
    assert ds.data.shape == (1797, 1, size, size)
    assert ds.data.min() >= -1 and ds.data.max() <= 1
    assert ds.data.min() == -1 and ds.data.max() > 0.9
    assert ds.labels is not None and ds.labels.shape == (1797,) and ds.num_classes == 10
    assert ds.info() == {"kind": "images", "channels": 1, "image_size": size, "num_classes": 10}


def test_stacked_digits_puts_three_digits_in_rgb_with_thousand_labels():
    ds = load_dataset("stacked-digits", image_size=16)
    x, labels = ds.batch(torch.arange(5))
    assert x.shape == (5, 3, 16, 16) and ds.num_classes == 1000
    bank = load_dataset("digits", image_size=16)
    assert ds.triples is not None and labels is not None and bank.labels is not None
    for i in range(5):
        r, g, b = ds.triples[i].tolist()
        assert torch.equal(x[i, 1], bank.data[g, 0])
        assert int(labels[i]) == 100 * int(bank.labels[r]) + 10 * int(bank.labels[g]) + int(bank.labels[b])
    assert len(torch.unique(ds.labels)) > 990


def test_data_order_resumes_exactly():
    a = DataOrder(10, seed=3)
    first = torch.cat([a.next(4) for _ in range(4)])
    assert sorted(first[:10].tolist()) == list(range(10))
    state = a.state()
    after = [a.next(7) for _ in range(3)]
    b = DataOrder(10, seed=99)
    b.load_state(state)
    assert all(torch.equal(x, b.next(7)) for x in after)


def test_data_order_refuses_a_dataset_of_another_size():
    state = DataOrder(12, seed=0).state()
    with pytest.raises(ValueError, match="trained on 12 samples and the dataset now holds 10"):
        DataOrder(10, seed=0).load_state(state)


def test_fingerprint_follows_every_tensor_the_dataset_holds():
    ds = load_dataset("digits", image_size=8)
    assert ds.fingerprint() == load_dataset("digits", image_size=8).fingerprint()
    assert ds.fingerprint() != load_dataset("digits", image_size=16).fingerprint()
    store = ds.store.clone()
    store[5, 0, 3, 3] += 0.5
    assert dataclasses.replace(ds, store=store).fingerprint() != ds.fingerprint()
    labels = ds.labels.clone()
    labels[0] = (labels[0] + 1) % 10
    assert dataclasses.replace(ds, labels=labels).fingerprint() != ds.fingerprint()
    held = torch.zeros(4, 1, 8, 8)
    domains = UnpairedDataset(**vars(ds) | {"other": ds.store[:20], "held_b": held})
    moved = held.clone()
    moved[3, 0, 7, 7] = 1.0
    assert dataclasses.replace(domains, held_b=moved).fingerprint() != domains.fingerprint()


def testcenter_crop_resize_keeps_the_middle_square():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 20:60] = 200
    out = center_crop_resize(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out == 200).all()


def test_uploaded_dataset_is_resized_once_and_cached(tmp_path, monkeypatch):
    uploads = pytest.importorskip("core.uploads")
    calls = []

    def read_images(dataset_dir):
        calls.append(dataset_dir)
        images = np.full((6, 20, 30, 3), 255, dtype=np.uint8)
        return images, np.array([0, 1, 0, 1, 0, 1]), ["cats", "dogs"]

    monkeypatch.setattr(uploads, "read_images", read_images)
    ds = load_dataset("ds_0123abcd", image_size=16, dataset_dir=tmp_path)
    again = load_dataset("ds_0123abcd", image_size=16, dataset_dir=tmp_path)
    assert len(calls) == 1 and (tmp_path / "cache_16px.npz").exists()
    assert again.data.shape == (6, 3, 16, 16) and torch.equal(ds.data, again.data)
    assert float(ds.data.min()) == 1.0
    assert ds.num_classes == 2 and ds.labels is not None and ds.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_uploaded_dataset_needs_its_folder():
    with pytest.raises(ValueError, match="no dataset folder"):
        load_dataset("ds_0123abcd", image_size=32)
