"""Tables in and out: CSV text (the csv module, every cell a string), Parquet (pyarrow), and the built-in tables.

Built-ins, from what scikit-learn ships (nothing is downloaded): `breast-cancer` (569 rows, 30 continuous
measurements and the diagnosis, malignant or benign) and `wine` (178 rows, 13 continuous measurements and the
cultivar, class_0 to class_2). Their class is a categorical column named `target`.

`mixed` is made here, from a fixed seed, with a known structure (`mixed_table`): 5,000 rows of mixed types, as a
census or customer table has them: categoricals, integers, a skewed continuous column, a zero-inflated one (about
85 % zeros), a boolean, and a binary `target` that depends on several of them through a logistic model.

`credit` is made the same way (`credit_table`): 5,000 credit-card accounts whose rare `target` (about 10 % default)
depends on how columns combine (the balance over the limit, a zero-inflated balance, the card and the employment),
the joint structure a generator must learn for its rows to train a classifier.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from core.tabular.columns import Column, Table, format_value

BUILTIN_TABLES = ("breast-cancer", "wine", "mixed", "credit")
TARGET = "target"  # the built-ins' class column


def read_csv(data: bytes) -> Table:
    """A CSV (UTF-8, a header row, comma-separated) as a table of strings; a ValueError says what is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"file: not UTF-8 text (byte {exc.start})") from exc
    rows = list(csv.reader(io.StringIO(text, newline="")))
    rows = [row for row in rows if row]  # blank lines
    if not rows:
        raise ValueError("file: the CSV is empty")
    header = [name.strip() for name in rows[0]]
    check_column_names(header, "the header row")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"file: row {line} has {len(row)} cells, the header {len(header)}")
    if len(rows) < 2:
        raise ValueError("file: the CSV has a header but no rows")
    return {name: np.array([row[j] for row in rows[1:]], dtype=object) for j, name in enumerate(header)}


def check_column_names(names: list[str], where: str) -> None:
    """A ValueError unless every column has a distinct, non-empty name without a NUL character (which no name
    needs and PostgreSQL, where a table's columns are listed, cannot compare). `where` says where the names are."""
    if len(set(names)) != len(names) or any(not name for name in names):
        raise ValueError(f"file: {where} needs a distinct, non-empty name for every column")
    if any("\x00" in name for name in names):
        raise ValueError(f"file: {where} names a column with a NUL character")


def write_csv(table: Table, columns: list[Column]) -> bytes:
    """A typed table as CSV bytes: a header, then one line per row; missing values are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    n = len(table[columns[0].name]) if columns else 0
    cells = [[format_value(c, v) for v in table[c.name].tolist()] for c in columns]
    for i in range(n):
        writer.writerow([col[i] for col in cells])
    return out.getvalue().encode()


def read_parquet(data: bytes) -> Table:
    """A Parquet file as a table: numbers as float64 with NaN for nulls, everything else as strings with None for
    nulls (booleans as true/false, dates and times in ISO 8601); a ValueError says what is wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"file: not a readable Parquet file ({exc})") from exc
    if arrow.num_columns == 0 or arrow.num_rows == 0:
        raise ValueError("file: the Parquet file has no columns or no rows")
    check_column_names([str(name) for name in arrow.column_names], "the Parquet file")
    table: Table = {}
    for name, column in zip(arrow.column_names, arrow.columns, strict=True):
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = column.to_pylist()
            table[str(name)] = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        elif pa.types.is_boolean(kind):
            table[str(name)] = np.array([None if v is None else str(v).lower() for v in column.to_pylist()], object)
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            table[str(name)] = np.array([None if v is None else v.isoformat() for v in column.to_pylist()], object)
        else:
            table[str(name)] = np.array([None if v is None else str(v) for v in column.to_pylist()], dtype=object)
    return table


