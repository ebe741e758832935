"""Checkpoints: one safetensors file per step, written atomically, nothing pickled.

Tensor keys: `G.<state_dict key>`, `D.<...>`, `G_ema.<...>` (when EMA is on), `opt_g.state.<i>.<name>`,
`opt_d.state.<i>.<name>`, `rng.torch`, `rng.cuda.<i>`, `rng.numpy`, `rng.data` (RNG states as uint8 tensors) and
`data.perm`, `data.pos` (the data order), and `data.clusters` (the cluster id of every real sample, when
`model.clusters` is on). Metadata (str -> str): `format` = `ganforge-checkpoint/1`, `config` (the
resolved RunConfig as JSON), `step`, `data` (JSON: the dataset's facts, `{"kind", "channels", "image_size",
"num_classes", ...}`, and its `fingerprint`, `Dataset.fingerprint`), `opt_g`/`opt_d` (JSON: the optimizers' param
groups and non-tensor state), `rng_python`, `rng_numpy` (JSON), `run_info` (JSON: versions, device, precision, seed,
the data's fingerprint), and `best` (JSON `{"metric", "value", "step"}`: the best
evaluation so far by the primary metric and the step of its checkpoint; absent until a run has evaluated), so that a
resumed run compares its evaluations with the best from before the resume.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from core import layout
from core.config import TRANSLATION_ARCHS, RunConfig
from core.datasets import DataOrder

FORMAT = "ganforge-checkpoint/1"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest finished checkpoint in a run folder, or None."""
    steps = layout.checkpoint_steps(run_dir)
    return layout.checkpoint_path(run_dir, steps[-1]) if steps else None


def prune_checkpoints(run_dir: Path, keep: int, *, protect: int | None = None) -> None:
    """Delete all but the `keep` newest checkpoints, and never the one at step `protect` (the best)."""
    for step in layout.checkpoint_steps(run_dir)[:-keep]:
        if step != protect:
            layout.checkpoint_path(run_dir, step).unlink(missing_ok=True)


def remove_checkpoints_after(run_dir: Path, step: int) -> Path | None:
    """Delete every checkpoint newer than `step`, so that the one at `step` becomes the newest; returns its path
    (None if there is none)."""
    for later in layout.checkpoint_steps(run_dir):
        if later > step:
            layout.checkpoint_path(run_dir, later).unlink(missing_ok=True)
    kept = layout.checkpoint_path(run_dir, step)
    return kept if kept.exists() else None


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """Write tensors atomically (core.layout.atomic_path); returns the file's size in bytes."""
    plain = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    with layout.atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=metadata)
    return path.stat().st_size


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """An optimizer's state split into tensors and a JSON string of everything else."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})


def _load_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: str) -> None:
    info = json.loads(meta)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + ".state."):
            index, name = key[len(prefix) + 7 :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for index, entry in info["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    groups = info["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def _rng_tensors(order: DataOrder) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every RNG state of the process and the data order, as uint8/int64 tensors and JSON."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.data": order.gen.get_state()}
    tensors["data.perm"] = order.perm
    tensors["data.pos"] = torch.tensor([order.pos], dtype=torch.int64)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    np_bytes = np.frombuffer(np.asarray(np_keys, dtype=np.uint32).tobytes(), np.uint8).copy()
    tensors["rng.numpy"] = torch.from_numpy(np_bytes)
    py_version, py_internal, py_gauss = random.getstate()
    meta = {
        "rng_numpy": json.dumps(
            {"name": np_name, "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached": float(np_cached)}
        ),
        "rng_python": json.dumps({"version": py_version, "internal": list(py_internal), "gauss": py_gauss}),
    }
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, str], order: DataOrder) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    order.load_state({"gen": tensors["rng.data"], "perm": tensors["data.perm"], "pos": tensors["data.pos"]})
    np_meta = json.loads(meta["rng_numpy"])
    keys = np.frombuffer(tensors["rng.numpy"].numpy().tobytes(), dtype=np.uint32)
    np.random.set_state((np_meta["name"], keys, np_meta["pos"], np_meta["has_gauss"], np_meta["cached"]))
    py = json.loads(meta["rng_python"])
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


def save_training_state(
    path: Path,
    *,
    step: int,
    cfg: RunConfig,
    data_info: dict[str, Any],
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    order: DataOrder,
    run_info: dict[str, Any],
    best: dict[str, Any] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> int:
    """Write everything a run needs to continue exactly; returns the file's size in bytes. `modules` and
    `optimizers` are stored under their names (`G`, `D`, `G_ema`; `opt_g`, `opt_d`); `extra` holds a family's own
    tensors under their full names (e.g. `data.clusters`)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    metadata = {"format": FORMAT, "config": cfg.model_dump_json(), "step": str(step), "data": json.dumps(data_info)}
    for name, opt in optimizers.items():
        opt_tensors, metadata[name] = _optimizer_tensors(name, opt)
        tensors.update(opt_tensors)
    rng_tensors, rng_meta = _rng_tensors(order)
    tensors.update(rng_tensors)
    tensors.update(extra or {})
    metadata |= {"run_info": json.dumps(run_info), **rng_meta}
    if best is not None:
        metadata["best"] = json.dumps(best)
    return write_safetensors(path, tensors, metadata)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on the CPU) and the metadata of a checkpoint; a ValueError if it is not one of ours."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path.name} is not a ganforge checkpoint (format {meta.get('format')!r})")
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return tensors, meta


