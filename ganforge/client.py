"""The Python client of the ganforge HTTP API (see shared/API.md), sync and async, on httpx.

```python
from ganforge.client import Ganforge

with Ganforge("http://127.0.0.1:8000", token) as client:
    run = client.runs.create({"dataset": "ring8", "train": {"steps": 500}})
    run = client.runs.wait(run.id, on_progress=lambda r: print(r.progress.step))
    png = client.runs.latest_samples(run.id)
    grid = client.generations.create(run.id, n=64, seed=1).result()
```

`AsyncGanforge` has the same resources with `async` methods. Errors are the tree in `ganforge._exceptions`.
URL and token default to the `GANFORGE_URL` and `GANFORGE_TOKEN` environment variables.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx

from ganforge._exceptions import (
    APIError,
    Conflict,
    GanforgeError,
    JobFailed,
    NotFound,
    TransportError,
    Unauthorized,
    ValidationError,
    WaitTimeout,
)

__all__ = [
    "APIError",
    "AsyncGanforge",
    "AsyncGenerationHandle",
    "Checkpoint",
    "Conflict",
    "Dataset",
    "Event",
    "Ganforge",
    "GanforgeError",
    "Generation",
    "GenerationHandle",
    "JobFailed",
    "NotFound",
    "Progress",
    "Run",
    "RunPage",
    "Sample",
    "Token",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "WaitTimeout",
]

DEFAULT_URL = "http://127.0.0.1:8000"
RUN_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
GENERATION_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
ImageFormat = Literal["png", "zip", "npz"]


# ---------------------------------------------------------------------------------------------------------------
# Typed objects. Each keeps the JSON it came from in `raw`, so fields the server adds later stay reachable.


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Progress:
    step: int = 0
    total_steps: int = 0
    images_per_sec: float | None = None
    eta_seconds: float | None = None
    losses: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        data = data or {}
        losses = data.get("losses") or {}
        return cls(
            step=int(data.get("step") or 0),
            total_steps=int(data.get("total_steps") or 0),
            images_per_sec=_float(data.get("images_per_sec")),
            eta_seconds=_float(data.get("eta_seconds")),
            losses={str(k): float(v) for k, v in losses.items() if isinstance(v, int | float)},
        )

    @property
    def fraction(self) -> float:
        """Done fraction in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    status: str
    config: dict[str, Any]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    latest_metrics: dict[str, float]
    error: str | None
    worker: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            status=str(data.get("status") or ""),
            config=dict(data.get("config") or {}),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            progress=Progress.from_json(data.get("progress")),
            latest_metrics={str(k): float(v) for k, v in (data.get("latest_metrics") or {}).items() if v is not None},
            error=data.get("error"),
            worker=data.get("worker"),
            raw=data,
        )

    @property
    def done(self) -> bool:
        """True once the run is succeeded, failed or canceled."""
        return self.status in RUN_TERMINAL


@dataclass(frozen=True)
class RunPage:
    items: list[Run]
    next_cursor: str | None


@dataclass(frozen=True)
class Sample:
    step: int
    url: str


@dataclass(frozen=True)
class Checkpoint:
    step: int
    url: str
    size_bytes: int


@dataclass(frozen=True)
class Generation:
    id: str
    run_id: str
    status: str
    error: str | None
    result_url: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generation:
        return cls(
            id=str(data["id"]),
            run_id=str(data.get("run_id") or ""),
            status=str(data.get("status") or ""),
            error=data.get("error"),
            result_url=data.get("result_url"),
            raw=data,
        )

    @property
    def done(self) -> bool:
        return self.status in GENERATION_TERMINAL


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    builtin: bool
    kind: str
    num_images: int | None
    classes: Any
    image_size: int | None
    channels: int | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dataset:
        return cls(
            id=str(data.get("id") or data.get("name")),
            name=str(data.get("name") or ""),
            builtin=bool(data.get("builtin", False)),
            kind=str(data.get("kind") or "images"),
            num_images=data.get("num_images"),
            classes=data.get("classes"),
            image_size=data.get("image_size"),
            channels=data.get("channels"),
            raw=data,
        )


