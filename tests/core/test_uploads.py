from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import uploads
from tests.utils import zips

SMALL = uploads.Limits(max_members=100, max_unpacked_bytes=8 << 20, max_member_bytes=4 << 20, max_side=128)


def _prepare(tmp_path: Path, data: bytes, limits: uploads.Limits = SMALL) -> uploads.Prepared:
    archive = tmp_path / "upload.zip"
    archive.write_bytes(data)
    return uploads.prepare(archive, datasets_dir=tmp_path / "data" / "datasets", limits=limits)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_class_folders_become_labels(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, zips.class_folders_zip(per_class=3, size=16))
    datasets_dir = tmp_path / "data" / "datasets"
    with uploads.storage_lock(datasets_dir):
        assert uploads.place(prepared, datasets_dir) is True
    stored = uploads.dataset_dir_for(tmp_path / "data", prepared.content_hash)
    images, labels, classes = uploads.read_images(stored)
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    assert labels is not None and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert classes == ["cats", "dogs"]
    assert prepared.stats["images_per_class"] == {"cats": 3, "dogs": 3}
    assert sorted(p.name for p in stored.iterdir()) == ["images.npy", "index.json", "labels.npy", "preview.png"]
    # The first image is stored exactly (same size: no resampling).
    expected = np.asarray(Image.open(io.BytesIO(zips.image_bytes(size=16, seed=0))))
    assert np.array_equal(images[0], expected)
    assert not list(datasets_dir.glob(".tmp-*"))


def test_flat_archive_is_unlabeled(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, zips.flat_zip(count=4))
    assert prepared.classes == [] and prepared.num_images == 4
    assert not (prepared.tmp_dir / "labels.npy").exists()


def test_single_class_folder_under_a_wrapper_is_unlabeled(tmp_path: Path) -> None:
    data = zips.build_zip({f"top/cats/{i}.png": zips.image_bytes(seed=i) for i in range(3)})
    prepared = _prepare(tmp_path, data)
    assert prepared.classes == [] and prepared.num_images == 3


def test_mixed_formats_modes_and_litter(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, zips.mixed_formats())
    assert prepared.classes == ["a", "b"]
    assert prepared.channels == 3 and prepared.image_size == 16
    assert prepared.stats["formats"] == {"PNG": 2, "JPEG": 1, "WEBP": 1, "BMP": 1, "GIF": 1}
    assert prepared.skipped == [
        {"name": "data/b/notes.txt", "reason": "not a PNG, JPEG, WebP, BMP or GIF file name"},
        {"name": "data/b/7.png", "reason": "not a readable PNG, JPEG, WebP, BMP or GIF image"},
    ]
    images = np.load(prepared.tmp_dir / "images.npy")
    # Class b in name order: 4.bmp, 5.gif, 6.png (fully transparent: composited on white).
    assert (images[-1] == 255).all()
    # The GIF's first frame is palette index 0 everywhere: one flat color.
    assert len(np.unique(images[-2].reshape(-1, 3), axis=0)) == 1


def test_grayscale_only_is_stored_with_one_channel(tmp_path: Path) -> None:
    data = zips.build_zip({f"{i}.png": zips.image_bytes(mode="L", seed=i) for i in range(3)})
    prepared = _prepare(tmp_path, data)
    assert prepared.channels == 1
    assert np.load(prepared.tmp_dir / "images.npy").shape == (3, 16, 16, 1)


def test_stored_side_is_the_most_common_short_side_capped(tmp_path: Path) -> None:
    members = {f"a{i}.png": zips.image_bytes(size=24, width=40, seed=i) for i in range(3)}
    members["b.png"] = zips.image_bytes(size=8)
    prepared = _prepare(tmp_path, zips.build_zip(members))
    assert prepared.image_size == 24
    capped = _prepare(tmp_path, zips.build_zip(members), uploads.Limits(max_side=16))
    assert capped.image_size == 16


