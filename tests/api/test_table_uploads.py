"""Tables through the real API: a CSV (or Parquet) upload becomes a `tbl_` dataset with its columns described; bad
tables are refused naming the problem and leave nothing behind; PATCH overrides column types through core's
inference; a tiny ctgan run on an uploaded CSV trains on the real worker, resumes through the API, and its
generations give rows as CSV or Parquet, honouring their conditions, the same rows for the same seed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ganforge.client import Ganforge
from ganforge.services import start_redis, stop
from tests.conftest import Service, free_port
from tests.utils.datasets import dataset_rows, tree
from tests.utils.runs import post_and_finish, wait_for_job, wait_for_status

TINY = {
    "model": {"width": 16, "z_dim": 8, "pack": 2},
    "train": {"steps": 4, "batch_size": 20},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 4, "eval_samples": 64},
}


def table_csv(rows: int = 60) -> bytes:
    """A mixed table: continuous, categorical, discrete and boolean columns, one missing cell."""
    lines = ["age,colour,count,member"]
    for i in range(rows):
        age = "" if i == 7 else f"{20 + (i * 7) % 45}.{i % 10}"
        lines.append(f"{age},{('red', 'green', 'blue')[i % 3]},{i % 5},{'yes' if i % 4 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def api_only(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone, on a Redis server of its own: the uploads and PATCH checks need no worker, and a queued run
    must stay queued (the session's Redis db has other services' workers on it, which would take the run)."""
    workdir = tmp_path_factory.mktemp("svc-tables")
    port = free_port()
    redis = start_redis(directory=workdir / "redis", port=port, appendonly=False)
    service = Service(
        database_url=postgres_url, broker_url=f"redis://127.0.0.1:{port}/0", workdir=workdir, extra_env={}
    )
    try:
        service.start_api()
        yield service
    finally:
        service.stop()
        stop(redis)


@pytest.fixture
def client(api_only: Service) -> Iterator[httpx.Client]:
    with api_only.client(api_only.new_user_token("tables")) as c:
        yield c


def _upload(client: httpx.Client, data: bytes, filename: str = "people.csv", **fields: str) -> httpx.Response:
    return client.post("/datasets", files={"file": (filename, data, "text/csv")}, data=fields)


def _parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    n = 30
    table = pa.table({"x": [float(i % 7) + 0.5 for i in range(n)], "y": [("a", "b")[i % 2] for i in range(n)]})
    pq.write_table(table, out)
    return out.getvalue()


def test_a_csv_upload_is_a_table_dataset_with_its_columns(client: httpx.Client) -> None:
    response = _upload(client, table_csv(), name="people", target="member")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["id"].startswith("tbl_") and response.headers["Location"] == f"/datasets/{dataset['id']}"
    assert (dataset["kind"], dataset["num_rows"], dataset["target"], dataset["existing"]) == (
        "table",
        60,
        "member",
        False,
    )
    columns = {c["name"]: c for c in dataset["columns"]}
    kinds = {name: c["kind"] for name, c in columns.items()}
    assert kinds == {"age": "continuous", "colour": "categorical", "count": "discrete", "member": "boolean"}
    assert columns["age"]["missing_share"] == pytest.approx(1 / 60, abs=1e-6)
    assert columns["count"]["stats"]["min"] == 0.0 and columns["count"]["stats"]["max"] == 4.0
    assert client.get(f"/datasets/{dataset['id']}").json()["columns"] == dataset["columns"]
    preview = client.get(f"/datasets/{dataset['id']}/preview.png")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    rows = client.get(f"/datasets/{dataset['id']}/rows", params={"limit": 8}).json()
    assert rows["columns"] == ["age", "colour", "count", "member"] and rows["num_rows"] == 60
    assert rows["rows"][0] == ["20.0", "red", "0", "no"] and rows["rows"][7][0] is None and len(rows["rows"]) == 8
    again = _upload(client, table_csv(), name="again")
    assert (again.status_code, again.json()["id"], again.json()["existing"]) == (200, dataset["id"], True)

    parquet = client.post("/datasets", files={"file": ("t.parquet", _parquet(), "application/octet-stream")})
    assert parquet.status_code == 201, parquet.text
    assert {c["name"]: c["kind"] for c in parquet.json()["columns"]} == {"x": "continuous", "y": "categorical"}


def test_a_dataset_named_by_a_long_file_name_keeps_as_much_of_it_as_a_name_may_have(client: httpx.Client) -> None:
    """Without a name field the dataset takes the file's name without its suffix, cut to 200 characters (the
    longest name the database keeps: a longer one was a 500 on PostgreSQL)."""
    response = _upload(client, table_csv(rows=40), filename="t" * 600 + ".csv")
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "t" * 200


