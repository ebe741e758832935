"""The Python client against the real service (API process, Celery workers, PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ganforge._exceptions import detail_text, field_errors
from ganforge._requests import SSEDecoder
from ganforge.client import (
    APIError,
    AsyncGanforge,
    Ganforge,
    GanforgeError,
    NotFound,
    TransportError,
    Unauthorized,
    ValidationError,
)
from tests.conftest import Service, free_port

RING8 = {
    "dataset": "ring8",
    "seed": 3,
    "train": {"steps": 200},
    "schedule": {"sample_every": 100, "checkpoint_every": 100},
}


@pytest.fixture(scope="module")
def svc(postgres_service: Service) -> Service:
    return postgres_service


@pytest.fixture
def client(svc: Service) -> Ganforge:
    with Ganforge(svc.url, svc.new_user_token("client-test")) as c:
        yield c  # type: ignore[misc]


@pytest.fixture(scope="module")
def finished_run(svc: Service) -> tuple[str, str]:
    """(token, run id) of one ring8 run trained to the end, shared by the read-only tests below."""
    token = svc.new_user_token("client-finished")
    with Ganforge(svc.url, token) as c:
        run = c.runs.create(RING8)
        run = c.runs.wait(run.id, timeout=240, poll_interval=0.5)
        assert run.status == "succeeded", run.error
    return token, run.id


def _has_route(svc: Service, method: str, path: str) -> bool:
    paths = httpx.get(f"{svc.url}/openapi.json", timeout=10).json()["paths"]
    return method.lower() in paths.get(path, {})


def test_unknown_run_raises_not_found_with_the_servers_detail(client: Ganforge) -> None:
    with pytest.raises(NotFound) as info:
        client.runs.get("run_does_not_exist")
    assert info.value.status == 404
    assert info.value.detail == "Run not found"
    assert str(info.value) == "404: Run not found"


def test_wrong_token_raises_unauthorized(svc: Service) -> None:
    with Ganforge(svc.url, "not-a-token") as c, pytest.raises(Unauthorized) as info:
        c.runs.list()
    assert info.value.status == 401
    assert info.value.detail == "Invalid token"


def test_missing_token_raises_unauthorized(svc: Service) -> None:
    with Ganforge(svc.url, "") as c, pytest.raises(Unauthorized) as info:
        c.runs.list()
    assert info.value.detail == "Missing bearer token"


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        pytest.param(
            {"dataset": "ring8", "model": {"arch": "dcgan"}},
            [("model.arch", "ring8 is 2-D point data; only the mlp architecture fits it")],
            id="cross-field",
        ),
        pytest.param(
            {"dataset": "ring8", "train": {"steps": 0}},
            [("train.steps", "Input should be greater than or equal to 1")],
            id="field",
        ),
    ],
)
def test_invalid_config_raises_validation_error_naming_the_field(
    client: Ganforge, config: dict[str, object], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(ValidationError) as info:
        client.runs.create(config)
    assert info.value.status == 422
    assert info.value.errors == errors
    assert client.runs.list().items == []  # nothing was queued


def test_unreachable_server_raises_transport_error() -> None:
    with Ganforge(f"http://127.0.0.1:{free_port()}", "t") as c, pytest.raises(TransportError):
        c.runs.list()


def test_every_error_is_a_ganforge_error() -> None:
    for kind in (NotFound, Unauthorized, ValidationError, TransportError):
        assert issubclass(kind, GanforgeError)


def test_ring8_run_succeeds_with_grids_and_checkpoints(svc: Service, finished_run: tuple[str, str], tmp_path) -> None:
    token, run_id = finished_run
    with Ganforge(svc.url, token) as c:
        run = c.runs.get(run_id)
        assert run.done and run.progress.step == 200 and run.progress.fraction == 1.0
        assert run.config["model"]["arch"] == "mlp"
        assert [s.step for s in c.runs.samples(run_id)] == [100, 200]
        latest = Image.open(io.BytesIO(c.runs.latest_samples(run_id)))
        first = Image.open(io.BytesIO(c.runs.sample(run_id, 100)))
        assert latest.format == first.format == "PNG"
        assert [k.step for k in c.runs.checkpoints(run_id)] == [100, 200]
        path = c.runs.download_checkpoint(run_id, None, tmp_path / "last.safetensors")
        blob = path.read_bytes()
        (header_len,) = struct.unpack("<Q", blob[:8])
        assert json.loads(blob[8 : 8 + header_len])["__metadata__"]["step"] == "200"
        assert run_id in [r.id for r in c.runs.list(status="succeeded").items]
        with pytest.raises(NotFound):
            c.runs.sample(run_id, 150)


def test_another_users_run_is_not_found(svc: Service, finished_run: tuple[str, str], client: Ganforge) -> None:
    _, run_id = finished_run
    with pytest.raises(NotFound) as info:
        client.runs.get(run_id)
    assert info.value.detail == "Run not found"


def test_iter_walks_every_page(client: Ganforge) -> None:
    ids = [client.runs.create({**RING8, "train": {"steps": 1_000_000}}).id for _ in range(3)]
    for run_id in ids:
        client.runs.cancel(run_id)
    assert [r.id for r in client.runs.iter(page_size=2)] == ids[::-1]

    async def walk() -> list[str]:
        async with AsyncGanforge(client.url, client._http.headers["Authorization"].removeprefix("Bearer ")) as ac:
            return [r.id async for r in ac.runs.iter(page_size=2)]

    assert asyncio.run(walk()) == ids[::-1]


def test_idempotency_key_returns_the_first_run_and_delete_removes_it(client: Ganforge) -> None:
    key = uuid.uuid4().hex
    config = {**RING8, "train": {"steps": 100000}}
    first = client.runs.create(config, idempotency_key=key)
    again = client.runs.create(config, idempotency_key=key)
    assert again.id == first.id
    assert [r.id for r in client.runs.list().items] == [first.id]
    canceled = client.runs.cancel(first.id)
    assert canceled.id == first.id
    client.runs.delete(first.id)
    with pytest.raises(NotFound):
        client.runs.get(first.id)


def test_async_client_creates_and_waits(svc: Service) -> None:
    token = svc.new_user_token("async")

    async def main() -> tuple[str, list[int], int]:
        async with AsyncGanforge(svc.url, token) as c:
            run = await c.runs.create({**RING8, "train": {"steps": 100}})
            seen: list[int] = []

            async def on_progress(r: object) -> None:
                seen.append(r.progress.step)

            run = await c.runs.wait(run.id, on_progress=on_progress, timeout=240, poll_interval=0.5)
            png = await c.runs.latest_samples(run.id)
            with pytest.raises(NotFound):
                await c.runs.get("run_nope")
            return run.status, seen, len(png)

    status, seen, size = asyncio.run(main())
    assert status == "succeeded"
    assert seen[-1] == 100
    assert size > 0


def test_events_stream_ends_on_a_finished_run(svc: Service, finished_run: tuple[str, str]) -> None:
    if not _has_route(svc, "get", "/runs/{run_id}/events"):
        pytest.skip("GET /runs/{id}/events is not in this server's API yet")
    token, run_id = finished_run
    with Ganforge(svc.url, token) as c:
        events = list(c.runs.events(run_id))
    assert events, "a finished run's stream still says how it ended"
    assert all(e.event in ("progress", "metric", "sample", "status", "checkpoint", "stats", "warning") for e in events)


def test_events_resume_after_last_event_id(svc: Service, finished_run: tuple[str, str]) -> None:
    if not _has_route(svc, "get", "/runs/{run_id}/events"):
        pytest.skip("GET /runs/{id}/events is not in this server's API yet")
    token, run_id = finished_run
    with Ganforge(svc.url, token) as c:
        first = list(c.runs.events(run_id, last_event_id="0"))  # everything, every progress tick included
        middle = first[len(first) // 2].id
        rest = list(c.runs.events(run_id, last_event_id=middle))

    async def read_async() -> list[str | None]:
        async with AsyncGanforge(svc.url, token) as ac:
            return [e.id async for e in ac.runs.events(run_id, last_event_id=middle)]

    assert [e.id for e in rest] == [e.id for e in first[len(first) // 2 + 1 :]]
    assert asyncio.run(read_async()) == [e.id for e in rest]
    assert rest[-1].event == "status" and rest[-1].data["status"] == "succeeded"


def test_metrics_series(svc: Service, finished_run: tuple[str, str]) -> None:
    if not _has_route(svc, "get", "/runs/{run_id}/metrics"):
        pytest.skip("GET /runs/{id}/metrics is not in this server's API yet")
    token, run_id = finished_run
    with Ganforge(svc.url, token) as c:
        series = c.runs.metrics(run_id)
        csv = c.runs.metrics_csv(run_id)
    assert all(isinstance(step, int) for points in series.values() for step, _ in points)
    assert csv.splitlines()[0] == "step,name,value"


def test_generation_result_is_a_grid_and_an_npz(svc: Service, finished_run: tuple[str, str]) -> None:
    if not _has_route(svc, "post", "/runs/{run_id}/generations"):
        pytest.skip("POST /runs/{id}/generations is not in this server's API yet")
    token, run_id = finished_run
    with Ganforge(svc.url, token) as c:
        png = c.generations.create(run_id, n=16, seed=1).result(timeout=240)
        assert Image.open(io.BytesIO(png)).format == "PNG"
        blob = c.generations.create(run_id, n=32, seed=1, format="npz").result(timeout=240)
        again = c.generations.create(run_id, n=32, seed=1, format="npz").result(timeout=240)
    samples = np.load(io.BytesIO(blob))["samples"]
    assert samples.shape == (32, 2) and samples.dtype == np.float32
    assert np.array_equal(samples, np.load(io.BytesIO(again))["samples"])


def test_dataset_upload_list_get_delete(svc: Service, client: Ganforge, tmp_path: Path) -> None:
    if not _has_route(svc, "post", "/datasets"):
        pytest.skip("POST /datasets is not in this server's API yet")
    archive = tmp_path / "dots.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for label in ("a", "b"):
            for i in range(4):
                image = Image.new("L", (16, 16), color=40 * i + (100 if label == "b" else 0))
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                zf.writestr(f"{label}/{i}.png", buf.getvalue())
    dataset = client.datasets.upload(archive, name="dots")
    assert dataset.name == "dots" and dataset.num_images == 8
    assert dataset.id in [d.id for d in client.datasets.list()]
    assert "ring8" in [d.id for d in client.datasets.list() if d.builtin]
    assert client.datasets.get(dataset.id).num_images == 8
    client.datasets.delete(dataset.id)
    with pytest.raises(NotFound):
        client.datasets.get(dataset.id)
    with pytest.raises(ValidationError):
        client.datasets.upload(b"not a zip", name="junk")


def test_tokens_create_gives_a_working_token(svc: Service) -> None:
    with Ganforge(svc.url, svc.admin_token) as admin:
        created = admin.tokens.create("made-by-the-client")
    assert created.name == "made-by-the-client" and created.token
    with Ganforge(svc.url, created.token) as c:
        assert c.runs.list().items == []
        with pytest.raises(APIError) as info:
            c.tokens.create("not-an-admin")
    assert (info.value.status, info.value.detail) == (403, "Admin token required")


def test_sse_decoder_follows_the_event_stream_format() -> None:
    decoder = SSEDecoder()
    lines = ["event: progress", 'data: {"step": 3}', "id: 7", "", ": keep-alive", "", "data: a", "data: b", ""]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [("progress", {"step": 3}, "7"), ("message", "a\nb", "7")]


def test_detail_text_flattens_validation_errors() -> None:
    detail = [
        {"loc": ["body", "train", "steps"], "msg": "Input should be greater than or equal to 1"},
        {"loc": ["body"], "msg": "Value error, model.arch: use mlp"},
    ]
    assert field_errors(detail) == [
        ("train.steps", "Input should be greater than or equal to 1"),
        ("model.arch", "use mlp"),
    ]
    assert detail_text(detail) == "train.steps: Input should be greater than or equal to 1; model.arch: use mlp"
    assert detail_text("Run not found") == "Run not found"
    assert field_errors("steps: say how many more to train") == [("steps", "say how many more to train")]
    assert field_errors("Run is running; only a finished run can be resumed") == [
        ("", "Run is running; only a finished run can be resumed")
    ]
