"""Generations: sampling jobs against one of a run's checkpoints, run by a worker on the `generate` queue so
that they never wait behind a training run. The request is checked against the checkpoint it names (its
classes, whether it exists) before anything is queued."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse
from sqlalchemy import select

from api.deps import (
    Credentials,
    CurrentUser,
    OwnedGeneration,
    OwnedRun,
    SessionDep,
    SettingsDep,
    StorageDep,
    read_owned_json,
)
from api.errors import unprocessable
from api.jobs import checkpoint_data, delete_job, resolve_step, result_file, send
from api.quotas import QUEUE_FULL, refuse_over_quota
from api.responses import binary
from api.routing import ReleasingRoute
from api.schemas import GenerationCreate, GenerationPublic, GenerationsPublic
from core.style_layers import num_ws, parse_layers
from core.tabular.transformer import TableTransformer
from store.jobs import create_job
from store.models import Generation
from store.quotas import check_new_job
from store.reads import job_for_token

router = APIRouter(tags=["generations"], route_class=ReleasingRoute)


def conditional_classes(metadata: dict[str, str]) -> int:
    """How many classes the checkpoint's generator is conditioned on; 0 for an unconditional one."""
    config = json.loads(metadata.get("config") or "{}")
    if not config.get("model", {}).get("conditional"):
        return 0
    return int(checkpoint_data(metadata).get("num_classes") or 0)


TABLE_FORMATS = ("csv", "parquet")


def check_table_request(body: GenerationCreate, *, table: dict[str, Any] | None) -> str:
    """The request's format (its default: csv for a table run, else png); 422 for a field that does not fit the
    run's kind of data, or a condition the table cannot meet (`table`: the checkpoint's transformer state, None
    for a run on images or points)."""
    if table is not None:
        if body.format is not None and body.format not in TABLE_FORMATS:
            raise unprocessable(
                "format", f"format: this run makes table rows, written as csv or parquet, not {body.format}"
            )
        image_fields = {"truncation": body.truncation, "labels": body.labels, "interpolate": body.interpolate}
        for field, value in image_fields.items():
            if value is not None:
                raise unprocessable(field, f"{field}: a table run takes conditions instead; it has no {field}")
        if body.conditions:
            try:
                TableTransformer.from_state(table).condition_values(body.conditions)
            except ValueError as exc:  # "conditions.<column>: reason"
                message = str(exc)
                raise unprocessable(message.split(": ", 1)[0], message) from exc
        return body.format or "csv"
    if body.format in TABLE_FORMATS:
        raise unprocessable("format", f"format: {body.format} holds table rows; this run makes images or points")
    if body.conditions is not None:
        raise unprocessable("conditions", "conditions: only table (ctgan) runs take conditions; use labels")
    return body.format or "png"


def check_style_request(body: GenerationCreate, *, metadata: dict[str, str]) -> None:
    """422 for a request that uses W space (style_mix, interpolate.space w) on a run without one, or layers outside
    the checkpoint's generator."""
    config = json.loads(metadata.get("config") or "{}")
    arch = config.get("model", {}).get("arch", "dcgan")
    style_based = arch == "stylegan2"
    if body.interpolate is not None and body.interpolate.space == "w" and not style_based:
        raise unprocessable(
            "interpolate.space",
            f"interpolate.space: w is the space of a style-based generator (model.arch stylegan2); this run is "
            f"{arch}, so its walks go through z",
        )
    mix = body.style_mix
    if mix is None:
        return
    if not style_based:
        raise unprocessable(
            "style_mix",
            f"style_mix: style mixing needs a style-based generator (model.arch stylegan2); this run is {arch}",
        )
    if body.interpolate is not None:
        raise unprocessable("style_mix", "style_mix: ask for a style-mixing grid or for latent walks, not both")
    if body.format not in (None, "png"):
        raise unprocessable("format", f"format: a style-mixing grid is one png picture, not {body.format}")
    image_size = int(checkpoint_data(metadata).get("image_size") or config["model"]["image_size"])
    try:
        parse_layers(mix.layers, num_ws(image_size))
    except ValueError as exc:
        raise unprocessable("style_mix.layers", str(exc)) from None