def test_builtin_tables_show_columns_and_histograms(client: httpx.Client) -> None:
    wine = client.get("/datasets/wine").json()
    assert (wine["kind"], wine["num_rows"], wine["target"]) == ("table", 178, "target")
    assert {"name": "target", "kind": "categorical"}.items() <= wine["columns"][-1].items()
    rows = client.get("/datasets/wine/rows", params={"limit": 2}).json()
    assert rows["columns"][-1] == "target" and len(rows["rows"]) == 2 and rows["num_rows"] == 178
    preview = client.get("/datasets/wine/preview.png")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")


def _bad(message: str, field: str = "file") -> list[dict[str, Any]]:
    return [{"type": "value_error", "loc": ["body", field], "msg": message}]


BAD_TABLES = [
    pytest.param(b"", "people.csv", _bad("file: the file is empty"), id="empty"),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "x.png",
        _bad("file: not a ZIP of images, a Parquet file or a CSV (it holds binary data)"),
        id="not-a-csv",
    ),
    pytest.param(
        b"a,b\n1,2\n3\n" + b"4,5\n" * 20, "people.csv", _bad("file: row 3 has 1 cells, the header 2"), id="ragged"
    ),
    pytest.param(
        b"a,b\n1," + b"x" * (10 << 20) + b"\n" + b"2,y\n" * 20,
        "people.csv",
        _bad("file: a cell is over the limit of 65536 characters"),
        id="10-MB-cell",
    ),
    pytest.param(
        b"a,b\n" + b"".join(b"%d,7\n" % i for i in range(20)),
        "people.csv",
        _bad(
            "file: column 'b' is 7 in every row; a constant column gives the generator nothing to learn: drop it "
            "(and add it back to the synthetic rows)"
        ),
        id="constant-column",
    ),
    pytest.param(
        b"a,b\n1,2\n3,4\n",
        "people.csv",
        _bad("file: the table has 2 rows; at least 12 are needed (10 to train on once 20% are held out)"),
        id="too-few-rows",
    ),
    pytest.param(b"PAR1 not really", "t.parquet", None, id="broken-parquet"),
    pytest.param(
        table_csv(),
        "people.csv",
        _bad("target: no column 'nope'; the table has age, colour, count, member", "target"),
        id="unknown-target",
    ),
]


@pytest.mark.parametrize(("data", "filename", "detail"), BAD_TABLES)
def test_bad_tables_are_refused_naming_the_problem_and_leave_nothing(
    api_only: Service, client: httpx.Client, postgres_url: str, data: bytes, filename: str, detail: Any
) -> None:
    before, rows = tree(api_only.data_dir), dataset_rows(postgres_url)
    fields = {"target": "nope"} if detail and detail[0]["loc"] == ["body", "target"] else {}
    response = _upload(client, data, filename, **fields)
    assert response.status_code == 422, response.text
    if detail is None:
        assert response.json()["detail"][0]["msg"].startswith("file: not a readable Parquet file")
    else:
        assert response.json()["detail"] == detail
    assert tree(api_only.data_dir) == before
    assert dataset_rows(postgres_url) == rows


def test_patch_overrides_column_types_through_inference(client: httpx.Client) -> None:
    dataset_id = _upload(client, table_csv(40)).json()["id"]
    response = client.patch(f"/datasets/{dataset_id}", json={"columns": {"count": "categorical"}, "target": "colour"})
    assert response.status_code == 200, response.text
    count = next(c for c in response.json()["columns"] if c["name"] == "count")
    assert (count["kind"], count["inferred"], response.json()["target"]) == ("categorical", "discrete", "colour")
    assert client.get(f"/datasets/{dataset_id}").json()["columns"] == response.json()["columns"]

    refused = [
        ({"columns": {"colour": "continuous"}}, "columns.colour", "not every value is a number"),
        ({"columns": {"nope": "categorical"}}, "columns.nope", "no such column"),
        ({"target": "nope"}, "target", "no column 'nope'"),
    ]
    for body, field, words in refused:
        response = client.patch(f"/datasets/{dataset_id}", json=body)
        assert response.status_code == 422, response.text
        error = response.json()["detail"][0]
        assert error["loc"] == ["body", *field.split(".")] and words in error["msg"], error

    back = client.patch(f"/datasets/{dataset_id}", json={"columns": {"count": None}, "target": ""}).json()
    assert next(c for c in back["columns"] if c["name"] == "count")["kind"] == "discrete" and back["target"] is None
    assert client.patch("/datasets/wine", json={"target": "target"}).status_code == 409