def write_parquet(table: Table, columns: list[Column]) -> bytes:
    """A typed table as Parquet bytes: continuous as float64, discrete as int64, datetimes as timestamps (dates as
    dates), categories as strings; missing values are nulls."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.tabular.columns import EPOCH

    arrays = []
    for c in columns:
        values = table[c.name].tolist()
        missing = [v is None or (isinstance(v, float) and np.isnan(v)) for v in values]
        if c.kind == "continuous":
            arrays.append(pa.array([None if m else float(v) for v, m in zip(values, missing, strict=True)]))
        elif c.kind == "discrete":
            ints = [None if m else round(float(v)) for v, m in zip(values, missing, strict=True)]
            arrays.append(pa.array(ints, pa.int64()))
        elif c.kind == "datetime":
            stamps = [
                None if m else EPOCH + dt.timedelta(seconds=round(float(v)))
                for v, m in zip(values, missing, strict=True)
            ]
            if c.date_only:
                arrays.append(pa.array([None if s is None else s.date() for s in stamps], pa.date32()))
            else:
                arrays.append(
                    pa.array([None if s is None else s.replace(tzinfo=None) for s in stamps], pa.timestamp("s"))
                )
        else:
            arrays.append(pa.array([None if m else str(v) for v, m in zip(values, missing, strict=True)], pa.string()))
    out = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays, names=[c.name for c in columns]), out)
    return bytes(out.getvalue().to_pybytes())


MIXED_ROWS = 5000
MIXED_SEED = 20190701  # the seed of the `mixed` table (every draw comes from one generator under it)


def mixed_table(n: int = MIXED_ROWS, seed: int = MIXED_SEED) -> Table:
    """A mixed-type table with a known structure, the same for the same n and seed:

    - `region` (5 categories, 30 % to 10 %), `education` (5 ordered levels, 15 % primary to 3 % doctorate),
      `employment` (private, public, self-employed, unemployed; more self-employed with more education);
    - `age`: integers from 18 to 90, 18 + a gamma(4, 6) draw;
    - `hours_per_week`: integers, 0 for the unemployed, else 40 for half the rows and N(38, 10) in [1, 80] otherwise;
    - `income`: log-normal, log income = 9.6 + 0.25 · education level + a concave age curve + 0.01 · (hours − 40)
      + N(0, 0.4), lower by 1.2 for the unemployed (2 decimals);
    - `capital_gain`: zero-inflated: non-zero with probability σ(−2.4 + 0.45 · education level + 0.02 · (age − 40)),
      then log-normal (8 + 0.3 · level, 1); 2 decimals;
    - `owns_home`: a boolean, σ(−0.5 + 0.05 · (age − 35) + 0.8 · (log income − 10.2));
    - `target`: `churned` or `stayed`, logistic in education, a non-zero capital gain, log income, age, region and
      self-employment (a logistic regression on the real rows reaches an AUC near 0.8)."""
    rng = np.random.default_rng(seed)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    regions = np.array(["north", "south", "east", "west", "central"], dtype=object)
    region = regions[rng.choice(5, n, p=[0.3, 0.25, 0.2, 0.15, 0.1])]
    levels = np.array(["primary", "secondary", "bachelor", "master", "doctorate"], dtype=object)
    level = rng.choice(5, n, p=[0.15, 0.45, 0.25, 0.12, 0.03])
    jobs = np.array(["private", "public", "self-employed", "unemployed"], dtype=object)
    job_p = np.stack([np.array([0.62, 0.18, 0.08, 0.12]) + k * np.array([-0.03, 0.02, 0.04, -0.03]) for k in level])
    job = (rng.random(n)[:, None] > np.cumsum(job_p / job_p.sum(1, keepdims=True), 1)[:, :-1]).sum(1)
    age = np.clip(18 + np.round(rng.gamma(4.0, 6.0, n)), 18, 90)
    hours = np.where(rng.random(n) < 0.5, 40.0, np.clip(np.round(rng.normal(38, 10, n)), 1, 80))
    hours = np.where(job == 3, 0.0, hours)
    a = (age - 18) / 10
    log_income = 9.6 + 0.25 * level + 0.35 * a - 0.06 * a**2 + 0.01 * (hours - 40) + rng.normal(0, 0.4, n)
    log_income = log_income - 1.2 * (job == 3)
    income = np.round(np.exp(log_income), 2)
    gains = rng.random(n) < sigmoid(-2.4 + 0.45 * level + 0.02 * (age - 40))
    capital_gain = np.where(gains, np.round(np.exp(rng.normal(8 + 0.3 * level, 1.0, n)), 2), 0.0)
    owns = rng.random(n) < sigmoid(-0.5 + 0.05 * (age - 35) + 0.8 * (log_income - 10.2))
    logit = (
        -0.6
        + 0.5 * (level - 1.5)
        + 1.0 * gains
        + 0.8 * (log_income - 10.2)
        - 0.03 * (age - 40)
        + 0.5 * (region == "east")
        - 0.4 * (region == "central")
        + 0.7 * (job == 2)
    )
    target = np.where(rng.random(n) < sigmoid(logit), "churned", "stayed").astype(object)
    return {
        "age": age.astype(np.float64),
        "region": region,
        "education": levels[level],
        "employment": jobs[job],
        "hours_per_week": hours.astype(np.float64),
        "income": income,
        "capital_gain": capital_gain,
        "owns_home": np.where(owns, "yes", "no").astype(object),
        TARGET: target,
    }


CREDIT_SEED = 20260301  # the seed of the `credit` table


def credit_table(n: int = MIXED_ROWS, seed: int = CREDIT_SEED) -> Table:
    """Credit-card accounts with a known structure, the same for the same n and seed. The story: an account's
    default depends less on any one column than on how they combine: the share of its limit a customer carries as
    debt (balance / limit), which only "revolvers" carry, weighs more on a basic card and for the self-employed.

    - `region` (4 categories, 35 % to 15 %), independent of the rest;
    - `age`: integers from 21 to 85, 21 + a gamma(3, 7) draw;
    - `employment`: student (half of those under 26), retired (80 % of those 63 and over), else self-employed
      (15 %) or salaried;
    - `income`: log-normal, log income N(10.4, 0.45) for the salaried, N(10.5, 0.7) self-employed, N(10.0, 0.4)
      retired, N(9.3, 0.4) students, + 0.01 · (age − 40) for those under 63 (2 decimals);
    - `card`: basic, gold or platinum by a latent 1.5 · (log income − 10.4) + logistic noise cut at 0.8 and 2.8;
    - `limit`: integers, income times 0.15 (basic), 0.3 (gold) or 0.5 (platinum) times a log-normal (0, 0.2) draw,
      in steps of 500, at least 500;
    - `balance`: zero-inflated: a revolver (with probability σ(0.2 − 0.8 · platinum + 0.6 · student − 0.5 · (log
      income − 10.4))) carries utilization u ~ Beta(2, 3) (Beta(3, 2) for students) of the limit, the others 0;
    - `late_payments`: integers, Poisson(0.1 + 2 · u);
    - `target`: `default` or `paid`, logistic: −4.6 + 4 · u + 1.5 · u · basic + 0.9 · self-employed revolver
      + 0.5 · student + 0.25 · late payments − 0.3 · (log income − 10.4): a rare positive class (about 10 %)."""
    rng = np.random.default_rng(seed)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    regions = np.array(["north", "south", "east", "west"], dtype=object)
    region = regions[rng.choice(4, n, p=[0.35, 0.25, 0.25, 0.15])]
    age = np.clip(21 + np.round(rng.gamma(3.0, 7.0, n)), 21, 85)
    jobs = np.array(["salaried", "self-employed", "retired", "student"], dtype=object)
    u_job = rng.random(n)
    job = np.where(rng.random(n) < 0.15, 1, 0)
    job = np.where((age < 26) & (u_job < 0.5), 3, job)
    job = np.where((age >= 63) & (u_job < 0.8), 2, job)
    mean = np.array([10.4, 10.5, 10.0, 9.3])[job] + np.where(job == 2, 0.0, 0.01 * (np.minimum(age, 62) - 40))
    log_income = mean + np.array([0.45, 0.7, 0.4, 0.4])[job] * rng.normal(0, 1, n)
    income = np.round(np.exp(log_income), 2)
    premium = 1.5 * (log_income - 10.4) + rng.logistic(0, 1, n)
    card_kind = (premium > 0.8).astype(int) + (premium > 2.8)
    cards = np.array(["basic", "gold", "platinum"], dtype=object)
    share = np.array([0.15, 0.3, 0.5])[card_kind] * np.exp(rng.normal(0, 0.2, n))
    limit = np.maximum(500.0, np.round(income * share / 500) * 500)
    revolver = rng.random(n) < sigmoid(0.2 - 0.8 * (card_kind == 2) + 0.6 * (job == 3) - 0.5 * (log_income - 10.4))
    u = np.where(revolver, np.where(job == 3, rng.beta(3, 2, n), rng.beta(2, 3, n)), 0.0)
    balance = np.round(u * limit, 2)
    late = rng.poisson(0.1 + 2 * u).astype(np.float64)
    logit = (
        -4.6
        + 4.0 * u
        + 1.5 * u * (card_kind == 0)
        + 0.9 * (job == 1) * revolver
        + 0.5 * (job == 3)
        + 0.25 * late
        - 0.3 * (log_income - 10.4)
    )
    target = np.where(rng.random(n) < sigmoid(logit), "default", "paid").astype(object)
    return {
        "age": age.astype(np.float64),
        "region": region,
        "employment": jobs[job],
        "income": income,
        "card": cards[card_kind],
        "limit": limit,
        "balance": balance,
        "late_payments": late,
        TARGET: target,
    }


def builtin_table(name: str) -> Table:
    """A built-in table: scikit-learn's features as numbers and the class, by name, as the `target` column; or
    the `mixed` and `credit` tables made by `mixed_table` and `credit_table`."""
    from sklearn.datasets import load_breast_cancer, load_wine

    if name == "mixed":
        return mixed_table()
    if name == "credit":
        return credit_table()
    loaders = {"breast-cancer": load_breast_cancer, "wine": load_wine}
    if name not in loaders:
        raise ValueError(f"dataset: {name!r} is not a built-in table; use one of {', '.join(BUILTIN_TABLES)}")
    bunch = loaders[name]()
    table: Table = {str(f): bunch.data[:, j].astype(np.float64) for j, f in enumerate(bunch.feature_names)}
    table[TARGET] = np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    return table
