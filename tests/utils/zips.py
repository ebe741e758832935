"""Builders of good and evil ZIP archives for the dataset upload tests. Each returns the archive's bytes."""

from __future__ import annotations

import io
import stat
import struct
import zipfile

import numpy as np
from PIL import Image


def image_bytes(
    *, size: int = 16, seed: int = 0, fmt: str = "PNG", mode: str = "RGB", width: int | None = None
) -> bytes:
    """A random image of `size` px (or width × size) encoded in `fmt`."""
    rng = np.random.default_rng(seed)
    w = width or size
    if mode == "L":
        pixels = rng.integers(0, 256, (size, w), dtype=np.uint8)
    elif mode == "RGBA":
        pixels = rng.integers(0, 256, (size, w, 4), dtype=np.uint8)
    else:
        pixels = rng.integers(0, 256, (size, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(out, format=fmt)
    return out.getvalue()


def build_zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def class_folders_zip(*, classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 6, size: int = 16) -> bytes:
    """Generated PNGs, one folder per class."""
    members = {
        f"{name}/{i:03d}.png": image_bytes(size=size, seed=100 * k + i)
        for k, name in enumerate(classes)
        for i in range(per_class)
    }
    return build_zip(members)


def flat_zip(*, count: int = 5, size: int = 16) -> bytes:
    return build_zip({f"img{i}.png": image_bytes(size=size, seed=i) for i in range(count)})


def zip_slip() -> bytes:
    return build_zip({"cats/a.png": image_bytes(), "../../evil.png": image_bytes(seed=1)})


def absolute_path() -> bytes:
    return build_zip({"cats/a.png": image_bytes(), "/etc/evil.png": image_bytes(seed=1)})


def symlink_member() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("cats/a.png", image_bytes())
        link = zipfile.ZipInfo("cats/link.png")
        link.create_system = 3  # unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return out.getvalue()


def bomb_by_ratio(*, megabytes: int = 20) -> bytes:
    """One member of zeros: about 1000:1."""
    return build_zip({"cats/a.png": image_bytes(), "cats/bomb.png": b"\0" * (megabytes << 20)})


def lying_bomb(*, megabytes: int = 20) -> bytes:
    """A bomb whose headers claim it unpacks to 1000 bytes: only counting while decompressing catches it."""
    data = bytearray(bomb_by_ratio(megabytes=megabytes))
    real = megabytes << 20
    packed = struct.pack("<L", real)
    fake = struct.pack("<L", 1000)
    # Patch the uncompressed size in the local header (offset 22) and the central directory (offset 24).
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (pos := data.find(signature, start)) >= 0:
            if data[pos + offset : pos + offset + 4] == packed:
                data[pos + offset : pos + offset + 4] = fake
            start = pos + 4
    return bytes(data)


def too_many_members(count: int) -> bytes:
    return build_zip({f"f{i}.png": b"" for i in range(count)}, compression=zipfile.ZIP_STORED)


def not_a_zip() -> bytes:
    return b"this is not a zip archive\n" * 100


def only_corrupt_images() -> bytes:
    good = image_bytes()
    return build_zip({"a.png": b"not an image at all", "b.png": good[: len(good) // 2], "c.jpg": b"\xff\xd8\xff"})


def mixed_formats() -> bytes:
    """PNG, JPEG, WebP, BMP, GIF; grayscale, RGB, RGBA; odd sizes; plus a corrupt file and litter."""
    gif = io.BytesIO()
    frames = [Image.new("P", (20, 20), color=i) for i in range(3)]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    transparent = io.BytesIO()
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(transparent, format="PNG")
    return build_zip(
        {
            "data/a/1.png": image_bytes(mode="L"),
            "data/a/2.jpg": image_bytes(fmt="JPEG", size=24, width=32),
            "data/a/3.webp": image_bytes(fmt="WEBP"),
            "data/b/4.bmp": image_bytes(fmt="BMP"),
            "data/b/5.gif": gif.getvalue(),
            "data/b/6.png": transparent.getvalue(),
            "data/b/7.png": b"garbage",
            "data/b/notes.txt": b"hello",
            "__MACOSX/data/a/._1.png": b"litter",
            "data/.DS_Store": b"litter",
        }
    )