@dataclass(frozen=True)
class Token:
    name: str
    token: str
    id: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        return cls(
            name=str(data.get("name") or ""),
            token=str(data["token"]),
            id=str(data["id"]) if data.get("id") is not None else None,
            raw=data,
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event: `event` is its type (progress, metric, sample, status, ...), `data` its JSON."""

    event: str
    data: Any
    id: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by the sync and async clients.


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail: Any = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    status = response.status_code
    kind = {401: Unauthorized, 404: NotFound, 409: Conflict, 400: ValidationError, 422: ValidationError}
    raise kind.get(status, APIError)(status, detail)


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _json_config(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Accept a mapping or a Pydantic model (core.config.RunConfig) as a run config."""
    dump = getattr(config, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json", exclude_unset=True))
    return dict(config)


def _generation_body(
    *,
    n: int,
    seed: int,
    step: int | Literal["latest"],
    ema: bool,
    truncation: float | None,
    labels: list[int] | None,
    format: ImageFormat,
    interpolate: int | None,
) -> dict[str, Any]:
    return {
        "n": n,
        "seed": seed,
        "step": step,
        "ema": ema,
        "truncation": truncation,
        "labels": labels,
        "format": format,
        "interpolate": {"steps": interpolate} if interpolate else None,
    }


@contextlib.contextmanager
def _upload_parts(
    file: str | os.PathLike[str] | bytes, name: str | None
) -> Iterator[tuple[dict[str, tuple[str, bytes | BinaryIO, str]], dict[str, str]]]:
    """The multipart parts of an upload; a file on disk is streamed from an open handle, never read whole."""
    data = {"name": name if name is not None else (Path(file).stem if not isinstance(file, bytes) else "dataset")}
    if isinstance(file, bytes):
        yield {"file": ("dataset.zip", file, "application/zip")}, data
        return
    with open(file, "rb") as handle:
        yield {"file": (Path(file).name, handle, "application/zip")}, data


def _metric_series(data: dict[str, Any]) -> dict[str, builtins.list[tuple[int, float]]]:
    return {
        str(name): [(int(step), float(value)) for step, value in points]
        for name, points in (data.get("series") or {}).items()
    }


class _SSEDecoder:
    """The text/event-stream format, one line at a time (the WHATWG rules, without `retry` handling)."""

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, line: str) -> Event | None:
        if line == "":
            if not self.data:
                self.event = ""
                return None
            text = "\n".join(self.data)
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text
            event = Event(event=self.event or "message", data=payload, id=self.id)
            self.event, self.data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.id = value
        return None


def _is_final(event: Event) -> bool:
    return event.event == "status" and isinstance(event.data, dict) and event.data.get("status") in RUN_TERMINAL


_STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)


# ---------------------------------------------------------------------------------------------------------------
# The sync client.


