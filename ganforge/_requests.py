"""Every request the ganforge client sends, and how its response is read: one place for both clients.

A function here describes one call of the HTTP API (shared/API.md) as a `Request`: the method, the path, the
query, body and headers, and `parse`, which turns the response into the typed object the client returns.
It does no I/O: `Ganforge` sends a `Request` with httpx.Client, `AsyncGanforge` with httpx.AsyncClient, and
both hand the response to `request.parse`. A call of more than one request (paging, polling until a deadline,
reconnecting an event stream) is here too, as a flow: a generator of actions that either client carries out
with its own I/O (see "Flows" below).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Generic, Literal, Protocol, TypeAlias, TypeVar

import httpx

from ganforge._exceptions import GanforgeError, JobFailed, NotFound, TransportError, WaitTimeout, for_status
from ganforge._models import (
    RUN_TERMINAL,
    Checkpoint,
    Dataset,
    Event,
    Generation,
    ImageFormat,
    Me,
    Projection,
    Run,
    RunPage,
    Sample,
    TableFormat,
    Token,
    TokenInfo,
    Translation,
)

T = TypeVar("T")
UploadFiles = dict[str, tuple[str, bytes | BinaryIO, str]]

DEFAULT_URL = "http://127.0.0.1:8000"
# An event stream is quiet between events; the server sends a keep-alive comment well within a minute.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)


@dataclass(frozen=True)
class Request(Generic[T]):
    """One call of the API and how to read its answer; `send_kwargs()` is what httpx's `request` takes."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    files: UploadFiles | None = None
    data: dict[str, str] | None = None
    timeout: httpx.Timeout | None = None  # None: the client's own

    def send_kwargs(self) -> dict[str, Any]:
        """The fields that are set (httpx reads a missing timeout as "the client's", but None as "none")."""
        kwargs = {
            "params": self.params,
            "json": self.json,
            "headers": self.headers,
            "files": self.files,
            "data": self.data,
            "timeout": self.timeout,
        }
        return {name: value for name, value in kwargs.items() if value is not None}


# ---------------------------------------------------------------------------------------------------------------
# Flows: calls of more than one request, written once for both clients.
#
# A flow is a generator that yields actions and is sent the outcome of each: for a `Request` its parsed answer,
# for `OpenLines` a handle on the open stream, for `NextLine` that stream's next line (None at its end), and
# None for the rest. A GanforgeError of a request or a stream is raised in the flow where it yielded the action.
# A client runs a flow with one driver (`Ganforge._drive`, `AsyncGanforge._drive`): it sends with its own I/O,
# sleeps with time.sleep or asyncio.sleep, and hands what the flow emits to its caller.


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Call:
    """Call `function(argument)`, e.g. a caller's on_progress; the async client awaits what it returns, if not None."""

    function: Callable[[Any], Any]
    argument: Any


@dataclass(frozen=True)
class Emit:
    """Hand `item` to whoever iterates over the call."""

    item: Any


@dataclass(frozen=True)
class OpenLines:
    """Open `request` as a streamed response to read line by line; a flow has one such stream open at a time,
    so this closes the one before, and the end of the flow closes the last."""

    request: Request[Any]


@dataclass(frozen=True)
class NextLine:
    """Read the next line of the stream that `OpenLines` answered with `lines`."""

    lines: Any


Action: TypeAlias = Request[Any] | Sleep | Call | Emit | OpenLines | NextLine
Steps: TypeAlias = Generator[Action, Any, T]


class Flow(Generic[T]):
    """A flow being run: the action it waits on (None once it has returned) and then `result`, what it returned."""

    result: T

    def __init__(self, steps: Steps[T]) -> None:
        self._steps = steps
        self.action: Action | None = None
        self.resume(None)

    def resume(self, outcome: Any) -> None:
        """Send the outcome of `action`; the flow runs to its next action."""
        try:
            self.action = self._steps.send(outcome)
        except StopIteration as stop:
            self.action, self.result = None, stop.value

    def fail(self, error: GanforgeError) -> None:
        """Raise `error` where the flow yielded `action`; unless the flow catches it, it comes out of here."""
        try:
            self.action = self._steps.throw(error)
        except StopIteration as stop:
            self.action, self.result = None, stop.value


# ---------------------------------------------------------------------------------------------------------------
# Reading responses.


