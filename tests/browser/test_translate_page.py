"""The run page of a translation run in a real browser: the newest finished translation as input → output pairs,
and a ZIP translated from the page's form."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.test_dashboard import Visit, browser, svc, visit  # noqa: F401 - the fixtures
from tests.conftest import Service
from tests.utils import zips
from tests.utils.runs import post_and_finish, wait_for_job

playwright_sync = pytest.importorskip("playwright.sync_api")

PIX2PIX = {
    "dataset": "digits-edges",
    "model": {"width": 4},
    "train": {"steps": 2, "batch_size": 4},
    "schedule": {"sample_every": 2, "checkpoint_every": 2, "eval_every": 0},
}
PAIRS_SHOWN = (
    "() => { const i = document.querySelector('#tr-pairs'); "
    "return !!i && i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'); }"
)


def test_the_run_page_shows_input_output_pairs(visit: Visit, svc: Service, tmp_path: Path) -> None:  # noqa: F811
    token = svc.new_user_token("browser-translate")
    images = zips.build_zip({f"{i}.png": zips.image_bytes(size=32, mode="L", seed=i) for i in range(3)})
    with svc.client(token) as client:
        _, run = post_and_finish(client, PIX2PIX)
        posted = client.post(f"/runs/{run['id']}/translations", files={"file": ("in.zip", images, "application/zip")})
        assert posted.status_code == 202, posted.text
        first = wait_for_job(client, f"/translations/{posted.json()['id']}")
        assert first["status"] == "succeeded", first["error"]

    page = visit.page
    visit.sign_in(token)
    page.goto(f"{svc.url}/#/runs/{run['id']}")
    page.wait_for_function(PAIRS_SHOWN)
    playwright_sync.expect(page.locator("#tr-result")).to_contain_text(f"Translation {first['id']}")
    assert page.locator("#generate-form").count() == 0  # a translation run has no generate form

    upload = tmp_path / "mine.zip"
    upload.write_bytes(images)
    page.set_input_files("#tr-file", str(upload))
    page.click("#tr-submit")
    playwright_sync.expect(page.locator("#tr-result")).not_to_contain_text(first["id"], timeout=60_000)
    page.wait_for_function(PAIRS_SHOWN)
    playwright_sync.expect(page.locator("#tr-download")).to_contain_text(".zip")
    visit.shot("translation")


def test_the_datasets_page_uploads_side_by_side_pairs(visit: Visit, svc: Service, tmp_path: Path) -> None:  # noqa: F811
    archive = tmp_path / "facades.zip"
    pairs = {f"train/{i}.png": zips.image_bytes(size=32, width=64, seed=i) for i in range(16)}  # 2:1, input left
    archive.write_bytes(zips.build_zip(pairs))
    page = visit.page
    visit.sign_in(svc.new_user_token("browser-pairs"))
    page.click("nav a[data-nav=datasets]")
    page.wait_for_selector("#upload-form")
    page.set_input_files("#ds-file", str(archive))
    page.select_option("#ds-layout", "AB")
    page.click("#ds-submit")
    card = page.locator(".card", has=page.locator("h3", has_text="facades"))
    playwright_sync.expect(card).to_contain_text("paired · 16 pairs", timeout=60_000)
    dataset_id = card.get_attribute("data-dataset-id")
    assert dataset_id is not None and dataset_id.startswith("paired_")
    page.click("nav a[data-nav=launch]")
    page.wait_for_selector("#launch-form")
    page.select_option("#f-dataset", dataset_id)
    assert page.input_value("#f-model-arch") == "pix2pix"
