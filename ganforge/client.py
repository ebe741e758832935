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
read), and so is every call of more than one request (paging, waiting, the event stream), as a flow of actions;
the classes here only send the requests, with httpx.Client or httpx.AsyncClient, and carry out the flows.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx

import ganforge._requests as api
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
    Me,
    Progress,
    Projection,
    Run,
    RunPage,
    Sample,
    Token,
    TokenInfo,
    Translation,
    Usage,
)
from ganforge._models import ImageFormat as ImageFormat
from ganforge._models import TableFormat as TableFormat
from ganforge._requests import DEFAULT_URL as DEFAULT_URL
from ganforge._requests import Request

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
    "Me",
    "NotFound",
    "Progress",
    "Projection",
    "ProjectionHandle",
    "Run",
    "RunPage",
    "Sample",
    "Token",
    "TokenInfo",
    "Translation",
    "TranslationHandle",
    "TransportError",
    "Unauthorized",
    "Usage",
    "ValidationError",
    "WaitTimeout",
]

T = TypeVar("T")

# Requests the client sends a second time when the first found its connection dropped without an answer: the safe
# methods (RFC 9110, 9.2.1), which change nothing on the server however often they arrive.
RESENT_METHODS = frozenset({"GET", "HEAD"})


def resends(method: str, exc: httpx.TransportError) -> bool:
    """Whether a request that failed with `exc` goes out once more, on a new connection.

    A server closes a kept-alive connection after its idle timeout (uvicorn's is 5 s); a request sent as that close
    is under way finds the connection gone and no answer (httpx's RemoteProtocolError "Server disconnected without
    sending a response"). Polling at intervals near the timeout meets this race; a safe request is sent again."""
    return isinstance(exc, httpx.RemoteProtocolError) and method.upper() in RESENT_METHODS


HandleT = TypeVar("HandleT")
ClientT = TypeVar("ClientT")
TransportT = TypeVar("TransportT")
RunsT = TypeVar("RunsT")
GenerationsT = TypeVar("GenerationsT")
DatasetsT = TypeVar("DatasetsT")
TokensT = TypeVar("TokensT")


class _Client(Generic[TransportT, RunsT, GenerationsT, DatasetsT, TokensT]):
    """The constructor of both clients. A subclass opens its httpx client in `_connect` and names the classes
    of its resources in `_resources`."""

    _resources: tuple[
        Callable[[Any], RunsT], Callable[[Any], GenerationsT], Callable[[Any], DatasetsT], Callable[[Any], TokensT]
    ]

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: TransportT | None = None,
    ) -> None:
        self.url = (url or os.environ.get("GANFORGE_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("GANFORGE_TOKEN")
        # Redirects are followed so that downloads work from presigned storage URLs (httpx drops the bearer
        # token on the way to another origin).
        self._connect(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
        )
        runs, generations, datasets, tokens = self._resources
        self.runs = runs(self)
        self.generations = generations(self)
        self.datasets = datasets(self)
        self.tokens = tokens(self)

    def _connect(self, **options: Any) -> None:
        """Open `self._http` with these httpx client options."""
        raise NotImplementedError


class _GenerationHandle(Generic[ClientT]):
    """What both clients' generation handles hold: the client, and the generation as last seen."""

    def __init__(self, client: ClientT, generation: Generation) -> None:
        self._c = client
        self.generation = generation

    @property
    def id(self) -> str:
        return self.generation.id


class _CreatesGenerations(Generic[HandleT]):
    """`create` of both clients' generations: the signature and the request, once; `_submit` sends it."""

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
        format: ImageFormat | TableFormat | None = None,
        interpolate: int | None = None,
        conditions: dict[str, Any] | None = None,
    ) -> HandleT:
        """Queue a generation from one of the run's checkpoints; `.result()` on the handle waits for the bytes.
        `format` defaults to png, or csv for a table (ctgan) run; `conditions` ({column: value}) are for tables."""
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
            conditions=conditions,
        )
        return self._submit(request)

    def _submit(self, request: Request[Generation]) -> HandleT:
        raise NotImplementedError


