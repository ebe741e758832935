from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import DATASET_DEFAULTS, PRESETS, RunConfig


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"dataset": "mnist"}, "dataset: unknown dataset 'mnist'", id="unknown-dataset"),
        pytest.param({"dataset": "ring8", "preset": "x"}, "preset: unknown preset 'x'", id="unknown-preset"),
        pytest.param(
            {"dataset": "ring8", "model": {"arch": "dcgan"}},
            "model.arch: ring8 is 2-D point data; only the mlp architecture fits it",
            id="conv-on-points",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"arch": "mlp"}},
            "model.arch: digits is an image dataset; use dcgan or resnet, not mlp",
            id="mlp-on-images",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"arch": "resnet", "image_size": 16}},
            "model.image_size: resnet supports 32, 64 px, not 16",
            id="resnet-16",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"image_size": 48}},
            "model.image_size: dcgan supports 16, 32, 64, 128 px, not 48",
            id="dcgan-48",
        ),
        pytest.param(
            {"dataset": "grid25", "model": {"conditional": True}},
            "model.conditional: grid25 has no labels, so a run on it cannot be conditional",
            id="conditional-unlabeled",
        ),
        pytest.param(
            {"dataset": "ring8", "model": {"pack": 3}, "train": {"batch_size": 64}},
            "model.pack: train.batch_size (64) must be a multiple of pack (3)",
            id="pack-batch",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"pack": 2, "conditional": True}},
            "model.pack: packing is for unconditional runs",
            id="pack-conditional",
        ),
        pytest.param(
            {"dataset": "digits", "loss": {"kind": "hinge", "label_smoothing": 0.1}},
            "loss.label_smoothing: one-sided label smoothing needs a target-based loss",
            id="smoothing-hinge",
        ),
        pytest.param(
            {"dataset": "digits", "loss": {"kind": "wgan"}, "model": {"spectral_norm": True}},
            "model.spectral_norm: wgan already constrains the critic by weight clipping",
            id="wgan-sn",
        ),
        pytest.param(
            {"dataset": "digits", "train": {"diffaugment": "color,flip"}},
            "train.diffaugment: unknown policy 'flip'",
            id="diffaugment-unknown",
        ),
        pytest.param(
            {"dataset": "ring8", "train": {"diffaugment": "color"}},
            "train.diffaugment: DiffAugment works on images",
            id="diffaugment-points",
        ),
        pytest.param({"dataset": "digits", "train": {"steps": -1}}, "train.steps", id="negative-steps"),
        pytest.param({"dataset": "digits", "model": {"arch": "vit"}}, "model.arch", id="unknown-arch"),
        pytest.param({"dataset": "digits", "train": {"stepz": 3}}, "train.stepz", id="unknown-field"),
        pytest.param(
            {"dataset": "digits", "loss": {"label_smoothing": 0.5}}, "loss.label_smoothing", id="smoothing-0.5"
        ),
        pytest.param({"dataset": "digits", "train": {"ema": 1.0}}, "train.ema", id="ema-1"),
        pytest.param(
            {"dataset": "digits", "model": {"arch": "resnet", "d_depth": 2}},
            "model.d_depth: only the dcgan discriminator has a depth to set, not resnet's",
            id="d-depth-resnet",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"clusters": 10, "conditional": True}},
            "model.clusters: a run conditions on its class labels (conditional) or on clusters, not both",
            id="clusters-conditional",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"clusters": 1}},
            "model.clusters: one cluster conditions on nothing",
            id="clusters-1",
        ),
        pytest.param(
            {"dataset": "ring8", "model": {"clusters": 8}},
            "model.clusters: cluster conditioning needs an image architecture",
            id="clusters-points",
        ),
        pytest.param(
            {"dataset": "digits", "model": {"clusters": 10, "pack": 2}},
            "model.pack: packing judges samples of mixed clusters together",
            id="clusters-pack",
        ),
        pytest.param(
            {"dataset": "stacked-digits", "model": {"cluster_channels": True, "clusters": 0}},
            "model.cluster_channels: set model.clusters to the number of clusters per channel",
            id="cluster-channels-without-clusters",
        ),
        pytest.param(
            {
                "dataset": "stacked-digits",
                "model": {"clusters": 10, "cluster_channels": True, "d_conditioning": "acgan"},
            },
            "model.cluster_channels: an AC-GAN head classifies one label, not a cluster per channel",
            id="cluster-channels-acgan",
        ),
    ],
)
def test_invalid_configs_name_the_field_and_the_reason(body: dict, message: str):
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate(body)
    assert message in str(info.value)


@pytest.mark.parametrize("dataset", ["ring8", "grid25", "digits", "stacked-digits", "ds_0123abcd"])
@pytest.mark.parametrize("preset", [None, *sorted(PRESETS)])
def test_every_dataset_default_and_preset_is_a_valid_config(dataset: str, preset: str | None):
    if preset == "dcgan" and dataset in ("ring8", "grid25"):
        dataset = "digits"  # the dcgan preset is an image architecture
    cfg = RunConfig.model_validate({"dataset": dataset, "preset": preset})
    assert cfg.dataset == dataset


