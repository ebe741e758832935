"""The dashboard's tokens page in a real browser: your usage, the tokens you may see, creating (admins) and
revoking one."""

from __future__ import annotations

import pytest

from tests.browser.test_dashboard import Visit, browser, svc, visit  # noqa: F401 - the fixtures
from tests.conftest import Service

playwright_sync = pytest.importorskip("playwright.sync_api")


def test_admin_creates_and_revokes_a_token(visit: Visit, svc: Service) -> None:  # noqa: F811
    page = visit.page
    visit.sign_in(svc.admin_token)
    page.click("nav a[data-nav=tokens]")
    page.wait_for_selector("#token-form")
    playwright_sync.expect(page.locator("#me")).to_contain_text("Datasets:")
    page.fill("#tok-name", "from-the-browser")
    page.fill("#tok-days", "3")
    page.click("#token-form button[type=submit]")
    secret = page.locator("#new-token").inner_text(timeout=30_000)
    assert secret.startswith("gf_")
    row = page.locator("#tokens-table tr", has=page.locator("td", has_text="from-the-browser"))
    playwright_sync.expect(row).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Revoke").click()
    playwright_sync.expect(row.locator("button")).to_have_count(0)  # revoked: listed, no button
    with svc.client(secret) as client:
        assert client.get("/me").json() == {"detail": "Token revoked"}
    visit.shot("tokens")


def test_a_user_sees_only_their_own_token(visit: Visit, svc: Service) -> None:  # noqa: F811
    page = visit.page
    visit.sign_in(svc.new_user_token("browser-user"))
    page.click("nav a[data-nav=tokens]")
    page.wait_for_selector("#tokens-table tbody tr")
    assert page.locator("#tokens-table tbody tr").count() == 1
    playwright_sync.expect(page.locator("#tokens-table tbody")).to_contain_text("browser-user")
    playwright_sync.expect(page.locator("#quotas")).to_contain_text("queued runs 0 of 10")  # GET /me's quotas
    assert page.locator("#token-form").count() == 0
