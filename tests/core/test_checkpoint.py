from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from core.checkpoint import FORMAT, load_generator, write_safetensors
from core.config import RunConfig
from core.datasets import load_dataset
from core.train import train


def _trained(tmp_path, dataset: str = "digits", **sections):
    cfg = RunConfig.model_validate({"dataset": dataset, **sections})
    train(cfg, out_dir=tmp_path)
    return cfg, sorted((tmp_path / "checkpoints").glob("*.safetensors"))[-1]


def test_checkpoint_holds_the_documented_keys_and_metadata(tmp_path):
    cfg, path = _trained(
        tmp_path,
        model={"image_size": 16, "width": 8},
        train={"steps": 2, "batch_size": 8, "ema": 0.9},
    )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == FORMAT and meta["step"] == "2"
    assert RunConfig.model_validate_json(meta["config"]) == cfg
    fingerprint = load_dataset("digits", image_size=16).fingerprint()
    assert json.loads(meta["data"]) == {
        "kind": "images",
        "channels": 1,
        "image_size": 16,
        "num_classes": 10,
        "fingerprint": fingerprint,
    }
    assert json.loads(meta["run_info"])["seed"] == 0 and json.loads(meta["run_info"])["data_fingerprint"] == fingerprint
    for prefix in ("G.", "D.", "G_ema.", "opt_g.", "opt_d.", "rng."):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert {"rng.torch", "rng.numpy", "rng.data", "data.perm"} <= keys
    assert not list(tmp_path.joinpath("checkpoints").glob(".*"))


@pytest.mark.parametrize("ema", [True, False])
def test_load_generator_rebuilds_the_generator_in_eval_mode(tmp_path, ema: bool):
    cfg, path = _trained(
        tmp_path,
        model={"image_size": 16, "width": 8, "z_dim": 12},
        train={"steps": 2, "batch_size": 8, "ema": 0.5},
    )
    G, loaded_cfg, info = load_generator(path, ema=ema)
    assert loaded_cfg == cfg and info["channels"] == 1 and not G.training
    with torch.no_grad():
        x = G(torch.randn(3, 12))
    assert x.shape == (3, 1, 16, 16) and x.abs().max() <= 1
    with safe_open(str(path), framework="pt") as f:
        prefix = "G_ema." if ema else "G."
        expected = {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    assert all(torch.equal(v, expected[k]) for k, v in G.state_dict().items())


def test_load_generator_of_a_points_run_gives_points(tmp_path):
    _, path = _trained(tmp_path, dataset="ring8", train={"steps": 2, "batch_size": 8})
    G, _, info = load_generator(path)
    assert info["kind"] == "points"
    assert G(torch.randn(5, 2)).shape == (5, 2)


def test_load_generator_refuses_other_safetensors_files(tmp_path):
    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"w": torch.zeros(2)}, {"format": "something-else"})
    with pytest.raises(ValueError, match="is not a ganforge checkpoint"):
        load_generator(path)
