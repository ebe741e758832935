"""The Evaluator: reference statistics built (or loaded from the cache) once per dataset, then one call per
evaluation. What it reports depends on the data:

- 2-D points (ring8, grid25): `modes`, `high_quality` (%), `kl_modes` (PacGAN's definition, see modes.py) and
  `fd_points` (Fréchet distance on the raw coordinates). Primary: `modes` (max).
- digits: on the digits classifier's penultimate features `fid_digits`, `kid_digits` (and `kid_digits_std`
  when a set exceeds the 1,000-sample KID subsets), `precision_digits`, `recall_digits` (k = 3),
  `density_digits`, `coverage_digits` (k = 5); `classes` covered
  of 10 and `kl_classes` (predicted-label histogram to the real label distribution); `swd` (×1e3, mean over
  the Laplacian pyramid, and `swd_{res}` per level); `label_accuracy` when the samples carry labels.
  Primary: `fid_digits` (min). With a generator to walk (`path`), `ppl_w_digits` (style-based) or
  `ppl_z_digits` (others): the perceptual path length on the classifier's features (ppl.py).
- stacked-digits: the same feature metrics on the three channels' features side by side (384-d), `modes`
  covered of 1,000 and `kl_modes` to uniform (each channel classified), `swd`. Primary: `fid_digits` (min).
- other image data: `swd` only, since no feature network fits it. Primary: `swd` (min).
- every image dataset, when `GANFORGE_INCEPTION_WEIGHTS` names a file with the right SHA-256 (inception.py):
  `fid_inception` and `kid_inception` (+ `kid_inception_std`, as for the digits) on the 2,048-d pool3
  features of pytorch-fid's Inception-v3, and `inception_score` with `inception_score_std` (10 splits; left
  out of a set under 10 samples, such as a small held-out floor set). Images are resized to 299 x 299, so
  this pass dominates the evaluation's cost (docs/benchmarks.md). Without the file, or on 2-D points, these
  names are never reported and `Evaluator.skipped` says why; the primary metric does not change.

Every result carries its sample counts: `n_fake` (generated), `n_real` (reference set), `n_pr` (the equal
number of each that precision/recall/density/coverage use, at most 5,000) and `n_swd` (the same for SWD, at
most 1,024). Every value is a finite float; a metric that is undefined for a sample set is left out.
`floor` holds the same metrics for a held-out real set against the reference set (digits: scikit-learn's
digits split 80/20, stratified, seed 0, the same split the classifier was trained on; stacked-digits and
uploads: disjoint slices of the data; 2-D: disjoint slices of the fixed 100,000-point sample), with its own
counts.

The reference cache is one safetensors file per (data content hash, extractor name and weights hash, sample
count, metric version, and the Inception weights' hash when they are used), written atomically into `cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.layout import atomic_path
from core.metrics import classifier as clf
from core.metrics.digits_data import digits_split_indices
from core.metrics.distances import density_coverage, feature_stats, fid, frechet_distance, kid, precision_recall
from core.metrics.inception import (
    INCEPTION_METRICS,
    INCEPTION_NAME,
    IS_SPLITS,
    fid_from_features,
    inception_features,
    inception_score,
    inception_status,
    inception_weights_path,
    load_inception,
)
from core.metrics.inception_net import FIDInceptionV3
from core.metrics.modes import label_metrics, mode_metrics, stacked_mode_ids
from core.metrics.ppl import PathSampler, path_length
from core.metrics.swd import swd

METRICS_VERSION = "1"
FEATURE_BATCH = 256
MAX_PR = 5000  # precision/recall/density/coverage use at most this many samples of each set
MAX_SWD = 1024  # SWD uses at most this many images of each set
INCEPTION_BATCH = 32  # images per Inception-v3 forward pass (299 x 299: about 30 MB of activations each)
INCEPTION_REF_KEYS = {"inception_feats", "inception_sum", "inception_cov_sum"}

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


def default_cache_dir() -> Path:
    """$GANFORGE_METRICS_CACHE, else a folder in the system's temp directory."""
    raw = os.environ.get("GANFORGE_METRICS_CACHE")
    return Path(raw) if raw else Path(tempfile.gettempdir()) / "ganforge-metrics-cache"