class _CreatesTokens(Generic[T]):
    """`create` of both clients' tokens: the signature and the request, once; `_submit` sends it."""

    def create(
        self,
        name: str,
        *,
        admin: bool = False,
        expires_at: datetime | None = None,
        expires_in_days: int | None = None,
    ) -> T:
        """A new token (an admin's when `admin`; admins only), optionally expiring; the secret is in `.token`
        and is shown only this once."""
        return self._submit(api.create_token(name, admin=admin, expires_at=expires_at, expires_in_days=expires_in_days))

    def _submit(self, request: Request[Token]) -> T:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# The sync client.


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
        yield from self._c._drive(api.Flow(api.all_runs(status=status, page_size=page_size)))

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
        return self._c._run(api.wait_run(run_id, on_progress=on_progress, timeout=timeout, poll_interval=poll_interval))

    def events(
        self, run_id: str, *, last_event_id: str | None = None, max_retries: int = 5, retry_delay: float = 1.0
    ) -> Iterator[Event]:
        """The run's live events (progress, metric, sample, status), reconnecting with Last-Event-ID.

        Ends after a `status` event that says the run is done, or when a reconnect finds the run done.
        """
        flow = api.run_events(run_id, last_event_id=last_event_id, max_retries=max_retries, retry_delay=retry_delay)
        yield from self._c._drive(api.Flow(flow))

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


class GenerationHandle(_GenerationHandle["Ganforge"]):
    """A queued generation: `result()` waits for it and returns the bytes (png, zip or npz)."""

    def refresh(self) -> Generation:
        self.generation = self._c.generations.get(self.id)
        return self.generation

    def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Generation:
        """Poll until done; JobFailed if it failed, WaitTimeout after `timeout` seconds."""
        return self._c._run(api.wait_generation(self, timeout=timeout, poll_interval=poll_interval))

    def result(self, *, timeout: float | None = 600.0) -> bytes:
        self.wait(timeout=timeout)
        return self._c.generations.result(self.id)


class Generations(_CreatesGenerations[GenerationHandle]):
    """Sampling jobs: POST /runs/{id}/generations and /generations/{id}."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def _submit(self, request: Request[Generation]) -> GenerationHandle:
        return GenerationHandle(self._c, self._c._send(request))

    def get(self, generation_id: str) -> Generation:
        return self._c._send(api.get_generation(generation_id))

    def result(self, generation_id: str) -> bytes:
        return self._c._send(api.generation_result(generation_id))


class TranslationHandle:
    """A queued translation: `result()` waits for it and returns the bytes (a ZIP of PNGs, or an .npz)."""

    def __init__(self, client: Ganforge, translation: Translation) -> None:
        self._c = client
        self.translation = translation

    @property
    def id(self) -> str:
        return self.translation.id

    def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Translation:
        """Poll until done; JobFailed if it failed, WaitTimeout after `timeout` seconds."""
        return self._c._run(api.wait_translation(self, timeout=timeout, poll_interval=poll_interval))

    def result(self, *, timeout: float | None = 600.0) -> bytes:
        self.wait(timeout=timeout)
        return self._c.translations.result(self.id)


class Translations:
    """A pix2pix, cyclegan or srgan run applied to your images: POST /runs/{id}/translations and /translations/{id}."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def create(
        self,
        run_id: str,
        file: str | os.PathLike[str] | bytes,
        *,
        direction: Literal["AtoB", "BtoA"] = "AtoB",
        step: int | Literal["latest"] = "latest",
        ema: bool = True,
        seed: int = 0,
    ) -> TranslationHandle:
        """Queue a translation of a ZIP of images (or an .npz) by one of the run's checkpoints; `direction` BtoA is
        for cyclegan runs, and `seed` draws the latent codes of a cyclegan that has them. `.result()` on the handle
        waits for the bytes."""
        with api.upload_translation(run_id, file, direction=direction, step=step, ema=ema, seed=seed) as request:
            return TranslationHandle(self._c, self._c._send(request))

    def get(self, translation_id: str) -> Translation:
        return self._c._send(api.get_translation(translation_id))

    def list(self, run_id: str) -> builtins.list[Translation]:
        """The run's translations, newest first."""
        return self._c._send(api.list_translations(run_id))

    def result(self, translation_id: str) -> bytes:
        return self._c._send(api.translation_result(translation_id))

    def pairs(self, translation_id: str) -> bytes:
        """A PNG of the first 16 input → output pairs."""
        return self._c._send(api.translation_pairs(translation_id))

    def delete(self, translation_id: str) -> None:
        self._c._send(api.delete_translation(translation_id))


