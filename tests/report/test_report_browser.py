"""The report in a real browser: headless Chromium, driven through the DevTools protocol (tests/support/chromium.py),
renders the demo's report and the planted run's with no console error and no request but the file itself, and no
planted script runs. A screenshot of each page is saved under the test's tmp_path.

A first test shows that the harness does see what the others say is absent: a page that runs a script, logs an
error and loads an image from the network."""

from __future__ import annotations

import pytest
from chromium import Browser, chromium_binary

pytestmark = pytest.mark.skipif(chromium_binary() is None,
                                reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    yield browser
    browser.close()


def test_the_harness_sees_scripts_errors_and_requests(browser, tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<html><head><title>before</title></head><body><img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom"); document.title = "after"</script></body></html>')
    browser.open(page.as_uri())
    assert browser.evaluate("document.title") == "after"
    assert "http://127.0.0.1:9/x.png" in browser.requests()
    assert any("boom" in p for p in browser.problems())


def test_demo_report_renders_from_disk_with_no_error_and_no_request(browser, demo_run, tmp_path):
    path = demo_run["run"] / "report.html"
    browser.open(path.as_uri())
    assert browser.requests() == [path.as_uri()]
    assert browser.problems() == []
    assert browser.evaluate("document.title") == "cerbero-hf run report: run"
    assert browser.evaluate("[...document.querySelectorAll('section h2')].map(h => h.textContent)") == [
        "Funnel", "Examples", "NLL (Fig. 4)", "Diversity (Fig. 1)", "Lengths", "Training", "Evaluation", "Run details"]
    widths = browser.evaluate("[...document.querySelectorAll('figure svg')].map(s => s.getBoundingClientRect().width)")
    assert len(widths) == 6 and min(widths) > 300  # six figures, drawn at their size
    assert browser.evaluate("document.querySelectorAll('.conv').length") > 10  # sampled conversations with roles
    width, height = browser.screenshot(tmp_path / "demo-report.png")
    assert (tmp_path / "demo-report.png").read_bytes()[:8] == PNG and width >= 1000 and height > 3000


def test_planted_markup_is_text_and_never_runs(browser, planted_run, tmp_path):
    import cerbero_hf

    page = cerbero_hf.report(planted_run, tmp_path / "planted.html", examples=100)
    browser.open(page.as_uri())
    assert browser.requests() == [page.as_uri()]  # the planted <img src="http://..."> fetched nothing
    assert browser.problems() == []
    assert browser.evaluate("document.title") == f"cerbero-hf run report: {planted_run.name}"  # no script ran
    assert browser.evaluate("document.querySelectorAll('script, img, iframe, object, embed').length") == 0
    assert browser.evaluate("document.body.innerText.includes(\"<script>document.title='pwned'\")")  # shown as text
    assert browser.evaluate("document.body.innerText.includes('<i>planted-id</i>')")
    assert browser.evaluate("document.querySelectorAll('section').length") == 4  # the body was not replaced
    browser.screenshot(tmp_path / "planted-report.png")
    assert (tmp_path / "planted-report.png").read_bytes()[:8] == PNG
