"""The digits classifier: a small CNN whose penultimate features serve FID/KID/PR on digits and stacked-digits,
and whose predictions count classes (digits) and modes (stacked-digits, one digit per channel).

It is trained by `scripts/train_digits_classifier.py` on the digits' train split and shipped as
`core/assets/digits_classifier.safetensors`; the file's metadata records the split, the seed and the held-out
accuracy. Inputs are images in [-1, 1] of any size; they are resized to the classifier's native 32 px inside.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open
from torch import nn

ASSET_PATH = Path(__file__).resolve().parent.parent / "assets" / "digits_classifier.safetensors"
NATIVE_SIZE = 32
FEATURE_DIM = 128
FORMAT = "ganforge-digits-classifier/1"


class DigitsClassifier(nn.Module):
    """Three conv blocks (32 → 16 → 8 → 4 px), global average pooling, a 128-d feature layer, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.feature = nn.Linear(128, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (B, 1, H, W) at any size → (B, 1, 32, 32) at the native size."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"the digits classifier takes (B, 1, H, W) images, got shape {tuple(x.shape)}")
        x = x.float()
        if x.shape[-2:] != (NATIVE_SIZE, NATIVE_SIZE):
            shrink = x.shape[-1] > NATIVE_SIZE
            x = F.interpolate(x, size=NATIVE_SIZE, mode="bilinear", align_corners=False, antialias=shrink)
        return x.clamp(-1, 1)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) in [-1, 1] → features (B, 128) taken before the ReLU, logits (B, 10)."""
        h = self.blocks(self.prepare(x))  # (B, 128, 4, 4)
        h = h.mean(dim=(2, 3))  # (B, 128)
        feats = self.feature(h)  # (B, 128)
        logits = self.head(F.relu(feats))  # (B, 10)
        return feats, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


def classifier_metadata(path: Path = ASSET_PATH) -> dict[str, str]:
    """The shipped file's metadata: format, held-out accuracy, split, seed."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return dict(meta)


def load_digits_classifier(path: Path = ASSET_PATH, device: str | torch.device = "cpu") -> DigitsClassifier:
    """Load the shipped classifier in eval mode with frozen weights."""
    if not path.is_file():
        raise ValueError(f"the digits classifier {path} is missing; run scripts/train_digits_classifier.py")
    meta = classifier_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ganforge digits classifier (format {meta.get('format')!r})")
    model = DigitsClassifier()
    model.load_state_dict(load_file(str(path)))
    model.eval().requires_grad_(False)
    return model.to(device)


def weights_sha256(path: Path = ASSET_PATH) -> str:
    """SHA-256 of the weights themselves (names, dtypes, shapes, bytes in name order), not of the file: safetensors
    writes its metadata in no fixed order, so two bit-identical trainings can give files that differ."""
    digest = hashlib.sha256()
    tensors = load_file(str(path))
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def describe(path: Path = ASSET_PATH) -> dict[str, object]:
    """Name, weights hash and held-out accuracy of the classifier, for cache keys and reports."""
    meta = classifier_metadata(path)
    return {
        "name": "digits-classifier",
        "sha256": weights_sha256(path),
        "heldout_accuracy": float(meta.get("heldout_accuracy", "nan")),
        "split": json.loads(meta.get("split", "{}")),
    }
