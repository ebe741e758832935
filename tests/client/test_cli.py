"""The `ganforge` client commands against the real service: tables, --json, exit codes, the server's detail."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from tests.conftest import ROOT, Service

RING8_YAML = """\
dataset: ring8
name: cli-ring8
seed: 2
train:
  steps: 200
schedule:
  sample_every: 100
  checkpoint_every: 100
"""


@pytest.fixture(scope="module")
def env(postgres_service: Service) -> dict[str, str]:
    """GANFORGE_URL and GANFORGE_TOKEN of a fresh user."""
    return {"GANFORGE_URL": postgres_service.url, "GANFORGE_TOKEN": postgres_service.new_user_token("cli")}


def ganforge(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def finished_run_id(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    config = tmp_path_factory.mktemp("cli") / "ring8.yaml"
    config.write_text(RING8_YAML)
    code, out, err = ganforge(env, "runs", "create", "-f", str(config), "--watch", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert run["status"] == "succeeded" and run["progress"]["step"] == 200
    assert run["name"] == "cli-ring8"
    return str(run["id"])


def test_runs_create_watch_list_show(env: dict[str, str], finished_run_id: str) -> None:
    code, out, _ = ganforge(env, "runs", "list", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)["items"]] == [finished_run_id]
    code, out, _ = ganforge(env, "runs", "list")
    assert code == 0 and finished_run_id in out and "succeeded" in out
    code, out, _ = ganforge(env, "runs", "show", finished_run_id)
    assert code == 0 and "200/200 (100 %)" in out
    code, out, _ = ganforge(env, "runs", "watch", finished_run_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"


def test_samples_get_writes_the_grid(env: dict[str, str], finished_run_id: str, tmp_path: Path) -> None:
    latest, first = tmp_path / "latest.png", tmp_path / "first.png"
    assert ganforge(env, "samples", "get", finished_run_id, "-o", str(latest))[0] == 0
    assert ganforge(env, "samples", "get", finished_run_id, "--step", "100", "-o", str(first))[0] == 0
    for path in (latest, first):
        with Image.open(path) as image:
            assert image.format == "PNG"
    code, _, err = ganforge(env, "samples", "get", finished_run_id, "--step", "150", "-o", str(tmp_path / "x.png"))
    assert code == 1 and "404" in err


def test_generate_npz(env: dict[str, str], finished_run_id: str, tmp_path: Path) -> None:
    out_path = tmp_path / "out.npz"
    code, _, err = ganforge(env, "generate", finished_run_id, "-n", "20", "--seed", "1", "-o", str(out_path))
    assert code == 0, err
    assert np.load(io.BytesIO(out_path.read_bytes()))["samples"].shape == (20, 2)
    code, _, err = ganforge(env, "generate", finished_run_id, "-o", str(tmp_path / "out.gif"))
    assert code == 1 and "the suffix must be .png, .zip, .npz, .csv or .parquet" in err


def test_unknown_run_exits_1_with_the_servers_detail(env: dict[str, str]) -> None:
    code, out, err = ganforge(env, "runs", "show", "run_nope")
    assert (code, out) == (1, "")
    assert "404: Run not found" in err


def test_wrong_token_exits_1(env: dict[str, str]) -> None:
    code, _, err = ganforge({**env, "GANFORGE_TOKEN": "wrong"}, "runs", "list")
    assert code == 1 and "401: Invalid token" in err


def test_invalid_config_exits_1_naming_the_field(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"dataset": "ring8", "model": {"arch": "dcgan"}}))
    code, _, err = ganforge(env, "runs", "create", "-f", str(config))
    assert code == 1
    assert "422: model.arch: ring8 is 2-D point data; only the mlp architecture fits it" in err
    config.write_text("{not json")
    code, _, err = ganforge(env, "runs", "create", "-f", str(config))
    assert code == 1 and "is not valid JSON" in err


def test_cancel_and_delete(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "long.json"
    config.write_text(json.dumps({"dataset": "ring8", "train": {"steps": 1000000}}))
    code, out, _ = ganforge(env, "runs", "create", "-f", str(config), "--json")
    run_id = json.loads(out)["id"]
    code, out, _ = ganforge(env, "runs", "cancel", run_id, "--json")
    assert code == 0 and json.loads(out)["id"] == run_id
    assert ganforge(env, "runs", "delete", run_id)[0] == 0
    assert ganforge(env, "runs", "show", run_id)[0] == 1


def test_tokens_create_needs_an_admin(env: dict[str, str], postgres_service: Service) -> None:
    code, _, err = ganforge(env, "tokens", "create", "someone")
    assert code == 1 and "403: Admin token required" in err
    code, out, _ = ganforge({**env, "GANFORGE_TOKEN": postgres_service.admin_token}, "tokens", "create", "x", "--json")
    assert code == 0 and json.loads(out)["token"]


def test_the_installed_command_uses_the_environment_and_exits_non_zero(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ganforge", "runs", "show", "run_nope"],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "404: Run not found" in result.stderr


def test_metrics_and_checkpoints(env: dict[str, str], finished_run_id: str, tmp_path: Path) -> None:
    code, out, _ = ganforge(env, "runs", "metrics", finished_run_id, "--json")
    assert code == 0
    assert json.loads(out)["series"]["loss_d"][-1][0] == 200
    code, out, _ = ganforge(env, "runs", "metrics", finished_run_id, "--csv")
    assert code == 0 and out.splitlines()[0] == "step,name,value"
    code, out, _ = ganforge(env, "checkpoints", "list", finished_run_id, "--json")
    assert [c["step"] for c in json.loads(out)] == [100, 200]
    target = tmp_path / "first.safetensors"
    code, out, _ = ganforge(env, "checkpoints", "get", finished_run_id, "--step", "100", "-o", str(target), "--json")
    assert code == 0 and json.loads(out)["size_bytes"] == target.stat().st_size > 0


def test_set_overrides_build_a_config_without_a_file(env: dict[str, str]) -> None:
    code, out, err = ganforge(
        env, "runs", "create", "--set", "dataset=ring8", "--set", "train.steps=1000000", "--set", "name=set", "--json"
    )
    assert code == 0, err
    run = json.loads(out)
    assert (run["name"], run["config"]["train"]["steps"]) == ("set", 1000000)
    assert ganforge(env, "runs", "delete", run["id"])[0] == 0
    code, _, err = ganforge(env, "runs", "create", "--set", "train.steps=5")
    assert code == 1 and "422: dataset: Field required" in err


def test_datasets_upload_list_delete(env: dict[str, str], tmp_path: Path) -> None:
    archive = tmp_path / "blobs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(5):
            buf = io.BytesIO()
            Image.new("L", (12, 12), color=50 * i).save(buf, format="PNG")
            zf.writestr(f"{i}.png", buf.getvalue())
    code, out, err = ganforge(env, "datasets", "upload", str(archive), "--name", "blobs", "--json")
    assert code == 0, err
    dataset = json.loads(out)
    assert (dataset["name"], dataset["num_images"]) == ("blobs", 5)
    code, out, _ = ganforge(env, "datasets", "list")
    assert code == 0 and dataset["id"] in out and "ring8" in out
    assert ganforge(env, "datasets", "delete", dataset["id"])[0] == 0
    code, _, err = ganforge(env, "datasets", "delete", dataset["id"])
    assert code == 1 and "404" in err
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    code, _, err = ganforge(env, "datasets", "upload", str(tmp_path / "junk.zip"))
    assert code == 1 and err.startswith("error: 4")
