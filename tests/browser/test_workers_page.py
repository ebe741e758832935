"""The dashboard's workers page in a real browser: an admin sees the service's workers, live, with their queues and
devices; another token is told that only admins see them."""

from __future__ import annotations

import pytest

from tests.browser.test_dashboard import Visit, browser, svc, visit  # noqa: F401 - the fixtures
from tests.conftest import Service

playwright_sync = pytest.importorskip("playwright.sync_api")


def test_an_admin_sees_the_live_workers(visit: Visit, svc: Service) -> None:  # noqa: F811
    page = visit.page
    visit.sign_in(svc.admin_token)
    page.click("nav a[data-nav=workers]")
    for queue in ("train", "generate"):  # the service's two workers (tests/conftest.py: start_service)
        # A worker that an earlier test killed (and replaced) stays listed as lost: look for the live one.
        rows = page.locator("#workers-table tbody tr", has=page.locator("td", has_text=f"{queue}-"))
        live = rows.filter(has=page.locator("td", has_text="live"))
        playwright_sync.expect(live.first).to_contain_text(queue, timeout=30_000)
        playwright_sync.expect(live.first).to_contain_text("CPU")
    visit.shot("workers")


def test_a_user_is_told_only_admins_see_workers(visit: Visit, svc: Service) -> None:  # noqa: F811
    page = visit.page
    visit.sign_in(svc.new_user_token("browser-user"))
    page.click("nav a[data-nav=workers]")
    playwright_sync.expect(page.locator("main")).to_contain_text("Only admins see the workers.")
    assert page.locator("#workers-table tbody tr").count() == 0
