"""Training runs: create, list, inspect, cancel, resume, delete, and their samples and checkpoints."""

from __future__ import annotations

import shutil
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import FileResponse
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.artifacts import serve_artifact
from api.deps import (
    Credentials,
    CurrentUser,
    OwnedRun,
    SessionDep,
    SettingsDep,
    StorageDep,
    read_json,
    read_owned_json,
)
from api.errors import unprocessable, validation_error
from api.quotas import QUEUE_FULL, STORAGE_FULL, refuse_over_quota
from api.responses import binary
from api.routes.datasets import check_dataset_for_run
from api.routing import ReleasingRoute
from api.schemas import (
    CheckpointPublic,
    CheckpointsPublic,
    RunPublic,
    RunResume,
    RunsPublic,
    SamplePublic,
    SamplesPublic,
)
from core.config import RunConfig
from store import layout
from store.artifacts import Storage
from store.limits import data_facts, run_limit_problems
from store.queue import enqueue_run
from store.quotas import check_new_run
from store.reads import TokenState, decode_cursor, next_cursor, run_for_token, runs_page
from store.runs import create_run, request_cancel, requeue_run, run_for_key
from store.settings import Settings
from store.workers import PlacementError, route_run

router = APIRouter(prefix="/runs", tags=["runs"], route_class=ReleasingRoute)

RunStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


