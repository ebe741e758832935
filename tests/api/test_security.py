"""Security on the real service: hashed tokens, roles, ownership on every id-based route (found in the
OpenAPI schema, so new routes are covered), body limits, strict configs, CORS off, production refusing a
weak admin token, and no torch.load anywhere."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ROOT, Service, free_port
from tests.utils.runs import wait_for_status
from tests.utils.zips import build_zip, class_folders_zip, image_bytes

# A style-based run, so that every kind of job can be made from it (projections need a W space).
TINY = {
    "dataset": "digits",
    "model": {"arch": "stylegan2", "image_size": 16, "width": 4, "z_dim": 8, "w_dim": 8, "mapping_layers": 2},
    "train": {"steps": 4, "batch_size": 16},
    "schedule": {"sample_every": 2, "checkpoint_every": 2},
}
# The smallest translation run, for a translation job of the owner's.
PIX2PIX = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"steps": 2, "batch_size": 4},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 0},
}


@dataclass
class Owned:
    """One user's objects, for another user to knock on."""

    service: Service
    token: str
    ids: dict[str, str]


def _wait_job(client: httpx.Client, url: str) -> None:
    for _ in range(600):
        if client.get(url).json()["status"] in ("succeeded", "failed"):
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def owned(postgres_service: Service) -> Iterator[Owned]:
    """A user with a trained run, a generation, a score, a projection, a translation and a dataset."""
    token = postgres_service.new_user_token("owner")
    with postgres_service.client(token) as client:
        run = client.post("/runs", json=TINY).json()
        dataset = client.post(
            "/datasets", files={"file": ("pets.zip", class_folders_zip(), "application/zip")}, data={"name": "pets"}
        ).json()
        run = wait_for_status(client, run["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
        generation = client.post(f"/runs/{run['id']}/generations", json={"n": 4}).json()
        score = client.post(f"/runs/{run['id']}/scores", json={"dataset": dataset["id"]})
        assert score.status_code == 202, score.text
        image = {"a.png": image_bytes(size=16, mode="L")}
        projection = client.post(
            f"/runs/{run['id']}/projections",
            files={"file": ("a.zip", build_zip(image), "application/zip")},
            data={"steps": "1"},
        )
        assert projection.status_code == 202, projection.text
        pix2pix = client.post("/runs", json=PIX2PIX).json()
        pix2pix = wait_for_status(client, pix2pix["id"], ("succeeded", "failed"))
        assert pix2pix["status"] == "succeeded", pix2pix["error"]
        translation = client.post(
            f"/runs/{pix2pix['id']}/translations", files={"file": ("a.zip", build_zip(image), "application/zip")}
        )
        assert translation.status_code == 202, translation.text
        ids = {
            "run_id": run["id"],
            "generation_id": generation["id"],
            "score_id": score.json()["id"],
            "projection_id": projection.json()["id"],
            "translation_id": translation.json()["id"],
            "dataset_id": dataset["id"],
            "token_id": str(client.get("/me").json()["id"]),
            "step": "4",
        }
        _wait_job(client, f"/generations/{generation['id']}")
    yield Owned(postgres_service, token, ids)


# Path parameters that are not an owned object: what to put in them.
NOT_OWNED = {"name": "x"}
# A body that passes validation, so that only ownership can refuse the request.
# A valid body for the routes that take one, so that ownership, not the body, decides the answer.
BODIES = {
    ("POST", "/runs/{run_id}/generations"): {"n": 1},
    ("POST", "/runs/{run_id}/resume"): {"steps": 1},
    ("PATCH", "/datasets/{dataset_id}"): {"target": None},
    ("PATCH", "/tokens/{token_id}"): {"quotas": {"queued_runs": 1}},
}


def _id_routes(schema: dict) -> list[tuple[str, str]]:
    """(method, path) of every authenticated route whose path names an object by id."""
    routes = []
    for path, operations in schema["paths"].items():
        params = re.findall(r"{(\w+)}", path)
        if not params or all(p in NOT_OWNED for p in params):
            continue
        for method, operation in operations.items():
            if operation.get("security") is None and path.startswith(("/docs", "/ui")):
                continue
            routes.append((method.upper(), path))
    return routes


def test_every_id_route_answers_another_users_id_with_404(owned: Owned) -> None:
    service = owned.service
    schema = httpx.get(f"{service.url}/openapi.json").json()
    routes = _id_routes(schema)
    assert ("GET", "/runs/{run_id}") in routes and ("GET", "/runs/{run_id}/events") in routes
    stranger_token = service.new_user_token("stranger")
    with service.client(stranger_token) as stranger, service.client(owned.token) as owner:
        for method, path in routes:
            params = re.findall(r"{(\w+)}", path)
            missing = [p for p in params if p not in owned.ids and p not in NOT_OWNED]
            assert not missing, f"{method} {path}: add an object for {missing} to the `owned` fixture"
            url = path.format(**owned.ids, **NOT_OWNED)
            body = BODIES.get((method, path))
            response = stranger.request(method, url, json=body, timeout=30)
            assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
            assert response.json()["detail"].endswith("not found"), (method, path, response.json())
        # The owner still has everything the stranger knocked on.
        assert owner.get(f"/runs/{owned.ids['run_id']}").json()["status"] == "succeeded"
        assert owner.get(f"/datasets/{owned.ids['dataset_id']}").status_code == 200
        assert owner.get(f"/generations/{owned.ids['generation_id']}").status_code == 200


def test_tokens_are_stored_only_as_hashes(postgres_service: Service) -> None:
    token = postgres_service.new_user_token("hashed")
    engine = sa.create_engine(postgres_service.env["GANFORGE_DATABASE_URL"], poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = [tuple(str(v) for v in row) for row in conn.execute(sa.text("SELECT * FROM users")).all()]
        hashes = set(conn.execute(sa.text("SELECT token_hash FROM users")).scalars())
    engine.dispose()
    for secret in (token, postgres_service.admin_token):
        assert not any(secret in value for row in rows for value in row)
        assert hashlib.sha256(secret.encode()).hexdigest() in hashes


def test_admin_and_user_roles(postgres_service: Service) -> None:
    with postgres_service.client(postgres_service.new_user_token("plain")) as user:
        response = user.post("/tokens", json={"name": "sneaky"})
        assert response.status_code == 403 and response.json()["detail"] == "Admin token required"
        response = user.post("/tokens", json={"name": "sneaky", "admin": True})
        assert response.status_code == 403
    assert httpx.post(f"{postgres_service.url}/tokens", json={"name": "x"}).status_code == 401
    bad = httpx.get(f"{postgres_service.url}/runs", headers={"Authorization": "Basic YTpi"})
    assert bad.status_code == 401


def test_request_bodies_over_the_limit_are_413(postgres_service: Service) -> None:
    big = b'{"dataset": "ring8", "name": "' + b"x" * 1_100_000 + b'"}'
    detail = "Request body too large: the limit is 1000000 bytes"
    with postgres_service.client(postgres_service.new_user_token("big")) as client:
        response = client.post("/runs", content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and response.json()["detail"] == detail

        def chunks() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        response = client.post("/runs", content=chunks(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and response.json()["detail"] == detail
        assert client.get("/runs").json()["items"] == []  # nothing was created


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        pytest.param("/runs", {"dataset": "ring8", "train": {"stepz": 5}}, ["body", "train", "stepz"], id="run-nested"),
        pytest.param("/runs", {"dataset": "ring8", "admin": True}, ["body", "admin"], id="run-top"),
        pytest.param("/tokens", {"name": "a", "role": "root"}, ["body", "role"], id="token"),
    ],
)
def test_unknown_fields_are_422(postgres_service: Service, path: str, body: dict, loc: list[str]) -> None:
    with postgres_service.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and e["type"] == "extra_forbidden" for e in errors), errors


def test_cors_is_off_by_default(postgres_service: Service) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = httpx.options(
        f"{postgres_service.url}/runs",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    with postgres_service.client() as client:
        response = client.get("/runs", headers=origin)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "token",
    [pytest.param(None, id="missing"), pytest.param("changeme", id="default"), pytest.param("short-token", id="short")],
)
def test_production_refuses_to_start_with_a_missing_or_weak_admin_token(
    postgres_service: Service, token: str | None
) -> None:
    env = {k: v for k, v in postgres_service.env.items() if k != "GANFORGE_ADMIN_TOKEN"}
    env["GANFORGE_ENV"] = "production"
    if token is not None:
        env["GANFORGE_ADMIN_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-m", "ganforge", "api", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "GANFORGE_ADMIN_TOKEN must be set to a random secret of at least 24 characters in production" in output


def test_no_code_unpickles_with_torch_load() -> None:
    # The exceptions: the Inception and VGG-19 weights (.pth files, as pytorch-fid and torchvision publish them) are
    # loaded with torch.load(weights_only=True), after their hash matched the published file's.
    offenders = [
        f"{path.relative_to(ROOT)}: {call}"
        for folder in ("api", "worker", "core", "ganforge")
        for path in Path(ROOT / folder).rglob("*.py")
        for call in re.findall(r"\btorch\.load\([^\n]*|\bpickle\.loads?\([^\n]*", path.read_text())
        if not (path.name in ("inception.py", "networks_sr.py") and "weights_only=True" in call)
    ]
    assert offenders == []