def test_the_wgan_gp_preset_takes_the_point_recipe_on_2d_data_and_the_image_recipe_elsewhere():
    for dataset in ("ring8", "grid25"):
        cfg = RunConfig.model_validate({"dataset": dataset, "preset": "wgan-gp"})
        assert (cfg.loss.kind, cfg.loss.gp_weight, cfg.train.lr_g, cfg.train.lr_d) == ("wgan-gp", 0.1, 1e-3, 1e-3)
    for dataset in ("digits", "stacked-digits", "ds_0123abcd"):
        cfg = RunConfig.model_validate({"dataset": dataset, "preset": "wgan-gp"})
        assert (cfg.loss.gp_weight, cfg.train.lr_g, cfg.train.lr_d) == (10.0, 1e-4, 4e-4)
    # wgan-gp chosen without the preset gets the dataset's weight too, and the user's own fields win over both.
    assert RunConfig.model_validate({"dataset": "ring8", "loss": {"kind": "wgan-gp"}}).loss.gp_weight == 0.1
    mine = RunConfig.model_validate(
        {"dataset": "ring8", "preset": "wgan-gp", "loss": {"gp_weight": 5.0}, "train": {"lr_g": 2e-4}}
    )
    assert (mine.loss.gp_weight, mine.train.lr_g, mine.train.lr_d) == (5.0, 2e-4, 1e-3)


def test_defaults_of_digits_also_hold_when_conditional():
    cfg = RunConfig.model_validate({"dataset": "digits", "model": {"conditional": True}})
    assert cfg.model.conditional and cfg.model.pack == 1


def test_default_clusters_give_way_to_class_labels_and_packing_but_explicit_ones_do_not(monkeypatch):
    model = DATASET_DEFAULTS["digits"]["model"] | {"clusters": 20}
    monkeypatch.setitem(DATASET_DEFAULTS["digits"], "model", model)
    assert RunConfig.model_validate({"dataset": "digits"}).model.clusters == 20
    conditional = RunConfig.model_validate({"dataset": "digits", "model": {"conditional": True}})
    assert conditional.model.conditional and conditional.model.clusters == 0
    assert RunConfig.model_validate({"dataset": "digits", "model": {"pack": 2}}).model.clusters == 0
    with pytest.raises(ValidationError, match="conditions on its class labels"):
        RunConfig.model_validate({"dataset": "digits", "model": {"conditional": True, "clusters": 20}})


def test_the_default_cluster_per_channel_gives_way_to_no_clusters_labels_and_acgan_but_an_explicit_one_does_not():
    default = RunConfig.model_validate({"dataset": "stacked-digits"}).model
    assert (default.clusters, default.cluster_channels, default.label_groups(3)) == (50, True, 3)
    labels = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"conditional": True}}).model
    assert (labels.conditional, labels.clusters, labels.cluster_channels) == (True, 0, False)
    off = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"clusters": 0}}).model
    assert (off.clusters, off.cluster_channels, off.label_groups(3)) == (0, False, 1)
    acgan = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"d_conditioning": "acgan"}}).model
    assert (acgan.clusters, acgan.cluster_channels) == (50, False)
    with pytest.raises(ValidationError, match=r"model\.cluster_channels: set model\.clusters"):
        RunConfig.model_validate({"dataset": "stacked-digits", "model": {"clusters": 0, "cluster_channels": True}})


def test_the_user_fields_win_over_the_dataset_defaults():
    cfg = RunConfig.model_validate({"dataset": "ring8", "train": {"steps": 7}})
    assert cfg.train.steps == 7
    assert cfg.train.batch_size == DATASET_DEFAULTS["ring8"]["train"]["batch_size"]


def test_a_default_spectral_norm_gives_way_to_weight_clipping_but_an_explicit_one_does_not():
    cfg = RunConfig.model_validate({"dataset": "digits", "loss": {"kind": "wgan"}})
    assert (cfg.loss.kind, cfg.model.spectral_norm) == ("wgan", False)
    assert RunConfig.model_validate({"dataset": "digits"}).model.spectral_norm is True
    with pytest.raises(ValidationError, match=r"model\.spectral_norm: wgan already constrains"):
        RunConfig.model_validate({"dataset": "digits", "loss": {"kind": "wgan"}, "model": {"spectral_norm": True}})


def test_a_default_image_size_gives_way_to_an_architecture_that_does_not_build_it_but_an_explicit_one_does_not():
    assert RunConfig.model_validate({"dataset": "stacked-digits"}).model.image_size == 16
    cfg = RunConfig.model_validate({"dataset": "stacked-digits", "model": {"arch": "resnet"}})
    assert (cfg.model.arch, cfg.model.image_size) == ("resnet", 32)
    with pytest.raises(ValidationError, match=r"model\.image_size: resnet supports 32, 64 px, not 16"):
        RunConfig.model_validate({"dataset": "stacked-digits", "model": {"arch": "resnet", "image_size": 16}})


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"dataset": "digits", "model": 5}, "model", id="model-number"),
        pytest.param({"dataset": "digits", "model": {"arch": "stylegan2"}, "loss": 3}, "loss", id="loss-number"),
        pytest.param({"dataset": "photos", "train": [1]}, "train", id="train-list"),
        pytest.param({"dataset": "digits", "schedule": None}, "schedule", id="schedule-null"),
        pytest.param({"dataset": "digits", "preset": ["dcgan"]}, "preset", id="preset-list"),
    ],
)
def test_a_section_of_the_wrong_type_is_a_validation_error_that_names_it(body, field):
    with pytest.raises(ValidationError) as caught:
        RunConfig.model_validate(body)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_number_of_a_run_is_finite(value):
    with pytest.raises(ValidationError) as caught:
        RunConfig.model_validate({"dataset": "digits", "loss": {"r1_gamma": value}})
    assert [(error["type"], error["loc"]) for error in caught.value.errors()] == [
        ("finite_number", ("loss", "r1_gamma"))
    ]


def test_more_clusters_than_images_is_refused_before_the_run():
    RunConfig.model_validate({"dataset": "digits", "model": {"arch": "dcgan", "clusters": 1797}})
    with pytest.raises(
        ValidationError, match=r"model\.clusters: 1798 clusters need at least as many images; digits has 1797"
    ):
        RunConfig.model_validate({"dataset": "digits", "model": {"arch": "dcgan", "clusters": 1798}})
