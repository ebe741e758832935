"""Schemathesis against /openapi.json of a running API, signed in as a user: no request, however odd, gets a
5xx, and every response has a documented content type and matches its schema.

The API here has no workers (a fuzzed run config may ask for days of training): what it queues stays queued.
Examples per operation are bounded (and derandomized, so a failure reproduces) to keep the whole fuzz well
under a minute; GANFORGE_FUZZ_EXAMPLES=40 explores further by hand.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.conftest import Service, other_postgres_database
from tests.faults.conftest import OwnRedis

MAX_EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "6"))


def _import_schemathesis() -> None:
    """Import every schemathesis module now, at collection, not lazily from deep inside a generated test: pytest
    rewrites a plugin's modules as it imports them, and CPython 3.11's AST parser fails on a stack that deep
    ("AST constructor recursion depth mismatch")."""
    for module in pkgutil.walk_packages(schemathesis.__path__, "schemathesis."):
        with contextlib.suppress(Exception):  # a module for an optional dependency this project lacks
            importlib.import_module(module.name)


_import_schemathesis()


@pytest.fixture(scope="module")
def fuzz_service(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone, on a PostgreSQL database and a Redis of its own. PostgreSQL, the production database, is
    the stricter of the two: a string past its column's length, a NUL character or a number past 32 bits is an
    error there where SQLite keeps it."""
    workdir = tmp_path_factory.mktemp("fuzz")
    database_url, drop = other_postgres_database(postgres_url)
    redis = OwnRedis(workdir / "redis")
    service = Service(database_url=database_url, broker_url=redis.url, workdir=workdir, extra_env={})
    try:
        service.start_api()
        yield service
    finally:
        service.stop()
        redis.stop()
        drop()


@pytest.fixture(scope="module")
def fuzz_token(fuzz_service: Service) -> str:
    return fuzz_service.new_user_token("fuzzer")


def _fuzz(operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, token: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
            timeout=30,
        )

    fuzz()


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_5xx_and_responses_match_the_schema(
    fuzz_service: Service, fuzz_token: str, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_service.url}/openapi.json")
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        try:
            _fuzz(operation, mode, fuzz_token)
        except Unsatisfiable:  # negative mode on an operation that takes nothing: there is nothing to break
            continue
        except (Exception, BaseExceptionGroup) as error:  # schemathesis raises a FailureGroup
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)
