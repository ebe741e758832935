"""The typed objects the ganforge client returns. Each keeps the JSON it came from in `raw` where the server's
object has more fields than these, so that fields the server adds later stay reachable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RUN_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
GENERATION_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
ImageFormat = Literal["png", "zip", "npz"]
TableFormat = Literal["csv", "parquet"]  # rows of a ctgan run


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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunPage:
        return cls(items=[Run.from_json(item) for item in data["items"]], next_cursor=data.get("next_cursor"))


@dataclass(frozen=True)
class Sample:
    step: int
    url: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        return cls(step=int(data["step"]), url=str(data["url"]))


@dataclass(frozen=True)
class Checkpoint:
    step: int
    url: str
    size_bytes: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(step=int(data["step"]), url=str(data["url"]), size_bytes=int(data["size_bytes"]))


@dataclass(frozen=True)
class Generation:
    id: str
    run_id: str
    status: str
    error: str | None
    result_url: str | None
    raw: dict[str, Any] = field(repr=False)
    made: int | None = None  # tables: how many rows were made (fewer than n when conditions were rare)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generation:
        return cls(
            id=str(data["id"]),
            run_id=str(data.get("run_id") or ""),
            status=str(data.get("status") or ""),
            error=data.get("error"),
            result_url=data.get("result_url"),
            raw=data,
            made=data.get("made"),
        )

    @property
    def done(self) -> bool:
        return self.status in GENERATION_TERMINAL


@dataclass(frozen=True)
class Translation:
    """A translation job (POST /runs/{id}/translations): a run's model applied to uploaded images."""

    id: str
    run_id: str
    status: str
    error: str | None
    result_url: str | None
    pairs_url: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Translation:
        return cls(
            id=str(data["id"]),
            run_id=str(data.get("run_id") or ""),
            status=str(data.get("status") or ""),
            error=data.get("error"),
            result_url=data.get("result_url"),
            pairs_url=data.get("pairs_url"),
            raw=data,
        )

    @property
    def done(self) -> bool:
        return self.status in GENERATION_TERMINAL


@dataclass(frozen=True)
class Projection:
    """A projection job (POST /runs/{id}/projections): uploaded images projected into a stylegan2 run's W space."""

    id: str
    run_id: str
    status: str
    error: str | None
    result_url: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Projection:
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
    """A token just created: `token` is its secret, shown only this once."""

    name: str
    token: str
    id: str | None
    raw: dict[str, Any] = field(repr=False)
    expires_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        return cls(
            name=str(data.get("name") or ""),
            token=str(data["token"]),
            id=str(data["id"]) if data.get("id") is not None else None,
            raw=data,
            expires_at=_time(data.get("expires_at")),
        )


@dataclass(frozen=True)
class TokenInfo:
    """A token as `GET /tokens` lists it: never its secret."""

    id: int
    name: str
    is_admin: bool
    bootstrap: bool
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    # The quotas an admin set for this token over the server's (PATCH /tokens/{id}).
    quotas: dict[str, int]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenInfo:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            is_admin=bool(data.get("is_admin", False)),
            bootstrap=bool(data.get("bootstrap", False)),
            created_at=_time(data.get("created_at")),
            expires_at=_time(data.get("expires_at")),
            last_used_at=_time(data.get("last_used_at")),
            revoked_at=_time(data.get("revoked_at")),
            quotas={str(k): int(v) for k, v in (data.get("quotas") or {}).items()},
            raw=data,
        )


@dataclass(frozen=True)
class Usage:
    """What a user holds: runs by status, uploaded datasets and their bytes, jobs queued or running by kind."""

    runs: dict[str, int]
    datasets: int
    dataset_bytes: int
    jobs_in_flight: dict[str, int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Usage:
        data = data or {}
        return cls(
            runs={str(k): int(v) for k, v in (data.get("runs") or {}).items()},
            datasets=int(data.get("datasets") or 0),
            dataset_bytes=int(data.get("dataset_bytes") or 0),
            jobs_in_flight={str(k): int(v) for k, v in (data.get("jobs_in_flight") or {}).items()},
        )


@dataclass(frozen=True)
class Me:
    """The caller (`GET /me`): their token, their usage and `quotas`, each quota's `{"limit", "used"}` (None for an
    admin, who has none)."""

    id: int
    name: str
    is_admin: bool
    expires_at: datetime | None
    usage: Usage
    quotas: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Me:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            is_admin=bool(data.get("is_admin", False)),
            expires_at=_time(data.get("expires_at")),
            usage=Usage.from_json(data.get("usage")),
            quotas=data.get("quotas"),
            raw=data,
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event: `event` is its type (progress, metric, sample, status, ...), `data` its JSON."""

    event: str
    data: Any
    id: str | None = None
