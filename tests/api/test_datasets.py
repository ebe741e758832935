"""Dataset uploads through the real API process: evil archives are refused and leave nothing behind; a good
archive becomes a content-addressed dataset that a conditional run trains on through a real worker."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from core.config import BUILTIN_DATASETS
from tests.conftest import Service
from tests.utils import zips
from tests.utils.datasets import dataset_rows, tree
from tests.utils.runs import wait_for_status

UPLOAD_CAP = 2 << 20
TINY_RUN = {
    "model": {"arch": "dcgan", "image_size": 16, "width": 8, "z_dim": 16},
    "train": {"steps": 4, "batch_size": 8},
    "schedule": {"sample_every": 2, "checkpoint_every": 2},
}


@pytest.fixture(scope="module")
def limited(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone (no worker: nothing here trains) with small caps, so that evil archives stay small."""
    service = Service(
        database_url=postgres_url,
        broker_url=redis_url,
        workdir=tmp_path_factory.mktemp("svc-datasets"),
        extra_env={"GANFORGE_MAX_UPLOAD_BYTES": str(UPLOAD_CAP), "GANFORGE_MAX_ARCHIVE_MEMBERS": "100"},
    )
    service.start_api()
    yield service
    service.stop()


@pytest.fixture
def limited_client(limited: Service) -> Iterator[httpx.Client]:
    with limited.client(limited.new_user_token()) as client:
        yield client


def _invalid(field: str, message: str) -> list[dict[str, object]]:
    """A 422's detail: FastAPI's list of validation errors, naming the body field."""
    return [{"type": "value_error", "loc": ["body", *field.split(".")], "msg": message}]


def _upload(client: httpx.Client, data: bytes, name: str = "pets") -> httpx.Response:
    return client.post("/datasets", files={"file": ("pets.zip", data, "application/zip")}, data={"name": name})


def _multipart(data: bytes, boundary: str = "gfboundary") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\npets\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="pets.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


BAD_UPLOADS = [
    pytest.param(
        zips.zip_slip,
        422,
        _invalid("file", "file: member '../../evil.png' points outside the archive (a '..' path, zip-slip)"),
        id="zip-slip",
    ),
    pytest.param(
        zips.absolute_path,
        422,
        _invalid("file", "file: member '/etc/evil.png' has an absolute path"),
        id="absolute-path",
    ),
    pytest.param(
        zips.symlink_member,
        422,
        _invalid("file", "file: member 'cats/link.png' is a symbolic link; links are not allowed"),
        id="symlink",
    ),
    pytest.param(
        lambda: zips.bomb_by_ratio(megabytes=8),
        422,
        _invalid(
            "file",
            "file: member 'cats/bomb.png' has a compression ratio of 1028:1, over the limit of 200:1 (a zip bomb?)",
        ),
        id="bomb-by-ratio",
    ),
    pytest.param(
        lambda: zips.too_many_members(101),
        422,
        _invalid("file", "file: the archive has 101 members, the limit is 100"),
        id="too-many",
    ),
    pytest.param(zips.not_a_zip, 422, _invalid("file", "file: not a ZIP archive"), id="not-a-zip"),
    pytest.param(
        zips.only_corrupt_images,
        422,
        _invalid(
            "file",
            "file: no readable image in the archive; 3 file(s) skipped, e.g. 'a.png': not a readable PNG, JPEG, WebP, "
            "BMP or GIF image",
        ),
        id="only-corrupt-images",
    ),
    pytest.param(
        lambda: b"\0" * (UPLOAD_CAP + 1),
        413,
        f"Request body too large: the limit is {UPLOAD_CAP} bytes",
        id="over-the-byte-cap",
    ),
]


@pytest.mark.parametrize(("build", "status", "detail"), BAD_UPLOADS)
def test_bad_uploads_are_refused_and_leave_nothing(
    limited: Service,
    limited_client: httpx.Client,
    postgres_url: str,
    build: Callable[[], bytes],
    status: int,
    detail: object,
) -> None:
    before, rows = tree(limited.data_dir), dataset_rows(postgres_url)
    response = _upload(limited_client, build())
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert tree(limited.data_dir) == before
    assert dataset_rows(postgres_url) == rows
    assert [d for d in limited_client.get("/datasets").json()["items"] if not d["builtin"]] == []


def test_a_streamed_upload_over_the_cap_is_cut_off_and_leaves_nothing(
    limited: Service, limited_client: httpx.Client, postgres_url: str
) -> None:
    """Without a Content-Length the cap is enforced while the body streams in; the partial file goes away."""
    before, rows = tree(limited.data_dir), dataset_rows(postgres_url)
    body, content_type = _multipart(b"PK" + b"\0" * (3 * UPLOAD_CAP))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 << 10):
            yield body[start : start + (64 << 10)]

    response = limited_client.post("/datasets", content=chunks(), headers={"Content-Type": content_type})
    assert (response.status_code, response.json()["detail"]) == (
        413,
        f"Request body too large: the limit is {UPLOAD_CAP} bytes",
    )
    assert tree(limited.data_dir) == before
    assert dataset_rows(postgres_url) == rows