class ProjectionHandle:
    """A queued projection: `result()` waits for it and returns the ZIP (reconstructions, latents.npz,
    projection.json)."""

    def __init__(self, client: Ganforge, projection: Projection) -> None:
        self._c = client
        self.projection = projection

    @property
    def id(self) -> str:
        return self.projection.id

    def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Projection:
        """Poll until done; JobFailed if it failed, WaitTimeout after `timeout` seconds."""
        return self._c._run(api.wait_projection(self, timeout=timeout, poll_interval=poll_interval))

    def result(self, *, timeout: float | None = 600.0) -> bytes:
        self.wait(timeout=timeout)
        return self._c.projections.result(self.id)


class Projections:
    """Your images projected into a stylegan2 run's W space: POST /runs/{id}/projections and /projections/{id}."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def create(
        self,
        run_id: str,
        file: str | os.PathLike[str] | bytes,
        *,
        steps: int = 300,
        space: Literal["w", "w+"] = "w",
        seed: int = 0,
        step: int | Literal["latest"] = "latest",
        ema: bool = True,
    ) -> ProjectionHandle:
        """Queue a projection of a ZIP of images (at the run's size or larger) into one of the run's checkpoints;
        `.result()` on the handle waits for the ZIP of reconstructions named as the inputs and latents.npz."""
        with api.upload_projection(run_id, file, steps=steps, space=space, seed=seed, step=step, ema=ema) as request:
            return ProjectionHandle(self._c, self._c._send(request))

    def get(self, projection_id: str) -> Projection:
        return self._c._send(api.get_projection(projection_id))

    def result(self, projection_id: str) -> bytes:
        return self._c._send(api.projection_result(projection_id))

    def delete(self, projection_id: str) -> None:
        self._c._send(api.delete_projection(projection_id))


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


class Tokens(_CreatesTokens[Token]):
    """API tokens: admins create them; everyone lists and revokes their own, admins any."""

    def __init__(self, client: Ganforge) -> None:
        self._c = client

    def _submit(self, request: Request[Token]) -> Token:
        return self._c._send(request)

    def list(self) -> builtins.list[TokenInfo]:
        """Every token for an admin, your own for a user, oldest first; never a secret."""
        return self._c._send(api.list_tokens())

    def revoke(self, token_id: int | str) -> None:
        """Revoke a token at once (its next request is Unauthorized); it stays listed, with `revoked_at`."""
        self._c._send(api.revoke_token(token_id))

    def set_quotas(self, token_id: int | str, **quotas: int | None) -> TokenInfo:
        """Admins: give a user's token its own quotas (`queued_runs=50`); None puts the server's number back."""
        return self._c._send(api.set_token_quotas(token_id, quotas))


class Ganforge(_Client[httpx.BaseTransport, Runs, Generations, Datasets, Tokens]):
    """A client of one ganforge server. Use it as a context manager, or call close()."""

    _resources = (Runs, Generations, Datasets, Tokens)

    def _connect(self, **options: Any) -> None:
        self._http = httpx.Client(**options)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raise the matching GanforgeError for a transport failure or an error status."""
        response = self._sent(method, path, stream=False, **kwargs)
        api.raise_for_status(response)
        return response

    def _sent(self, method: str, path: str, *, stream: bool, **kwargs: Any) -> httpx.Response:
        """The response to one request, sent again once if a safe request's connection was dropped (`resends`)."""
        try:
            try:
                return self._http.send(self._http.build_request(method, path, **kwargs), stream=stream)
            except httpx.TransportError as exc:
                if not resends(method, exc):
                    raise
            return self._http.send(self._http.build_request(method, path, **kwargs), stream=stream)
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {self.url}{path}: {exc}") from exc

    def _send(self, request: Request[T]) -> T:
        return request.parse(self.request(request.method, request.path, **request.send_kwargs()))

    @contextlib.contextmanager
    def _stream(self, request: Request[Any]) -> Iterator[httpx.Response]:
        """An open streamed response; TransportError also when the connection breaks while it is read."""
        response = self._sent(request.method, request.path, stream=True, **request.send_kwargs())
        try:
            if response.status_code >= 400:
                response.read()
                api.raise_for_status(response)
            yield response
        except httpx.TransportError as exc:
            raise TransportError(f"{request.method} {self.url}{request.path}: {exc}") from exc
        finally:
            response.close()

    def _lines(self, request: Request[Any]) -> Generator[str, None, None]:
        """An empty string once the stream is open, then its lines; they are read inside _stream, so that a
        broken connection is a TransportError while they are read too."""
        with self._stream(request) as response:
            yield ""
            yield from response.iter_lines()

    def _run(self, steps: api.Steps[T]) -> T:
        """Carry out a flow that emits nothing, and return what it returns."""
        flow = api.Flow(steps)
        for _ in self._drive(flow):
            pass
        return flow.result

    def _drive(self, flow: api.Flow[Any]) -> Iterator[Any]:
        """Carry out a flow's actions (see ganforge._requests), yielding what it emits."""
        with contextlib.ExitStack() as streams:
            while (action := flow.action) is not None:
                if isinstance(action, api.Emit):
                    yield action.item
                try:
                    outcome = self._perform(action, streams)
                except GanforgeError as exc:
                    flow.fail(exc)
                else:
                    flow.resume(outcome)

    def _perform(self, action: api.Action, streams: contextlib.ExitStack) -> Any:
        """Do one action of a flow and return what the flow is sent for it; `streams` holds its open stream."""
        if isinstance(action, Request):
            return self._send(action)
        if isinstance(action, api.Sleep):
            time.sleep(action.seconds)
        elif isinstance(action, api.Call):
            action.function(action.argument)
        elif isinstance(action, api.OpenLines):
            streams.close()
            lines = streams.enter_context(contextlib.closing(self._lines(action.request)))
            next(lines)  # opens the stream, so that a failed open is this action's error
            return lines
        elif isinstance(action, api.NextLine):
            return next(action.lines, None)
        return None

    def download(self, url: str) -> bytes:
        """The bytes behind a URL the server returned (such as a sample's `url`), with this client's token."""
        return self._send(api.download(url))

    @property
    def translations(self) -> Translations:
        """Translation jobs (pix2pix, cyclegan and srgan runs)."""
        return Translations(self)

    @property
    def projections(self) -> Projections:
        """Projection jobs (stylegan2 runs): your images' latents and reconstructions."""
        return Projections(self)

    def me(self) -> Me:
        """Who this client's token is, and its usage (runs by status, datasets and their bytes, jobs in flight)."""
        return self._send(api.me())

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


# ---------------------------------------------------------------------------------------------------------------
# The async client: the same resources, awaited.


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
        async for run in self._c._drive(api.Flow(api.all_runs(status=status, page_size=page_size))):
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
        flow = api.wait_run(run_id, on_progress=on_progress, timeout=timeout, poll_interval=poll_interval)
        return await self._c._run(flow)

    async def events(
        self, run_id: str, *, last_event_id: str | None = None, max_retries: int = 5, retry_delay: float = 1.0
    ) -> AsyncIterator[Event]:
        flow = api.run_events(run_id, last_event_id=last_event_id, max_retries=max_retries, retry_delay=retry_delay)
        async for event in self._c._drive(api.Flow(flow)):
            yield event

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


class AsyncGenerationHandle(_GenerationHandle["AsyncGanforge"]):
    async def refresh(self) -> Generation:
        self.generation = await self._c.generations.get(self.id)
        return self.generation

    async def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Generation:
        return await self._c._run(api.wait_generation(self, timeout=timeout, poll_interval=poll_interval))

    async def result(self, *, timeout: float | None = 600.0) -> bytes:
        await self.wait(timeout=timeout)
        return await self._c.generations.result(self.id)


class AsyncGenerations(_CreatesGenerations[Coroutine[Any, Any, AsyncGenerationHandle]]):
    """`create` returns a coroutine: `await client.generations.create(...)`."""

    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def _submit(self, request: Request[Generation]) -> AsyncGenerationHandle:
        return AsyncGenerationHandle(self._c, await self._c._send(request))

    async def get(self, generation_id: str) -> Generation:
        return await self._c._send(api.get_generation(generation_id))

    async def result(self, generation_id: str) -> bytes:
        return await self._c._send(api.generation_result(generation_id))


class AsyncTranslationHandle:
    def __init__(self, client: AsyncGanforge, translation: Translation) -> None:
        self._c = client
        self.translation = translation

    @property
    def id(self) -> str:
        return self.translation.id

    async def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Translation:
        return await self._c._run(api.wait_translation(self, timeout=timeout, poll_interval=poll_interval))

    async def result(self, *, timeout: float | None = 600.0) -> bytes:
        await self.wait(timeout=timeout)
        return await self._c.translations.result(self.id)


class AsyncTranslations:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def create(
        self,
        run_id: str,
        file: str | os.PathLike[str] | bytes,
        *,
        direction: Literal["AtoB", "BtoA"] = "AtoB",
        step: int | Literal["latest"] = "latest",
        ema: bool = True,
        seed: int = 0,
    ) -> AsyncTranslationHandle:
        with api.upload_translation(run_id, file, direction=direction, step=step, ema=ema, seed=seed) as request:
            return AsyncTranslationHandle(self._c, await self._c._send(request))

    async def get(self, translation_id: str) -> Translation:
        return await self._c._send(api.get_translation(translation_id))

    async def list(self, run_id: str) -> builtins.list[Translation]:
        return await self._c._send(api.list_translations(run_id))

    async def result(self, translation_id: str) -> bytes:
        return await self._c._send(api.translation_result(translation_id))

    async def pairs(self, translation_id: str) -> bytes:
        return await self._c._send(api.translation_pairs(translation_id))

    async def delete(self, translation_id: str) -> None:
        await self._c._send(api.delete_translation(translation_id))


class AsyncProjectionHandle:
    def __init__(self, client: AsyncGanforge, projection: Projection) -> None:
        self._c = client
        self.projection = projection

    @property
    def id(self) -> str:
        return self.projection.id

    async def wait(self, *, timeout: float | None = 600.0, poll_interval: float = 0.5) -> Projection:
        return await self._c._run(api.wait_projection(self, timeout=timeout, poll_interval=poll_interval))

    async def result(self, *, timeout: float | None = 600.0) -> bytes:
        await self.wait(timeout=timeout)
        return await self._c.projections.result(self.id)


class AsyncProjections:
    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def create(
        self,
        run_id: str,
        file: str | os.PathLike[str] | bytes,
        *,
        steps: int = 300,
        space: Literal["w", "w+"] = "w",
        seed: int = 0,
        step: int | Literal["latest"] = "latest",
        ema: bool = True,
    ) -> AsyncProjectionHandle:
        with api.upload_projection(run_id, file, steps=steps, space=space, seed=seed, step=step, ema=ema) as request:
            return AsyncProjectionHandle(self._c, await self._c._send(request))

    async def get(self, projection_id: str) -> Projection:
        return await self._c._send(api.get_projection(projection_id))

    async def result(self, projection_id: str) -> bytes:
        return await self._c._send(api.projection_result(projection_id))

    async def delete(self, projection_id: str) -> None:
        await self._c._send(api.delete_projection(projection_id))


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


class AsyncTokens(_CreatesTokens[Coroutine[Any, Any, Token]]):
    """`create` returns a coroutine: `await client.tokens.create(...)`."""

    def __init__(self, client: AsyncGanforge) -> None:
        self._c = client

    async def _submit(self, request: Request[Token]) -> Token:
        return await self._c._send(request)

    async def list(self) -> builtins.list[TokenInfo]:
        return await self._c._send(api.list_tokens())

    async def revoke(self, token_id: int | str) -> None:
        await self._c._send(api.revoke_token(token_id))

    async def set_quotas(self, token_id: int | str, **quotas: int | None) -> TokenInfo:
        return await self._c._send(api.set_token_quotas(token_id, quotas))


class AsyncGanforge(_Client[httpx.AsyncBaseTransport, AsyncRuns, AsyncGenerations, AsyncDatasets, AsyncTokens]):
    """The async twin of Ganforge. Use `async with`, or await aclose()."""

    _resources = (AsyncRuns, AsyncGenerations, AsyncDatasets, AsyncTokens)

    def _connect(self, **options: Any) -> None:
        self._http = httpx.AsyncClient(**options)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._sent(method, path, stream=False, **kwargs)
        api.raise_for_status(response)
        return response

    async def _sent(self, method: str, path: str, *, stream: bool, **kwargs: Any) -> httpx.Response:
        try:
            try:
                return await self._http.send(self._http.build_request(method, path, **kwargs), stream=stream)
            except httpx.TransportError as exc:
                if not resends(method, exc):
                    raise
            return await self._http.send(self._http.build_request(method, path, **kwargs), stream=stream)
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {self.url}{path}: {exc}") from exc

    async def _send(self, request: Request[T]) -> T:
        return request.parse(await self.request(request.method, request.path, **request.send_kwargs()))

    @contextlib.asynccontextmanager
    async def _stream(self, request: Request[Any]) -> AsyncIterator[httpx.Response]:
        response = await self._sent(request.method, request.path, stream=True, **request.send_kwargs())
        try:
            if response.status_code >= 400:
                await response.aread()
                api.raise_for_status(response)
            yield response
        except httpx.TransportError as exc:
            raise TransportError(f"{request.method} {self.url}{request.path}: {exc}") from exc
        finally:
            await response.aclose()

    async def _lines(self, request: Request[Any]) -> AsyncGenerator[str, None]:
        async with self._stream(request) as response:
            yield ""
            async for line in response.aiter_lines():
                yield line

    async def _run(self, steps: api.Steps[T]) -> T:
        flow = api.Flow(steps)
        async for _ in self._drive(flow):
            pass
        return flow.result

    async def _drive(self, flow: api.Flow[Any]) -> AsyncIterator[Any]:
        async with contextlib.AsyncExitStack() as streams:
            while (action := flow.action) is not None:
                if isinstance(action, api.Emit):
                    yield action.item
                try:
                    outcome = await self._perform(action, streams)
                except GanforgeError as exc:
                    flow.fail(exc)
                else:
                    flow.resume(outcome)

    async def _perform(self, action: api.Action, streams: contextlib.AsyncExitStack) -> Any:
        if isinstance(action, Request):
            return await self._send(action)
        if isinstance(action, api.Sleep):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, api.Call):
            if (outcome := action.function(action.argument)) is not None:
                await outcome  # a coroutine function's coroutine
        elif isinstance(action, api.OpenLines):
            await streams.aclose()
            lines = await streams.enter_async_context(contextlib.aclosing(self._lines(action.request)))
            await anext(lines)  # opens the stream, as in Ganforge._perform
            return lines
        elif isinstance(action, api.NextLine):
            return await anext(action.lines, None)
        return None

    async def download(self, url: str) -> bytes:
        return await self._send(api.download(url))

    @property
    def translations(self) -> AsyncTranslations:
        """Translation jobs (pix2pix, cyclegan and srgan runs)."""
        return AsyncTranslations(self)

    @property
    def projections(self) -> AsyncProjections:
        """Projection jobs (stylegan2 runs): your images' latents and reconstructions."""
        return AsyncProjections(self)

    async def me(self) -> Me:
        return await self._send(api.me())

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