def test_runs_on_an_uploaded_table_pick_ctgan_and_refuse_image_architectures(client: httpx.Client) -> None:
    dataset_id = _upload(client, table_csv(30)).json()["id"]
    response = client.post("/runs", json={"dataset": dataset_id, "model": {"arch": "dcgan"}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].endswith(
        f"model.arch: {dataset_id} is a table; only the ctgan architecture fits it, not dcgan"
    )
    response = client.post("/runs", json={"dataset": "digits", "model": {"arch": "ctgan"}})
    assert response.status_code == 422 and "ctgan synthesizes table rows" in response.json()["detail"][0]["msg"]

    # Queued with many steps (no worker here), the run keeps PATCH away until it is canceled.
    client.patch(f"/datasets/{dataset_id}", json={"target": "member"})
    response = client.post("/runs", json={"dataset": dataset_id, "train": {"steps": 100000}})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["config"]["model"]["arch"] == "ctgan" and run["config"]["model"]["pack"] == 10
    assert run["config"]["table"] == {"columns": {}, "target": "member", "rows": 30}
    conflict = client.patch(f"/datasets/{dataset_id}", json={"target": None})
    assert conflict.status_code == 409 and conflict.json()["detail"].startswith(f"Dataset is used by run {run['id']}")
    assert client.post(f"/runs/{run['id']}/cancel").status_code == 202
    wait_for_status(client, run["id"], ("canceled",), timeout=60)
    assert client.patch(f"/datasets/{dataset_id}", json={"target": None}).status_code == 200

    # Without train.steps, the table's rows set them (24 training rows: the smallest batch, 200, and the 750-step
    # floor), shown resolved, and decide model.gumbel_input (off on so small a table).
    response = client.post("/runs", json={"dataset": dataset_id})
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["config"]["train"]["steps"], run["config"]["train"]["epochs"]) == (750, None)
    assert run["config"]["model"]["gumbel_input"] is False
    assert run["config"]["train"]["batch_size"] == 200 and run["config"]["table"]["rows"] == 30
    assert run["config"]["schedule"]["eval_every"] == 500
    assert client.get(f"/runs/{run['id']}").json()["config"]["train"]["steps"] == 750
    assert client.post(f"/runs/{run['id']}/cancel").status_code == 202
    wait_for_status(client, run["id"], ("canceled",), timeout=60)


def _generate(client: httpx.Client, run_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    response = client.post(f"/runs/{run_id}/generations", json=body)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, f"/generations/{response.json()['id']}")
    assert job["status"] == "succeeded", job["error"]
    return job, client.get(job["result_url"]).content


def test_a_ctgan_run_on_an_uploaded_csv_trains_and_generates_rows(postgres_service: Service) -> None:
    token = postgres_service.new_user_token("table-run")
    with postgres_service.client(token) as client:
        with Ganforge(postgres_service.url, token) as gf:  # the Python client uploads bytes as a table too
            dataset_id = gf.datasets.upload(table_csv(), name="people").id
        client.patch(f"/datasets/{dataset_id}", json={"target": "member"})
        client.patch(f"/datasets/{dataset_id}", json={"columns": {"count": "categorical"}})
        _, run = post_and_finish(client, {"dataset": dataset_id, **TINY})
        assert "quality_score" in run["latest_metrics"] and "ml_efficacy" in run["latest_metrics"]
        # Resumed through the API, the run reads its uploaded table again and trains on from its last checkpoint.
        assert client.post(f"/runs/{run['id']}/resume", json={"steps": 2}).status_code == 202
        resumed = wait_for_status(client, run["id"], ("succeeded", "failed"))
        assert resumed["status"] == "succeeded", resumed["error"]
        assert [c["step"] for c in client.get(f"/runs/{run['id']}/checkpoints").json()["items"]][-1] == 6

        body = {"n": 12, "seed": 5, "conditions": {"colour": "blue", "count": "3"}}
        job, data = _generate(client, run["id"], body)
        lines = data.decode().splitlines()
        assert lines[0] == "age,colour,count,member" and 0 < job["made"] == len(lines) - 1 <= 12
        assert job["request"]["format"] == "csv" and job["media_type"] == "text/csv"
        assert all(line.split(",")[1:3] == ["blue", "3"] for line in lines[1:])
        assert _generate(client, run["id"], body)[1] == data  # the same seed, the same rows
        assert _generate(client, run["id"], {**body, "seed": 6})[1] != data

        job, data = _generate(client, run["id"], {"n": 20, "format": "parquet"})
        assert data.startswith(b"PAR1") and job["made"] == 20
        with Ganforge(postgres_service.url, token) as gf:
            handle = gf.generations.create(run["id"], n=6, seed=1, conditions={"member": "no"})
            rows = handle.result(timeout=120).decode().splitlines()[1:]
        assert handle.generation.made == len(rows) > 0 and all(r.endswith(",no") for r in rows)

        for body, field, words in (
            ({"format": "png"}, "format", "this run makes table rows, written as csv or parquet, not png"),
            ({"labels": [0]}, "labels", "a table run takes conditions instead"),
            ({"conditions": {"age": 30}}, "conditions.age", "a continuous column cannot be fixed to one value"),
            ({"conditions": {"colour": "pink"}}, "conditions.colour", "'pink' is not one of its categories"),
            ({"conditions": {"nope": 1}}, "conditions.nope", "no such column"),
        ):
            response = client.post(f"/runs/{run['id']}/generations", json=body)
            assert response.status_code == 422, response.text
            error = response.json()["detail"][0]
            assert error["loc"] == ["body", *field.split(".")] and words in error["msg"], error
