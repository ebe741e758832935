"""The token lifecycle on the real service: listing (never a secret), revoking (401 on the next request),
expiry, last use, `GET /me`, the bootstrap admin token (rotated by changing GANFORGE_ADMIN_TOKEN, made once by
API processes started together), and the same through the client and the command line."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.client import AsyncGanforge, Ganforge, Unauthorized
from tests.conftest import Service
from tests.utils.zips import class_folders_zip


def _create(service: Service, name: str, **fields: object) -> dict:
    with service.client() as admin:
        response = admin.post("/tokens", json={"name": name, **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())


def _sql(service: Service, statement: str, **params: object) -> list[tuple]:
    engine = sa.create_engine(service.env["GANFORGE_DATABASE_URL"], poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def test_a_revoked_token_is_refused_on_its_next_request(service: Service) -> None:
    created = _create(service, "leaving")
    with service.client(created["token"]) as user:
        assert user.get("/runs").status_code == 200
        run = user.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}})
        assert run.status_code == 201, run.text
        assert user.get(f"/runs/{run.json()['id']}").status_code == 200
        assert user.delete(f"/tokens/{created['id']}").status_code == 204  # a user revokes their own
        # Refused on every kind of route: the polled reads (one joined statement), the others, an absent id.
        for path in ("/runs", f"/runs/{run.json()['id']}", "/runs/run_absent", "/generations/gen_absent", "/me"):
            response = user.get(path)
            assert response.status_code == 401 and response.json() == {"detail": "Token revoked"}, path
    with service.client() as admin:
        listed = {t["id"]: t for t in admin.get("/tokens").json()["items"]}
        assert listed[created["id"]]["revoked_at"] is not None  # revoked, not deleted: still listed
        assert admin.delete(f"/tokens/{created['id']}").status_code == 204  # again: the first time stays
        again = {t["id"]: t for t in admin.get("/tokens").json()["items"]}
        assert again[created["id"]]["revoked_at"] == listed[created["id"]]["revoked_at"]
    # What the token owned stays in the database.
    assert _sql(service, "SELECT owner_id FROM runs WHERE id = :id", id=run.json()["id"]) == [(created["id"],)]


def test_users_revoke_only_their_own_admins_any(service: Service) -> None:
    alice, bob = _create(service, "alice"), _create(service, "bob")
    with service.client(alice["token"]) as client:
        for target in (bob["id"], 1, 10**9):  # another user's, an admin's, none
            response = client.delete(f"/tokens/{target}")
            assert response.status_code == 404 and response.json() == {"detail": "Token not found"}
        assert client.get("/me").status_code == 200
    with service.client() as admin:
        assert admin.delete(f"/tokens/{bob['id']}").status_code == 204
        assert admin.delete(f"/tokens/{10**9}").status_code == 404
    with service.client(bob["token"]) as client:
        assert client.get("/me").json() == {"detail": "Token revoked"}


def test_expired_tokens_are_refused(service: Service) -> None:
    created = _create(service, "brief", expires_in_days=1)
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert timedelta(hours=23) < expires_at - datetime.now(UTC) <= timedelta(days=1)
    with service.client(created["token"]) as user:
        assert user.get("/me").json()["expires_at"] == created["expires_at"]
        _sql(
            service,
            "UPDATE users SET expires_at = :past WHERE id = :id",
            past=datetime.now(UTC) - timedelta(seconds=1),
            id=created["id"],
        )
        for path in ("/runs", "/runs/run_absent", "/generations/gen_absent"):
            response = user.get(path)
            assert response.status_code == 401 and response.json() == {"detail": "Token expired"}, path
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert _create(service, "dated", expires_at=later)["expires_at"] is not None


@pytest.mark.parametrize(
    ("fields", "loc", "msg"),
    [
        pytest.param(
            {"expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "expires_at: must be in the future", id="past"
        ),
        pytest.param(
            {"expires_at": "2999-01-01T00:00:00Z", "expires_in_days": 3},
            "expires_in_days",
            "expires_in_days: give expires_at or expires_in_days, not both",
            id="both",
        ),
    ],
)
def test_token_expiry_is_checked(postgres_service: Service, fields: dict, loc: str, msg: str) -> None:
    with postgres_service.client() as admin:
        response = admin.post("/tokens", json={"name": "x", **fields})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "value_error", "loc": ["body", loc], "msg": msg}]


def test_users_list_their_own_token_admins_all_never_a_secret(service: Service) -> None:
    created = _create(service, "lister")
    with service.client(created["token"]) as user:
        mine = user.get("/tokens")
        assert [t["id"] for t in mine.json()["items"]] == [created["id"]]
    with service.client() as admin:
        everyone = admin.get("/tokens")
    ids = [t["id"] for t in everyone.json()["items"]]
    assert created["id"] in ids and len(ids) > 1 and ids == sorted(ids)
    for response in (mine, everyone):
        for secret in (created["token"], service.admin_token):
            assert secret not in response.text
            assert hashlib.sha256(secret.encode()).hexdigest() not in response.text
        assert all("token" not in t and "token_hash" not in t for t in response.json()["items"])
    item = next(t for t in everyone.json()["items"] if t["id"] == created["id"])
    assert set(item) == {
        "id", "name", "is_admin", "bootstrap", "created_at", "expires_at", "last_used_at", "revoked_at", "quotas"
    }  # fmt: skip
    assert item["name"] == "lister" and not item["is_admin"] and not item["bootstrap"]
    assert item["last_used_at"] is not None  # the list above used it


def test_last_used_at_is_written_at_most_once_a_minute(service: Service) -> None:
    created = _create(service, "user-of-time")
    assert created["last_used_at"] is None

    def last_used() -> datetime:
        (value,) = _sql(service, "SELECT last_used_at FROM users WHERE id = :id", id=created["id"])[0]
        value = datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite answers text
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    with service.client(created["token"]) as user:
        run_id = user.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}}).json()["id"]
        first = last_used()
        for _ in range(3):
            user.get("/runs")
            user.get(f"/runs/{run_id}")
        assert last_used() == first
        # A minute later (moved back in the database), the next request writes it again: each polled read
        # (GET /runs, GET /runs/{id}) records it as the other routes do.
        for path in ("/runs", f"/runs/{run_id}"):
            then = datetime.now(UTC) - timedelta(seconds=61)
            _sql(service, "UPDATE users SET last_used_at = :then WHERE id = :id", then=then, id=created["id"])
            assert user.get(path).status_code == 200
            assert last_used() > then + timedelta(seconds=30), path


def test_me_counts_what_the_caller_holds(service: Service) -> None:
    created = _create(service, "counted")
    with service.client(created["token"]) as user:
        me = user.get("/me").json()
        assert {k: me[k] for k in ("id", "name", "is_admin", "expires_at")} == {
            "id": created["id"],
            "name": "counted",
            "is_admin": False,
            "expires_at": None,
        }
        limits = {  # the server's defaults (store/settings.py)
            "running_runs": 2,
            "queued_runs": 10,
            "datasets": 20,
            "dataset_bytes": 20_000_000_000,
            "artifact_bytes": 200_000_000_000,
            "jobs_in_flight": 4,
        }
        assert me["quotas"] == {name: {"limit": n, "used": 0} for name, n in limits.items()}
        assert me["usage"] == {
            "runs": {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0},
            "datasets": 0,
            "dataset_bytes": 0,
            "jobs_in_flight": {"generate": 0, "score": 0},
        }
        upload = user.post("/datasets", files={"file": ("pets.zip", class_folders_zip(), "application/zip")})
        assert upload.status_code == 201, upload.text
        run = user.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}}).json()
        canceled = user.post("/runs", json={"dataset": "ring8", "train": {"steps": 100000}}).json()
        user.post(f"/runs/{canceled['id']}/cancel")
        usage = user.get("/me").json()["usage"]
    assert usage["datasets"] == 1 and usage["dataset_bytes"] > 0
    assert sum(usage["runs"].values()) == 2
    assert usage["runs"]["canceled"] + usage["runs"]["running"] >= 1  # a running run is canceled by its worker
    assert run["id"] != canceled["id"]


# The bootstrap admin token, on a service of its own (a fresh database, an API without workers).


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_service(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Service]:
    """A migrated empty database and an API that is not started yet."""
    if request.param == "sqlite":
        service = Service(
            database_url=f"sqlite:///{tmp_path / 'ganforge.db'}", broker_url=redis_url, workdir=tmp_path, extra_env={}
        )
        try:
            yield service
        finally:
            service.stop()
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"ganforge_tok_{uuid.uuid4().hex[:12]}"
    admin = sa.make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    service = Service(database_url=url, broker_url=redis_url, workdir=tmp_path, extra_env={})
    try:
        yield service
    finally:
        service.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _me(service: Service, token: str) -> httpx.Response:
    return httpx.get(f"{service.url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_changing_the_admin_token_disables_the_previous_one(fresh_service: Service) -> None:
    service = fresh_service
    first, second = "gf_first_" + uuid.uuid4().hex, "gf_second_" + uuid.uuid4().hex
    service.start_api(env={"GANFORGE_ADMIN_TOKEN": first})
    admin_id = _me(service, first).json()["id"]
    service.stop_api()
    service.start_api(env={"GANFORGE_ADMIN_TOKEN": second})
    assert _me(service, first).json() == {"detail": "Invalid token"}
    me = _me(service, second).json()
    assert me["id"] == admin_id and me["is_admin"]  # the same admin: what it owns stays its own
    tokens = httpx.get(f"{service.url}/tokens", headers={"Authorization": f"Bearer {second}"}).json()["items"]
    assert [(t["id"], t["bootstrap"], t["revoked_at"]) for t in tokens] == [(admin_id, True, None)]
    # Revoked through the API, it stays revoked across restarts with the same token; a new one brings it back.
    revoked = httpx.delete(f"{service.url}/tokens/{admin_id}", headers={"Authorization": f"Bearer {second}"})
    assert revoked.status_code == 204
    service.stop_api()
    service.start_api(env={"GANFORGE_ADMIN_TOKEN": second})
    assert _me(service, second).json() == {"detail": "Token revoked"}
    service.stop_api()
    third = "gf_third_" + uuid.uuid4().hex
    service.start_api(env={"GANFORGE_ADMIN_TOKEN": third})
    assert _me(service, third).json()["id"] == admin_id
    assert _me(service, second).json() == {"detail": "Invalid token"}


def test_api_processes_started_together_generate_one_admin(fresh_service: Service) -> None:
    service = fresh_service
    service.api = service.spawn(
        "api", "api", "--port", str(service.port), "--workers", "3", env={"GANFORGE_ADMIN_TOKEN": ""}
    )
    service.wait_ready()
    deadline = time.monotonic() + 60
    while service.log("api").count("Application startup complete") < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    log = service.log("api")
    assert log.count("Application startup complete") == 3, log
    tokens = re.findall(r"generated the admin token \(shown once, only its hash is stored\): (\S+)", log)
    assert len(tokens) == 1, log
    assert _me(service, tokens[0]).json()["is_admin"] is True
    assert _sql(service, "SELECT count(*) FROM users") == [(1,)]


# The client and the command line.


def test_client_lists_and_revokes_tokens_and_reads_me(postgres_service: Service) -> None:
    service = postgres_service
    with Ganforge(service.url, service.admin_token) as admin:
        created = admin.tokens.create("via-client", expires_in_days=7)
        assert created.token and created.expires_at is not None
        listed = {t.id: t for t in admin.tokens.list()}
        assert created.id is not None and listed[int(created.id)].name == "via-client"
    with Ganforge(service.url, created.token) as user:
        me = user.me()
        assert (me.id, me.name, me.is_admin) == (int(created.id), "via-client", False)
        assert me.quotas is not None and me.quotas["queued_runs"] == {"limit": 10, "used": 0}
        assert me.usage.runs["queued"] == 0 and me.usage.jobs_in_flight == {"generate": 0, "score": 0}
        assert [t.id for t in user.tokens.list()] == [me.id]
        user.tokens.revoke(me.id)
        with pytest.raises(Unauthorized) as info:
            user.me()
        assert info.value.detail == "Token revoked"


def test_async_client_lists_and_revokes(postgres_service: Service) -> None:
    service = postgres_service

    async def main() -> None:
        async with AsyncGanforge(service.url, service.admin_token) as admin:
            created = await admin.tokens.create("via-async")
            assert created.id is not None
            assert int(created.id) in [t.id for t in await admin.tokens.list()]
            await admin.tokens.revoke(created.id)
            assert (await admin.me()).is_admin
        async with AsyncGanforge(service.url, created.token) as user:
            with pytest.raises(Unauthorized):
                await user.me()

    anyio.run(main)


def test_cli_lists_and_revokes_tokens(postgres_service: Service) -> None:
    service = postgres_service
    admin_env = {"GANFORGE_URL": service.url, "GANFORGE_TOKEN": service.admin_token}
    result = CliRunner().invoke(app, ["tokens", "create", "via-cli", "--expires-in-days", "2", "--json"], env=admin_env)
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    user_env = {"GANFORGE_URL": service.url, "GANFORGE_TOKEN": created["token"]}
    result = CliRunner().invoke(app, ["tokens", "list", "--json"], env=user_env)
    assert result.exit_code == 0 and [t["id"] for t in json.loads(result.stdout)] == [created["id"]]
    assert created["token"] not in result.stdout
    result = CliRunner().invoke(app, ["me"], env=user_env)
    assert result.exit_code == 0 and "via-cli" in result.stdout and "datasets: 0" in result.stdout
    result = CliRunner().invoke(app, ["tokens", "list"], env=admin_env)
    assert result.exit_code == 0 and "via-cli" in result.stdout
    result = CliRunner().invoke(app, ["tokens", "list", "--json"], env=admin_env)
    assert [t["name"] for t in json.loads(result.stdout) if t["bootstrap"]] == ["admin"]
    result = CliRunner().invoke(app, ["tokens", "revoke", str(created["id"])], env=admin_env)
    assert result.exit_code == 0 and f"token {created['id']} revoked" in result.stdout
    result = CliRunner().invoke(app, ["me"], env=user_env)
    assert result.exit_code == 1 and "401: Token revoked" in result.stderr