def raise_for_status(response: httpx.Response) -> None:
    """Raise the APIError subclass of an error status, carrying the server's `detail`."""
    if response.status_code < 400:
        return
    try:
        detail: Any = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    raise for_status(response.status_code, detail)


def _nothing(response: httpx.Response) -> None:
    return None


def _content(response: httpx.Response) -> bytes:
    return response.content


def _text(response: httpx.Response) -> str:
    return response.text


def _items(response: httpx.Response) -> builtins.list[Any]:
    """The items of a list answer: `{"items": [...]}`, or a bare list."""
    data = response.json()
    return list(data["items"] if isinstance(data, dict) else data)


def _json_as(from_json: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    """A parser that reads the JSON body into a typed object, e.g. `_json_as(Run.from_json)`."""
    return lambda response: from_json(response.json())


_run = _json_as(Run.from_json)
_generation = _json_as(Generation.from_json)
_dataset = _json_as(Dataset.from_json)
_translation = _json_as(Translation.from_json)
_projection = _json_as(Projection.from_json)


def _metric_series(response: httpx.Response) -> dict[str, builtins.list[tuple[int, float]]]:
    return {
        str(name): [(int(step), float(value)) for step, value in points]
        for name, points in (response.json().get("series") or {}).items()
    }


# ---------------------------------------------------------------------------------------------------------------
# The service.


def healthz() -> Request[bool]:
    return Request("GET", "/healthz", lambda r: r.status_code == 200)


def readyz() -> Request[dict[str, Any]]:
    return Request("GET", "/readyz", lambda r: dict(r.json()) if r.content else {})


def download(url: str) -> Request[bytes]:
    """The bytes behind a URL the server returned (a sample's or a checkpoint's `url`)."""
    return Request("GET", url, _content)


# ---------------------------------------------------------------------------------------------------------------
# Runs.


def json_config(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Accept a mapping or a Pydantic model (core.config.RunConfig) as a run config."""
    dump = getattr(config, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json", exclude_unset=True))
    return dict(config)


def create_run(config: Mapping[str, Any] | Any, *, idempotency_key: str | None) -> Request[Run]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return Request("POST", "/runs", _run, json=json_config(config), headers=headers)


def get_run(run_id: str) -> Request[Run]:
    return Request("GET", f"/runs/{run_id}", _run)


def list_runs(*, status: str | None, limit: int | None, cursor: str | None) -> Request[RunPage]:
    params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
    return Request("GET", "/runs", _json_as(RunPage.from_json), params=params)


def all_runs(*, status: str | None, page_size: int) -> Steps[None]:
    """Emits every run, newest first, one page at a time."""
    cursor = None
    while True:
        page: RunPage = yield list_runs(status=status, limit=page_size, cursor=cursor)
        for run in page.items:
            yield Emit(run)
        if (cursor := page.next_cursor) is None:
            return


def cancel_run(run_id: str) -> Request[None]:
    return Request("POST", f"/runs/{run_id}/cancel", _nothing)


def resume_run(run_id: str, *, steps: int | None) -> Request[None]:
    return Request("POST", f"/runs/{run_id}/resume", _nothing, json={"steps": steps})


def delete_run(run_id: str) -> Request[None]:
    return Request("DELETE", f"/runs/{run_id}", _nothing)


def list_samples(run_id: str) -> Request[builtins.list[Sample]]:
    return Request("GET", f"/runs/{run_id}/samples", lambda r: [Sample.from_json(item) for item in _items(r)])


def sample_png(run_id: str, step: int | Literal["latest"]) -> Request[bytes]:
    name = step if step == "latest" else int(step)
    return Request("GET", f"/runs/{run_id}/samples/{name}.png", _content)


def list_checkpoints(run_id: str) -> Request[builtins.list[Checkpoint]]:
    return Request("GET", f"/runs/{run_id}/checkpoints", lambda r: [Checkpoint.from_json(i) for i in _items(r)])


def newest_checkpoint_step(run_id: str, checkpoints: builtins.list[Checkpoint]) -> int:
    if not checkpoints:
        raise NotFound(404, f"Run {run_id} has no checkpoint yet")
    return checkpoints[-1].step


def checkpoint_file(run_id: str, step: int) -> Request[None]:
    """Streamed to a file by the client, so `parse` is never called."""
    return Request("GET", f"/runs/{run_id}/checkpoints/{int(step)}", _nothing)


def run_metrics(
    run_id: str, *, names: builtins.list[str] | None, since_step: int | None
) -> Request[dict[str, builtins.list[tuple[int, float]]]]:
    params: dict[str, Any] = {}
    if names:
        params["names"] = ",".join(names)
    if since_step is not None:
        params["since_step"] = since_step
    return Request("GET", f"/runs/{run_id}/metrics", _metric_series, params=params)


def run_metrics_csv(run_id: str) -> Request[str]:
    return Request("GET", f"/runs/{run_id}/metrics", _text, headers={"Accept": "text/csv"})


def wait_run(
    run_id: str, *, on_progress: Callable[[Run], Any] | None, timeout: float | None, poll_interval: float
) -> Steps[Run]:
    """Poll until the run is done, calling `on_progress` with every poll; WaitTimeout after `timeout` seconds."""
    deadline = Deadline(timeout)
    while True:
        run: Run = yield get_run(run_id)
        if on_progress is not None:
            yield Call(on_progress, run)
        if run.done:
            return run
        deadline.check(f"run {run_id} is still {run.status}")
        yield Sleep(poll_interval)


class Deadline:
    """The end of a wait: `check` raises WaitTimeout once `timeout` seconds (None: never) have passed."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def check(self, what: str) -> None:
        """`what` says what is still not done, e.g. "run run_1 is still running"."""
        if self.at is not None and time.monotonic() >= self.at:
            raise WaitTimeout(f"{what} after {self.timeout} s")


class SSEDecoder:
    """The text/event-stream format, one line at a time (the WHATWG rules, without `retry` handling)."""

    def __init__(self) -> None:
        self.event = ""
        self.data: builtins.list[str] = []
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


class EventStream:
    """One run's events across reconnects: where to resume (Last-Event-ID), how many failures in a row, and
    whether the run's final `status` event has arrived.

    A client opens `request()` as a stream, calls `connected()`, feeds it every line, and stops once
    `finished`; on a broken connection it calls `broken(exc)` (which raises after `max_retries` failures in a
    row), checks whether the run is done, waits and opens `request()` again.
    """

    def __init__(self, run_id: str, *, last_event_id: str | None, max_retries: int) -> None:
        self.run_id = run_id
        self.last_event_id = last_event_id
        self.max_retries = max_retries
        self.failures = 0
        self.finished = False
        self._decoder = SSEDecoder()

    def request(self) -> Request[None]:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        return Request("GET", f"/runs/{self.run_id}/events", _nothing, headers=headers, timeout=STREAM_TIMEOUT)

    def connected(self) -> None:
        self.failures = 0
        self._decoder = SSEDecoder()

    def feed(self, line: str) -> Event | None:
        event = self._decoder.feed(line)
        if event is not None:
            self.last_event_id = event.id or self.last_event_id
            data = event.data
            self.finished = event.event == "status" and isinstance(data, dict) and data.get("status") in RUN_TERMINAL
        return event

    def broken(self, exc: TransportError) -> None:
        self.failures += 1
        if self.failures > self.max_retries:
            raise TransportError(f"event stream of run {self.run_id}: {exc}") from exc


def run_events(run_id: str, *, last_event_id: str | None, max_retries: int, retry_delay: float) -> Steps[None]:
    """Emits the run's events; after a broken connection, reconnects unless the run is done by then.

    Ends after a `status` event that says the run is done, or when a reconnect finds the run done.
    """
    stream = EventStream(run_id, last_event_id=last_event_id, max_retries=max_retries)
    while True:
        try:
            lines = yield OpenLines(stream.request())
            stream.connected()
            while (line := (yield NextLine(lines))) is not None:
                if (event := stream.feed(line)) is not None:
                    yield Emit(event)
                if stream.finished:
                    return
        except TransportError as exc:
            stream.broken(exc)
        run: Run = yield get_run(run_id)
        if run.done:
            return
        yield Sleep(retry_delay)


# ---------------------------------------------------------------------------------------------------------------
# Generations.


def create_generation(
    run_id: str,
    *,
    n: int,
    seed: int,
    step: int | Literal["latest"],
    ema: bool,
    truncation: float | None,
    labels: builtins.list[int] | None,
    format: ImageFormat | TableFormat | None,
    interpolate: int | None,
    conditions: dict[str, Any] | None = None,
) -> Request[Generation]:
    body = {
        "n": n,
        "seed": seed,
        "step": step,
        "ema": ema,
        "truncation": truncation,
        "labels": labels,
        "format": format,
        "interpolate": {"steps": interpolate} if interpolate else None,
        "conditions": conditions,
    }
    return Request("POST", f"/runs/{run_id}/generations", _generation, json=body)


def get_generation(generation_id: str) -> Request[Generation]:
    return Request("GET", f"/generations/{generation_id}", _generation)


def generation_result(generation_id: str) -> Request[bytes]:
    return Request("GET", f"/generations/{generation_id}/result", _content)


@contextlib.contextmanager
def upload_images(
    path: str, parse: Callable[[httpx.Response], T], file: str | os.PathLike[str] | bytes, data: dict[str, str]
) -> Iterator[Request[T]]:
    """A job's multipart upload of a ZIP of images (or an .npz: the server tells them apart by their members) with
    its form fields; a file on disk is streamed from a handle open while the request is."""
    if isinstance(file, bytes):
        yield Request("POST", path, parse, files={"file": ("images.zip", file, "application/zip")}, data=data)
        return
    local = Path(file)
    with local.open("rb") as handle:
        yield Request("POST", path, parse, files={"file": (local.name, handle, "application/zip")}, data=data)


# A queued job: what a generation, a translation and a projection share.
JobT = TypeVar("JobT", Generation, Translation, Projection)


def wait_job(
    job: JobT,
    fetch: Callable[[str], Request[JobT]],
    *,
    kind: str,
    seen: Callable[[JobT], None],
    timeout: float | None,
    poll_interval: float,
) -> Steps[JobT]:
    """Poll `fetch(job.id)` until the job is done, handing every fresh copy to `seen` (the handle keeps it, so a
    timeout leaves the handle up to date); JobFailed if it failed, WaitTimeout after `timeout` seconds."""
    deadline = Deadline(timeout)
    while not job.done:
        deadline.check(f"{kind} {job.id} is still {job.status}")
        yield Sleep(poll_interval)
        job = yield fetch(job.id)
        seen(job)
    if job.status != "succeeded":
        raise JobFailed(job.id, job.error or job.status)
    return job


class HoldsGeneration(Protocol):
    generation: Generation


def wait_generation(handle: HoldsGeneration, *, timeout: float | None, poll_interval: float) -> Steps[Generation]:
    """Poll until `handle.generation` is done, keeping it up to date (`wait_job`)."""

    def seen(generation: Generation) -> None:
        handle.generation = generation

    return wait_job(
        handle.generation, get_generation, kind="generation", seen=seen, timeout=timeout, poll_interval=poll_interval
    )


# ---------------------------------------------------------------------------------------------------------------
# Translations.


@contextlib.contextmanager
def upload_translation(
    run_id: str,
    file: str | os.PathLike[str] | bytes,
    *,
    direction: Literal["AtoB", "BtoA"],
    step: int | Literal["latest"],
    ema: bool,
    seed: int = 0,
) -> Iterator[Request[Translation]]:
    """The multipart upload of a ZIP of images or an .npz to translate; a file on disk is streamed from a handle
    open while the request is."""
    data = {"direction": direction, "step": str(step), "ema": "true" if ema else "false", "seed": str(seed)}
    with upload_images(f"/runs/{run_id}/translations", _translation, file, data) as request:
        yield request


def get_translation(translation_id: str) -> Request[Translation]:
    return Request("GET", f"/translations/{translation_id}", _translation)


def list_translations(run_id: str) -> Request[builtins.list[Translation]]:
    return Request("GET", f"/runs/{run_id}/translations", lambda r: [Translation.from_json(item) for item in _items(r)])


def translation_result(translation_id: str) -> Request[bytes]:
    return Request("GET", f"/translations/{translation_id}/result", _content)


def translation_pairs(translation_id: str) -> Request[bytes]:
    return Request("GET", f"/translations/{translation_id}/pairs.png", _content)


def delete_translation(translation_id: str) -> Request[None]:
    return Request("DELETE", f"/translations/{translation_id}", _nothing)


class HoldsTranslation(Protocol):
    translation: Translation


def wait_translation(handle: HoldsTranslation, *, timeout: float | None, poll_interval: float) -> Steps[Translation]:
    """Poll until `handle.translation` is done, keeping it up to date (`wait_job`)."""

    def seen(translation: Translation) -> None:
        handle.translation = translation

    return wait_job(
        handle.translation, get_translation, kind="translation", seen=seen, timeout=timeout, poll_interval=poll_interval
    )


# ---------------------------------------------------------------------------------------------------------------
# Projections.


@contextlib.contextmanager
def upload_projection(
    run_id: str,
    file: str | os.PathLike[str] | bytes,
    *,
    steps: int,
    space: Literal["w", "w+"],
    seed: int,
    step: int | Literal["latest"],
    ema: bool,
) -> Iterator[Request[Projection]]:
    """The multipart upload of a ZIP of images to project; a file on disk is streamed from a handle open while the
    request is."""
    data = {
        "steps": str(steps),
        "space": space,
        "seed": str(seed),
        "step": str(step),
        "ema": "true" if ema else "false",
    }
    with upload_images(f"/runs/{run_id}/projections", _projection, file, data) as request:
        yield request


def get_projection(projection_id: str) -> Request[Projection]:
    return Request("GET", f"/projections/{projection_id}", _projection)


def projection_result(projection_id: str) -> Request[bytes]:
    return Request("GET", f"/projections/{projection_id}/result", _content)


def delete_projection(projection_id: str) -> Request[None]:
    return Request("DELETE", f"/projections/{projection_id}", _nothing)


class HoldsProjection(Protocol):
    projection: Projection


def wait_projection(handle: HoldsProjection, *, timeout: float | None, poll_interval: float) -> Steps[Projection]:
    """Poll until `handle.projection` is done, keeping it up to date (`wait_job`)."""

    def seen(projection: Projection) -> None:
        handle.projection = projection

    return wait_job(
        handle.projection, get_projection, kind="projection", seen=seen, timeout=timeout, poll_interval=poll_interval
    )


# ---------------------------------------------------------------------------------------------------------------
# Datasets, tokens and the caller.


@contextlib.contextmanager
def upload_dataset(file: str | os.PathLike[str] | bytes, *, name: str | None) -> Iterator[Request[Dataset]]:
    """The multipart upload of a ZIP of images or a table (CSV or Parquet: the server tells them apart by their
    first bytes); a file on disk is streamed from a handle open while the request is."""
    if isinstance(file, bytes):
        data = {"name": name if name is not None else "dataset"}
        suffix = "zip" if file.startswith(b"PK") else "parquet" if file.startswith(b"PAR1") else "csv"
        yield Request(
            "POST", "/datasets", _dataset, files={"file": (f"dataset.{suffix}", file, "application/zip")}, data=data
        )
        return
    path = Path(file)
    with path.open("rb") as handle:
        files: UploadFiles = {"file": (path.name, handle, "application/zip")}
        yield Request(
            "POST", "/datasets", _dataset, files=files, data={"name": name if name is not None else path.stem}
        )


def list_datasets() -> Request[builtins.list[Dataset]]:
    return Request("GET", "/datasets", lambda r: [Dataset.from_json(item) for item in _items(r)])


def get_dataset(dataset_id: str) -> Request[Dataset]:
    return Request("GET", f"/datasets/{dataset_id}", _dataset)


def dataset_preview(dataset_id: str) -> Request[bytes]:
    return Request("GET", f"/datasets/{dataset_id}/preview.png", _content)


def delete_dataset(dataset_id: str) -> Request[None]:
    return Request("DELETE", f"/datasets/{dataset_id}", _nothing)


def create_token(
    name: str, *, admin: bool, expires_at: datetime | None = None, expires_in_days: int | None = None
) -> Request[Token]:
    body: dict[str, Any] = {"name": name, "admin": True} if admin else {"name": name}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    return Request("POST", "/tokens", _json_as(Token.from_json), json=body)


def list_tokens() -> Request[builtins.list[TokenInfo]]:
    """Every token for an admin, the caller's own for a user; never a secret."""
    return Request("GET", "/tokens", lambda r: [TokenInfo.from_json(item) for item in _items(r)])


def revoke_token(token_id: int | str) -> Request[None]:
    return Request("DELETE", f"/tokens/{token_id}", _nothing)


def set_token_quotas(token_id: int | str, quotas: dict[str, int | None]) -> Request[TokenInfo]:
    """Admins: the token's own quotas (a number replaces the server's, None puts it back)."""
    return Request("PATCH", f"/tokens/{token_id}", _json_as(TokenInfo.from_json), json={"quotas": quotas})


def me() -> Request[Me]:
    return Request("GET", "/me", _json_as(Me.from_json))
