"""Rate limits per token, counted in the broker's Redis across API processes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Service


@pytest.fixture(scope="module")
def limited(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone with a low limit."""
    workdir = tmp_path_factory.mktemp("rate-limit")
    service = Service(
        database_url=f"sqlite:///{workdir / 'ganforge.db'}",
        broker_url=redis_url,
        workdir=workdir,
        extra_env={"GANFORGE_RATE_LIMIT": "8/minute"},
    )
    service.start_api()
    yield service
    service.stop()


def test_a_token_over_its_limit_gets_429_with_retry_after_and_others_go_on(limited: Service) -> None:
    with limited.client() as admin:
        tokens = [admin.post("/tokens", json={"name": f"u{i}"}).json()["token"] for i in range(2)]
    with limited.client(tokens[0]) as client:
        codes = [client.get("/runs").status_code for _ in range(8)]
        refused = client.get("/runs")
    assert codes == [200] * 8
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Rate limit exceeded: at most 8 per 1 minute")
    # Another token has a count of its own; probes and metrics are never counted.
    with limited.client(tokens[1]) as other:
        assert other.get("/runs").status_code == 200
    assert all(httpx.get(f"{limited.url}/healthz").status_code == 200 for _ in range(10))
    assert 'status="429"' in httpx.get(f"{limited.url}/metrics").text


def test_the_count_is_shared_by_api_processes(
    limited: Service, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second API process on the same Redis sees the first one's count: the limit holds for --workers N."""
    with limited.client() as admin:
        token = admin.post("/tokens", json={"name": "shared"}).json()["token"]
    with limited.client(token) as client:
        assert [client.get("/me").status_code for _ in range(8)] == [200] * 8
    second = Service(
        database_url=limited.env["GANFORGE_DATABASE_URL"],
        broker_url=redis_url,
        workdir=tmp_path_factory.mktemp("rate-limit-2"),
        extra_env={"GANFORGE_RATE_LIMIT": "8/minute"},
    )
    second.start_api()
    try:
        with second.client(token) as client:
            assert client.get("/me").status_code == 429
    finally:
        second.stop()
