"""The page in a real browser: Debian's headless Chromium driven by Playwright, against a
real `edge-classify serve` (uvicorn on 127.0.0.1) with the bundled model.

Set LUNGCNN_SERVE_SCREENSHOT=docs/images/serve.png to also write the README's screenshot.
Skipped when Playwright or /usr/bin/chromium is missing; in CI (CI=true) that fails instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lungcnn.benchmarks.serve_process import ServerProcess
from lungcnn.edge.api import Classifier
from lungcnn.edge.report import NOTICE

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # headless=True adds --headless
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000
# The bundled model accepts normal-0102 and flags viral-pneumonia-0101 out_of_distribution
# (see tests/scans): one card of each kind.
SCANS = ("normal-0102.jpg", "viral-pneumonia-0101.jpg")


def _sync_playwright():
    problems = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        problems.append("Playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if problems:
        reason = "browser test cannot run: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI must run it: .ci/run installs both)")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture
def browser_context(tmp_path):
    """A fresh Chromium profile; yields (playwright, persistent context factory)."""
    sync_playwright = _sync_playwright()
    with sync_playwright() as playwright:
        def launch(viewport: dict, **options):
            return playwright.chromium.launch_persistent_context(
                str(tmp_path / f"profile-{viewport['width']}"), executable_path=str(CHROMIUM),
                headless=True, args=CHROMIUM_ARGS, viewport=viewport, **options)
        yield launch


def _upload_and_wait(page, base_url: str, files: list[Path]) -> None:
    page.goto(base_url + "/")
    page.set_input_files("#files", [str(path) for path in files])
    page.wait_for_function(
        f"() => document.querySelectorAll('.result:not(.pending)').length === {len(files)}",
        timeout=WAIT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.heatmap img, img.scan')]"
        ".every(img => img.complete && img.naturalWidth > 0)", timeout=WAIT_MS)


def test_page_classifies_uploads_in_a_real_browser(live_server, browser_context, scans_dir,
                                                   tmp_path):
    files = [scans_dir / name for name in SCANS] + [tmp_path / "notes.txt"]
    files[-1].write_text("not a scan")
    expected = {path.name: Classifier().classify(path, name=path.name).to_dict()
                for path in files}
    context = browser_context(DESKTOP)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    _upload_and_wait(page, live_server, files)

    cards = page.locator(".result")
    assert cards.count() == len(files)
    for index, path in enumerate(files):
        card, record = cards.nth(index), expected[path.name]
        assert card.locator(".file").inner_text() == path.name
        if record["status"] == "error":
            assert card.locator(".error").inner_text() == f"{path.name}: {record['error']}"
            continue
        assert card.locator(".label").inner_text() == record["label"]
        assert card.locator(".badge").inner_text() == record["flag"]
        assert f"{100 * record['confidence']:.1f}%" in card.locator(
            ".confidence").inner_text()
        warning = card.locator(".warning[role=alert]")
        assert warning.count() == (0 if record["flag"] == "ok" else 1)
        if record["flag"] != "ok":
            assert record["reason"] in warning.inner_text() and warning.is_visible()
        assert card.locator(".heatmap img").evaluate("img => img.naturalWidth") > 0
    assert {expected[name]["flag"] for name in SCANS} == {"ok", "out_of_distribution"}

    notice = page.locator("#notice")
    assert notice.inner_text() == NOTICE
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    box = notice.bounding_box()
    assert box is not None and 0 <= box["y"] < DESKTOP["height"]  # sticky: still on screen
    page.evaluate("() => window.scrollTo(0, 0)")
    assert all(url.startswith((live_server, "blob:", "data:")) for url in requests), requests

    screenshot = tmp_path / "serve.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("LUNGCNN_SERVE_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["LUNGCNN_SERVE_SCREENSHOT"])
    context.close()


def test_page_fits_a_phone_screen(live_server, browser_context, scans_dir, tmp_path):
    context = browser_context(PHONE)
    page = context.new_page()
    _upload_and_wait(page, live_server, [scans_dir / SCANS[1]])
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.locator(".warning[role=alert]").is_visible()
    assert page.locator("#notice").is_visible()
    page.screenshot(path=str(tmp_path / "serve-phone.png"), full_page=True)
    context.close()


def test_page_works_behind_the_token(browser_context, scans_dir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("browser-token-51c2\n")
    token_file.chmod(0o600)
    with ServerProcess(["--token-file", str(token_file)]) as server:
        context = browser_context(DESKTOP, http_credentials={
            "username": "clinician", "password": "browser-token-51c2"})
        page = context.new_page()
        _upload_and_wait(page, server.url, [scans_dir / SCANS[0]])
        expected = Classifier().classify(scans_dir / SCANS[0]).label
        assert page.locator(".result .label").inner_text() == expected
        assert "Model lungcnn_int8.tflite" in page.locator("#model").inner_text()
        context.close()
    assert server.returncode == 0, server.log()