def test_malformed_requests_name_the_problem(limited_client: httpx.Client) -> None:
    response = limited_client.post("/datasets", json={"file": "x"})
    assert (response.status_code, response.json()["detail"]) == (
        422,
        _invalid(
            "file",
            "file: send the ZIP of images or the table (CSV or Parquet) as multipart/form-data with the fields file, "
            "name, target and layout",
        ),
    )
    response = limited_client.post("/datasets", data={"name": "no file"}, files={"other": ("a.txt", b"x")})
    assert (response.status_code, response.json()["detail"]) == (
        422,
        _invalid(
            "file", "file: missing; send the ZIP of images or the table (CSV or Parquet) as the multipart field file"
        ),
    )


def test_upload_list_get_preview_and_skipped_files(limited_client: httpx.Client) -> None:
    response = _upload(limited_client, zips.mixed_formats(), name="mixed")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert response.headers["Location"] == f"/datasets/{dataset['id']}"
    assert dataset["id"].startswith("ds_") and dataset["name"] == "mixed"
    assert (dataset["num_images"], dataset["classes"], dataset["image_size"], dataset["channels"]) == (
        6,
        ["a", "b"],
        16,
        3,
    )
    assert dataset["skipped"] == [
        {"name": "data/b/notes.txt", "reason": "not a PNG, JPEG, WebP, BMP or GIF file name"},
        {"name": "data/b/7.png", "reason": "not a readable PNG, JPEG, WebP, BMP or GIF image"},
    ]
    assert dataset["existing"] is False

    items = limited_client.get("/datasets").json()["items"]
    assert [d["id"] for d in items if d["builtin"]] == list(BUILTIN_DATASETS)  # ring8, grid25, digits, ...
    assert [d["id"] for d in items if not d["builtin"]] == [dataset["id"]]
    assert "skipped" not in items[-1]["stats"]

    detail = limited_client.get(f"/datasets/{dataset['id']}").json()
    assert detail["stats"]["images_per_class"] == {"a": 3, "b": 3}
    assert detail["stats"]["original_sizes"]["max"] == [32, 24]
    assert detail["stats"]["formats"] == {"PNG": 2, "JPEG": 1, "WEBP": 1, "BMP": 1, "GIF": 1}
    assert detail["stats"]["skipped"] == dataset["skipped"]

    png = limited_client.get(f"/datasets/{dataset['id']}/preview.png")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (6 * 18 + 2, 18 + 2)
    digits = limited_client.get("/datasets/digits/preview.png")
    assert digits.status_code == 200 and Image.open(io.BytesIO(digits.content)).size == (8 * 10 + 2, 8 * 10 + 2)
    assert limited_client.get("/datasets/ring8/preview.png").json()["detail"] == (
        "ring8 is 2-D point data; it has no image preview"
    )
    assert limited_client.get("/datasets/digits").json()["builtin"] is True
    sizes = {d["id"]: d["image_size"] for d in items if d["builtin"]}
    # The stored side: 8 px digits; none for photographs (not square), digits-printed (two sizes), points, tables.
    assert [sizes[name] for name in ("digits", "digits-edges", "digits-printed", "photos", "ring8", "wine")] == [
        8,
        8,
        None,
        None,
        None,
        None,
    ]


def test_same_archive_twice_is_stored_once_and_deleted_with_its_last_row(limited: Service, postgres_url: str) -> None:
    archive = zips.class_folders_zip(per_class=3)
    owner, other = limited.new_user_token("owner"), limited.new_user_token("other")
    datasets_dir = limited.data_dir / "datasets"
    with limited.client(owner) as a, limited.client(other) as b:
        before = set(datasets_dir.iterdir()) if datasets_dir.exists() else set()
        first = _upload(a, archive)
        again = _upload(a, archive, name="again")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"] and again.json()["existing"] is True
        theirs = _upload(b, archive)
        assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
        stored = sorted(set(datasets_dir.iterdir()) - before - {datasets_dir / ".lock"})
        assert len(stored) == 1

        # Another user's dataset is as good as absent.
        assert b.get(f"/datasets/{first.json()['id']}").json()["detail"] == "Dataset not found"
        assert b.delete(f"/datasets/{first.json()['id']}").status_code == 404
        assert a.delete("/datasets/digits").json()["detail"] == "digits is a built-in dataset and cannot be deleted"

        # The files stay while another row references them.
        assert a.delete(f"/datasets/{first.json()['id']}").status_code == 204
        assert a.get(f"/datasets/{first.json()['id']}").status_code == 404
        assert stored[0].is_dir()
        assert b.delete(f"/datasets/{theirs.json()['id']}").status_code == 204
        assert not stored[0].exists()


