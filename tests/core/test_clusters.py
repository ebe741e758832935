"""Cluster conditioning (`model.clusters`): k-means ids of the real images condition G and D, and G picks each
latent's cluster at the real frequencies."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors import safe_open

from core import scoring
from core.checkpoint import load_generator
from core.clusters import (
    class_cluster_cdf,
    cluster_cdf,
    cluster_images,
    cluster_within_classes,
    clusters_of,
    clusters_within,
    group_digits,
)
from core.config import RunConfig
from core.datasets import load_dataset
from core.generate import generate_walks, interpolate_latents, run_generator, sample_latents
from core.networks import GroupEmbedding
from core.train import train


def test_kmeans_recovers_separated_groups_of_images():
    gen = torch.Generator().manual_seed(0)
    truth = torch.arange(3).repeat_interleave(20)  # (60,): three groups of twenty
    images = (truth.float() - 1.0)[:, None, None, None] * 0.8 + 0.05 * torch.randn(60, 1, 8, 8, generator=gen)
    ids = cluster_images(images, 3, seed=0)
    assert ids.shape == (60,)
    # The same partition up to the names of the clusters: each group is one cluster, each cluster one group.
    assert {tuple(sorted(set(ids[truth == g].tolist()))) for g in range(3)} == {(0,), (1,), (2,)}
    assert torch.equal(ids, cluster_images(images, 3, seed=0))


def test_kmeans_pools_large_images_and_refuses_more_clusters_than_images():
    big = torch.rand(12, 3, 64, 64) * 2 - 1
    assert cluster_images(big, 4, seed=1).shape == (12,)
    message = "model.clusters: 20 clusters need at least 20 images; this dataset has 12"
    with pytest.raises(ValueError, match=re.escape(message)):
        cluster_images(big, 20, seed=0)


def test_clusters_within_classes_split_each_class_and_refuse_a_class_smaller_than_k():
    gen = torch.Generator().manual_seed(0)
    # Two classes, each made of two separated groups of ten images.
    groups = torch.arange(4).repeat_interleave(10)  # (40,)
    images = (groups.float() - 1.5)[:, None, None, None] * 0.5 + 0.02 * torch.randn(40, 1, 8, 8, generator=gen)
    labels = groups // 2
    ids = cluster_within_classes(images, labels, 2, seed=0)
    assert torch.equal(ids // 2, labels)  # id = class · 2 + cluster
    assert {tuple(sorted(set(ids[groups == g].tolist()))) for g in range(4)} == {(0,), (1,), (2,), (3,)}
    message = "model.class_clusters: 3 clusters in each class need 3 images in each; class 1 has 2"
    with pytest.raises(ValueError, match=re.escape(message)):
        cluster_within_classes(images[:22], labels[:22], 3, seed=0)


def test_latents_pick_the_cluster_within_their_class_at_its_frequencies():
    ids = torch.tensor([0] * 10 + [1] * 90 + [2] * 50 + [3] * 50)  # class 0: 10 / 90; class 1: 50 / 50
    cdf = class_cluster_cdf(ids, 2, 2)
    assert torch.allclose(cdf, torch.tensor([0.1, 1.0, 0.5, 1.0], dtype=torch.float64))
    z = sample_latents(20_000, 16, seed=4)
    for c, shares in ((0, [0.1, 0.9]), (1, [0.5, 0.5])):
        picked = clusters_within(z, torch.full((len(z),), c), cdf, 2)
        assert set((picked // 2).tolist()) == {c}
        share = torch.bincount(picked % 2, minlength=2).double() / len(z)
        assert torch.allclose(share, torch.tensor(shares, dtype=torch.float64), atol=0.015)
    # The pick is the one clusters_of makes from the same latent at that class's frequencies.
    assert torch.equal(clusters_within(z, torch.zeros(len(z)), cdf, 2), clusters_of(z, cdf[:2]))


@pytest.mark.parametrize("truncation", [None, 0.5])
def test_latents_pick_clusters_at_their_frequencies_whatever_the_truncation(truncation):
    ids = torch.tensor([0] * 10 + [1] * 30 + [2] * 60)
    cdf = cluster_cdf(ids, 3)
    assert torch.allclose(cdf, torch.tensor([0.1, 0.4, 1.0], dtype=torch.float64))
    z = sample_latents(20_000, 16, seed=3, truncation=truncation)
    picked = clusters_of(z, cdf)
    share = torch.bincount(picked, minlength=3).double() / len(z)
    assert torch.allclose(share, torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64), atol=0.015)  # ~4.5 sigma
    assert torch.equal(picked, clusters_of(z.clone(), cdf))  # a function of the latent alone


def test_per_channel_clusters_are_each_channels_clusters_read_as_digits_in_base_k():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(3, (90,), generator=gen), torch.randint(3, (90,), generator=gen)  # independent per channel
    images = torch.stack([a, b], 1).float()[:, :, None, None] - 1.0 + 0.05 * torch.randn(90, 2, 8, 8, generator=gen)
    ids = cluster_images(images, 3, seed=0, per_channel=True)
    parts = group_digits(ids, 3, 2)  # (90, 2)
    assert torch.equal(ids, parts[:, 0] + 3 * parts[:, 1])
    for c, truth in enumerate((a, b)):  # each channel's clusters are its groups, up to their names
        assert {tuple(sorted(set(parts[truth == g, c].tolist()))) for g in range(3)} == {(0,), (1,), (2,)}
        assert torch.equal(parts[:, c], cluster_images(images[:, c : c + 1], 3, seed=c))


def test_latents_pick_each_channels_cluster_independently_at_that_channels_frequencies():
    parts = torch.tensor([[0, 0]] * 20 + [[1, 0]] * 60 + [[1, 1]] * 20)  # (100, 2): correlated in the data
    ids = parts[:, 0] + 2 * parts[:, 1]
    cdf = cluster_cdf(ids, 2, groups=2)
    assert torch.allclose(cdf, torch.tensor([0.2, 1.0, 0.8, 1.0], dtype=torch.float64))
    assert torch.equal(cluster_cdf(ids, 4), cluster_cdf(ids, 4, groups=1))
    z = sample_latents(40_000, 100, seed=1)
    picked = group_digits(clusters_of(z, cdf, groups=2), 2, 2)  # (N, 2)
    joint = torch.bincount(picked[:, 0] + 2 * picked[:, 1], minlength=4).double() / len(z)
    # The product of the channels' frequencies (0.2, 0.8) x (0.8, 0.2), not the data's joint (0.2, 0.6, 0, 0.2).
    expected = torch.tensor([0.2 * 0.8, 0.8 * 0.8, 0.2 * 0.2, 0.8 * 0.2], dtype=torch.float64)
    assert torch.allclose(joint, expected, atol=0.01)  # ~5 sigma
    assert torch.equal(clusters_of(z, cdf[:2]), clusters_of(z, cdf[:2], groups=1))  # group 0 is the plain pick


def test_a_group_embedding_sums_one_code_per_group_and_is_a_plain_embedding_for_one_group():
    torch.manual_seed(0)
    one = GroupEmbedding(5, 4)
    labels = torch.tensor([0, 3, 4])
    assert torch.equal(one(labels), one.weight[labels]) and one.weight.shape == (5, 4)
    three = GroupEmbedding(5, 4, groups=3)
    label = torch.tensor([2 + 5 * 0 + 25 * 4])  # the clusters 2, 0 and 4
    expected = (three.weight[2] + three.weight[5 + 0] + three.weight[10 + 4]) / 3**0.5
    assert torch.allclose(three(label)[0], expected)


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param({}, id="dcgan"),
        pytest.param({"arch": "stylegan2", "z_dim": 16, "w_dim": 16, "mapping_layers": 2}, id="stylegan2"),
    ],
)
def test_a_cluster_per_channel_run_draws_every_channel_and_each_changes_the_image(tmp_path, arch: dict):
    body = {
        "dataset": "stacked-digits",
        "model": {"width": 8, "clusters": 4, "cluster_channels": True, **arch},
        "train": {"steps": 2, "batch_size": 16, "ema": None, "ema_kimg": None, "precision": "fp32", "device": "cpu"},
        "schedule": {"sample_every": 2, "checkpoint_every": 2},
    }
    events: list[tuple[str, dict]] = []
    result = train(RunConfig.model_validate(body), out_dir=tmp_path, on_event=lambda k, d: events.append((k, d)))
    assert result.status == "completed"
    told = [d["clusters"] for k, d in events if k == "environment" and "clusters" in d]
    assert told[0]["count"] == 4 and told[0]["per_channel"] is True
    with safe_open(result.checkpoint, framework="pt") as f:
        ids = f.get_tensor("data.clusters")
    assert ids.max() < 4**3 and len(torch.unique(ids)) > 4  # combinations of three channels' clusters
    G, cfg, _ = load_generator(result.checkpoint)
    assert torch.equal(G.cluster_cdf, cluster_cdf(ids, 4, groups=3))
    z = torch.randn(8, cfg.model.z_dim)
    with torch.no_grad():
        picked = G.clusters_of(z)
        assert torch.equal(G(z), G(z, picked))
        for c in range(3):  # another cluster in one channel changes the images
            other = picked + (((group_digits(picked, 4, 3)[:, c] + 1) % 4) - group_digits(picked, 4, 3)[:, c]) * 4**c
            assert not torch.equal(G(z), G(z, other))


def _cluster_run(tmp_path, **model):
    body = {
        "dataset": "digits",
        "model": {"image_size": 16, "width": 8, "clusters": 6, **model},
        "train": {"steps": 4, "batch_size": 16, "ema": 0.9, "precision": "fp32", "device": "cpu"},
        "schedule": {"sample_every": 4, "checkpoint_every": 4},
    }
    events: list[tuple[str, dict]] = []
    result = train(RunConfig.model_validate(body), out_dir=tmp_path, on_event=lambda k, d: events.append((k, d)))
    return result, events


def test_a_cluster_run_keeps_its_clusters_and_samples_them_at_the_real_frequencies(tmp_path):
    result, events = _cluster_run(tmp_path)
    assert result.status == "completed"
    expected = cluster_images(load_dataset("digits", image_size=16).data, 6, seed=0)
    with safe_open(result.checkpoint, framework="pt") as f:
        assert torch.equal(f.get_tensor("data.clusters"), expected)
    sizes = torch.bincount(expected, minlength=6)
    told = [d["clusters"] for k, d in events if k == "environment" and "clusters" in d]
    assert told == [
        {
            "count": 6,
            "smallest": int(sizes.min()),
            "largest": int(sizes.max()),
            "per_channel": False,
            "within_classes": False,
        }
    ]

    G, cfg, _ = load_generator(result.checkpoint)
    assert torch.equal(G.cluster_cdf, cluster_cdf(expected, 6))
    z = torch.randn(10, cfg.model.z_dim)
    with torch.no_grad():
        # Without labels G conditions each sample on the cluster its latent picks; another cluster changes it.
        assert torch.equal(G(z), G(z, G.clusters_of(z)))
        assert not torch.equal(G(z), G(z, (G.clusters_of(z) + 1) % 6))


def test_walks_of_a_cluster_run_stay_in_the_cluster_of_their_first_latent_and_scoring_names_no_class(tmp_path):
    result, _ = _cluster_run(tmp_path)
    G, cfg, _ = load_generator(result.checkpoint)
    walks = generate_walks(G, z_dim=cfg.model.z_dim, num_classes=0, n=3, steps=4, mode="lerp", seed=5)
    assert walks.labels is None  # clusters are not class labels
    ends = sample_latents(6, cfg.model.z_dim, seed=5)
    starts = G.clusters_of(ends[:3])
    z = interpolate_latents(ends[:3], ends[3:], steps=4, mode="lerp")
    assert (walks.samples == run_generator(G, z, starts.repeat_interleave(4))).all()

    scorer = scoring.load_scorer(result.checkpoint)
    images = load_dataset("digits", image_size=16).data[:4]
    scores = scoring.score_images(scorer, images, steps=2, seed=0)
    assert scores["class"].tolist() == [-1, -1, -1, -1]
    assert all(torch.isfinite(torch.as_tensor(scores[k])).all() for k in ("discriminator", "anogan"))