def test_same_images_rezipped_have_the_same_hash_and_are_stored_once(tmp_path: Path) -> None:
    members = {f"cats/{i}.png": zips.image_bytes(seed=i) for i in range(3)}
    members |= {f"dogs/{i}.png": zips.image_bytes(seed=10 + i) for i in range(3)}
    first = _prepare(tmp_path, zips.build_zip(members))
    second = _prepare(tmp_path, zips.build_zip(dict(reversed(members.items())), compression=zipfile.ZIP_STORED))
    assert first.content_hash == second.content_hash
    datasets_dir = tmp_path / "data" / "datasets"
    with uploads.storage_lock(datasets_dir):
        assert uploads.place(first, datasets_dir) is True
        assert uploads.place(second, datasets_dir) is False
    files = ("images.npy", "index.json", "labels.npy", "preview.png")
    h = first.content_hash
    assert _tree(datasets_dir) == [".lock", h, *(f"{h}/{name}" for name in files)]


def test_image_over_the_pixel_cap_is_skipped(tmp_path: Path) -> None:
    members = {"small.png": zips.image_bytes(size=8), "big.png": zips.image_bytes(size=32)}
    prepared = _prepare(tmp_path, zips.build_zip(members), uploads.Limits(max_image_pixels=100))
    assert prepared.num_images == 1
    assert prepared.skipped == [{"name": "big.png", "reason": "image too large: 32×32 pixels, the limit is 100"}]


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(out, format="PNG")
    prepared = _prepare(tmp_path, zips.build_zip({"deep.png": out.getvalue()}))
    images = np.load(prepared.tmp_dir / "images.npy")
    assert prepared.channels == 1 and int(images[0, 0, 0, 0]) == 128


BAD_ARCHIVES = [
    pytest.param(
        zips.zip_slip, "file: member '../../evil.png' points outside the archive (a '..' path, zip-slip)", id="zip-slip"
    ),
    pytest.param(zips.absolute_path, "file: member '/etc/evil.png' has an absolute path", id="absolute-path"),
    pytest.param(
        zips.symlink_member, "file: member 'cats/link.png' is a symbolic link; links are not allowed", id="symlink"
    ),
    pytest.param(
        zips.bomb_by_ratio,
        "file: member 'cats/bomb.png' has a compression ratio of 1029:1, over the limit of 200:1 (a zip bomb?)",
        id="bomb-by-ratio",
    ),
    pytest.param(
        lambda: zips.too_many_members(101), "file: the archive has 101 members, the limit is 100", id="too-many-members"
    ),
    pytest.param(zips.not_a_zip, "file: not a ZIP archive", id="not-a-zip"),
    pytest.param(
        zips.only_corrupt_images,
        "file: no readable image in the archive; 3 file(s) skipped, e.g. 'a.png': not a readable PNG, JPEG, WebP, "
        "BMP or GIF image",
        id="only-corrupt-images",
    ),
]


@pytest.mark.parametrize(("build", "detail"), BAD_ARCHIVES)
def test_bad_archives_are_refused_and_leave_nothing(tmp_path: Path, build: Callable[[], bytes], detail: str) -> None:
    (tmp_path / "data" / "datasets").mkdir(parents=True)
    with pytest.raises(uploads.UploadError) as caught:
        _prepare(tmp_path, build())
    assert str(caught.value) == detail
    assert _tree(tmp_path / "data") == ["datasets"]


def test_a_bomb_that_lies_in_its_headers_is_not_unpacked(tmp_path: Path) -> None:
    lying = zips.lying_bomb(megabytes=20)
    (tmp_path / "data" / "datasets").mkdir(parents=True)
    prepared = _prepare(tmp_path, lying)  # zipfile stops at the declared size; the member fails its CRC
    assert prepared.num_images == 1
    assert prepared.skipped == [{"name": "cats/bomb.png", "reason": "corrupt archive member"}]