class Ganforge:
    """A client of one ganforge server. Use it as a context manager, or call close()."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("GANFORGE_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("GANFORGE_TOKEN")
        self._http = httpx.Client(base_url=self.url, headers=_headers(token), timeout=timeout, transport=transport)
        self.runs = Runs(self)
        self.generations = Generations(self)
        self.datasets = Datasets(self)
        self.tokens = Tokens(self)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raise the matching GanforgeError for a transport failure or an error status."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {self.url}{path}: {exc}") from exc
        _raise_for_status(response)
        return response

    def download(self, url: str) -> bytes:
        """The bytes behind a URL the server returned (such as a sample's `url`), with this client's token."""
        return self.request("GET", url).content

    def healthz(self) -> bool:
        return self.request("GET", "/healthz").status_code == 200

    def readyz(self) -> dict[str, Any]:
        """Raise APIError (503 naming the failing part) unless the database and the broker answer."""
        response = self.request("GET", "/readyz")
        return dict(response.json()) if response.content else {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Ganforge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Runs:
    """Training runs: /runs and everything under it."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def create(self, config: Mapping[str, Any] | Any, *, idempotency_key: str | None = None) -> Run:
        """Queue a run. With an idempotency key, a retried create returns the first run instead of a second."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._c.request("POST", "/runs", json=_json_config(config), headers=headers)
        return Run.from_json(response.json())

    def get(self, run_id: str) -> Run:
        return Run.from_json(self._c.request("GET", f"/runs/{run_id}").json())

    def list(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> RunPage:
        """One page of runs, newest first; pass `next_cursor` back as `cursor` for the next page."""
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        data = self._c.request("GET", "/runs", params=params).json()
        return RunPage(items=[Run.from_json(item) for item in data["items"]], next_cursor=data.get("next_cursor"))

    def iter(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Run]:
        """Every run, newest first, fetching one page at a time."""
        cursor = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, run_id: str) -> Run:
        """Ask the worker to stop at its next step; it keeps its last checkpoint."""
        self._c.request("POST", f"/runs/{run_id}/cancel")
        return self.get(run_id)

    def resume(self, run_id: str, *, steps: int | None = None) -> Run:
        """Continue from the last checkpoint, optionally to a new total of `steps`."""
        self._c.request("POST", f"/runs/{run_id}/resume", json={"steps": steps})
        return self.get(run_id)

    def delete(self, run_id: str) -> None:
        """Remove the run and its artifacts (a running run is canceled first)."""
        self._c.request("DELETE", f"/runs/{run_id}")

    def wait(
        self,
        run_id: str,
        *,
        on_progress: Callable[[Run], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Run:
        """Poll until the run is succeeded, failed or canceled, and return it; WaitTimeout after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get(run_id)
            if on_progress is not None:
                on_progress(run)
            if run.done:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"run {run_id} is still {run.status} after {timeout} s")
            time.sleep(poll_interval)

    def events(
        self, run_id: str, *, last_event_id: str | None = None, max_retries: int = 5, retry_delay: float = 1.0
    ) -> Iterator[Event]:
        """The run's live events (progress, metric, sample, status), reconnecting with Last-Event-ID.

        Ends after a `status` event that says the run is done, or when a reconnect finds the run done.
        """
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                with self._c._http.stream(
                    "GET", f"/runs/{run_id}/events", headers=headers, timeout=_STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for_status(response)
                    failures = 0
                    decoder = _SSEDecoder()
                    for line in response.iter_lines():
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        last_event_id = event.id or last_event_id
                        yield event
                        if _is_final(event):
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > max_retries:
                    raise TransportError(f"event stream of run {run_id}: {exc}") from exc
            if self.get(run_id).done:
                return
            time.sleep(retry_delay)

    def samples(self, run_id: str) -> builtins.list[Sample]:
        """The sample grids written during training, oldest first."""
        data = self._c.request("GET", f"/runs/{run_id}/samples").json()
        return [Sample(step=int(item["step"]), url=str(item["url"])) for item in data["items"]]

    def sample(self, run_id: str, step: int) -> bytes:
        """The PNG grid written at `step`."""
        return self._c.request("GET", f"/runs/{run_id}/samples/{int(step)}.png").content

    def latest_samples(self, run_id: str) -> bytes:
        """The newest PNG grid."""
        return self._c.request("GET", f"/runs/{run_id}/samples/latest.png").content

    def checkpoints(self, run_id: str) -> builtins.list[Checkpoint]:
        data = self._c.request("GET", f"/runs/{run_id}/checkpoints").json()
        return [
            Checkpoint(step=int(i["step"]), url=str(i["url"]), size_bytes=int(i["size_bytes"])) for i in data["items"]
        ]

    def download_checkpoint(self, run_id: str, step: int | None, path: str | os.PathLike[str]) -> Path:
        """Stream the checkpoint at `step` (None: the newest) into `path`; return the path."""
        if step is None:
            items = self.checkpoints(run_id)
            if not items:
                raise NotFound(404, f"Run {run_id} has no checkpoint yet")
            step = items[-1].step
        target = Path(path)
        try:
            with self._c._http.stream("GET", f"/runs/{run_id}/checkpoints/{int(step)}") as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(response)
                with target.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise TransportError(f"checkpoint {step} of run {run_id}: {exc}") from exc
        return target

    def metrics(
        self, run_id: str, *, names: builtins.list[str] | None = None, since_step: int | None = None
    ) -> dict[str, builtins.list[tuple[int, float]]]:
        """Series of (step, value) per metric name."""
        params: dict[str, Any] = {}
        if names:
            params["names"] = ",".join(names)
        if since_step is not None:
            params["since_step"] = since_step
        return _metric_series(self._c.request("GET", f"/runs/{run_id}/metrics", params=params).json())

    def metrics_csv(self, run_id: str) -> str:
        """The same series as `step,name,value` CSV rows."""
        return self._c.request("GET", f"/runs/{run_id}/metrics", headers={"Accept": "text/csv"}).text


class GenerationHandle:
    """A queued generation: `result()` waits for it and returns the bytes (png, zip or npz)."""

    def __init__(self, client: Ganforge, generation: Generation) -> None:
        self._c = client
        self.generation = generation

    @property
    def id(self) -> str:
        return self.generation.id

    def refresh(self) -> Generation:
        self.generation = self._c.generations.get(self.id)
        return self.generation

    def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Generation:
        """Poll until done; JobFailed if it failed, WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.generation.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"generation {self.id} is still {self.generation.status} after {timeout} s")
            time.sleep(poll_interval)
            self.refresh()
        if self.generation.status != "succeeded":
            raise JobFailed(self.id, self.generation.error or self.generation.status)
        return self.generation

    def result(self, *, timeout: float | None = 600.0) -> bytes:
        self.wait(timeout=timeout)
        return self._c.generations.result(self.id)


class Generations:
    """Sampling jobs: POST /runs/{id}/generations and /generations/{id}."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def create(
        self,
        run_id: str,
        *,
        n: int = 64,
        seed: int = 0,
        step: int | Literal["latest"] = "latest",
        ema: bool = True,
        truncation: float | None = None,
        labels: list[int] | None = None,
        format: ImageFormat = "png",
        interpolate: int | None = None,
    ) -> GenerationHandle:
        """Queue a generation from one of the run's checkpoints; `.result()` on the handle waits for the bytes."""
        body = _generation_body(
            n=n,
            seed=seed,
            step=step,
            ema=ema,
            truncation=truncation,
            labels=labels,
            format=format,
            interpolate=interpolate,
        )
        response = self._c.request("POST", f"/runs/{run_id}/generations", json=body)
        return GenerationHandle(self._c, Generation.from_json(response.json()))

    def get(self, generation_id: str) -> Generation:
        return Generation.from_json(self._c.request("GET", f"/generations/{generation_id}").json())

    def result(self, generation_id: str) -> bytes:
        return self._c.request("GET", f"/generations/{generation_id}/result").content


