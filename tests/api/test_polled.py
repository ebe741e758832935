"""The polled reads answered ahead of FastAPI's routing (api/polled.py), on a SQLite file and on a PostgreSQL
database: the answer a signed-in owner gets is the route's model, field for field; every other request goes on to
the route."""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Engine, insert, text, update
from sqlalchemy.orm import Session

from api import polled
from api.polled import PolledReads
from api.schemas import GenerationPublic, RunPublic, RunsPublic
from store import db
from store.models import Base, Generation, Run, User, utcnow
from store.reads import job_for_token, next_cursor, run_for_token, runs_page
from store.settings import get_settings
from store.tokens import create_user, hash_token


@pytest.fixture
def engine(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The test's database (a SQLite file, then a PostgreSQL database) named by the process's settings, with its
    tables."""
    monkeypatch.setenv("GANFORGE_DATABASE_URL", database_url)
    monkeypatch.setenv("GANFORGE_DATA_DIR", str(tmp_path / "data"))
    caches = (get_settings, db.get_engine, db.get_sessionmaker)
    for cache in caches:
        cache.cache_clear()
    polled.close_connections()
    engine = db.get_engine()
    Base.metadata.create_all(engine)
    yield engine
    polled.close_connections()
    for cache in caches:
        cache.cache_clear()
    engine.dispose()


def _user(engine: Engine, name: str) -> tuple[int, str]:
    with Session(engine) as session:
        user, token = create_user(session=session, name=name, is_admin=False)
        session.commit()
        return user.id, token


def _run(engine: Engine, owner: int, run_id: str, **fields: Any) -> None:
    values: dict[str, Any] = {
        "id": run_id,
        "owner_id": owner,
        "name": run_id,
        "config": {"dataset": "ring8", "model": {"arch": "mlp", "z_dim": 2}, "loss": {"kind": "hinge"}},
    }
    with engine.begin() as connection:
        connection.execute(insert(Run).values(**(values | fields)))


def _get(path: str, token: str | None, query: str = "") -> tuple[bool, int, bytes]:
    """(whether the request went on to the route, the status, the body) of a GET through the layer alone, on an
    event loop of its own."""
    return anyio.run(_get_closing, path, token, query)


async def _get_closing(path: str, token: str | None, query: str = "") -> tuple[bool, int, bytes]:
    """_get_on_loop, then the loop's kept connections closed before the loop ends (as the app's lifespan does)."""
    try:
        return await _get_on_loop(path, token, query)
    finally:
        await polled.close_loop_connection()


async def _get_on_loop(path: str, token: str | None, query: str = "") -> tuple[bool, int, bytes]:
    """_get on the running event loop (whose kept connection the layer reuses)."""
    passed_on: list[bool] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(True)
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    headers = [(b"host", b"test")] + ([(b"authorization", f"Bearer {token}".encode())] if token else [])
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "headers": headers,
    }
    await PolledReads(route)(scope, receive, send)
    return bool(passed_on), sent[0]["status"], sent[1]["body"]


def _model_json(model: Any) -> Any:
    return json.loads(model.model_dump_json())


def test_an_owner_s_run_is_answered_as_the_route_s_model(engine: Engine) -> None:
    owner, token = _user(engine, "owner")
    started = utcnow() - timedelta(minutes=3)
    _run(
        engine,
        owner,
        "run_a",
        status="running",
        started_at=started,
        step=120,
        total_steps=1000,
        images_per_sec=812.5,
        eta_seconds=64.0,
        latest_metrics={"loss_d": 0.61, "fid": 1e-5},
        worker="train-1@h",
        attempts=2,
        environment={"torch": "2.13.0", "device": "cpu", "note": "héllo ✓"},
    )
    went_on, status, body = _get("/runs/run_a", token)
    assert (went_on, status) == (False, 200)
    with engine.connect() as connection:
        row = run_for_token(connection, "run_a", hash_token(token))
    assert row is not None
    assert json.loads(body) == _model_json(RunPublic.from_run(row))
    assert list(json.loads(body)) == list(RunPublic.model_fields)  # the model's order
    assert b'"config":{"dataset":"ring8","model":{"arch":"mlp","z_dim":2}' in body  # stored compact, passed as is


def test_a_nan_stored_by_python_s_json_is_written_as_null(engine: Engine) -> None:
    """SQLite rows written before non-finite floats were stored as null hold Python's `NaN` and `Infinity`, which
    are not JSON: such a text is parsed, and the number answered as null (as the route's model writes it)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's json type never held a NaN")
    owner, token = _user(engine, "owner")
    _run(engine, owner, "run_nan")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE runs SET config = ?, latest_metrics = ? WHERE id = 'run_nan'",
            ('{"train":{"lr_g":NaN,"lr_d":Infinity},"name":"NaN"}', '{"loss_g":NaN,"fid":1.5}'),
        )
    went_on, status, body = _get("/runs/run_nan", token)
    assert (went_on, status) == (False, 200)
    assert json.loads(body)["config"] == {"train": {"lr_g": None, "lr_d": None}, "name": "NaN"}
    assert json.loads(body)["latest_metrics"] == {"loss_g": None, "fid": 1.5}
    with engine.connect() as connection:
        row = run_for_token(connection, "run_nan", hash_token(token))
    assert row is not None
    assert json.loads(body) == _model_json(RunPublic.from_run(row))