def test_total_unpacked_size_is_capped(tmp_path: Path) -> None:
    members = {f"{i}.png": zips.image_bytes(size=64, seed=i) for i in range(4)}
    limits = uploads.Limits(max_unpacked_bytes=3 * len(members["0.png"]))
    (tmp_path / "data" / "datasets").mkdir(parents=True)
    with pytest.raises(uploads.UploadError, match="unpacks to more than"):
        _prepare(tmp_path, zips.build_zip(members), limits)
    assert _tree(tmp_path / "data") == ["datasets"]


def test_bzip2_members_are_skipped(tmp_path: Path) -> None:
    data = zips.build_zip({"a.png": zips.image_bytes()}, compression=zipfile.ZIP_BZIP2)
    with pytest.raises(uploads.UploadError, match="compressed with a method other than deflate or store"):
        _prepare(tmp_path, data)


def test_dataset_dir_for_refuses_anything_but_a_hash(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a content hash"):
        uploads.dataset_dir_for(tmp_path, "../etc")
    assert uploads.dataset_dir_for(tmp_path, "a" * 64) == tmp_path / "datasets" / ("a" * 64)


def test_preview_is_a_grid_png() -> None:
    images = np.zeros((10, 8, 8, 3), dtype=np.uint8)
    png = uploads.preview_png(images, np.array([0, 1] * 5))
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (8 * 10 + 2, 2 * 10 + 2)


def test_a_central_directory_that_understates_its_count_is_walked(tmp_path: Path) -> None:
    data = bytearray(zips.too_many_members(101))
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 8 : eocd + 12] = struct.pack("<HH", 5, 5)  # entries on this disk, entries in total
    with pytest.raises(uploads.UploadError) as caught:
        _prepare(tmp_path, bytes(data))
    assert str(caught.value) == "file: the archive has more than 100 members; the limit is 100"


def test_images_outside_the_class_folders_are_skipped(tmp_path: Path) -> None:
    members = {
        "stray.png": zips.image_bytes(),
        "a/1.png": zips.image_bytes(seed=1),
        "b/2.png": zips.image_bytes(seed=2),
    }
    prepared = _prepare(tmp_path, zips.build_zip(members))
    assert prepared.classes == ["a", "b"] and prepared.num_images == 2
    assert prepared.skipped == [
        {"name": "stray.png", "reason": "not in a class folder (the archive has class folders)"}
    ]


def test_sweep_removes_only_stale_temporaries(tmp_path: Path) -> None:
    datasets_dir = tmp_path / "datasets"
    (datasets_dir / ".tmp-old").mkdir(parents=True)
    (datasets_dir / ".upload-old.zip").write_bytes(b"x")
    (datasets_dir / ".upload-new.zip").write_bytes(b"x")
    (datasets_dir / ("a" * 64)).mkdir()
    old = time.time() - 7 * 3600
    for name in (".tmp-old", ".upload-old.zip", "a" * 64):
        os.utime(datasets_dir / name, (old, old))
    assert sorted(uploads.sweep_stale(datasets_dir)) == [".tmp-old", ".upload-old.zip"]
    assert _tree(datasets_dir) == [".upload-new.zip", "a" * 64]


def test_exif_orientation_is_applied_before_the_crop(tmp_path: Path) -> None:
    pixels = np.zeros((16, 32), dtype=np.uint8)  # (H, W): left half black, right half white
    pixels[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: 16 wide, 32 tall, one color on top and the other below
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", exif=exif)
    prepared = _prepare(tmp_path, zips.build_zip({"rotated.png": out.getvalue()}))
    image = np.load(prepared.tmp_dir / "images.npy")[0, :, :, 0].astype(int)  # (16, 16)
    assert abs(image[:8].mean() - image[8:].mean()) > 200
    assert abs(image[:, :8].mean() - image[:, 8:].mean()) < 10
