"""The read path under concurrent clients: no request waits forever for a database connection."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from api.main import create_app
from api.routing import ReleasingRoute
from store.settings import Settings
from tests.conftest import Service


def test_every_route_gives_its_connection_back_in_its_own_thread(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ganforge.db'}", data_dir=tmp_path / "data")
    app = create_app(settings)
    # Included routers are kept whole, each with the routes it was built with.
    routers = [getattr(r, "original_router", None) for r in app.routes]
    routes = [r for router in routers if router is not None for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 40
    assert [r.path for r in routes if not isinstance(r, ReleasingRoute) and r.include_in_schema] == []


@pytest.fixture(scope="module")
def small_pool(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone (no workers: the runs stay queued) with two database connections and so two threads."""
    workdir = tmp_path_factory.mktemp("small-pool")
    service = Service(
        database_url=f"sqlite:///{workdir / 'ganforge.db'}",
        broker_url=redis_url,
        workdir=workdir,
        extra_env={"GANFORGE_DB_POOL_SIZE": "2", "GANFORGE_DB_MAX_OVERFLOW": "0"},
    )
    service.start_api()
    yield service
    service.stop()


def test_many_clients_on_a_small_pool_all_get_answers(small_pool: Service) -> None:
    """64 clients at once on routes that read without committing (a page of runs, a run's generations, the
    caller's usage): a request that held its connection while it waited for a thread, with every thread waiting
    for a connection, used to stall the API until the pool's 30 s timeout."""
    token = small_pool.new_user_token("reader")
    with small_pool.client(token) as client:
        run_id = client.post("/runs", json={"dataset": "ring8"}).raise_for_status().json()["id"]
    paths = ["/runs?limit=5", f"/runs/{run_id}/generations", "/me", f"/runs/{run_id}", "/datasets"] * 40

    def get(path: str) -> int:
        with httpx.Client(base_url=small_pool.url, headers={"Authorization": f"Bearer {token}"}) as c:
            return c.get(path, timeout=20).status_code

    with ThreadPoolExecutor(64) as pool:
        codes = list(pool.map(get, paths))
    assert codes == [200] * len(paths)