def _hash_tensors(*tensors: torch.Tensor | None) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        t = t.detach().cpu()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class Evaluator:
    """`Evaluator(dataset, n_samples, device, cache_dir)` then `values = ev(sample_fn)`; see the module docstring.

    dataset: a `core.datasets.Dataset`. sample_fn(n) -> (samples, labels | None), samples in [-1, 1] as
    (n, C, H, W) images or (n, 2) points.
    """

    def __init__(
        self,
        dataset: Any,
        n_samples: int = 2048,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
    ) -> None:
        if n_samples < 16:
            raise ValueError(f"eval_samples must be at least 16, not {n_samples}")
        self.dataset = dataset
        self.n_samples = n_samples
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.kind: str = dataset.kind
        self.skipped: dict[str, str] = {}
        self.inception: FIDInceptionV3 | None = None
        self.inception_sha256 = ""
        try:
            if self.kind != "images":
                reason = "the Inception-v3 metrics apply to images, not to 2-D points"
            elif (weights := inception_weights_path()) is None:
                reason = inception_status()
            else:
                self.inception, self.inception_sha256 = load_inception(weights, device=self.device)
        except ValueError as err:
            reason = str(err)
        if self.inception is None:
            for name in INCEPTION_METRICS:
                self.skipped[name] = reason

        # What the data supports: 2-D modes, the digits classifier, or pixels only.
        self.task = "points"
        if self.kind == "images":
            name = getattr(dataset, "name", "")
            self.task = name if name in ("digits", "stacked-digits") else "images"
        if self.task == "points":
            self.primary: tuple[str, str] = ("modes", "max")
        elif self.task == "images":
            self.primary = ("swd", "min")
            for name in ("fid_digits", "kid_digits", "precision_digits", "recall_digits"):
                self.skipped[name] = "the digits classifier's features fit only the digits datasets"
        else:
            self.primary = ("fid_digits", "min")
        self.classifier: clf.DigitsClassifier | None = None
        self.extractor = {"name": "none", "sha256": ""}
        if self.task in ("digits", "stacked-digits"):
            self.classifier = clf.load_digits_classifier(device=self.device)
            info = clf.describe()
            self.extractor = {"name": str(info["name"]), "sha256": str(info["sha256"])}

        # The real reference set and the held-out set that gives the floor.
        self.ref_x, self.ref_labels, self.held_x, self.held_labels = self._split()
        self.n_real = int(self.ref_x.shape[0])
        self._load_or_build_reference()
        # Keep only what later evaluations use: the features are cached, SWD reads at most MAX_SWD images.
        if self.kind == "images":
            self.ref_x = self.ref_x[:MAX_SWD].clone()
            self.held_x = self.held_x[:0]

    # Reference data.

    def _split(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(reference x, labels, held-out x, labels); sizes capped at n_samples each."""
        ds = self.dataset
        n_total = len(ds)
        if self.task == "digits" and n_total == 1797:
            train_idx, held_idx = digits_split_indices()
            shuffle = torch.Generator().manual_seed(0)  # a cap below the split's size takes a random subset
            ref_idx = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=shuffle)][: self.n_samples]
            held_idx_t = torch.from_numpy(held_idx)[torch.randperm(len(held_idx), generator=shuffle)][: self.n_samples]
        else:
            if self.task == "images":  # uploads may be ordered by class: shuffle under a fixed seed first
                order = torch.randperm(n_total, generator=torch.Generator().manual_seed(0))
            else:
                order = torch.arange(n_total)
            n_held = min(self.n_samples, n_total // 5 if self.task == "images" else n_total // 2)
            n_ref = min(self.n_samples, n_total - n_held)
            ref_idx, held_idx_t = order[:n_ref], order[n_ref : n_ref + n_held]
        if len(held_idx_t) < 8 or len(ref_idx) < 8:
            raise ValueError(
                f"schedule.eval_every: {getattr(ds, 'name', 'the dataset')} has too few samples ({n_total}) to "
                "evaluate against a held-out part; add images or set eval_every to 0"
            )
        ref_x, ref_labels = ds.batch(ref_idx)
        held_x, held_labels = ds.batch(held_idx_t)
        return ref_x.cpu().float(), _cpu(ref_labels), held_x.cpu().float(), _cpu(held_labels)

    def _cache_key(self) -> str:
        ds = self.dataset
        content = _hash_tensors(ds.store, getattr(ds, "triples", None), ds.labels)
        fields: dict[str, Any] = {
            "version": METRICS_VERSION,
            "data": content,
            "image_size": getattr(ds, "image_size", 0),
            "task": self.task,
            "extractor": self.extractor,
            "n_samples": self.n_samples,
        }
        if self.inception is not None:  # only then, so that the keys of caches without Inception stay as they were
            fields["inception"] = {"name": INCEPTION_NAME, "sha256": self.inception_sha256}
        key = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _load_or_build_reference(self) -> None:
        path = self.cache_dir / f"ref-{self.task}-{self._cache_key()}.safetensors"
        self.cache_path = path
        if path.is_file():
            try:
                tensors = load_file(str(path))
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
                if self.inception is not None and not set(tensors) >= INCEPTION_REF_KEYS:
                    raise KeyError("inception_feats")
                self.ref = tensors
                self.floor: dict[str, float] = {k: float(v) for k, v in json.loads(meta["floor"]).items()}
                self.cache_hit = True
                return
            except (OSError, ValueError, KeyError, safetensors.SafetensorError):
                pass  # a damaged cache file is rebuilt below
        self.cache_hit = False
        self.ref: dict[str, torch.Tensor] = {}
        if self.classifier is not None:
            feats, preds = self._features(self.ref_x)
            self.ref["feats"] = feats
            self.ref["preds"] = preds
            total = feats.double()
            self.ref["sum"] = total.sum(0)
            self.ref["cov_sum"] = total.T @ total
        if self.inception is not None:
            feats, _ = inception_features(self.inception, self.ref_x, batch=INCEPTION_BATCH)
            self.ref["inception_feats"] = feats
            total = feats.double()
            self.ref["inception_sum"] = total.sum(0)
            self.ref["inception_cov_sum"] = total.T @ total
        self.floor = self._metrics(self.held_x, self.held_labels, held_out=True)
        placeholder = {"empty": torch.zeros(1)} if not self.ref else {}
        with atomic_path(path) as tmp:
            save_file({**self.ref, **placeholder}, str(tmp), metadata={"floor": json.dumps(self.floor)})

    # Features.

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, H, W) → classifier features (N, 128·C) and predictions (N,) (stacked: mode ids)."""
        assert self.classifier is not None
        feats, preds = [], []
        for start in range(0, x.shape[0], FEATURE_BATCH):
            xb = x[start : start + FEATURE_BATCH].to(self.device)  # (B, C, H, W)
            b, c, h, w = xb.shape
            f, logits = self.classifier.features_and_logits(xb.reshape(b * c, 1, h, w))  # (B·C, 128), (B·C, 10)
            feats.append(f.reshape(b, c * clf.FEATURE_DIM).float().cpu())
            digit = logits.argmax(1).reshape(b, c).cpu()  # (B, C)
            if c == 3:
                preds.append(stacked_mode_ids(digit))
            else:
                preds.append(digit[:, 0])
        return torch.cat(feats), torch.cat(preds)

    # Metrics.

    def _metrics(self, x: torch.Tensor, labels: torch.Tensor | None, *, held_out: bool = False) -> dict[str, float]:
        """Every metric of sample set x against the reference set."""
        out: dict[str, float] = {"n_fake": float(x.shape[0]), "n_real": float(self.n_real)}
        if self.task == "points":
            ds = self.dataset
            out.update(mode_metrics(x, ds.modes.cpu(), float(ds.mode_std)))
            mu_r, sigma_r = feature_stats(self.ref_x)
            mu_f, sigma_f = feature_stats(x)
            out["fd_points"] = frechet_distance(mu_r.numpy(), sigma_r.numpy(), mu_f.numpy(), sigma_f.numpy())
            return out

        m = min(self.n_real, x.shape[0], MAX_PR)
        out["n_pr"] = float(m)
        if self.classifier is not None:
            feats, preds = self._features(x)
            ref_feats = self.ref["feats"]
            out["fid_digits"] = fid(self.ref["sum"], self.ref["cov_sum"], self.n_real, feats)
            out["kid_digits"], kid_std = kid(ref_feats, feats)
            if kid_std is not None:
                out["kid_digits_std"] = kid_std
            out["precision_digits"], out["recall_digits"] = precision_recall(ref_feats[:m], feats[:m], k=3)
            out["density_digits"], out["coverage_digits"] = density_coverage(ref_feats[:m], feats[:m], k=5)
            if self.task == "digits":
                # The label distribution of the whole dataset: every class is in it, so the KL stays finite.
                real_hist = torch.bincount(self.dataset.labels.cpu(), minlength=10)
                lab = label_metrics(preds, 10, reference=real_hist)
                out["classes"], out["kl_classes"] = lab["covered"], lab["kl"]
            else:
                lab = label_metrics(preds, 1000)
                out["modes"], out["kl_modes"] = lab["covered"], lab["kl"]
            if labels is not None and not held_out:
                out["label_accuracy"] = float((preds == labels.cpu()).double().mean())
        if self.inception is not None:
            out.update(self._inception_metrics(x))
        m_swd = min(m, MAX_SWD)
        out["n_swd"] = float(m_swd)
        per_level = swd(self.ref_x[:m_swd], x[:m_swd].float())
        if per_level:
            out["swd"] = float(np.mean(list(per_level.values())))
            for res, value in per_level.items():
                out[f"swd_{res}"] = value
        return out

    def _inception_metrics(self, x: torch.Tensor) -> dict[str, float]:
        """fid_inception, kid_inception (+ _std), inception_score (+ _std) of images x against the reference."""
        assert self.inception is not None
        feats, logits = inception_features(self.inception, x, batch=INCEPTION_BATCH)
        ref_feats = self.ref["inception_feats"]
        out = {
            "fid_inception": fid_from_features(
                ref_feats, self.ref["inception_sum"], self.ref["inception_cov_sum"], feats
            )
        }
        out["kid_inception"], kid_std = kid(ref_feats, feats)
        if kid_std is not None:
            out["kid_inception_std"] = kid_std
        if x.shape[0] >= IS_SPLITS:
            out["inception_score"], out["inception_score_std"] = inception_score(logits)
        return out

    def __call__(self, sample_fn: SampleFn, path: PathSampler | None = None) -> dict[str, float]:
        """Draw n_samples from sample_fn and compute every metric against the cached reference; with `path` (the
        generator behind sample_fn) and the digits classifier, also the perceptual path length over n_samples
        end-point pairs of a fixed seed."""
        with torch.no_grad():
            samples, labels = sample_fn(self.n_samples)
        samples = samples.detach().float().cpu()
        expected = (2,) if self.task == "points" else tuple(self.ref_x.shape[1:])
        if tuple(samples.shape[1:]) != expected:
            raise ValueError(f"eval: samples have shape {tuple(samples.shape[1:])}, the data {expected}")
        if not torch.isfinite(samples).all():
            raise ValueError("eval: the generator produced non-finite samples")
        values = self._metrics(samples, _cpu(labels))
        if path is not None and self.classifier is not None:
            values[f"ppl_{path.space}_digits"] = path_length(
                path, self._unit_features, n=self.n_samples, seed=0, device=self.device
            )
        return values

    def _unit_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) → the classifier's features of each channel at unit length, side by side and scaled
        by 1/sqrt(C): (B, 128·C), so that a squared distance is the mean of the channels' ones."""
        assert self.classifier is not None
        b, c, h, w = x.shape
        f, _ = self.classifier.features_and_logits(x.reshape(b * c, 1, h, w).to(self.device))  # (B·C, 128)
        unit: torch.Tensor = f / f.norm(dim=1, keepdim=True).clamp_min(1e-10)
        return unit.reshape(b, c * clf.FEATURE_DIM) / math.sqrt(c)


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.detach().cpu() if t is not None else None


