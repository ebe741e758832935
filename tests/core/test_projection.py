"""Projection into a style-based generator (core.projection): it brings the reconstruction closer than the
start, is deterministic for a seed, and writes its result as documented."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from core import projection
from core.metrics.classifier import load_digits_classifier
from core.networks_stylegan2 import StyleDiscriminator, StyleGenerator
from core.style_layers import num_ws


def _networks() -> tuple[StyleGenerator, StyleDiscriminator]:
    torch.manual_seed(0)
    G = StyleGenerator(z_dim=8, w_dim=8, mapping_layers=2, image_size=16, channels=1, width=4, num_classes=0).eval()
    G.mapping.w_avg.copy_(G.mapping(torch.randn(256, 8), None).mean(0))
    for layer in G.layers:
        layer.noise_strength.data.fill_(0.1)
    D = StyleDiscriminator(image_size=16, channels=1, width=4, num_classes=0).eval()
    return G, D


def _targets(G: StyleGenerator) -> torch.Tensor:
    """Three images the generator can make, from latents away from the mean."""
    with torch.no_grad():
        return G(torch.randn(3, 8, generator=torch.Generator().manual_seed(7)))  # (3, 1, 16, 16)


@pytest.mark.parametrize("space", ["w", "w+"])
def test_projection_reduces_the_distance_and_is_deterministic(space: projection.Space) -> None:
    G, D = _networks()
    assert G.num_ws == num_ws(16)
    x = _targets(G)
    distance = projection.Distance(discriminator=D, classifier=load_digits_classifier())
    assert distance.name == "pixel+discriminator+digits"
    result = projection.project(G, x, steps=30, space=space, distance=distance, seed=3)
    assert result.ws.shape == (3, G.num_ws, 8) and result.images.shape == (3, 1, 16, 16)
    assert [n.shape for n in result.noise] == [(3, 1, r, r) for r in (4, 8, 8, 16, 16)]
    assert (result.final_distance < 0.7 * result.start_distance).all(), (result.start_distance, result.final_distance)
    with torch.no_grad():  # the reconstructions are the synthesis of the latents with the noise maps
        again = G.synthesis(torch.from_numpy(result.ws), [torch.from_numpy(n) for n in result.noise])
    np.testing.assert_allclose(again.numpy(), result.images, atol=1e-5)
    if space == "w":
        assert np.array_equal(result.ws, np.repeat(result.ws[:, :1], G.num_ws, axis=1))
    assert all(p.requires_grad for p in G.parameters())  # the networks are left as they were

    same = projection.project(G, x, steps=30, space=space, distance=distance, seed=3)
    assert np.array_equal(same.ws, result.ws)
    other = projection.project(G, x, steps=30, space=space, distance=distance, seed=4)
    assert not np.array_equal(other.ws, result.ws)


def test_the_result_zip_names_the_inputs_and_holds_the_latents(tmp_path) -> None:
    G, _ = _networks()
    result = projection.project(G, _targets(G), steps=2, space="w", seed=0)
    names = ["a/one.jpg", "a/one.png", "two.bmp"]
    path = projection.write_result(result, names, tmp_path / "result.zip", extra={"checkpoint_step": 4})
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["a/one.png", "a/one.png.png", "two.png", "latents.npz", "projection.json"]
        latents = np.load(io.BytesIO(archive.read("latents.npz")), allow_pickle=False)
        summary = json.loads(archive.read("projection.json"))
    assert latents["ws"].shape == (3, G.num_ws, 8) and latents["w"].shape == (3, 8)
    assert list(latents["names"]) == names and latents["final_distance"].shape == (3,)
    assert summary["distance"] == "pixel" and summary["checkpoint_step"] == 4
    assert [item["file"] for item in summary["items"]] == ["a/one.png", "a/one.png.png", "two.png"]


def test_bad_arguments_are_refused() -> None:
    G, _ = _networks()
    with pytest.raises(ValueError, match="steps must be between 1 and"):
        projection.project(G, _targets(G), steps=0)
    with pytest.raises(ValueError, match="space must be w or w\\+"):
        projection.project(G, _targets(G), space="z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style-based generator"):
        projection.project(torch.nn.Linear(2, 2), _targets(G))