@router.post("", status_code=201, response_model=RunPublic, responses={**QUEUE_FULL, **STORAGE_FULL})
def create(
    config: RunConfig,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunPublic:
    """Start a training run. The smallest body is {"dataset": "ring8"}; every other field has a default."""
    existing = run_for_key(session=session, owner_id=user.id, idempotency_key=idempotency_key)
    if existing is None:
        config = check_dataset_for_run(session, user, config)
        refuse_over_limits(session, settings, config)
        refuse_over_quota(check_new_run(session=session, user=user, settings=settings))
        queue = _route(session, settings, config.model_dump(mode="json"))
        run = create_run(
            session=session,
            owner_id=user.id,
            config=config.model_dump(mode="json"),
            name=config.name,
            idempotency_key=idempotency_key,
            queue=queue,
        )
        try:
            session.commit()
        except IntegrityError:  # the same Idempotency-Key raced in from a retry: answer with the first run
            session.rollback()
            existing = run_for_key(session=session, owner_id=user.id, idempotency_key=idempotency_key)
            if existing is None:
                raise
    if existing is not None:
        response.headers["Location"] = f"/runs/{existing.id}"
        return RunPublic.from_run(existing)
    enqueue_run(run.id, run.queue)
    response.headers["Location"] = f"/runs/{run.id}"
    return RunPublic.from_run(run)


def _route(session: Session, settings: Settings, config: dict[str, Any]) -> str:
    """The queue a run goes to by its placement and world size; 422 naming the largest available when no live
    worker can take it."""
    try:
        return route_run(
            session=session,
            placement=config.get("placement"),
            world_size=int(config["train"].get("world_size", 1)),
            default_queue=settings.train_queue,
            generate_queue=settings.generate_queue,
            lost_after=timedelta(
                seconds=settings.worker_heartbeat_interval_seconds * settings.worker_lost_after_intervals
            ),
        )
    except PlacementError as exc:
        field = str(exc).split(":", 1)[0]
        raise unprocessable(field, str(exc)) from None


def refuse_over_limits(session: Session, settings: Settings, config: RunConfig) -> None:
    """422 naming each field over this server's limits (store/limits.py), with the limit."""
    problems = run_limit_problems(config, settings, data_facts(session=session, cfg=config))
    if problems:
        raise HTTPException(status_code=422, detail=[validation_error(field, message) for field, message in problems])


@router.get("", response_model=RunsPublic)
async def list_runs(
    credentials: Credentials,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Your runs, newest first, a page at a time."""
    after = decode_cursor(cursor) if cursor is not None else None
    if cursor is not None and after is None:
        raise unprocessable("cursor", "cursor: not a cursor this API returned", where="query")

    def page(connection: Connection, token: TokenState) -> RunsPublic:
        runs = runs_page(connection, token.id, limit=limit + 1, status=status, after=after)
        return RunsPublic(items=[RunPublic.from_run(r) for r in runs[:limit]], next_cursor=next_cursor(runs, limit))

    return await read_json(credentials, page)


@router.get("/{run_id}", response_model=RunPublic)
async def get(run_id: str, credentials: Credentials) -> Response:
    """One run: status, progress, latest metrics and error."""
    return await read_owned_json(
        credentials,
        lambda connection, token_hash: run_for_token(connection, run_id, token_hash),
        RunPublic.from_run,
        missing="Run not found",
    )


@router.post("/{run_id}/cancel", status_code=202, response_model=RunPublic)
def cancel(run: OwnedRun, session: SessionDep) -> RunPublic:
    """Cancel a run: a queued run at once, a running one at its next step (its last checkpoint stays)."""
    request_cancel(session=session, run=run)
    session.commit()
    session.refresh(run)
    return RunPublic.from_run(run)


@router.post("/{run_id}/resume", status_code=202, response_model=RunPublic, responses={**QUEUE_FULL, **STORAGE_FULL})
def resume(
    run: OwnedRun, body: RunResume, session: SessionDep, storage: StorageDep, settings: SettingsDep, user: CurrentUser
) -> RunPublic:
    """Continue a finished, failed or canceled run from its last checkpoint."""
    if run.status in ("queued", "running"):
        raise HTTPException(status_code=409, detail=f"Run is {run.status}; only a finished run can be resumed")
    steps = _checkpoint_steps(storage, run.id)
    last = steps[-1] if steps else 0
    if body.steps is not None:
        total = last + body.steps
    elif last < int(run.config["train"]["steps"]):
        total = int(run.config["train"]["steps"])
    else:
        raise unprocessable("steps", "steps: the run has trained all its steps; say how many more to train")
    if total > settings.max_steps:
        raise unprocessable(
            "steps",
            f"steps: {total} steps in all is over this server's limit of {settings.max_steps} (GANFORGE_MAX_STEPS)",
        )
    refuse_over_quota(check_new_run(session=session, user=user, settings=settings))
    requeue_run(session=session, run=run, total_steps=total, queue=_route(session, settings, run.config))
    session.commit()
    enqueue_run(run.id, run.queue)
    return RunPublic.from_run(run)


@router.delete("/{run_id}", status_code=204)
def delete(run: OwnedRun, session: SessionDep, settings: SettingsDep, storage: StorageDep) -> Response:
    """Delete a run and its artifacts; a running run is canceled first."""
    session.delete(run)
    session.commit()
    storage.delete_prefix(layout.run_prefix(run.id))
    shutil.rmtree(layout.run_dir(settings.data_dir, run.id), ignore_errors=True)
    return Response(status_code=204)


def _sample_steps(storage: Storage, run_id: str) -> list[int]:
    return layout.steps_of([e.key for e in storage.list(f"{layout.run_prefix(run_id)}samples/")], "samples")


def _checkpoint_steps(storage: Storage, run_id: str) -> list[int]:
    return layout.steps_of([e.key for e in storage.list(f"{layout.run_prefix(run_id)}checkpoints/")], "checkpoints")


@router.get("/{run_id}/samples", response_model=SamplesPublic)
def list_samples(run: OwnedRun, storage: StorageDep) -> SamplesPublic:
    """The sample grids written during training from one fixed latent batch, oldest first."""
    steps = _sample_steps(storage, run.id)
    return SamplesPublic(items=[SamplePublic(step=s, url=f"/runs/{run.id}/samples/{s}.png") for s in steps])


_PNG = binary("image/png", description="A PNG image.")


@router.get("/{run_id}/samples/latest.png", response_class=FileResponse, responses=_PNG)
def latest_sample(run: OwnedRun, settings: SettingsDep, storage: StorageDep) -> Response:
    """The newest sample grid."""
    steps = _sample_steps(storage, run.id)
    if not steps:
        raise HTTPException(status_code=404, detail="No sample grid yet")
    key = layout.sample_key(run.id, steps[-1])
    return serve_artifact(storage, settings, key, media_type="image/png", missing="No sample grid yet")


@router.get("/{run_id}/samples/{step}.png", response_class=FileResponse, responses=_PNG)
def sample(run: OwnedRun, step: int, settings: SettingsDep, storage: StorageDep) -> Response:
    """The sample grid written at this step."""
    if step < 0:
        raise HTTPException(status_code=404, detail="Sample not found")
    key = layout.sample_key(run.id, step)
    return serve_artifact(storage, settings, key, media_type="image/png", missing="Sample not found")


@router.get("/{run_id}/checkpoints", response_model=CheckpointsPublic)
def list_checkpoints(run: OwnedRun, storage: StorageDep) -> CheckpointsPublic:
    """The kept checkpoints, oldest first."""
    best = (run.environment or {}).get("best_step")
    entries = storage.list(f"{layout.run_prefix(run.id)}checkpoints/")
    sizes = {e.key: e.size for e in entries}
    items = [
        CheckpointPublic(
            step=step,
            url=f"/runs/{run.id}/checkpoints/{step}",
            size_bytes=sizes[layout.checkpoint_key(run.id, step)],
            best=step == best,
        )
        for step in layout.steps_of(list(sizes), "checkpoints")
    ]
    return CheckpointsPublic(items=items)


_SAFETENSORS = binary("application/octet-stream", description="A safetensors file.")


@router.get(
    "/{run_id}/checkpoints/{step}",
    response_class=FileResponse,
    responses=_SAFETENSORS,
)
def checkpoint(run: OwnedRun, step: int, settings: SettingsDep, storage: StorageDep) -> Response:
    """Download a checkpoint: safetensors weights, with the JSON config and step in its metadata."""
    if step < 0:
        raise HTTPException(status_code=404, detail="Checkpoint not found")
    return serve_artifact(
        storage,
        settings,
        layout.checkpoint_key(run.id, step),
        media_type="application/octet-stream",
        missing="Checkpoint not found",
        filename=f"{run.id}-{step:08d}.safetensors",
    )