class Datasets:
    """Uploaded and built-in datasets."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def upload(self, file: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Dataset:
        """Upload a ZIP of images (one folder per class, optional); `name` defaults to the file's stem."""
        with _upload_parts(file, name) as (files, data):
            return Dataset.from_json(self._c.request("POST", "/datasets", files=files, data=data).json())

    def list(self) -> builtins.list[Dataset]:
        data = self._c.request("GET", "/datasets").json()
        items = data["items"] if isinstance(data, dict) else data
        return [Dataset.from_json(item) for item in items]

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._c.request("GET", f"/datasets/{dataset_id}").json())

    def preview(self, dataset_id: str) -> bytes:
        return self._c.request("GET", f"/datasets/{dataset_id}/preview.png").content

    def delete(self, dataset_id: str) -> None:
        """Conflict while a queued or running run uses it."""
        self._c.request("DELETE", f"/datasets/{dataset_id}")


class Tokens:
    """API tokens (admins only)."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def create(self, name: str, *, admin: bool = False) -> Token:
        """A new token (an admin's when `admin`); the secret is in `.token` and is shown only this once."""
        body: dict[str, Any] = {"name": name, "admin": True} if admin else {"name": name}
        return Token.from_json(self._c.request("POST", "/tokens", json=body).json())


# ---------------------------------------------------------------------------------------------------------------
# The async client: the same resources, awaited.


class AsyncGanforge:
    """The async twin of Ganforge. Use `async with`, or await aclose()."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("GANFORGE_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("GANFORGE_TOKEN")
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(token), timeout=timeout, transport=transport)
        self.runs = AsyncRuns(self)
        self.generations = AsyncGenerations(self)
        self.datasets = AsyncDatasets(self)
        self.tokens = AsyncTokens(self)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {self.url}{path}: {exc}") from exc
        _raise_for_status(response)
        return response

    async def download(self, url: str) -> bytes:
        return (await self.request("GET", url)).content

    async def healthz(self) -> bool:
        return (await self.request("GET", "/healthz")).status_code == 200

    async def readyz(self) -> dict[str, Any]:
        response = await self.request("GET", "/readyz")
        return dict(response.json()) if response.content else {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGanforge:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncRuns:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def create(self, config: Mapping[str, Any] | Any, *, idempotency_key: str | None = None) -> Run:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._c.request("POST", "/runs", json=_json_config(config), headers=headers)
        return Run.from_json(response.json())

    async def get(self, run_id: str) -> Run:
        return Run.from_json((await self._c.request("GET", f"/runs/{run_id}")).json())

    async def list(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> RunPage:
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        data = (await self._c.request("GET", "/runs", params=params)).json()
        return RunPage(items=[Run.from_json(item) for item in data["items"]], next_cursor=data.get("next_cursor"))

    async def iter(self, *, status: str | None = None, page_size: int = 100) -> AsyncIterator[Run]:
        cursor = None
        while True:
            page = await self.list(status=status, limit=page_size, cursor=cursor)
            for run in page.items:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, run_id: str) -> Run:
        await self._c.request("POST", f"/runs/{run_id}/cancel")
        return await self.get(run_id)

    async def resume(self, run_id: str, *, steps: int | None = None) -> Run:
        await self._c.request("POST", f"/runs/{run_id}/resume", json={"steps": steps})
        return await self.get(run_id)

    async def delete(self, run_id: str) -> None:
        await self._c.request("DELETE", f"/runs/{run_id}")

    async def wait(
        self,
        run_id: str,
        *,
        on_progress: Callable[[Run], Awaitable[None] | None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Run:
        """Poll until the run is done; `on_progress` may be a plain function or a coroutine function."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get(run_id)
            if on_progress is not None:
                outcome = on_progress(run)
                if outcome is not None:
                    await outcome
            if run.done:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"run {run_id} is still {run.status} after {timeout} s")
            await asyncio.sleep(poll_interval)

    async def events(
        self, run_id: str, *, last_event_id: str | None = None, max_retries: int = 5, retry_delay: float = 1.0
    ) -> AsyncIterator[Event]:
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with self._c._http.stream(
                    "GET", f"/runs/{run_id}/events", headers=headers, timeout=_STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _raise_for_status(response)
                    failures = 0
                    decoder = _SSEDecoder()
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        last_event_id = event.id or last_event_id
                        yield event
                        if _is_final(event):
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > max_retries:
                    raise TransportError(f"event stream of run {run_id}: {exc}") from exc
            if (await self.get(run_id)).done:
                return
            await asyncio.sleep(retry_delay)

    async def samples(self, run_id: str) -> builtins.list[Sample]:
        data = (await self._c.request("GET", f"/runs/{run_id}/samples")).json()
        return [Sample(step=int(item["step"]), url=str(item["url"])) for item in data["items"]]

    async def sample(self, run_id: str, step: int) -> bytes:
        return (await self._c.request("GET", f"/runs/{run_id}/samples/{int(step)}.png")).content

    async def latest_samples(self, run_id: str) -> bytes:
        return (await self._c.request("GET", f"/runs/{run_id}/samples/latest.png")).content

    async def checkpoints(self, run_id: str) -> builtins.list[Checkpoint]:
        data = (await self._c.request("GET", f"/runs/{run_id}/checkpoints")).json()
        return [
            Checkpoint(step=int(i["step"]), url=str(i["url"]), size_bytes=int(i["size_bytes"])) for i in data["items"]
        ]

    async def download_checkpoint(self, run_id: str, step: int | None, path: str | os.PathLike[str]) -> Path:
        if step is None:
            items = await self.checkpoints(run_id)
            if not items:
                raise NotFound(404, f"Run {run_id} has no checkpoint yet")
            step = items[-1].step
        target = Path(path)
        try:
            async with self._c._http.stream("GET", f"/runs/{run_id}/checkpoints/{int(step)}") as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for_status(response)
                with target.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise TransportError(f"checkpoint {step} of run {run_id}: {exc}") from exc
        return target

    async def metrics(
        self, run_id: str, *, names: builtins.list[str] | None = None, since_step: int | None = None
    ) -> dict[str, builtins.list[tuple[int, float]]]:
        params: dict[str, Any] = {}
        if names:
            params["names"] = ",".join(names)
        if since_step is not None:
            params["since_step"] = since_step
        return _metric_series((await self._c.request("GET", f"/runs/{run_id}/metrics", params=params)).json())

    async def metrics_csv(self, run_id: str) -> str:
        return (await self._c.request("GET", f"/runs/{run_id}/metrics", headers={"Accept": "text/csv"})).text


class AsyncGenerationHandle:
    def __init__(self, client: AsyncGanforge, generation: Generation) -> None:
        self._c = client
        self.generation = generation

    @property
    def id(self) -> str:
        return self.generation.id

    async def refresh(self) -> Generation:
        self.generation = await self._c.generations.get(self.id)
        return self.generation

    async def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Generation:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.generation.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"generation {self.id} is still {self.generation.status} after {timeout} s")
            await asyncio.sleep(poll_interval)
            await self.refresh()
        if self.generation.status != "succeeded":
            raise JobFailed(self.id, self.generation.error or self.generation.status)
        return self.generation

    async def result(self, *, timeout: float | None = 600.0) -> bytes:
        await self.wait(timeout=timeout)
        return await self._c.generations.result(self.id)


