"""Safe ZIP ingestion and the on-disk format of uploaded datasets.

An archive is never trusted. Before a single member is decompressed, the central directory is walked with our
own reader (so that a directory of millions of entries is refused without building millions of objects), and
every member is checked: no absolute path, no `..`, no symlink or other special file, a cap on the member
count, on the declared total size and on each member's declared compression ratio. Then, while members are
decompressed, the bytes really produced are counted, and reading stops at the caps: header sizes can lie.
Nothing is ever extracted to disk; members are read into memory one at a time and decoded by Pillow, with the
decoders limited to PNG, JPEG, WebP, BMP and GIF, and a pixel cap checked before an image is decoded.
Unreadable images are skipped and reported; an archive without a single readable image is an error.

Layout: images in one folder per class (the class is the top folder under any wrapper folder that every image
shares), or all at the top level (unlabeled). A single class folder is the same as flat: unlabeled.

Storage, content-addressed, `{data_dir}/datasets/{content_hash}/`:
- `images.npy`  uint8 (N, S, S, C): every readable image, turned upright (EXIF orientation), center-cropped
  to a square and resized (Lanczos) to the stored side S; C is 1 when every image is grayscale, else 3;
  transparency is composited on white. S is the most common short side among the images, capped at
  `Limits.max_side` (128 px); smaller images are scaled up to S. GIF and WebP: the first frame.
- `labels.npy`  int64 (N,), the class index of each image; only for labeled datasets.
- `index.json`  `{"format": "ganforge-dataset/1", "num_images", "image_size", "channels", "classes",
  "images_per_class"}`.
- `preview.png` a grid of up to 64 images.
`content_hash` is the SHA-256 of the normalised content (shape, class names, pixels, labels), so the same
images uploaded twice, even re-zipped, are stored once. Everything is written into a temporary folder beside
the final one and renamed into place; a failure leaves nothing behind.

Translation layouts (`prepare(..., layout=...)`; "auto" picks unpaired for trainA/ and trainB/ folders, paired
for exactly the folders A/ and B/, else images):
- "paired": A/ (inputs) and B/ (targets) whose files share names (the path below A/ or B/ without the extension);
  a file without a partner is an error naming it. "AB": pix2pix's side-by-side images, each twice as wide as tall,
  the input on the left half and the target on the right (any folders: train/, val/, test/ are read alike).
  Stored as `source.npy` (inputs) and `images.npy` (targets), each side with its own channels.
- "unpaired": CycleGAN's trainA/ and trainB/ (and testA/, testB/, which become the held-out images) as
  `images.npy` (domain A) and `images_b.npy` (domain B), both in colour when either is.
Every side is stored at one side S (the most common short side of all images, capped), center-cropped. index.json
adds `pairing`, `layout`, `source_channels` or `num_b` and `b_channels`, and the held-out indices: `held_out`
(pairs, or domain A's images) and `held_out_b`: HELD_OUT_SHARE of them, at least HELD_OUT_MIN, from a fixed seed,
unless testA/ and testB/ say which. `read_pairs` and `read_domains` read them back.

Errors: `UploadError` (a `ValueError`) with a sentence naming the problem; the API answers it with 422.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import re
import shutil
import stat
import struct
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMAT = "ganforge-dataset/1"
PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
CONTENT_HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Ratios are judged only once a member is this large: small files with a high ratio (a flat BMP) are harmless.
RATIO_MIN_BYTES = 1 << 20
NPY_HEADER_BYTES = 256  # images.npy's header is padded to this length, so it can be written last
MAX_REPORTED_SKIPS = 200
# The layouts an archive can have (see the module docstring); "auto" tells them by their folders.
LAYOUTS = ("auto", "images", "paired", "AB", "unpaired")
UNPAIRED_FOLDERS = ("trainA", "trainB", "testA", "testB")
PAIRED_HELP = "a paired archive holds folders A/ (inputs) and B/ (targets) whose files share names"
UNPAIRED_HELP = "an unpaired archive holds folders trainA/ and trainB/ (and optionally testA/ and testB/)"
# Translation uploads hold out HELD_OUT_SHARE of their pairs (or of each domain's images), at least HELD_OUT_MIN,
# for evaluation, and so need at least MIN_TRANSLATION_ITEMS.
HELD_OUT_SHARE, HELD_OUT_MIN, MIN_TRANSLATION_ITEMS = 0.1, 8, 16
SPLIT_SEED = 20_240_000


class UploadError(ValueError):
    """The archive cannot be accepted; the message says why, in words a user can act on."""


@dataclass(frozen=True)
class Limits:
    """Caps on what an archive may hold. The defaults suit a server; tests pass smaller ones."""

    max_members: int = 100_000  # entries in the archive, folders included
    max_unpacked_bytes: int = 4 << 30  # total bytes once decompressed
    max_member_bytes: int = 256 << 20  # bytes of one member once decompressed
    max_ratio: float = 200.0  # uncompressed / compressed size of one member (zip bombs reach ~1000)
    max_image_pixels: int = 40_000_000  # width × height of one image, checked before decoding it
    max_side: int = 128  # cap on the stored side S


@dataclass
class Prepared:
    """A normalised dataset written to `tmp_dir`, ready to be placed under its content hash."""

    tmp_dir: Path
    content_hash: str
    num_images: int
    image_size: int
    channels: int
    classes: list[str]
    stats: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    # The archive names of the stored images, in the order of images.npy.
    names: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    info: zipfile.ZipInfo
    label: int  # -1 for unlabeled
    size: tuple[int, int] = (0, 0)
    mode: str = ""
    format: str = ""


# A member of a translation archive and its crop: the whole image (None), or the "left" or "right" half of a
# side-by-side AB image.
_Part = tuple[_Candidate, str | None]


def dataset_dir_for(data_dir: Path, content_hash: str) -> Path:
    """The storage folder of an uploaded dataset; built from the hash alone, which must be 64 hex digits."""
    if not CONTENT_HASH_PATTERN.match(content_hash):
        raise ValueError(f"not a content hash: {content_hash!r}")
    return Path(data_dir) / "datasets" / content_hash


def read_index(dataset_dir: Path) -> dict[str, Any]:
    """The dataset's index.json."""
    index: dict[str, Any] = json.loads((Path(dataset_dir) / "index.json").read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{dataset_dir} is not a ganforge dataset ({FORMAT})")
    return index


def read_images(dataset_dir: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Load an uploaded dataset at its stored size.

    Returns images uint8 (N, S, S, C), labels int64 (N,) or None when unlabeled, and the class names.
    """
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "index.json").is_file():
        raise ValueError(f"the uploaded dataset is missing from {dataset_dir}; was it deleted?")
    index = read_index(dataset_dir)
    images = np.load(dataset_dir / "images.npy", allow_pickle=False)  # (N, S, S, C) uint8
    expected = (index["num_images"], index["image_size"], index["image_size"], index["channels"])
    if images.dtype != np.uint8 or images.shape != expected:
        raise ValueError(f"{dataset_dir}/images.npy is {images.dtype} {images.shape}, expected uint8 {expected}")
    labels = None
    if index["classes"]:
        labels = np.load(dataset_dir / "labels.npy", allow_pickle=False).astype(np.int64)  # (N,)
        if labels.shape != (index["num_images"],):
            raise ValueError(f"{dataset_dir}/labels.npy has shape {labels.shape}, expected ({index['num_images']},)")
    return images, labels, list(index["classes"])


@contextmanager
def storage_lock(datasets_dir: Path) -> Iterator[None]:
    """An exclusive lock (across processes) held while storage is placed or removed and its rows change."""
    datasets_dir.mkdir(parents=True, exist_ok=True)
    with (datasets_dir / ".lock").open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def place(prepared: Prepared, datasets_dir: Path) -> bool:
    """Rename the prepared folder into place. False when identical content is already stored (then the
    prepared folder is removed). Call it under `storage_lock`."""
    final = dataset_dir_for(datasets_dir.parent, prepared.content_hash)
    if final.exists():
        shutil.rmtree(prepared.tmp_dir, ignore_errors=True)
        return False
    prepared.tmp_dir.rename(final)
    return True


def remove_stored(datasets_dir: Path, content_hash: str) -> None:
    """Remove a dataset's storage folder. Call it under `storage_lock`, once no row references the hash."""
    shutil.rmtree(dataset_dir_for(datasets_dir.parent, content_hash), ignore_errors=True)


def sweep_stale(datasets_dir: Path, *, max_age_seconds: float = 6 * 3600) -> list[str]:
    """Remove temporary uploads and folders left by a process killed mid-upload (older than `max_age_seconds`).
    Returns the names removed."""
    removed: list[str] = []
    if not datasets_dir.is_dir():
        return removed
    cutoff = time.time() - max_age_seconds
    for path in datasets_dir.iterdir():
        if not path.name.startswith((".upload-", ".tmp-")):
            continue
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime < cutoff:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
                removed.append(path.name)
    return removed


def prepare(zip_path: Path, *, datasets_dir: Path, limits: Limits | None = None, layout: str = "images") -> Prepared:
    """Check and normalise the archive at `zip_path` into a new temporary folder inside `datasets_dir`.

    `layout` (LAYOUTS): "images" (class folders or flat), "paired" (A/ and B/), "AB" (side-by-side pairs),
    "unpaired" (trainA/ and trainB/), or "auto" (unpaired or paired when the folders say so, else images).
    Raises UploadError when the archive is refused; the temporary folder is then gone already.
    """
    limits = limits or Limits()
    if layout not in LAYOUTS:
        raise UploadError(f"layout: {layout!r} is not a layout; use one of {', '.join(LAYOUTS)}")
    # Check every member from the central directory before decompressing anything.
    _check_directory_size(zip_path, limits)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise UploadError(f"file: not a valid ZIP archive ({exc})") from exc
    with archive:
        infos = archive.infolist()
        _check_members(infos, limits)
        skipped: list[dict[str, str]] = []
        files = _image_files(infos, skipped)
        chosen = _pick_layout(files, layout)
        if chosen != "images":
            return _prepare_translation(archive, files, chosen, skipped, datasets_dir=datasets_dir, limits=limits)
        candidates, classes = _classes(files, skipped)
        if not candidates:
            raise UploadError(_no_images_message(skipped))

        # First pass: read each image's header (size, mode), counting the bytes really decompressed.
        budget = [0]
        readable: list[_Candidate] = []
        for cand in candidates:
            data = _read_member(archive, cand.info, limits, budget)
            if data is None:
                skipped.append({"name": cand.info.filename, "reason": "corrupt archive member"})
                continue
            try:
                with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as im:
                    cand.size, cand.mode, cand.format = im.size, im.mode, str(im.format)
            except Exception as exc:  # Pillow raises many kinds on hostile input
                skipped.append({"name": cand.info.filename, "reason": _image_reason(exc)})
                continue
            if cand.size[0] * cand.size[1] > limits.max_image_pixels:
                reason = (
                    f"image too large: {cand.size[0]}×{cand.size[1]} pixels, the limit is {limits.max_image_pixels}"
                )
                skipped.append({"name": cand.info.filename, "reason": reason})
                continue
            readable.append(cand)
        if not readable:
            raise UploadError(_no_images_message(skipped))

        # The stored side: the most common short side, capped; one channel only if every image is gray.
        short_sides = Counter(min(c.size) for c in readable)
        side = min(limits.max_side, max(short_sides.most_common(), key=lambda kv: (kv[1], kv[0]))[0])
        channels = 1 if all(c.mode in GRAY_MODES for c in readable) else 3

        # Second pass: decode, normalise and append each image to images.npy in a temporary folder.
        tmp_dir = datasets_dir / f".tmp-{uuid.uuid4().hex}"
        tmp_dir.mkdir(parents=True)
        try:
            kept: list[_Candidate] = []
            pixels = hashlib.sha256()
            with (tmp_dir / "images.npy").open("wb") as out:
                out.write(b"\0" * NPY_HEADER_BYTES)
                for cand in readable:
                    data = _read_member(archive, cand.info, limits, None)
                    try:
                        if data is None:
                            raise OSError("corrupt archive member")
                        array = _normalise(data, side=side, channels=channels)  # (S, S, C) uint8
                    except Exception as exc:
                        skipped.append({"name": cand.info.filename, "reason": _image_reason(exc)})
                        continue
                    raw = array.tobytes()
                    out.write(raw)
                    pixels.update(raw)
                    kept.append(cand)
                if not kept:
                    raise UploadError(_no_images_message(skipped))
                shape = (len(kept), side, side, channels)
                out.seek(0)
                out.write(_npy_header(shape))
            labels = np.array([c.label for c in kept], dtype=np.int64)  # (N,)
            used = sorted({c.label for c in kept})
            if classes and len(used) < len(classes):
                # A class whose images were all unreadable disappears; renumber the rest densely.
                remap = {old: new for new, old in enumerate(used)}
                labels = np.array([remap[int(x)] for x in labels], dtype=np.int64)
                classes = [classes[i] for i in used]
            if classes:
                np.save(tmp_dir / "labels.npy", labels, allow_pickle=False)
            content_hash = _content_hash(shape, classes, pixels.digest(), labels if classes else None)
            per_class = (
                {name: int((labels == i).sum()) for i, name in enumerate(classes)} if classes else {"": len(kept)}
            )
            index = {
                "format": FORMAT,
                "num_images": len(kept),
                "image_size": side,
                "channels": channels,
                "classes": classes,
                "images_per_class": per_class,
            }
            (tmp_dir / "index.json").write_text(json.dumps(index, indent=1))
            images = np.load(tmp_dir / "images.npy", mmap_mode="r", allow_pickle=False)
            (tmp_dir / "preview.png").write_bytes(preview_png(images, labels if classes else None))
            del images
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise

    sizes = Counter(c.size for c in kept)
    stats = {
        "images_per_class": per_class,
        "stored_size": side,
        "channels": channels,
        "original_sizes": {
            "min": list(min(sizes, key=lambda s: s[0] * s[1])),
            "max": list(max(sizes, key=lambda s: s[0] * s[1])),
            "most_common": [[w, h, n] for (w, h), n in sizes.most_common(5)],
        },
        "original_modes": dict(Counter(c.mode for c in kept)),
        "formats": dict(Counter(c.format for c in kept)),
        "num_skipped": len(skipped),
    }
    if len(skipped) > MAX_REPORTED_SKIPS:
        skipped = [*skipped[:MAX_REPORTED_SKIPS], {"name": "…", "reason": f"and {len(skipped) - 200} more"}]
    return Prepared(
        tmp_dir=tmp_dir,
        content_hash=content_hash,
        num_images=len(kept),
        image_size=side,
        channels=channels,
        classes=classes,
        stats=stats,
        skipped=skipped,
        names=[c.info.filename for c in kept],
    )


def preview_png(images: np.ndarray, labels: np.ndarray | None, *, n: int = 64, columns: int = 8) -> bytes:
    """A PNG grid of up to `n` images (N, S, S, C) uint8: a few of each class, or spread over the set."""
    count = images.shape[0]
    if labels is not None:
        # Round-robin over the classes, in class order.
        by_class = [np.flatnonzero(labels == k) for k in np.unique(labels)]
        picks: list[int] = []
        for i in range(max(len(ix) for ix in by_class)):
            picks.extend(int(ix[i]) for ix in by_class if i < len(ix))
            if len(picks) >= n:
                break
        picks = picks[:n]
    else:
        picks = sorted({int(i) for i in np.linspace(0, count - 1, min(n, count))})
    side, channels, pad = images.shape[1], images.shape[3], 2
    rows = (len(picks) + columns - 1) // columns
    cols = min(columns, len(picks))
    grid = np.full((rows * (side + pad) + pad, cols * (side + pad) + pad, channels), 255, dtype=np.uint8)
    for slot, index in enumerate(picks):
        y, x = pad + (slot // columns) * (side + pad), pad + (slot % columns) * (side + pad)
        grid[y : y + side, x : x + side] = images[index]  # (S, S, C)
    out = io.BytesIO()
    Image.fromarray(grid[:, :, 0] if channels == 1 else grid).save(out, format="PNG")
    return out.getvalue()


def is_npz(zip_path: Path) -> bool:
    """Whether a ZIP archive is an .npz: it holds members and every one is a .npy file."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def read_npz_images(zip_path: Path, *, limits: Limits, max_images: int) -> np.ndarray:
    """The images of an uploaded .npz (its array `samples`, as generations write it, or `images`, or its only
    array): float (N, C, H, W) in [-1, 1] with C 1 or 3, as float32. The archive gets the same checks as any upload
    and the array is read without pickles; UploadError names what is wrong."""
    _check_directory_size(zip_path, limits)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise UploadError(f"file: not a valid .npz archive ({exc})") from exc
    with archive:
        infos = archive.infolist()
        _check_members(infos, limits)
        arrays = {i.filename[: -len(".npy")]: i for i in infos if i.filename.endswith(".npy")}
        name = next((k for k in ("samples", "images") if k in arrays), None)
        if name is None and len(arrays) != 1:
            raise UploadError(
                f"file: the .npz holds the arrays {', '.join(sorted(arrays))[:200]}; name the images samples or images"
            )
        info = arrays[name or next(iter(arrays))]
        shown = info.filename[:200]
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise UploadError(f"file: {shown} is encrypted or compressed with other than deflate")
        # The header first: a shape or dtype that cannot be images is refused before the data is read.
        try:
            with archive.open(info) as stream:
                major, _ = np.lib.format.read_magic(stream)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(stream)
        except Exception as exc:  # a bad magic, header or member
            raise UploadError(f"file: {shown} is not a readable .npy array ({str(exc)[:200]})") from exc
        _check_npz_images(tuple(shape), dtype, limits=limits, max_images=max_images)
        data = _read_member(archive, info, limits, [0])
    if data is None:
        raise UploadError(f"file: {shown} is corrupt")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated data
        raise UploadError(f"file: {shown} is not a readable .npy array ({str(exc)[:200]})") from exc
    _check_npz_images(array.shape, array.dtype, limits=limits, max_images=max_images)
    images = array.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < -1.001 or images.max() > 1.001:
        raise UploadError("file: the images must be finite floats in [-1, 1], as generations give them")
    return images


def _check_npz_images(shape: tuple[int, ...], dtype: np.dtype, *, limits: Limits, max_images: int) -> None:
    """UploadError unless an array of this shape and dtype can be images to translate: (N, C, H, W) floats."""
    if len(shape) != 4 or shape[1] not in (1, 3) or shape[0] == 0:
        raise UploadError(f"file: the images must be (N, C, H, W) with C 1 or 3, not {tuple(shape)}")
    if not np.issubdtype(dtype, np.floating):
        raise UploadError(f"file: the images must be floats in [-1, 1], not {dtype}")
    n, _, h, w = shape
    if n > max_images:
        raise UploadError(f"file: at most {max_images} images per job, not {n}")
    if h * w > limits.max_image_pixels:
        raise UploadError(f"file: images of {w}×{h} pixels are over the limit of {limits.max_image_pixels}")


def read_pairs(dataset_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A paired upload at its stored size: inputs uint8 (N, S, S, C_A), targets uint8 (N, S, S, C_B) and the
    indices of the held-out pairs (H,) int64."""
    index = _translation_index(dataset_dir, "paired")
    n, side = index["num_images"], index["image_size"]
    source = _load_stored(dataset_dir, "source.npy", (n, side, side, index["source_channels"]))
    target = _load_stored(dataset_dir, "images.npy", (n, side, side, index["channels"]))
    return source, target, np.array(index["held_out"], dtype=np.int64)


def read_domains(dataset_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An unpaired upload at its stored size: domain A uint8 (N, S, S, C_A), domain B uint8 (M, S, S, C_B), and the
    indices of each domain's held-out images (int64)."""
    index = _translation_index(dataset_dir, "unpaired")
    side = index["image_size"]
    a = _load_stored(dataset_dir, "images.npy", (index["num_images"], side, side, index["channels"]))
    b = _load_stored(dataset_dir, "images_b.npy", (index["num_b"], side, side, index["b_channels"]))
    held_a, held_b = (np.array(index[key], dtype=np.int64) for key in ("held_out", "held_out_b"))
    return a, b, held_a, held_b


def _translation_index(dataset_dir: Path, pairing: str) -> dict[str, Any]:
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "index.json").is_file():
        raise ValueError(f"the uploaded dataset is missing from {dataset_dir}; was it deleted?")
    index = read_index(dataset_dir)
    if index.get("pairing") != pairing:
        raise ValueError(f"{dataset_dir} does not hold a {pairing} dataset")
    return index


def _load_stored(dataset_dir: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array: np.ndarray = np.load(Path(dataset_dir) / name, allow_pickle=False)
    if array.dtype != np.uint8 or array.shape != shape:
        raise ValueError(f"{dataset_dir}/{name} is {array.dtype} {array.shape}, expected uint8 {shape}")
    return array


def _pick_layout(files: list[tuple[zipfile.ZipInfo, list[str]]], layout: str) -> str:
    """The layout to read: the one asked for (checked against the folders), or under "auto" the one the folders
    show: trainA/ and trainB/ → unpaired, exactly A/ and B/ → paired, anything else → images."""
    folders = {dirs[0] for _, dirs in files if dirs}
    if layout == "auto":
        if {"trainA", "trainB"} <= folders:
            return "unpaired"
        return "paired" if folders == {"A", "B"} else "images"
    needed = {"paired": ("A", "B"), "unpaired": ("trainA", "trainB")}.get(layout, ())
    missing = [f"{name}/" for name in needed if name not in folders]
    if missing:
        what = PAIRED_HELP if layout == "paired" else UNPAIRED_HELP
        raise UploadError(f"file: {' and '.join(missing)} missing; {what}")
    return layout


def _shown(info: zipfile.ZipInfo, dirs: list[str]) -> str:
    """A member's name below the wrapper folders, as the user sees their layout: `A/7.png`."""
    return "/".join([*dirs, info.filename.replace("\\", "/").rstrip("/").split("/")[-1]])[:200]


def _pairs(
    files: list[tuple[zipfile.ZipInfo, list[str]]], skipped: list[dict[str, str]]
) -> list[tuple[_Candidate, _Candidate]]:
    """The (A, B) members of a paired archive, matched by their path below A/ and B/ without the extension, in
    name order; UploadError naming a file without a partner."""
    sides: dict[str, dict[str, zipfile.ZipInfo]] = {"A": {}, "B": {}}
    shown: dict[int, str] = {}
    for info, dirs in files:
        if not dirs or dirs[0] not in sides:
            skipped.append({"name": info.filename, "reason": "not in A/ or B/ (the archive is paired)"})
            continue
        name = _shown(info, dirs)
        key = str(Path(*dirs[1:], Path(name).stem)) if len(dirs) > 1 else Path(name).stem
        if key in sides[dirs[0]]:
            other = _shown(sides[dirs[0]][key], dirs)
            raise UploadError(f"file: {other} and {name} share a name; a paired archive matches A/ and B/ by name")
        sides[dirs[0]][key] = info
        shown[id(info)] = name
    unmatched = [
        (shown[id(info)], other)
        for side, other in (("A", "B"), ("B", "A"))
        for key, info in sorted(sides[side].items())
        if key not in sides[other]
    ]
    if unmatched:
        name, other = unmatched[0]
        more = f" (and {len(unmatched) - 1} more files without a partner)" if len(unmatched) > 1 else ""
        raise UploadError(f"file: {name} has no partner in {other}/{more}; {PAIRED_HELP}")
    return [
        (_Candidate(info=sides["A"][k], label=-1), _Candidate(info=sides["B"][k], label=-1)) for k in sorted(sides["A"])
    ]


def _read_header(
    archive: zipfile.ZipFile, cand: _Candidate, limits: Limits, budget: list[int], skipped: list[dict[str, str]]
) -> bool:
    """Fill in a candidate's size, mode and format from its header; False (and a skipped entry) when unreadable."""
    data = _read_member(archive, cand.info, limits, budget)
    if data is None:
        skipped.append({"name": cand.info.filename, "reason": "corrupt archive member"})
        return False
    try:
        with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as im:
            cand.size, cand.mode, cand.format = im.size, im.mode, str(im.format)
    except Exception as exc:  # Pillow raises many kinds on hostile input
        skipped.append({"name": cand.info.filename, "reason": _image_reason(exc)})
        return False
    if cand.size[0] * cand.size[1] > limits.max_image_pixels:
        reason = f"image too large: {cand.size[0]}×{cand.size[1]} pixels, the limit is {limits.max_image_pixels}"
        skipped.append({"name": cand.info.filename, "reason": reason})
        return False
    return True


def _held_out(n: int, what: str) -> list[int]:
    """The indices held out of n items for evaluation: HELD_OUT_SHARE of them, at least HELD_OUT_MIN, drawn from
    a fixed seed (the same archive gives the same split); UploadError below MIN_TRANSLATION_ITEMS."""
    if n < MIN_TRANSLATION_ITEMS:
        raise UploadError(
            f"file: {n} readable {what}; at least {MIN_TRANSLATION_ITEMS} are needed ({HELD_OUT_MIN} or more are held "
            "out of training for evaluation)"
        )
    count = max(HELD_OUT_MIN, round(n * HELD_OUT_SHARE))
    return sorted(int(i) for i in np.random.default_rng(SPLIT_SEED).permutation(n)[:count])


class _NpyWriter:
    """images.npy-style uint8 arrays appended image by image, their header written last, their bytes hashed."""

    def __init__(self, path: Path) -> None:
        self.out = path.open("wb")
        self.out.write(b"\0" * NPY_HEADER_BYTES)
        self.digest = hashlib.sha256()
        self.count = 0
        self.shape: tuple[int, ...] = ()

    def add(self, array: np.ndarray) -> None:
        raw = array.tobytes()
        self.out.write(raw)
        self.digest.update(raw)
        self.count += 1
        self.shape = array.shape

    def close(self) -> tuple[int, ...]:
        shape = (self.count, *self.shape)
        self.out.seek(0)
        self.out.write(_npy_header(shape))
        self.out.close()
        return shape


def _prepare_translation(
    archive: zipfile.ZipFile,
    files: list[tuple[zipfile.ZipInfo, list[str]]],
    layout: str,
    skipped: list[dict[str, str]],
    *,
    datasets_dir: Path,
    limits: Limits,
) -> Prepared:
    """Read a paired ("paired": A/ and B/; "AB": side-by-side images) or unpaired ("unpaired": trainA/, trainB/ and
    optionally testA/, testB/) archive into a new temporary folder; see the module docstring."""
    budget = [0]
    if layout == "paired":
        pairs = []
        for a, b in _pairs(files, skipped):
            readable = [_read_header(archive, c, limits, budget, skipped) for c in (a, b)]
            if all(readable):
                pairs.append((a, b))
            elif any(readable):
                partner = a if readable[0] else b
                skipped.append({"name": partner.info.filename, "reason": "its partner is unreadable"})
        groups: dict[str, list[_Part]] = {
            "source": [(a, None) for a, _ in pairs],
            "target": [(b, None) for _, b in pairs],
        }
    elif layout == "AB":
        whole = [_Candidate(info=info, label=-1) for info, _ in sorted(files, key=lambda f: _shown(*f))]
        whole = [c for c in whole if _read_header(archive, c, limits, budget, skipped)]
        for cand in whole:
            w, h = cand.size
            if abs(w - 2 * h) > 1:
                raise UploadError(
                    f"file: {cand.info.filename[:200]} is {w}×{h} px; a side-by-side (layout AB) archive holds images "
                    "twice as wide as tall, the input on the left and the target on the right"
                )
        groups = {"source": [(c, "left") for c in whole], "target": [(c, "right") for c in whole]}
    else:
        domains: dict[str, list[_Part]] = {name: [] for name in UNPAIRED_FOLDERS}
        for info, dirs in sorted(files, key=lambda f: _shown(*f)):
            if not dirs or dirs[0] not in domains:
                skipped.append({"name": info.filename, "reason": "not in trainA/, trainB/, testA/ or testB/"})
                continue
            cand = _Candidate(info=info, label=-1)
            if _read_header(archive, cand, limits, budget, skipped):
                domains[dirs[0]].append((cand, None))
        groups = {"a": domains["trainA"] + domains["testA"], "b": domains["trainB"] + domains["testB"]}
    for name, members in groups.items():
        if not members:
            folder = {"source": "A/", "target": "B/", "a": "trainA/", "b": "trainB/"}[name]
            where = "the archive" if layout == "AB" else folder
            raise UploadError(_no_images_message(skipped).replace("the archive", where, 1))

    def short_side(cand: _Candidate, crop: str | None) -> int:
        w, h = cand.size
        return min(w // 2 if crop else w, h)

    parts = [part for group in groups.values() for part in group]
    short_sides = Counter(short_side(*part) for part in parts)
    side = min(limits.max_side, max(short_sides.most_common(), key=lambda kv: (kv[1], kv[0]))[0])
    channels = {name: 1 if all(c.mode in GRAY_MODES for c, _ in members) else 3 for name, members in groups.items()}
    if layout == "unpaired":  # both domains in colour when either is, as CycleGAN reads them: its identity terms
        channels = dict.fromkeys(channels, max(channels.values()))  # compare an image with its own translation

    def fitted(part: _Part, group: str) -> np.ndarray:
        cand, crop = part
        data = _read_member(archive, cand.info, limits, None)
        if data is None:
            raise OSError("corrupt archive member")
        img = _decode(data, side=side, channels=channels[group])
        if crop is not None:
            half = img.size[0] // 2
            img = img.crop(
                (0, 0, half, img.size[1]) if crop == "left" else (img.size[0] - half, 0, img.size[0], img.size[1])
            )
        return _fit(img, side=side, channels=channels[group])  # (S, S, C) uint8

    tmp_dir = datasets_dir / f".tmp-{uuid.uuid4().hex}"
    tmp_dir.mkdir(parents=True)
    try:
        if layout in ("paired", "AB"):
            source, target = _NpyWriter(tmp_dir / "source.npy"), _NpyWriter(tmp_dir / "images.npy")
            names: list[str] = []
            for part_a, part_b in zip(groups["source"], groups["target"], strict=True):
                try:
                    x, y = fitted(part_a, "source"), fitted(part_b, "target")
                except Exception as exc:
                    skipped.append({"name": part_a[0].info.filename, "reason": _image_reason(exc)})
                    continue
                source.add(x)
                target.add(y)
                names.append(part_a[0].info.filename)
            shapes = {"source": source.close(), "target": target.close()}
            n = shapes["target"][0]
            held = {"held_out": _held_out(n, "pairs")}
            index: dict[str, Any] = {
                "pairing": "paired",
                "layout": layout,
                "num_images": n,
                "channels": channels["target"],
                "source_channels": channels["source"],
            }
            digests = [source.digest.digest(), target.digest.digest()]
            preview = _interleaved(tmp_dir / "source.npy", tmp_dir / "images.npy", pairs=True)
        else:
            kept: dict[str, list[str]] = {}
            shapes, digests, held = {}, [], {}
            for group, file, key, test in (
                ("a", "images.npy", "held_out", "testA"),
                ("b", "images_b.npy", "held_out_b", "testB"),
            ):
                writer, kept[group], tested = _NpyWriter(tmp_dir / file), [], []
                test_names = {c.info.filename for c, _ in domains[test]}
                for part in groups[group]:
                    try:
                        writer.add(fitted(part, group))
                    except Exception as exc:
                        skipped.append({"name": part[0].info.filename, "reason": _image_reason(exc)})
                        continue
                    kept[group].append(part[0].info.filename)
                    tested.append(part[0].info.filename in test_names)
                shapes[group] = writer.close()
                digests.append(writer.digest.digest())
                if any(tested) and not all(tested):
                    held[key] = [i for i, t in enumerate(tested) if t]  # testA/ or testB/ is the holdout
                else:
                    held[key] = _held_out(len(tested), f"images in {'trainA/' if group == 'a' else 'trainB/'}")
            n = shapes["a"][0]
            names = kept["a"]
            index = {
                "pairing": "unpaired",
                "layout": layout,
                "num_images": n,
                "num_b": shapes["b"][0],
                "channels": channels["a"],
                "b_channels": channels["b"],
            }
            preview = _interleaved(tmp_dir / "images.npy", tmp_dir / "images_b.npy", pairs=False)
        index = {"format": FORMAT, **index, "image_size": side, "classes": [], "images_per_class": {"": n}, **held}
        digest = hashlib.sha256(json.dumps({k: v for k, v in index.items()}, sort_keys=True).encode())
        for part_digest in digests:
            digest.update(part_digest)
        (tmp_dir / "index.json").write_text(json.dumps(index, indent=1))
        (tmp_dir / "preview.png").write_bytes(preview)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    stats = {
        "kind": index["pairing"],
        "layout": layout,
        "stored_size": side,
        "channels": index["channels"],
        "held_out": len(held["held_out"]),
        "num_skipped": len(skipped),
    }
    if layout == "unpaired":
        stats |= {"num_b": index["num_b"], "b_channels": index["b_channels"], "held_out_b": len(held["held_out_b"])}
    else:
        stats["source_channels"] = index["source_channels"]
    if len(skipped) > MAX_REPORTED_SKIPS:
        skipped = [*skipped[:MAX_REPORTED_SKIPS], {"name": "…", "reason": f"and {len(skipped) - 200} more"}]
    return Prepared(
        tmp_dir=tmp_dir,
        content_hash=digest.hexdigest(),
        num_images=n,
        image_size=side,
        channels=index["channels"],
        classes=[],
        stats=stats,
        skipped=skipped,
        names=names,
    )


def _interleaved(first: Path, second: Path, *, pairs: bool) -> bytes:
    """The preview of a translation upload from its two stored arrays (`interleaved_preview`)."""
    a = np.load(first, mmap_mode="r", allow_pickle=False)[:32]  # (n, S, S, C_A)
    b = np.load(second, mmap_mode="r", allow_pickle=False)[:32]
    return interleaved_preview(a, b, pairs=pairs)


def interleaved_preview(a: np.ndarray, b: np.ndarray, *, pairs: bool) -> bytes:
    """A preview of translation data, uint8 (n, S, S, C) each: up to 32 (input, target) pairs side by side
    (`pairs`), or up to 32 images of domain A followed by 32 of domain B; grey shown as colour when the other side
    has colour."""
    a, b = a[:32], b[:32]
    c = max(a.shape[3], b.shape[3])
    a, b = (np.repeat(x, c // x.shape[3], axis=3) for x in (a, b))
    images = np.stack([a, b], axis=1).reshape(-1, *a.shape[1:]) if pairs else np.concatenate([a, b])
    return preview_png(images, None, n=len(images))


def _check_directory_size(zip_path: Path, limits: Limits) -> None:
    """Count the central directory's entries ourselves, stopping past the cap, before zipfile parses it."""
    size = zip_path.stat().st_size
    with zip_path.open("rb") as f:
        tail_len = min(size, 22 + 0xFFFF)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        pos = tail.rfind(b"PK\x05\x06")
        if pos < 0 or tail_len - pos < 22:
            raise UploadError("file: not a ZIP archive")
        eocd_at = size - tail_len + pos
        declared, cd_size = struct.unpack("<HL", tail[pos + 10 : pos + 16])
        cd_end = eocd_at
        if declared == 0xFFFF or cd_size == 0xFFFFFFFF:
            # ZIP64: a locator sits just before the end record, the ZIP64 end record (56 bytes) before that.
            f.seek(max(eocd_at - 20, 0))
            locator = f.read(20)
            if locator[:4] == b"PK\x06\x07" and eocd_at >= 76:
                f.seek(eocd_at - 76)
                record = f.read(56)
                if record[:4] != b"PK\x06\x06":
                    raise UploadError("file: not a valid ZIP archive (bad ZIP64 end record)")
                declared, cd_size = struct.unpack("<QQ", record[32:48])
                cd_end = eocd_at - 76
        if declared > limits.max_members:
            raise UploadError(f"file: the archive has {declared} members, the limit is {limits.max_members}")
        if cd_size > cd_end:
            raise UploadError("file: not a valid ZIP archive (central directory out of bounds)")
        if cd_size > max(limits.max_members, 1024) * 1024:
            raise UploadError(f"file: the archive's central directory is {cd_size} bytes, too large")
        # Walk the records: the declared count can lie, the directory's size bounds the real one.
        f.seek(cd_end - cd_size)
        remaining, count = cd_size, 0
        while remaining >= 46:
            head = f.read(46)
            if head[:4] != b"PK\x01\x02":
                break
            name_len, extra_len, comment_len = struct.unpack("<3H", head[28:34])
            f.seek(name_len + extra_len + comment_len, io.SEEK_CUR)
            remaining -= 46 + name_len + extra_len + comment_len
            count += 1
            if count > limits.max_members:
                raise UploadError(
                    f"file: the archive has more than {limits.max_members} members; the limit is {limits.max_members}"
                )


def _check_members(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    """Refuse the archive on the first unsafe member: paths, links, declared sizes and ratios."""
    if len(infos) > limits.max_members:
        raise UploadError(f"file: the archive has {len(infos)} members, the limit is {limits.max_members}")
    total = 0
    for info in infos:
        name = info.filename
        shown = name[:200]
        path = name.replace("\\", "/")
        if "\0" in name:
            raise UploadError(f"file: member {shown!r} has a NUL byte in its name")
        if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
            raise UploadError(f"file: member {shown!r} has an absolute path")
        if ".." in path.split("/"):
            raise UploadError(f"file: member {shown!r} points outside the archive (a '..' path, zip-slip)")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadError(f"file: member {shown!r} is a symbolic link; links are not allowed")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UploadError(f"file: member {shown!r} is a special file (device, pipe or socket)")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_MIN_BYTES and ratio > limits.max_ratio:
            raise UploadError(
                f"file: member {shown!r} has a compression ratio of {ratio:.0f}:1, over the limit of "
                f"{limits.max_ratio:.0f}:1 (a zip bomb?)"
            )
        if info.file_size > limits.max_member_bytes:
            raise UploadError(
                f"file: member {shown!r} unpacks to {info.file_size} bytes, the limit per file is "
                f"{limits.max_member_bytes}"
            )
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise UploadError(
                f"file: the archive unpacks to more than {limits.max_unpacked_bytes} bytes, the limit (a zip bomb?)"
            )


def _image_files(
    infos: list[zipfile.ZipInfo], skipped: list[dict[str, str]]
) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """The image members, each with its folders below any wrapper folder that every image shares."""
    files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    for info in infos:
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if info.is_dir() or not parts:
            continue
        if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts) or parts[-1] in ("Thumbs.db", "desktop.ini"):
            continue  # archiver and OS litter, silently
        if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
            skipped.append({"name": info.filename, "reason": "not a PNG, JPEG, WebP, BMP or GIF file name"})
            continue
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # bzip2 and LZMA decompress without an output bound in zipfile: a member could explode in memory.
            skipped.append({"name": info.filename, "reason": "compressed with a method other than deflate or store"})
            continue
        if info.flag_bits & 0x1:
            skipped.append({"name": info.filename, "reason": "encrypted"})
            continue
        files.append((info, parts[:-1]))
    # Strip wrapper folders shared by every image.
    while files and all(dirs for _, dirs in files) and len({dirs[0] for _, dirs in files}) == 1:
        files = [(info, dirs[1:]) for info, dirs in files]
    return files


def _classes(
    files: list[tuple[zipfile.ZipInfo, list[str]]], skipped: list[dict[str, str]]
) -> tuple[list[_Candidate], list[str]]:
    """The candidates and their classes: the top folder of each image (below the wrappers)."""
    folders = sorted({dirs[0] for _, dirs in files if dirs})
    if len(folders) < 2:
        # Flat, or a single folder: unlabeled. Images below the single folder still count.
        cands = [_Candidate(info=info, label=-1) for info, _ in files]
        cands.sort(key=lambda c: c.info.filename)
        return cands, []
    classes = folders
    index = {name: i for i, name in enumerate(classes)}
    cands = []
    for info, dirs in files:
        if not dirs:
            skipped.append({"name": info.filename, "reason": "not in a class folder (the archive has class folders)"})
            continue
        cands.append(_Candidate(info=info, label=index[dirs[0]]))
    cands.sort(key=lambda c: (c.label, c.info.filename))
    return cands, classes


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: list[int] | None
) -> bytes | None:
    """A member's bytes, counted as they are decompressed. None when the member is corrupt; UploadError when it
    exceeds a cap. `budget` (a one-item list) accumulates the archive's total when given."""
    chunks: list[bytes] = []
    produced = 0
    try:
        with archive.open(info) as src:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                produced += len(chunk)
                if produced > limits.max_member_bytes:
                    raise UploadError(
                        f"file: member {info.filename[:200]!r} unpacks to more than {limits.max_member_bytes} "
                        "bytes, the limit per file"
                    )
                if produced > RATIO_MIN_BYTES and produced > limits.max_ratio * max(info.compress_size, 1):
                    raise UploadError(
                        f"file: member {info.filename[:200]!r} decompresses beyond a ratio of "
                        f"{limits.max_ratio:.0f}:1, the limit (a zip bomb?)"
                    )
                if budget is not None:
                    budget[0] += len(chunk)
                    if budget[0] > limits.max_unpacked_bytes:
                        raise UploadError(
                            f"file: the archive unpacks to more than {limits.max_unpacked_bytes} bytes, "
                            "the limit (a zip bomb?)"
                        )
                chunks.append(chunk)
    except UploadError:
        raise
    except Exception:  # bad CRC, bad local header, encrypted, unsupported compression, truncated stream
        return None
    return b"".join(chunks)


def _normalise(data: bytes, *, side: int, channels: int) -> np.ndarray:
    """Decode one image and return it as uint8 (side, side, channels): alpha on white, center crop, Lanczos."""
    return _fit(_decode(data, side=side, channels=channels), side=side, channels=channels)


def _decode(data: bytes, *, side: int, channels: int) -> Image.Image:
    """Decode one image upright, in mode L (channels 1) or RGB, transparency composited on white. A JPEG is
    decoded at a reduced scale when that stays at least `side` on each axis."""
    with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as im:
        if im.format == "JPEG":
            im.draft(None, (side, side))  # let libjpeg decode at a reduced scale, never below `side`
        im.load()  # GIF: the first frame
        img: Image.Image = ImageOps.exif_transpose(im)  # phone photos: upright, as viewers show them
        if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
            # 16-bit grayscale: scale to 8 bits rather than clip.
            wide = np.asarray(img, dtype=np.float64)  # (H, W)
            img = Image.fromarray(np.clip(wide / 257.0, 0, 255).round().astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return img.convert("L" if channels == 1 else "RGB")


def _fit(img: Image.Image, *, side: int, channels: int) -> np.ndarray:
    """An image of mode L or RGB center-cropped to a square and resized (Lanczos) to uint8 (side, side, channels)."""
    w, h = img.size
    short = min(w, h)
    left, top = (w - short) // 2, (h - short) // 2
    box = (left, top, left + short, top + short)
    if short != side:
        # Crop and resize in one go; reducing_gap first shrinks by an integer factor (fast, box filter).
        img = img.resize((side, side), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    elif (w, h) != (short, short):
        img = img.crop(box)
    array = np.asarray(img, dtype=np.uint8)  # (S, S) or (S, S, 3)
    return array.reshape(side, side, channels)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy version 1.0 header for uint8 data of this shape, padded to exactly NPY_HEADER_BYTES."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    text = text.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin-1")


def _content_hash(shape: tuple[int, ...], classes: list[str], pixels_digest: bytes, labels: np.ndarray | None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "shape": list(shape), "classes": classes}).encode())
    digest.update(pixels_digest)
    if labels is not None:
        digest.update(labels.astype("<i8").tobytes())
    return digest.hexdigest()


def _image_reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable PNG, JPEG, WebP, BMP or GIF image"
    if isinstance(exc, Image.DecompressionBombError):
        return "image too large (decompression bomb limit)"
    text = str(exc).split(" <")[0][:200] or type(exc).__name__
    return f"corrupt image: {text}"


def _no_images_message(skipped: list[dict[str, str]]) -> str:
    if not skipped:
        return "file: the archive holds no images (PNG, JPEG, WebP, BMP or GIF)"
    first = skipped[0]
    return (
        f"file: no readable image in the archive; {len(skipped)} file(s) skipped, "
        f"e.g. {first['name'][:200]!r}: {first['reason']}"
    )