def test_builtin_translation_and_photo_datasets_preview_what_their_runs_see(limited_client: httpx.Client) -> None:
    """digits-edges shows 32 (edge map, digit) pairs, digits-printed 32 handwritten then 32 printed digits, photos 64
    colour patches, each at the dataset's default size (32, 32 and 64 px) in an 8-column grid."""
    pngs = {
        name: limited_client.get(f"/datasets/{name}/preview.png")
        for name in ("digits-edges", "digits-printed", "photos")
    }
    assert {name: png.headers["content-type"] for name, png in pngs.items()} == dict.fromkeys(pngs, "image/png")
    images = {name: Image.open(io.BytesIO(png.content)) for name, png in pngs.items()}
    assert {name: (image.mode, image.size) for name, image in images.items()} == {
        "digits-edges": ("L", (8 * 34 + 2, 8 * 34 + 2)),
        "digits-printed": ("L", (8 * 34 + 2, 8 * 34 + 2)),
        "photos": ("RGB", (8 * 66 + 2, 8 * 66 + 2)),
    }
    edges = np.asarray(images["digits-edges"], dtype=np.float64)
    tiles = [edges[2:34, 2 + 34 * c : 34 + 34 * c] for c in range(8)]  # the first row: input, target, input, ...
    # Each input is its digit's edge map, not the digit: the two differ by a quarter of the range or more.
    assert all(np.abs(tiles[c] - tiles[c + 1]).mean() > 40 for c in range(0, 8, 2))
    assert (
        len({png.content for png in pngs.values()} | {limited_client.get("/datasets/digits/preview.png").content}) == 4
    )


def test_runs_accept_only_your_own_dataset_conditional_only_when_labeled_and_no_more_clusters_than_images(
    limited: Service,
) -> None:
    owner, other = limited.new_user_token("owner"), limited.new_user_token("other")
    with limited.client(owner) as a, limited.client(other) as b:
        flat = _upload(a, zips.flat_zip(count=4)).json()["id"]
        missing = "ds_0123456789abcdef"
        response = a.post("/runs", json={"dataset": missing})
        assert (response.status_code, response.json()["detail"]) == (
            422,
            _invalid("dataset", f"dataset: no dataset {missing}; upload one with POST /datasets"),
        )
        response = b.post("/runs", json={"dataset": flat})
        assert (response.status_code, response.json()["detail"]) == (
            422,
            _invalid("dataset", f"dataset: no dataset {flat}; upload one with POST /datasets"),
        )
        response = a.post("/runs", json={"dataset": flat, "model": {"conditional": True}})
        assert (response.status_code, response.json()["detail"]) == (
            422,
            _invalid(
                "model.conditional",
                f"model.conditional: dataset {flat} has no labels (upload images in one folder per class), "
                "so a run on it cannot be conditional",
            ),
        )
        response = a.post("/runs", json={"dataset": flat, "model": {"arch": "dcgan", "clusters": 5}})
        assert (response.status_code, response.json()["detail"]) == (
            422,
            _invalid(
                "model.clusters", f"model.clusters: 5 clusters need at least as many images; dataset {flat} has 4"
            ),
        )
        assert a.get("/runs").json()["items"] == []


@pytest.fixture
def service(any_service: Service) -> Service:
    """This module's tests on `service` run on PostgreSQL and SQLite with the artifacts on disk, and on PostgreSQL
    with them in object storage (tests/conftest.py: s3_service)."""
    return any_service


def test_a_conditional_run_trains_on_an_uploaded_dataset(service: Service, user_client: httpx.Client) -> None:
    response = _upload(user_client, zips.class_folders_zip(per_class=8, size=20))
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["classes"], dataset["image_size"], dataset["channels"]) == (["cats", "dogs"], 20, 3)

    # While a run that uses it is queued or running, the dataset cannot be deleted.
    blocker = user_client.post("/runs", json={"dataset": dataset["id"], "train": {"steps": 1_000_000}}).json()
    response = user_client.delete(f"/datasets/{dataset['id']}")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"Dataset is used by run {blocker['id']}, which is ")
    user_client.post(f"/runs/{blocker['id']}/cancel")
    wait_for_status(user_client, blocker["id"], ("canceled", "failed", "succeeded"), timeout=120)

    body = {**TINY_RUN, "dataset": dataset["id"], "model": {**TINY_RUN["model"], "conditional": True}}
    run = user_client.post("/runs", json=body)
    assert run.status_code == 201, run.text
    run = wait_for_status(user_client, run.json()["id"], ("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    assert user_client.get(f"/runs/{run['id']}/samples/latest.png").status_code == 200

    assert user_client.delete(f"/datasets/{dataset['id']}").status_code == 204
