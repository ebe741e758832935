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

Every request is described once, in `ganforge._requests` (path, query, body, headers, and how the answer is
read); the classes here only send it, with httpx.Client or httpx.AsyncClient, and loop where a call is more
than one request (paging, waiting, the event stream).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from ganforge import _requests as api
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
from ganforge._models import GENERATION_TERMINAL as GENERATION_TERMINAL
from ganforge._models import RUN_TERMINAL as RUN_TERMINAL
from ganforge._models import (
    Checkpoint,
    Dataset,
    Event,
    Generation,
    Progress,
    Run,
    RunPage,
    Sample,
    Token,
)
from ganforge._models import ImageFormat as ImageFormat
from ganforge._requests import DEFAULT_URL as DEFAULT_URL
from ganforge._requests import Request
from ganforge._requests import SSEDecoder as _SSEDecoder  # noqa: F401 - importable from here, as before

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

T = TypeVar("T")


def _connection(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and headers, from the arguments or GANFORGE_URL / GANFORGE_TOKEN."""
    url = (url or os.environ.get("GANFORGE_URL") or DEFAULT_URL).rstrip("/")
    token = token if token is not None else os.environ.get("GANFORGE_TOKEN")
    return url, ({"Authorization": f"Bearer {token}"} if token else {})


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
        self.url, headers = _connection(url, token)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
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
        api.raise_for_status(response)
        return response

    def _send(self, request: Request[T]) -> T:
        return request.parse(self.request(request.method, request.path, **request.send_kwargs()))

    @contextlib.contextmanager
    def _stream(self, request: Request[Any]) -> Iterator[httpx.Response]:
        """An open streamed response; TransportError also when the connection breaks while it is read."""
        try:
            with self._http.stream(request.method, request.path, **request.send_kwargs()) as response:
                if response.status_code >= 400:
                    response.read()
                    api.raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise TransportError(f"{request.method} {self.url}{request.path}: {exc}") from exc

    def download(self, url: str) -> bytes:
        """The bytes behind a URL the server returned (such as a sample's `url`), with this client's token."""
        return self._send(api.download(url))

    def healthz(self) -> bool:
        return self._send(api.healthz())

    def readyz(self) -> dict[str, Any]:
        """Raise APIError (503 naming the failing part) unless the database and the broker answer."""
        return self._send(api.readyz())

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
        return self._c._send(api.create_run(config, idempotency_key=idempotency_key))

    def get(self, run_id: str) -> Run:
        return self._c._send(api.get_run(run_id))

    def list(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> RunPage:
        """One page of runs, newest first; pass `next_cursor` back as `cursor` for the next page."""
        return self._c._send(api.list_runs(status=status, limit=limit, cursor=cursor))

    def iter(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Run]:
        """Every run, newest first, fetching one page at a time."""
        page = self.list(status=status, limit=page_size)
        yield from page.items
        while page.next_cursor is not None:
            page = self.list(status=status, limit=page_size, cursor=page.next_cursor)
            yield from page.items

    def cancel(self, run_id: str) -> Run:
        """Ask the worker to stop at its next step; it keeps its last checkpoint."""
        self._c._send(api.cancel_run(run_id))
        return self.get(run_id)

    def resume(self, run_id: str, *, steps: int | None = None) -> Run:
        """Continue from the last checkpoint, optionally to a new total of `steps`."""
        self._c._send(api.resume_run(run_id, steps=steps))
        return self.get(run_id)

    def delete(self, run_id: str) -> None:
        """Remove the run and its artifacts (a running run is canceled first)."""
        self._c._send(api.delete_run(run_id))

    def wait(
        self,
        run_id: str,
        *,
        on_progress: Callable[[Run], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Run:
        """Poll until the run is succeeded, failed or canceled, and return it; WaitTimeout after `timeout` s."""
        deadline = api.Deadline(timeout)
        while True:
            run = self.get(run_id)
            if on_progress is not None:
                on_progress(run)
            if run.done:
                return run
            deadline.check(f"run {run_id} is still {run.status}")
            time.sleep(poll_interval)

    def events(
        self, run_id: str, *, last_event_id: str | None = None, max_retries: int = 5, retry_delay: float = 1.0
    ) -> Iterator[Event]:
        """The run's live events (progress, metric, sample, status), reconnecting with Last-Event-ID.

        Ends after a `status` event that says the run is done, or when a reconnect finds the run done.
        """
        stream = api.EventStream(run_id, last_event_id=last_event_id, max_retries=max_retries)
        while True:
            try:
                with self._c._stream(stream.request()) as response:
                    stream.connected()
                    for line in response.iter_lines():
                        if (event := stream.feed(line)) is not None:
                            yield event
                        if stream.finished:
                            return
            except TransportError as exc:
                stream.broken(exc)
            if self.get(run_id).done:
                return
            time.sleep(retry_delay)

    def samples(self, run_id: str) -> builtins.list[Sample]:
        """The sample grids written during training, oldest first."""
        return self._c._send(api.list_samples(run_id))

    def sample(self, run_id: str, step: int) -> bytes:
        """The PNG grid written at `step`."""
        return self._c._send(api.sample_png(run_id, step))

    def latest_samples(self, run_id: str) -> bytes:
        """The newest PNG grid."""
        return self._c._send(api.sample_png(run_id, "latest"))

    def checkpoints(self, run_id: str) -> builtins.list[Checkpoint]:
        return self._c._send(api.list_checkpoints(run_id))

    def download_checkpoint(self, run_id: str, step: int | None, path: str | os.PathLike[str]) -> Path:
        """Stream the checkpoint at `step` (None: the newest) into `path`; return the path."""
        if step is None:
            step = api.newest_checkpoint_step(run_id, self.checkpoints(run_id))
        target = Path(path)
        with self._c._stream(api.checkpoint_file(run_id, step)) as response, target.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
        return target

    def metrics(
        self, run_id: str, *, names: builtins.list[str] | None = None, since_step: int | None = None
    ) -> dict[str, builtins.list[tuple[int, float]]]:
        """Series of (step, value) per metric name."""
        return self._c._send(api.run_metrics(run_id, names=names, since_step=since_step))

    def metrics_csv(self, run_id: str) -> str:
        """The same series as `step,name,value` CSV rows."""
        return self._c._send(api.run_metrics_csv(run_id))


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
        deadline = api.Deadline(timeout)
        while not self.generation.done:
            deadline.check(f"generation {self.id} is still {self.generation.status}")
            time.sleep(poll_interval)
            self.refresh()
        return api.succeeded(self.generation)

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
        request = api.create_generation(
            run_id,
            n=n,
            seed=seed,
            step=step,
            ema=ema,
            truncation=truncation,
            labels=labels,
            format=format,
            interpolate=interpolate,
        )
        return GenerationHandle(self._c, self._c._send(request))

    def get(self, generation_id: str) -> Generation:
        return self._c._send(api.get_generation(generation_id))

    def result(self, generation_id: str) -> bytes:
        return self._c._send(api.generation_result(generation_id))


class Datasets:
    """Uploaded and built-in datasets."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def upload(self, file: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Dataset:
        """Upload a ZIP of images (one folder per class, optional); `name` defaults to the file's stem."""
        with api.upload_dataset(file, name=name) as request:
            return self._c._send(request)

    def list(self) -> builtins.list[Dataset]:
        return self._c._send(api.list_datasets())

    def get(self, dataset_id: str) -> Dataset:
        return self._c._send(api.get_dataset(dataset_id))

    def preview(self, dataset_id: str) -> bytes:
        return self._c._send(api.dataset_preview(dataset_id))

    def delete(self, dataset_id: str) -> None:
        """Conflict while a queued or running run uses it."""
        self._c._send(api.delete_dataset(dataset_id))


class Tokens:
    """API tokens (admins only)."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def create(self, name: str, *, admin: bool = False) -> Token:
        """A new token (an admin's when `admin`); the secret is in `.token` and is shown only this once."""
        return self._c._send(api.create_token(name, admin=admin))


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
        self.url, headers = _connection(url, token)
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self.runs = AsyncRuns(self)
        self.generations = AsyncGenerations(self)
        self.datasets = AsyncDatasets(self)
        self.tokens = AsyncTokens(self)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {self.url}{path}: {exc}") from exc
        api.raise_for_status(response)
        return response

    async def _send(self, request: Request[T]) -> T:
        return request.parse(await self.request(request.method, request.path, **request.send_kwargs()))

    @contextlib.asynccontextmanager
    async def _stream(self, request: Request[Any]) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(request.method, request.path, **request.send_kwargs()) as response:
                if response.status_code >= 400:
                    await response.aread()
                    api.raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise TransportError(f"{request.method} {self.url}{request.path}: {exc}") from exc

    async def download(self, url: str) -> bytes:
        return await self._send(api.download(url))

    async def healthz(self) -> bool:
        return await self._send(api.healthz())

    async def readyz(self) -> dict[str, Any]:
        return await self._send(api.readyz())

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
        return await self._c._send(api.create_run(config, idempotency_key=idempotency_key))

    async def get(self, run_id: str) -> Run:
        return await self._c._send(api.get_run(run_id))

    async def list(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> RunPage:
        return await self._c._send(api.list_runs(status=status, limit=limit, cursor=cursor))

    async def iter(self, *, status: str | None = None, page_size: int = 100) -> AsyncIterator[Run]:
        page = await self.list(status=status, limit=page_size)
        for run in page.items:
            yield run
        while page.next_cursor is not None:
            page = await self.list(status=status, limit=page_size, cursor=page.next_cursor)
            for run in page.items:
                yield run

    async def cancel(self, run_id: str) -> Run:
        await self._c._send(api.cancel_run(run_id))
        return await self.get(run_id)

    async def resume(self, run_id: str, *, steps: int | None = None) -> Run:
        await self._c._send(api.resume_run(run_id, steps=steps))
        return await self.get(run_id)

    async def delete(self, run_id: str) -> None:
        await self._c._send(api.delete_run(run_id))

    async def wait(
        self,
        run_id: str,
        *,
        on_progress: Callable[[Run], Awaitable[None] | None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Run:
        """Poll until the run is done; `on_progress` may be a plain function or a coroutine function."""
        deadline = api.Deadline(timeout)
        while True:
            run = await self.get(run_id)
            if on_progress is not None and (outcome := on_progress(run)) is not None:
                await outcome
            if run.done:
                return run
            deadline.check(f"run {run_id} is still {run.status}")
            await asyncio.sleep(poll_interval)

    async def events(
        self, run_id: str, *, last_event_id: str | None = None, max_retries: int = 5, retry_delay: float = 1.0
    ) -> AsyncIterator[Event]:
        stream = api.EventStream(run_id, last_event_id=last_event_id, max_retries=max_retries)
        while True:
            try:
                async with self._c._stream(stream.request()) as response:
                    stream.connected()
                    async for line in response.aiter_lines():
                        if (event := stream.feed(line)) is not None:
                            yield event
                        if stream.finished:
                            return
            except TransportError as exc:
                stream.broken(exc)
            if (await self.get(run_id)).done:
                return
            await asyncio.sleep(retry_delay)

    async def samples(self, run_id: str) -> builtins.list[Sample]:
        return await self._c._send(api.list_samples(run_id))

    async def sample(self, run_id: str, step: int) -> bytes:
        return await self._c._send(api.sample_png(run_id, step))

    async def latest_samples(self, run_id: str) -> bytes:
        return await self._c._send(api.sample_png(run_id, "latest"))

    async def checkpoints(self, run_id: str) -> builtins.list[Checkpoint]:
        return await self._c._send(api.list_checkpoints(run_id))

    async def download_checkpoint(self, run_id: str, step: int | None, path: str | os.PathLike[str]) -> Path:
        if step is None:
            step = api.newest_checkpoint_step(run_id, await self.checkpoints(run_id))
        target = Path(path)
        async with self._c._stream(api.checkpoint_file(run_id, step)) as response:
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        return target

    async def metrics(
        self, run_id: str, *, names: builtins.list[str] | None = None, since_step: int | None = None
    ) -> dict[str, builtins.list[tuple[int, float]]]:
        return await self._c._send(api.run_metrics(run_id, names=names, since_step=since_step))

    async def metrics_csv(self, run_id: str) -> str:
        return await self._c._send(api.run_metrics_csv(run_id))


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
        deadline = api.Deadline(timeout)
        while not self.generation.done:
            deadline.check(f"generation {self.id} is still {self.generation.status}")
            await asyncio.sleep(poll_interval)
            await self.refresh()
        return api.succeeded(self.generation)

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
        request = api.create_generation(
            run_id,
            n=n,
            seed=seed,
            step=step,
            ema=ema,
            truncation=truncation,
            labels=labels,
            format=format,
            interpolate=interpolate,
        )
        return AsyncGenerationHandle(self._c, await self._c._send(request))

    async def get(self, generation_id: str) -> Generation:
        return await self._c._send(api.get_generation(generation_id))

    async def result(self, generation_id: str) -> bytes:
        return await self._c._send(api.generation_result(generation_id))


class AsyncDatasets:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def upload(self, file: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Dataset:
        with api.upload_dataset(file, name=name) as request:
            return await self._c._send(request)

    async def list(self) -> builtins.list[Dataset]:
        return await self._c._send(api.list_datasets())

    async def get(self, dataset_id: str) -> Dataset:
        return await self._c._send(api.get_dataset(dataset_id))

    async def preview(self, dataset_id: str) -> bytes:
        return await self._c._send(api.dataset_preview(dataset_id))

    async def delete(self, dataset_id: str) -> None:
        await self._c._send(api.delete_dataset(dataset_id))


class AsyncTokens:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def create(self, name: str, *, admin: bool = False) -> Token:
        return await self._c._send(api.create_token(name, admin=admin))
