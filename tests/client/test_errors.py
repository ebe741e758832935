"""How the client turns a server's `{"detail": ...}` into (field, message) pairs and one printable line."""

from __future__ import annotations

from typing import Any

import pytest

from ganforge._exceptions import APIError, ValidationError, detail_text, field_errors


@pytest.mark.parametrize(
    ("detail", "pairs"),
    [
        pytest.param(
            [{"loc": ["body", "train", "steps"], "msg": "Input should be greater than or equal to 1", "type": "x"}],
            [("train.steps", "Input should be greater than or equal to 1")],
            id="fastapi-field",
        ),
        pytest.param(
            [{"loc": ["body", "model", "width"], "msg": "model.width: must be a multiple of 8", "type": "value_error"}],
            [("model.width", "must be a multiple of 8")],
            id="message-repeats-its-field",
        ),
        pytest.param(
            [{"loc": ["body", "model", "width"], "msg": "width: must be a multiple of 8", "type": "value_error"}],
            [("model.width", "must be a multiple of 8")],
            id="message-repeats-the-tail-of-its-field",
        ),
        pytest.param(
            [{"loc": ["body"], "msg": "Value error, model.arch: use mlp", "type": "value_error"}],
            [("model.arch", "use mlp")],
            id="whole-body-check-names-its-field",
        ),
        pytest.param(
            [{"loc": ["body", "model"], "msg": "Value error, model.arch: use mlp", "type": "value_error"}],
            [("model.arch", "use mlp")],
            id="message-names-a-more-precise-field",
        ),
        pytest.param(
            [{"loc": ["body", "train"], "msg": "Value error, model.arch: use mlp", "type": "value_error"}],
            [("train", "model.arch: use mlp")],
            id="message-about-another-field-is-kept-whole",
        ),
        pytest.param(
            [{"loc": ["query", "cursor"], "msg": "not a cursor this API returned", "type": "value_error"}],
            [("cursor", "not a cursor this API returned")],
            id="query-parameter",
        ),
        pytest.param(
            [{"loc": ["body", "labels", 2], "msg": "Input should be a valid integer", "type": "int_parsing"}],
            [("labels[2]", "Input should be a valid integer")],
            id="list-index",
        ),
        pytest.param(
            [{"loc": ["body"], "msg": "not a ZIP archive", "type": "value_error"}],
            [("", "not a ZIP archive")],
            id="no-field",
        ),
        pytest.param(
            [{"loc": ["body", "dataset"], "msg": "Field required", "type": "missing"}, "odd item"],
            [("dataset", "Field required"), ("", "odd item")],
            id="several-and-a-non-dict",
        ),
        pytest.param("steps: say how many more to train", [("steps", "say how many more to train")], id="string"),
        pytest.param(
            "Run has no checkpoint yet: it writes one every 100 steps",
            [("", "Run has no checkpoint yet: it writes one every 100 steps")],
            id="string-with-a-sentence-before-the-colon",
        ),
        pytest.param({"quota": "runs"}, [("", "{'quota': 'runs'}")], id="other-json"),
    ],
)
def test_field_errors(detail: Any, pairs: list[tuple[str, str]]) -> None:
    assert field_errors(detail) == pairs


def test_detail_text_joins_the_pairs() -> None:
    detail = [
        {"loc": ["body", "model", "width"], "msg": "model.width: must be a multiple of 8", "type": "value_error"},
        {"loc": ["body"], "msg": "not a ZIP archive", "type": "value_error"},
    ]
    assert detail_text(detail) == "model.width: must be a multiple of 8; not a ZIP archive"
    assert detail_text("Run not found") == "Run not found"


def test_exceptions_print_the_status_and_the_fields() -> None:
    detail = [{"loc": ["body", "model", "width"], "msg": "model.width: must be a multiple of 8", "type": "x"}]
    error = ValidationError(422, detail)
    assert str(error) == "422: model.width: must be a multiple of 8"
    assert error.errors == [("model.width", "must be a multiple of 8")]
    assert (error.status, error.detail) == (422, detail)
    assert str(APIError(403, "Admin token required")) == "403: Admin token required"
