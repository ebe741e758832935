"""One error shape and a schema for every response: every 4xx body is `{"detail": ...}`, a 422's detail is
always FastAPI's list of `{"loc", "msg", "type"}`, and every response in `/openapi.json` has a schema (files are
binary strings), so that clients generated from the schema keep every route.

The schema is read from an app built in-process; the error bodies come from the real service."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import HTTPException

from api.main import create_app
from api.responses import BINARY_SCHEMA
from api.routes.metrics import event_cursor
from store.settings import Settings
from tests.conftest import Service
from tests.utils import zips

# Files that the API serves, by route: their responses must declare binary schemas.
BINARY_ROUTES = {
    ("get", "/runs/{run_id}/samples/latest.png"): {"image/png"},
    ("get", "/runs/{run_id}/samples/{step}.png"): {"image/png"},
    ("get", "/runs/{run_id}/checkpoints/{step}"): {"application/octet-stream"},
    ("get", "/datasets/{dataset_id}/preview.png"): {"image/png"},
}
# Text bodies: string schemas.
TEXT_ROUTES = {
    ("get", "/runs/{run_id}/events"): "text/event-stream",
    ("get", "/runs/{run_id}/metrics"): "text/csv",
    ("get", "/metrics"): "text/plain",
}
_JSON = {"Content-Type": "application/json"}
ERROR_SCHEMAS = ({"$ref": "#/components/schemas/ErrorPublic"}, {"$ref": "#/components/schemas/HTTPValidationError"})


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("openapi")
    settings = Settings(database_url=f"sqlite:///{workdir / 'ganforge.db'}", data_dir=workdir / "data")
    return create_app(settings).openapi()


def _responses(schema: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, status, response) of every operation in the schema."""
    return [
        (method, path, status, response)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
    ]


def test_every_response_has_a_schema(schema: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path} {status} {media_type}"
        for method, path, status, response in _responses(schema)
        for media_type, content in response.get("content", {}).items()
        if not content.get("schema")
    ]
    assert missing == []


def test_files_declare_binary_and_text_declares_string(schema: dict[str, Any]) -> None:
    for (method, path), media_types in BINARY_ROUTES.items():
        content = schema["paths"][path][method]["responses"]["200"]["content"]
        assert {m: content[m]["schema"] for m in media_types} == {m: BINARY_SCHEMA for m in media_types}, path
    for (method, path), media_type in TEXT_ROUTES.items():
        assert schema["paths"][path][method]["responses"]["200"]["content"][media_type]["schema"] == {"type": "string"}
    # And every other route, present or future: a body that is neither JSON nor text is a binary string (text
    # is a string, or a binary one where it is a file to save, such as a CSV download).
    for method, path, status, response in _responses(schema):
        for media_type, content in response.get("content", {}).items():
            if media_type.startswith("text/"):
                assert content["schema"].get("type") == "string", (method, path, status, media_type)
            elif media_type != "application/json":
                assert content["schema"] == BINARY_SCHEMA, (method, path, status, media_type)


def test_error_responses_declare_the_one_shape(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["HTTPValidationError"]["properties"]["detail"]["type"] == "array"  # never a string
    assert components["ErrorPublic"]["properties"] == {"detail": {"title": "Detail", "type": "string"}}
    for method, path, status, response in _responses(schema):
        if status.startswith("4") and "content" in response:
            assert response["content"]["application/json"]["schema"] in ERROR_SCHEMAS, (method, path, status)
            assert (status == "422") == (response["content"]["application/json"]["schema"] == ERROR_SCHEMAS[1])
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schema)))
    assert refs <= set(components)


def test_a_string_422_is_answered_as_the_list(tmp_path: Path) -> None:
    """The safety net: an HTTPException(422) with a string detail still reaches the client as the list form."""
    # No rate limit: each anyio.run below is an event loop of its own, and the limiter's Redis connection belongs
    # to the loop that opened it.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ganforge.db'}", data_dir=tmp_path / "data", rate_limit="")
    app = create_app(settings)

    @app.get("/raise-string")
    def raise_string(detail: str) -> None:
        raise HTTPException(status_code=422, detail=detail)

    async def get(path: str, **params: str) -> httpx.Response:
        # In-process, without the lifespan (the admin bootstrap and the reconcile need no database here).
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get(path, params=params)

    named = anyio.run(lambda: get("/raise-string", detail="train.steps: say how many"))
    assert (named.status_code, named.json()) == (
        422,
        {"detail": [{"type": "value_error", "loc": ["body", "train", "steps"], "msg": "train.steps: say how many"}]},
    )
    plain = anyio.run(lambda: get("/raise-string", detail="Run is running; wait for it")).json()
    assert plain == {"detail": [{"type": "value_error", "loc": ["body"], "msg": "Run is running; wait for it"}]}
    assert anyio.run(lambda: get("/nowhere")).json() == {"detail": "Not Found"}


