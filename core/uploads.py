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


def prepare(zip_path: Path, *, datasets_dir: Path, limits: Limits | None = None) -> Prepared:
    """Check and normalise the archive at `zip_path` into a new temporary folder inside `datasets_dir`.

    Raises UploadError when the archive is refused; the temporary folder is then gone already.
    """
    limits = limits or Limits()
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
        candidates, classes = _layout(infos, skipped)
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


def _layout(infos: list[zipfile.ZipInfo], skipped: list[dict[str, str]]) -> tuple[list[_Candidate], list[str]]:
    """Pick the image members and their classes: the top folder below any wrapper folder they all share."""
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
        img = img.convert("L" if channels == 1 else "RGB")
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