def read_data_info(path: Path) -> dict[str, Any]:
    """What a checkpoint records about the data it was trained on (its `data` metadata), read alone."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return json.loads((f.metadata() or {})["data"])  # type: ignore[no-any-return]


def read_clusters(path: Path) -> torch.Tensor:
    """The cluster id (N,) of every real sample that a cluster-conditioned run's checkpoint holds."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        if "data.clusters" not in f.keys():
            raise ValueError(f"{path.name} holds no data clusters; it was not written by a cluster-conditioned run")
        return f.get_tensor("data.clusters")


def read_tensor(path: Path, name: str) -> torch.Tensor | None:
    """One of a family's own tensors (`Models.tensors()`) from a checkpoint, by its full name; None when absent."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return f.get_tensor(name) if name in f.keys() else None


def read_module_state(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The weights of one module a checkpoint holds (`name.*`, e.g. srgan's `G_psnr`), without their prefix, read
    alone; empty when the checkpoint has none."""
    prefix = f"{name}."
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}


def _sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_training_state(
    path: Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    order: DataOrder,
) -> tuple[int, dict[str, Any] | None, dict[str, Any]]:
    """Restore modules, optimizers (by name, as saved), RNG states and data order from a checkpoint; returns its
    step, the best evaluation it records (`{"metric", "value", "step"}`, or None) and what it records about the data
    (its `data` metadata). An EMA copy (`G_ema`) that the checkpoint lacks starts from the generator's weights."""
    tensors, meta = read_checkpoint(path)
    for name, module in modules.items():
        state = _sub_state(tensors, f"{name}.")
        if not state and name == "G_ema":
            state = _sub_state(tensors, "G.")
        module.load_state_dict(state)
    for name, opt in optimizers.items():
        _load_optimizer(opt, name, tensors, meta[name])
    _restore_rng(tensors, meta, order)
    return int(meta["step"]), (json.loads(meta["best"]) if meta.get("best") else None), json.loads(meta["data"])


def read_generator_state(path: Path, *, ema: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's generator weights (its EMA copy when `ema` and present), without their prefix, and its
    metadata; raises ValueError when the file is not a ganforge checkpoint."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path.name} is not a ganforge checkpoint (format {meta.get('format')!r})")
        keys = list(f.keys())
        prefix = "G_ema." if ema and any(k.startswith("G_ema.") for k in keys) else "G."
        state = {k[len(prefix) :]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
    return state, meta


def load_generator(
    path: Path | str, *, ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """The generator of a checkpoint in eval mode (its EMA copy when `ema` and present), its config and data info."""
    from core.networks import build_generator

    path = Path(path)
    state, meta = read_generator_state(path, ema=ema)
    cfg = RunConfig.model_validate_json(meta["config"])
    if cfg.model.arch == "ctgan":
        raise ValueError(
            "this run trains ctgan, which synthesizes table rows; generations and scores of tables are not "
            "available yet"
        )
    if cfg.model.arch in TRANSLATION_ARCHS:
        raise ValueError(
            f"this run trains {cfg.model.arch}, which translates input images and does not sample from latents, "
            "so it makes no generations or scores"
        )
    data_info = json.loads(meta["data"])
    if cfg.model.arch == "stylegan2":
        from core.networks_stylegan2 import build_generator as build_style_generator

        G = build_style_generator(cfg, channels=data_info["channels"], num_classes=data_info["num_classes"])
    else:
        G = build_generator(cfg, channels=data_info["channels"], num_classes=data_info["num_classes"])
    G.load_state_dict(state)
    G.to(device).eval()
    return G, cfg, data_info