def test_a_page_of_runs_is_answered_as_the_route_s_model_with_its_cursor(engine: Engine) -> None:
    owner, token = _user(engine, "owner")
    other, _ = _user(engine, "other")
    base = utcnow()
    for i in range(5):
        status = "succeeded" if i % 2 else "queued"
        _run(engine, owner, f"run_{i}", created_at=base + timedelta(seconds=i), status=status)
    _run(engine, other, "run_theirs", created_at=base + timedelta(seconds=9))
    went_on, code, body = _get("/runs", token, "limit=2")
    assert (went_on, code) == (False, 200)
    page = json.loads(body)
    with engine.connect() as connection:
        rows = runs_page(connection, owner, limit=3)
        expected = RunsPublic(items=[RunPublic.from_run(r) for r in rows[:2]], next_cursor=next_cursor(rows, 2))
    assert page == _model_json(expected)
    assert [r["id"] for r in page["items"]] == ["run_4", "run_3"]
    # The next pages by the cursor, then one status only; never another user's runs.
    _, _, body = _get("/runs", token, f"limit=2&cursor={page['next_cursor']}")
    assert [r["id"] for r in json.loads(body)["items"]] == ["run_2", "run_1"]
    _, _, body = _get("/runs", token, "status=succeeded")
    assert [r["id"] for r in json.loads(body)["items"]] == ["run_3", "run_1"]
    assert json.loads(body)["next_cursor"] is None


def test_a_page_answers_each_run_as_it_is_now_after_any_update(engine: Engine) -> None:
    """A page keeps its runs' answers by the rows' versions, which the database bumps on every update: a worker's
    statement (heartbeat), an ORM change (a rename), a raw one; the unchanged runs are answered as encoded."""
    owner, token = _user(engine, "owner")
    base = utcnow()
    for i in range(3):
        _run(engine, owner, f"run_{i}", created_at=base + timedelta(seconds=i), status="running")

    def expected() -> Any:
        with engine.connect() as connection:
            rows = runs_page(connection, owner, limit=51)
        return _model_json(RunsPublic(items=[RunPublic.from_run(r) for r in rows], next_cursor=None))

    _, _, first = _get("/runs", token)
    assert json.loads(first) == expected()
    with engine.begin() as connection:
        connection.execute(update(Run).where(Run.id == "run_2").values(step=40, latest_metrics={"loss_d": 0.5}))
        connection.execute(text("UPDATE runs SET status = 'succeeded' WHERE id = 'run_1'"))
    with Session(engine) as session:
        renamed = session.get(Run, "run_0")
        assert renamed is not None
        renamed.name = "renamed"
        session.commit()
    went_on, status, body = _get("/runs", token)
    assert (went_on, status) == (False, 200)
    page = json.loads(body)
    assert page == expected()
    assert [(r["name"], r["status"], r["progress"]["step"]) for r in page["items"]] == [
        ("run_2", "running", 40),
        ("run_1", "succeeded", 0),
        ("renamed", "running", 0),
    ]
    _, _, again = _get("/runs", token)
    assert again == body


def test_a_run_deleted_between_the_page_and_its_rows_leaves_the_page_to_the_route(engine: Engine) -> None:
    """The page's rows name a run whose full row is gone by the time it is read: no answer here (the route's)."""
    polled.close_connections()  # nothing encoded: the run's row must be read

    async def fetch(query: Any) -> list[Any]:
        return []  # deleted meanwhile

    page = [namedtuple("PageRow", "id version created_at")("run_gone", 0, utcnow())]
    assert anyio.run(polled.encoded_runs, fetch, page) is None