@router.post("/runs/{run_id}/generations", status_code=202, response_model=GenerationPublic, responses=QUEUE_FULL)
def create_generation(
    run: OwnedRun,
    user: CurrentUser,
    body: GenerationCreate,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    response: Response,
) -> GenerationPublic:
    """Queue a sampling job against one of the run's checkpoints (works while the run trains)."""
    limit = settings.max_generation_n
    if body.n > limit:
        raise unprocessable("n", f"n: at most {limit} samples per generation, not {body.n}")
    if body.interpolate is not None and body.n * body.interpolate.steps > limit:
        raise unprocessable(
            "interpolate.steps",
            f"interpolate.steps: n × steps = {body.n * body.interpolate.steps} samples, over the limit of {limit}",
        )
    step, metadata = resolve_step(run, storage, body.step)
    data = json.loads(metadata.get("data") or "{}")
    fmt = check_table_request(body, table=data.get("table") if data.get("kind") == "table" else None)
    check_style_request(body, metadata=metadata)
    num_classes = conditional_classes(metadata)
    if body.labels is not None:
        if num_classes == 0:
            raise unprocessable("labels", "labels: this run is unconditional, so it takes no labels")
        for label in body.labels:
            if not 0 <= label < num_classes:
                raise unprocessable(
                    "labels", f"labels: {label} is out of range; this run has classes 0 to {num_classes - 1}"
                )
    refuse_over_quota(check_new_job(session=session, user=user, settings=settings))
    job = create_job(
        session=session,
        run_id=run.id,
        owner_id=run.owner_id,
        kind="generate",
        request={**body.model_dump(mode="json"), "format": fmt, "checkpoint_step": step},
    )
    session.commit()
    send(session, job)
    response.headers["Location"] = f"/generations/{job.id}"
    return GenerationPublic.from_job(job)


@router.get("/runs/{run_id}/generations", response_model=GenerationsPublic)
def list_generations(run: OwnedRun, session: SessionDep) -> GenerationsPublic:
    """The run's generations, newest first (the latest 100)."""
    rows = session.execute(
        select(Generation)
        .where(Generation.run_id == run.id, Generation.kind == "generate")
        .order_by(Generation.created_at.desc(), Generation.id)
        .limit(100)
    ).scalars()
    return GenerationsPublic(items=[GenerationPublic.from_job(g) for g in rows])


@router.get("/generations/{generation_id}", response_model=GenerationPublic)
async def get_generation(generation_id: str, credentials: Credentials) -> Response:
    """A generation's status, and its result_url once it has succeeded."""
    return await read_owned_json(
        credentials,
        lambda connection, token_hash: job_for_token(connection, generation_id, "generate", token_hash),
        GenerationPublic.from_job,
        missing="Generation not found",
    )


@router.get(
    "/generations/{generation_id}/result",
    response_class=FileResponse,
    responses=binary(
        "image/png",
        "application/zip",
        "application/octet-stream",
        "text/csv",
        "application/vnd.apache.parquet",
        description="png: one grid; zip: one PNG per sample (+ labels.csv); npz: samples and labels arrays; csv or "
        "parquet: table rows.",
    ),
)
def generation_result(job: OwnedGeneration, settings: SettingsDep, storage: StorageDep) -> Response:
    """The result file: png grid, zip of PNGs with labels.csv, npz of float32 samples, or csv/parquet rows."""
    filename = f"{job.id}.{job.request['format']}"
    media_type = job.media_type or "application/octet-stream"
    return result_file(storage, settings, job, media_type=media_type, filename=filename)


@router.get(
    "/generations/{generation_id}/animation.gif",
    response_class=FileResponse,
    responses=binary("image/gif", description="An animated GIF of the latent walks."),
)
def generation_animation(job: OwnedGeneration, settings: SettingsDep, storage: StorageDep) -> Response:
    """The animated GIF of a generation's latent walks (interpolate only)."""
    if not job.request.get("interpolate"):
        raise HTTPException(status_code=404, detail="No animation: this generation has no interpolate")
    return result_file(storage, settings, job, "animation.gif", media_type="image/gif")


@router.delete("/generations/{generation_id}", status_code=204)
def delete_generation(
    job: OwnedGeneration, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> Response:
    """Delete a generation and its files (a running one is dropped when it finishes)."""
    delete_job(session, settings, storage, job)
    return Response(status_code=204)