# The real service.


def _invalid(field: str, message: str, where: str = "body") -> list[dict[str, Any]]:
    return [{"type": "value_error", "loc": [where, *field.split(".")], "msg": message}]


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """A 422's detail, checked to be the list form, with only the keys every client reads."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    return [{"type": item["type"], "loc": item["loc"], "msg": item["msg"]} for item in detail]


def test_route_checks_answer_the_list_form(postgres_service: Service) -> None:
    missing = "ds_0123456789abcdef"
    with postgres_service.client(postgres_service.new_user_token("errors")) as client:
        response = client.post("/runs", json={"dataset": missing})
        assert _errors(response) == _invalid(
            "dataset", f"dataset: no dataset {missing}; upload one with POST /datasets"
        )

        upload = {"file": ("pets.zip", zips.flat_zip(count=2), "application/zip")}
        response = client.post("/datasets", files=upload, data={"name": "x" * 201})
        assert _errors(response) == _invalid("name", "name: at most 200 characters")
        response = client.post("/datasets", files={"file": ("a.zip", b"not a zip", "application/zip")})
        assert _errors(response) == _invalid("file", "file: not a ZIP archive")
        response = client.post("/datasets", json={"file": "x"})
        assert _errors(response) == _invalid(
            "file",
            "file: send the ZIP of images or the table (CSV or Parquet) as multipart/form-data with the fields file, "
            "name, target and layout",
        )

        response = client.get("/runs", params={"cursor": "nonsense"})
        assert _errors(response) == _invalid("cursor", "cursor: not a cursor this API returned", where="query")
        assert client.get("/runs").json()["items"] == []  # nothing was created


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param(
            {"dataset": "ring8", "train": {"steps": 0}},
            [
                {
                    "type": "greater_than_equal",
                    "loc": ["body", "train", "steps"],
                    "msg": "Input should be greater than or equal to 1",
                }
            ],
            id="field",
        ),
        pytest.param(
            {"dataset": "ring8", "model": {"arch": "dcgan"}},
            [
                {
                    "type": "value_error",
                    "loc": ["body"],
                    "msg": "Value error, model.arch: ring8 is 2-D point data; only the mlp architecture fits it",
                }
            ],
            id="cross-field",
        ),
    ],
)
def test_bad_configs_answer_the_list_form(postgres_service: Service, body: dict[str, Any], errors: list[Any]) -> None:
    with postgres_service.client(postgres_service.new_user_token("configs")) as client:
        assert _errors(client.post("/runs", json=body)) == errors


@pytest.mark.parametrize(
    ("route", "body", "loc", "echoed"),
    [
        pytest.param("/runs", '{"dataset": "ring8", "train": {"lr_g": Infinity}}', ["train", "lr_g"], "inf", id="inf"),
        pytest.param("/runs", '{"dataset": "ring8", "loss": {"r1_gamma": NaN}}', ["loss", "r1_gamma"], "nan", id="nan"),
        pytest.param(
            "/runs/{run}/generations", '{"truncation": -Infinity}', ["truncation"], "-inf", id="generation-truncation"
        ),
    ],
)
def test_non_finite_numbers_are_a_validation_error(
    postgres_service: Service, route: str, body: str, loc: list[str], echoed: str
) -> None:
    """Python's JSON reader takes NaN and Infinity: they are a 422 naming the field, whose echo of the input is
    still JSON, and nothing is created."""
    with postgres_service.client(postgres_service.new_user_token("finite")) as client:
        run = client.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}}).json()["id"]
        response = client.post(route.format(run=run), content=body.encode(), headers=_JSON)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert (error["type"], error["loc"], error["input"]) == ("finite_number", ["body", *loc], echoed)
        assert [item["id"] for item in client.get("/runs").json()["items"]] == [run]


def test_a_negative_checkpoint_step_is_a_validation_error(postgres_service: Service) -> None:
    """A job's `step` is a kept step (0 or more) or latest: -1 answers 422 before the run's checkpoints are read."""
    with postgres_service.client(postgres_service.new_user_token("steps")) as client:
        run = client.post("/runs", json={"dataset": "digits", "train": {"steps": 1}}).json()["id"]
        response = client.post(f"/runs/{run}/generations", json={"step": -1})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][:2] == ["body", "step"]
        assert response.json()["detail"][0]["type"] == "greater_than_equal"


def test_numbers_beyond_the_database_are_a_validation_error_or_clamped(postgres_service: Service) -> None:
    """A step past what the database holds is a 422, not a 500 from the driver; a Last-Event-ID past every id the
    database can hold continues after every event (event_cursor)."""
    with postgres_service.client(postgres_service.new_user_token("bounds")) as client:
        run = client.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}}).json()["id"]
        response = client.get(f"/runs/{run}/metrics", params={"since_step": 2**40})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "since_step"]
        assert client.get(f"/runs/{run}/metrics", params={"since_step": 2**31 - 1}).json() == {"series": {}}
    assert [event_cursor(value) for value in (None, "", "abc", "-5", "17", str(10**30))] == [0, 0, 0, 0, 17, 2**63 - 1]


def test_nul_characters_are_a_validation_error(postgres_service: Service) -> None:
    """PostgreSQL can neither store nor compare a NUL character: one in a JSON body, a form field, a path or a query
    string is a 422 that names where it is, and nothing is created."""
    with postgres_service.client(postgres_service.new_user_token("nul")) as client:
        run = client.post("/runs", json={"dataset": "ring8", "train": {"steps": 1}}).json()["id"]
        for response, loc in [
            (client.post("/runs", json={"dataset": "ring8", "name": "a\x00b"}), ["body", "name"]),
            (
                client.post("/runs", json={"dataset": "ring8", "train": {"diffaugment": "color\x00"}}),
                ["body", "train", "diffaugment"],
            ),
            (client.patch("/datasets/ring8", json={"columns": {"a\x00": "discrete"}}), ["body", "columns"]),
            (client.get(f"/runs/{run}/metrics", params={"names": "loss_d\x00"}), ["query"]),
            (client.get("/runs", params={"cursor": "\x00"}), ["query"]),
            (client.get("/runs/run_%00"), ["path"]),
            (client.get(f"/runs/{run}%00/samples"), ["path"]),
            (
                client.post(
                    "/datasets", files={"file": ("d.zip", zips.flat_zip(), "application/zip")}, data={"name": "a\x00"}
                ),
                ["body", "name"],
            ),
        ]:
            assert response.status_code == 422, response.text
            [error] = response.json()["detail"]
            assert error["loc"] == loc, error
            assert "NUL character" in error["msg"], error
        assert [item["id"] for item in client.get("/runs").json()["items"]] == [run]
        assert all(item["builtin"] for item in client.get("/datasets").json()["items"])
    with postgres_service.client() as admin:
        response = admin.post("/tokens", json={"name": "a\x00b"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "name"]
        assert "a\x00b" not in [item["name"] for item in admin.get("/tokens").json()["items"]]


def test_other_errors_are_a_detail_string(postgres_service: Service) -> None:
    url = postgres_service.url
    response = httpx.get(f"{url}/runs")
    assert (response.status_code, response.json()) == (401, {"detail": "Missing bearer token"})
    assert response.headers["WWW-Authenticate"] == "Bearer"
    response = httpx.get(f"{url}/runs", headers={"Authorization": "Bearer wrong"})
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid token"})
    with postgres_service.client(postgres_service.new_user_token("others")) as client:
        response = client.post("/tokens", json={"name": "x"})
        assert (response.status_code, response.json()) == (403, {"detail": "Admin token required"})
        response = client.get("/runs/run_0123456789abcdef")
        assert (response.status_code, response.json()) == (404, {"detail": "Run not found"})
        response = client.get("/nowhere")
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
        response = client.put("/runs")
        assert (response.status_code, response.json()) == (405, {"detail": "Method Not Allowed"})
        response = client.post(
            "/runs", content=b'{"dataset": "ring8", "name": "' + b"x" * 1_100_000 + b'"}', headers=_JSON
        )
        assert (response.status_code, response.json()) == (
            413,
            {"detail": "Request body too large: the limit is 1000000 bytes"},
        )
        response = client.post("/runs", content=b'{"dataset": ', headers=_JSON)  # not JSON: still the list
        assert [(e["type"], e["loc"][0]) for e in _errors(response)] == [("json_invalid", "body")]
