"""Tables: column types and their overrides, summaries, CSV in and out, and the transformer's round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.tabular.columns import infer_columns, summarize, typed
from core.tabular.io import builtin_table, read_csv, write_csv
from core.tabular.transformer import TableTransformer

CSV = b"""age,income,city,member,joined,score
34,52000.50,Paris,yes,2021-03-04,0.1
41,,Lyon,no,2020-11-30,0.25
,61000.25,Paris,yes,,0.5
29,48000.00,,no,2019-01-15,NA
52,75500.75,Nice,yes,2022-07-01,1.0
"""


def _mixed_table(n: int = 400, seed: int = 0) -> bytes:
    """A mixed-type CSV with two-mode and zero-inflated numbers, categories, booleans, dates and missing cells."""
    rng = np.random.default_rng(seed)
    lines = ["x,zeros,count,colour,flag,day"]
    for i in range(n):
        x = rng.normal(-5, 1) if rng.random() < 0.5 else rng.normal(10, 2)
        zeros = 0.0 if rng.random() < 0.6 else rng.exponential(100)
        colour = "" if i % 17 == 0 else ["red", "green", "blue"][int(rng.integers(3))]
        day = f"2024-01-{1 + int(rng.integers(28)):02d}" if i % 13 else ""
        xs = "" if i % 11 == 0 else f"{x:.2f}"
        flag = "true" if rng.random() < 0.3 else "false"
        lines.append(f"{xs},{zeros:.2f},{int(rng.integers(0, 6))},{colour},{flag},{day}")
    return ("\n".join(lines) + "\n").encode()


def test_column_types_are_inferred_with_missing_values_as_their_own_state():
    table = read_csv(CSV)
    kinds = {c.name: c.kind for c in infer_columns(table)}
    assert kinds == {
        "age": "discrete",
        "income": "continuous",
        "city": "categorical",
        "member": "boolean",
        "joined": "datetime",
        "score": "continuous",
    }
    columns = infer_columns(table)
    t = typed(table, columns)
    assert np.isnan(t["age"][2]) and np.isnan(t["income"][1]) and t["city"][3] is None
    assert [c.decimals for c in columns if c.name in ("income", "score")] == [2, 2]


def test_overrides_change_a_type_and_refuse_what_the_values_do_not_allow():
    table = read_csv(CSV)
    kinds = {c.name: c.kind for c in infer_columns(table, {"age": "categorical", "score": "continuous"})}
    assert kinds["age"] == "categorical"
    with pytest.raises(ValueError, match=r"columns\.city: not every value is a number"):
        infer_columns(table, {"city": "continuous"})
    with pytest.raises(ValueError, match=r"columns\.income: some values have decimals"):
        infer_columns(table, {"income": "discrete"})
    with pytest.raises(ValueError, match=r"columns\.nope: no such column"):
        infer_columns(table, {"nope": "categorical"})
    with pytest.raises(ValueError, match=r"columns\.city: 3 distinct values"):
        infer_columns(table, {"city": "boolean"})


def test_summaries_count_missing_values_and_describe_each_kind():
    table = read_csv(CSV)
    columns = infer_columns(table)
    t = typed(table, columns)
    stats = {c.name: summarize(t[c.name], c) for c in columns}
    assert stats["income"]["missing"] == 1 and stats["income"]["min"] == 48000.0 and stats["income"]["max"] == 75500.75
    assert stats["city"]["top"][0] == {"value": "Paris", "count": 2} and stats["city"]["missing"] == 1
    assert stats["joined"]["min"] == "2019-01-15" and stats["joined"]["missing"] == 1
    json.dumps(stats)


def test_csv_with_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="file: the CSV is empty"):
        read_csv(b"")
    with pytest.raises(ValueError, match="file: row 3 has 1 cells, the header 2"):
        read_csv(b"a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="file: not UTF-8"):
        read_csv(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match="file: the header row needs a distinct"):
        read_csv(b"a,a\n1,2\n")


def test_the_transformer_round_trips_rows_categories_and_missing_values():
    table = read_csv(_mixed_table())
    columns = infer_columns(table)
    assert [c.kind for c in columns] == ["continuous", "continuous", "discrete", "categorical", "boolean", "datetime"]
    real = typed(table, columns)
    tf = TableTransformer.fit(real, columns, seed=0)
    # The state is plain JSON, and a transformer rebuilt from it encodes the same matrix.
    state = json.loads(json.dumps(tf.state()))
    tf2 = TableTransformer.from_state(state)
    encoded = tf.encode(real, seed=1)
    assert np.array_equal(encoded, tf2.encode(real, seed=1))
    assert encoded.shape == (400, tf.width) and np.abs(encoded).max() <= 1.0
    assert len(tf.codes[0]["means"]) >= 2  # x has two modes
    back = tf2.decode(encoded)
    assert write_csv(back, columns) == write_csv(real, columns)


def test_the_builtin_tables_have_their_class_as_a_categorical_column():
    builtins = [("breast-cancer", 569, {"malignant", "benign"}), ("wine", 178, {"class_0", "class_1", "class_2"})]
    for name, rows, classes in builtins:
        table = builtin_table(name)
        columns = infer_columns(table)
        assert len(table["target"]) == rows and set(table["target"]) == classes
        assert columns[-1].kind == "categorical" and {c.kind for c in columns[:-1]} <= {"continuous", "discrete"}


def test_the_mixed_table_is_made_alike_from_its_seed_with_the_types_it_promises():
    table, again = builtin_table("mixed"), builtin_table("mixed")
    assert all(np.array_equal(table[k], again[k]) for k in table) and len(table["target"]) == 5000
    kinds = {c.name: c.kind for c in infer_columns(table)}
    assert kinds == {
        "age": "discrete",
        "region": "categorical",
        "education": "categorical",
        "employment": "categorical",
        "hours_per_week": "discrete",
        "income": "continuous",
        "capital_gain": "continuous",
        "owns_home": "boolean",
        "target": "categorical",
    }
    assert 0.75 < (table["capital_gain"] == 0).mean() < 0.9 and set(table["target"]) == {"churned", "stayed"}


def test_the_credit_table_is_made_alike_from_its_seed_with_its_zero_inflated_balance_and_rare_default():
    table, again = builtin_table("credit"), builtin_table("credit")
    assert all(np.array_equal(table[k], again[k]) for k in table) and len(table["target"]) == 5000
    kinds = {c.name: c.kind for c in infer_columns(table)}
    assert kinds == {
        "age": "discrete",
        "region": "categorical",
        "employment": "categorical",
        "income": "continuous",
        "card": "categorical",
        "limit": "discrete",
        "balance": "continuous",
        "late_payments": "discrete",
        "target": "categorical",
    }
    assert 0.35 < (table["balance"] == 0).mean() < 0.55 and set(table["target"]) == {"default", "paid"}
    assert 0.05 < (table["target"] == "default").mean() < 0.15
    assert (table["balance"] <= table["limit"]).all() and (table["limit"] % 500 == 0).all()
    # Defaults come from the revolvers: those who carry a balance default far more often than those who pay in full.
    revolving = table["balance"] > 0
    assert (table["target"][revolving] == "default").mean() > 2 * (table["target"][~revolving] == "default").mean()


def test_constant_and_empty_columns_round_trip():
    """A column with one value, and one whose every cell is missing, encode and decode like any other."""
    table = read_csv(b"k,n,e,c\n" + b"".join(f"7,{i},,same\n".encode() for i in range(30)))
    columns = infer_columns(table)
    assert [c.kind for c in columns] == ["discrete", "discrete", "categorical", "categorical"]
    real = typed(table, columns)
    tf = TableTransformer.fit(real, columns, seed=0)
    assert write_csv(tf.decode(tf.encode(real, seed=0)), columns) == write_csv(real, columns)
    assert summarize(real["k"], columns[0])["distinct"] == 1 and summarize(real["e"], columns[2])["missing"] == 30


def test_parquet_round_trips_a_typed_table_and_refuses_what_is_not_parquet():
    from core.tabular.io import read_parquet, write_parquet

    table = read_csv(_mixed_table(50))
    columns = infer_columns(table)
    real = typed(table, columns)
    data = write_parquet(real, columns)
    back = read_parquet(data)
    assert [c.kind for c in infer_columns(back)] == [c.kind for c in columns]
    assert write_csv(typed(back, columns), columns) == write_csv(real, columns)
    with pytest.raises(ValueError, match="file: not a readable Parquet file"):
        read_parquet(b"a,b\n1,2\n")


@pytest.mark.parametrize(
    "names, message",
    [
        (["a", ""], "file: the Parquet file needs a distinct, non-empty name for every column"),
        (["a\x00b", "c"], "file: the Parquet file names a column with a NUL character"),
    ],
)
def test_a_parquet_file_needs_names_as_a_csv_header_does(names: list[str], message: str) -> None:
    """An empty name would have made a column no request can name; a NUL one that PostgreSQL cannot compare."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.tabular.io import read_parquet

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array(["x", "y"])], names=names), buffer)
    with pytest.raises(ValueError, match=message):
        read_parquet(buffer.getvalue())