class AsyncGenerations:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def create(
        self,
        run_id: str,
        *,
        n: int = 64,
        seed: int = 0,
        step: int | Literal["latest"] = "latest",
        ema: bool = True,
        truncation: float | None = None,
        labels: list[int] | None = None,
        format: ImageFormat = "png",
        interpolate: int | None = None,
    ) -> AsyncGenerationHandle:
        body = _generation_body(
            n=n,
            seed=seed,
            step=step,
            ema=ema,
            truncation=truncation,
            labels=labels,
            format=format,
            interpolate=interpolate,
        )
        response = await self._c.request("POST", f"/runs/{run_id}/generations", json=body)
        return AsyncGenerationHandle(self._c, Generation.from_json(response.json()))

    async def get(self, generation_id: str) -> Generation:
        return Generation.from_json((await self._c.request("GET", f"/generations/{generation_id}")).json())

    async def result(self, generation_id: str) -> bytes:
        return (await self._c.request("GET", f"/generations/{generation_id}/result")).content


class AsyncDatasets:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def upload(self, file: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Dataset:
        with _upload_parts(file, name) as (files, data):
            return Dataset.from_json((await self._c.request("POST", "/datasets", files=files, data=data)).json())

    async def list(self) -> builtins.list[Dataset]:
        data = (await self._c.request("GET", "/datasets")).json()
        items = data["items"] if isinstance(data, dict) else data
        return [Dataset.from_json(item) for item in items]

    async def get(self, dataset_id: str) -> Dataset:
        return Dataset.from_json((await self._c.request("GET", f"/datasets/{dataset_id}")).json())

    async def preview(self, dataset_id: str) -> bytes:
        return (await self._c.request("GET", f"/datasets/{dataset_id}/preview.png")).content

    async def delete(self, dataset_id: str) -> None:
        await self._c.request("DELETE", f"/datasets/{dataset_id}")


class AsyncTokens:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def create(self, name: str, *, admin: bool = False) -> Token:
        body: dict[str, Any] = {"name": name, "admin": True} if admin else {"name": name}
        return Token.from_json((await self._c.request("POST", "/tokens", json=body)).json())