def test_a_generation_is_answered_as_the_route_s_model(engine: Engine) -> None:
    owner, token = _user(engine, "owner")
    _run(engine, owner, "run_g")
    with engine.begin() as connection:
        connection.execute(
            insert(Generation).values(
                id="gen_1",
                run_id="run_g",
                owner_id=owner,
                kind="generate",
                status="succeeded",
                request={"n": 16, "seed": 3, "interpolate": {"steps": 8}, "checkpoint_step": 100},
                media_type="image/png",
                finished_at=utcnow(),
            )
        )
    went_on, status, body = _get("/generations/gen_1", token)
    assert (went_on, status) == (False, 200)
    with engine.connect() as connection:
        row = job_for_token(connection, "gen_1", "generate", hash_token(token))
    assert row is not None
    assert json.loads(body) == _model_json(GenerationPublic.from_job(row))
    assert json.loads(body)["animation_url"] == "/generations/gen_1/animation.gif"


def test_a_lost_connection_passes_one_read_to_the_route_and_the_next_reconnects(engine: Engine) -> None:
    """The connection an event loop keeps serves read after read (PostgreSQL prepares the statements after a
    few); when the database ends it, that read goes on to the route and the next opens another."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no server to end a connection")
    owner, token = _user(engine, "owner")
    _run(engine, owner, "run_a")

    async def reads() -> list[tuple[bool, int]]:
        answers = [(await _get_on_loop("/runs/run_a", token))[:2] for _ in range(8)]
        _end_connections(engine)
        answers += [(await _get_on_loop(path, token))[:2] for path in ("/runs/run_a", "/runs/run_a", "/runs")]
        await polled.close_loop_connection()
        return answers

    answers = anyio.run(reads)
    assert answers[:8] == [(False, 200)] * 8
    assert answers[8] == (True, 599)  # the lost connection: the route answers this one
    assert answers[9:] == [(False, 200)] * 2


def test_a_read_that_waits_too_long_goes_on_to_the_route(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("a SQLite read never waits on the event loop: its busy timeout bounds it")
    monkeypatch.setattr(polled, "READ_TIMEOUT_S", 0.5)
    owner, token = _user(engine, "owner")
    _run(engine, owner, "run_a")
    with engine.connect() as locker:
        locker.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))  # held until the rollback
        assert _get("/runs/run_a", token)[:2] == (True, 599)
        locker.rollback()
    assert _get("/runs/run_a", token)[:2] == (False, 200)


def _end_connections(engine: Engine) -> None:
    """End the database connections the polled reads keep, as a server restart would."""
    with engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )


@pytest.mark.parametrize(
    ("path", "query", "who"),
    [
        ("/runs/run_x", "", None),  # no token: the route's 401
        ("/runs/run_x", "", "unknown"),  # not a token of ours
        ("/runs/run_x", "", "revoked"),
        ("/runs/run_x", "", "expired"),
        ("/runs/run_absent", "", "owner"),  # the route's 404
        ("/runs/run_x", "", "other"),  # another user's run is as good as absent
        ("/generations/gen_absent", "", "owner"),
        ("/runs", "", "revoked"),
        ("/runs", "status=failed", "owner"),  # an empty page: the route's to answer
        ("/runs", "limit=0", "owner"),  # the route's 422s
        ("/runs", "limit=201", "owner"),
        ("/runs", "limit=", "owner"),
        ("/runs", "limit=٣", "owner"),  # not an ASCII number: left to the route
        ("/runs", "status=paused", "owner"),
        ("/runs", "cursor=bm90LWEtY3Vyc29y", "owner"),
        ("/runs/run_x/samples", "", "owner"),  # not a polled read
        ("/runs/", "", "owner"),
    ],
)
def test_anything_but_an_owner_s_row_goes_on_to_the_route(engine: Engine, path: str, query: str, who: str) -> None:
    owner, token = _user(engine, "owner")
    _, other_token = _user(engine, "other")
    _run(engine, owner, "run_x")
    tokens = {"owner": token, "other": other_token, "unknown": "gf_not-a-token", None: None}
    for state in ("revoked", "expired"):
        user_id, tokens[state] = _user(engine, state)
        column = User.revoked_at if state == "revoked" else User.expires_at
        with engine.begin() as connection:
            connection.execute(update(User).where(User.id == user_id).values({column: utcnow() - timedelta(1)}))
        _run(engine, user_id, f"run_{state}")
    if who in ("revoked", "expired"):
        path = path.replace("run_x", f"run_{who}")
    assert _get(path, tokens[who], query)[:2] == (True, 599)
    assert _get("/runs/run_x", token)[:2] == (False, 200)  # the owner's own read is still answered here
