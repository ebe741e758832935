"""The dashboard and /docs in a real browser: Debian's Chromium driven by Playwright, against the real service.

Every request to a host other than the service is blocked and recorded: the pages must work air-gapped.
Each test takes screenshots of the pages it visits: into docs/screenshots/ (the README's pictures) when
GANFORGE_SCREENSHOTS=1, else into pytest's temporary folder, so that a test run leaves the tree clean.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.config import RunConfig
from tests.conftest import ROOT, Service

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
LONG = 240_000  # ms: a short ring8 run queued behind other tests' runs on a shared 2-core machine


@pytest.fixture(scope="module")
def svc(postgres_service: Service) -> Service:
    return postgres_service


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed: `apt-get install -y chromium` (make test does it)")
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """A browser tab on the service that blocks and records requests to other hosts and page errors."""

    def __init__(self, browser: object, svc: Service, shots: Path) -> None:
        self.svc = svc
        self.shots = shots
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport=LAPTOP)  # type: ignore[attr-defined]
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _route(self, route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if url.startswith(self.svc.url) or url.startswith("blob:") or url.startswith("data:"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.blocked.append(url)
            route.abort()  # type: ignore[attr-defined]

    def sign_in(self, token: str) -> None:
        self.page.goto(f"{self.svc.url}/#/signin")
        self.page.fill("#token", token)
        self.page.click("#signin-form button[type=submit]")
        self.page.wait_for_selector("#runs-table")

    def shot(self, name: str, *, full_page: bool = True) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(300)  # let the last redraw land
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)


@pytest.fixture
def visit(browser: object, svc: Service, tmp_path: Path) -> Iterator[Visit]:
    shots = ROOT / "docs" / "screenshots" if os.environ.get("GANFORGE_SCREENSHOTS") else tmp_path / "screenshots"
    v = Visit(browser, svc, shots)
    yield v
    v.context.close()
    assert v.blocked == [], "the page asked another host for something"
    assert v.errors == [], "the page threw"


def _image_loaded(selector: str) -> str:
    return (
        f"() => {{ const i = document.querySelector({selector!r}); "
        "return !!i && i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'); }"
    )


def test_sign_in_launch_watch_slide_and_generate(visit: Visit, svc: Service) -> None:
    page = visit.page
    token = svc.new_user_token("browser")

    # A wrong token is refused on the sign-in page.
    page.goto(f"{svc.url}/")
    page.wait_for_selector("#signin-form")
    page.fill("#token", "wrong-token")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("text=That token was refused (401)")
    visit.shot("signin")
    visit.sign_in(token)

    # The launch form shows each 422 next to its field.
    page.click("nav a[data-nav=launch]")
    page.wait_for_selector("#launch-form")
    ring8_steps = RunConfig.model_validate({"dataset": "ring8"}).train.steps
    assert page.input_value("#f-train-steps") == str(ring8_steps)  # ring8's default is filled in
    page.fill("#f-name", "browser-ring8")
    page.fill("#f-train-steps", "0")
    page.click("#launch-submit")
    steps_error = page.locator('[data-error-for="train.steps"]')
    playwright_sync.expect(steps_error).to_have_text("Input should be greater than or equal to 1")
    page.fill("#f-train-steps", "300")
    page.select_option("#f-model-arch", "dcgan")
    page.click("#launch-submit")
    arch_error = page.locator('[data-error-for="model.arch"]')
    playwright_sync.expect(arch_error).to_have_text("ring8 is 2-D point data; only the mlp architecture fits it")
    playwright_sync.expect(steps_error).to_have_text("")
    visit.shot("launch-errors")

    # A valid form launches the run and opens its page.
    page.select_option("#f-model-arch", "mlp")
    page.fill("#f-schedule-sample_every", "100")
    page.fill("#f-schedule-checkpoint_every", "100")
    page.click("#launch-submit")
    page.wait_for_url("**/#/runs/run_*")
    run_id = page.url.rsplit("/", 1)[-1]

    # Progress reaches 100 % and the newest grid loads.
    playwright_sync.expect(page.locator("#progress-text")).to_have_text("100 %", timeout=LONG)
    playwright_sync.expect(page.locator("#view h1 .badge")).to_have_text("succeeded", timeout=30_000)
    page.wait_for_function(_image_loaded("#sample-img"))
    playwright_sync.expect(page.locator("#sample-step")).to_have_text("step 300 (3 of 3)")
    # The table refreshes on its own after the run's last event: wait for its rows as for the text above.
    playwright_sync.expect(page.locator("#checkpoints-table tbody tr")).to_have_count(3)
    with page.expect_download() as download:
        page.locator("#checkpoints-table tbody tr").last.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename.endswith("-300.safetensors")
    assert Path(download.value.path()).stat().st_size > 0
    page.hover("#loss-chart svg")
    playwright_sync.expect(page.locator("#loss-chart svg text").last).to_contain_text("step ")

    # The slider goes back to the first grid.
    page.locator("#sample-slider").fill("0")
    playwright_sync.expect(page.locator("#sample-step")).to_have_text("step 100 (1 of 3)")
    page.wait_for_selector('#sample-img[data-step="100"]')
    page.wait_for_function(_image_loaded("#sample-img"))

    # Generate a grid from the newest checkpoint.
    page.fill("#gen-n", "64")
    page.fill("#gen-seed", "1")
    page.click("#gen-submit")
    page.wait_for_function(_image_loaded("#gen-image"), timeout=LONG)
    visit.shot("run")

    # The same page at phone width: one column, nothing wider than the screen.
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    visit.shot("run-phone")

    with svc.client(token) as api:
        assert api.get(f"/runs/{run_id}").json()["name"] == "browser-ring8"


def test_cancel_a_run_from_its_page(visit: Visit, svc: Service) -> None:
    page = visit.page
    token = svc.new_user_token("browser-cancel")
    with svc.client(token) as api:
        done = api.post("/runs", json={"dataset": "ring8", "name": "short", "train": {"steps": 50}}).json()
        long = api.post("/runs", json={"dataset": "ring8", "name": "long", "train": {"steps": 1_000_000}}).json()
        extra = api.post("/runs", json={"dataset": "ring8", "name": "extra", "train": {"steps": 1_000_000}}).json()
    visit.sign_in(token)

    # The runs table's own cancel button.
    page.locator(f'tr[data-run-id="{extra["id"]}"] button', has_text="Cancel").click()
    extra_badge = page.locator(f'tr[data-run-id="{extra["id"]}"] .badge')
    playwright_sync.expect(extra_badge).to_have_text("canceled", timeout=LONG)

    # The run page's cancel button, while the run trains or waits.
    page.goto(f"{svc.url}/#/runs/{long['id']}")
    page.wait_for_selector("#cancel-btn")
    page.click("#cancel-btn")
    playwright_sync.expect(page.locator("#view h1 .badge")).to_have_text("canceled", timeout=LONG)

    # Resume it for 50 more steps: it trains them and succeeds.
    page.click("#resume-btn")
    page.fill("#resume-steps", "50")
    page.click("#resume-submit")
    playwright_sync.expect(page.locator("#view h1 .badge")).to_have_text("succeeded", timeout=LONG)

    # The runs table shows both, with live status.
    page.click("nav a[data-nav=runs]")
    row = page.locator(f'tr[data-run-id="{done["id"]}"] .badge')
    playwright_sync.expect(row).to_have_text("succeeded", timeout=LONG)
    playwright_sync.expect(page.locator(f'tr[data-run-id="{long["id"]}"] .badge')).to_have_text("succeeded")
    playwright_sync.expect(extra_badge).to_have_text("canceled")
    visit.shot("runs")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    visit.shot("runs-phone")

    # Delete the canceled run from its page (after the browser's confirm dialog).
    page.set_viewport_size(LAPTOP)
    page.goto(f"{svc.url}/#/runs/{extra['id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-btn")
    page.wait_for_selector("#runs-table")
    playwright_sync.expect(page.locator(f'tr[data-run-id="{extra["id"]}"]')).to_have_count(0)
    with svc.client(token) as api:
        assert api.get(f"/runs/{extra['id']}").status_code == 404


def test_datasets_page_uploads_and_previews(visit: Visit, svc: Service, tmp_path: Path) -> None:
    page = visit.page
    archive = tmp_path / "squares.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for label, color in (("dark", 30), ("light", 220)):
            for i in range(6):
                image = Image.new("RGB", (16, 16), color=(color, 40 * i, 255 - color))
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                zf.writestr(f"{label}/{i}.png", buf.getvalue())
    visit.sign_in(svc.new_user_token("browser-datasets"))
    page.click("nav a[data-nav=datasets]")
    page.wait_for_selector("#upload-form")
    # A refused upload shows the server's reason under the field it names.
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_bytes(b"these are notes, not an archive")
    page.set_input_files("#ds-file", str(not_a_zip))
    page.click("#ds-submit")
    playwright_sync.expect(page.locator('[data-error-for="file"]')).to_have_text("not a ZIP archive", timeout=60_000)
    page.set_input_files("#ds-file", str(archive))
    page.fill("#ds-name", "squares")
    page.click("#ds-submit")
    card = page.locator(".card", has=page.locator("h3", has_text="squares"))
    playwright_sync.expect(card).to_be_visible(timeout=60_000)
    playwright_sync.expect(card).to_contain_text("12 images")
    playwright_sync.expect(page.locator('[data-error-for="file"]')).to_have_text("")
    card.locator("img").wait_for()
    page.wait_for_function("() => document.querySelector('[data-dataset-id^=ds_] img').naturalWidth > 0")
    page.wait_for_function(  # every preview has landed (or said there is none) before the screenshot
        "() => ![...document.querySelectorAll('.card-media')].some(m => m.textContent === 'loading preview…')",
        timeout=60_000,
    )
    visit.shot("datasets")

    # A CSV is a table: its card counts rows and columns, and the launch form picks ctgan with a table's fields.
    people = tmp_path / "people.csv"
    people.write_text("age,colour\n" + "".join(f"{20 + i % 30},{('red', 'blue')[i % 2]}\n" for i in range(40)))
    page.set_input_files("#ds-file", str(people))
    page.fill("#ds-name", "")
    page.click("#ds-submit")
    table_card = page.locator(".card", has=page.locator("h3", has_text="people"))
    playwright_sync.expect(table_card).to_contain_text("40 rows · 2 columns", timeout=60_000)
    table_id = table_card.get_attribute("data-dataset-id")
    assert table_id is not None and table_id.startswith("tbl_")
    page.click("nav a[data-nav=launch]")
    page.wait_for_selector("#launch-form")
    page.select_option("#f-dataset", table_id)
    assert page.input_value("#f-model-arch") == "ctgan" and page.input_value("#f-model-pack") == "10"
    playwright_sync.expect(page.locator("#table-note")).to_be_visible()
    playwright_sync.expect(page.locator('[data-field="model.image_size"]')).to_be_hidden()
    page.select_option("#f-dataset", "ring8")
    playwright_sync.expect(page.locator('[data-field="model.pack"]')).to_be_hidden()
    playwright_sync.expect(page.locator('[data-field="model.image_size"]')).to_be_visible()


def test_docs_render_offline_and_try_it_out_works(visit: Visit, svc: Service) -> None:
    page = visit.page
    page.goto(f"{svc.url}/docs")
    page.wait_for_selector(".opblock", timeout=60_000)
    assert page.locator(".opblock").count() >= 10
    page.click("button.authorize")
    page.fill(".modal-ux input", svc.admin_token)
    page.click(".modal-ux button.authorize")
    page.click(".modal-ux button.btn-done")
    op = page.locator("#operations-runs-list_runs_runs_get")
    op.locator(".opblock-summary").click()
    op.locator("button.try-out__btn").click()
    op.locator("button.execute").click()
    status = op.locator(".live-responses-table tbody .response-col_status").first
    playwright_sync.expect(status).to_have_text("200")
    page.evaluate("window.scrollTo(0, 0)")
    visit.shot("docs", full_page=False)


def test_redoc_renders_offline(visit: Visit, svc: Service) -> None:
    schema = httpx.get(f"{svc.url}/openapi.json", timeout=10).json()
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schema)))
    dangling = sorted(refs - set(schema.get("components", {}).get("schemas", {})))
    assert not dangling, f"openapi.json refers to undefined schemas {dangling}: ReDoc refuses such a document"
    visit.page.goto(f"{svc.url}/redoc")
    playwright_sync.expect(visit.page.get_by_text("Start a training run.").first).to_be_visible(timeout=60_000)
    # ReDoc's sidebar always asks its CDN for a small logo and hides it when that fails: the one request
    # to another host that is allowed (it is blocked here all the same, and the page does without it).
    visit.blocked = [url for url in visit.blocked if url != "https://cdn.redoc.ly/redoc/logo-mini.svg"]