def evaluate_checkpoint(
    path: str | Path,
    *,
    dataset: Any,
    n_samples: int = 2048,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    dataset_dir: str | Path | None = None,
    ema: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Load a checkpoint's generator and evaluate it on `dataset` (a name, or a loaded `core.datasets.Dataset`).

    Returns {"checkpoint", "step", "dataset", "metrics", "floor", "primary": {"name", "direction"}, "skipped"}.
    The latents (and labels of a conditional generator, uniform over the classes) come from `seed`, and after them
    a style-based generator's per-sample noise maps (`fresh_noise`).
    """
    from core.checkpoint import load_generator
    from core.datasets import load_dataset
    from core.networks_stylegan2 import fresh_noise

    generator, cfg, data_info = load_generator(Path(path), ema=ema, device=device)
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, image_size=int(data_info.get("image_size") or 0), dataset_dir=dataset_dir)
    if dataset.kind != data_info.get("kind"):
        raise ValueError(
            f"dataset: the checkpoint generates {data_info.get('kind')} but {dataset.name} holds {dataset.kind}"
        )
    ev = Evaluator(dataset, n_samples=n_samples, device=device, cache_dir=cache_dir)
    z_dim = int(cfg.model.z_dim)
    conditional = bool(cfg.model.conditional)
    num_classes = int(data_info.get("num_classes") or 0)

    def sample_fn(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, z_dim, generator=gen)  # (n, z_dim)
        labels = torch.randint(num_classes, (n,), generator=gen) if conditional else None
        out = []
        with fresh_noise(generator, gen):
            for start in range(0, n, FEATURE_BATCH):
                zb = z[start : start + FEATURE_BATCH].to(device)
                lb = labels[start : start + FEATURE_BATCH].to(device) if labels is not None else None
                out.append(generator(zb, lb).float().cpu())
        return torch.cat(out), labels

    walk = None
    if data_info.get("kind") == "images":
        walk = PathSampler(generator, z_dim=z_dim, num_classes=num_classes if conditional else 0)
    values = ev(sample_fn, walk)
    with safe_open(str(path), framework="pt") as f:
        step = (f.metadata() or {}).get("step")
    return {
        "checkpoint": str(path),
        "step": int(step) if step is not None else None,
        "dataset": dataset.name,
        "metrics": values,
        "floor": ev.floor,
        "primary": {"name": ev.primary[0], "direction": ev.primary[1]},
        "skipped": dict(ev.skipped),
    }
