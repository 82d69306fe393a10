"""The studio's loose ends, in headless Chromium: reload, Clear results, error toasts, the size slider's keys,
the status line, the model card's links, and the login lockout.

Like test_studio_app.py, these need the `playwright` package and /usr/bin/chromium, and skip without them.
Waits are for what the page shows (or for a number of animation frames), never for a number of seconds.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import httpx
import pytest
from test_studio_app import ROOT, _free_port, _open, _wait_text, chromium
from tiny import tiny_pipeline

from cosyn.studio.config import StudioConfig
from cosyn.studio.ui import build_app, launch_options

CARD = ROOT / "checkpoints" / "default" / "MODEL_CARD.md"
RESULT_IMAGES = "[...document.querySelectorAll('.cosyn-result img')]"


def _serve(tmp: Path, **config) -> tuple[SimpleNamespace, object]:
    pipe = tiny_pipeline()
    pipe.config.mpp = 1.0  # a 256 px canvas at 0.25 µm/px samples at 64 px: a second or two per run
    pipe.save_pretrained(tmp / "checkpoints" / "default")
    if CARD.is_file():  # the card users get, shown with the tiny model
        shutil.copy(CARD, tmp / "checkpoints" / "default" / CARD.name)
    cfg = StudioConfig(port=_free_port(), checkpoints=tmp / "checkpoints", runs=tmp / "runs", outputs=tmp / "outputs",
                       **config)
    demo = build_app(cfg)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(cfg))
    return SimpleNamespace(url=f"http://127.0.0.1:{cfg.port}/", config=cfg), demo


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    served, demo = _serve(tmp_path_factory.mktemp("studio"))
    yield served
    demo.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    served, demo = _serve(tmp_path_factory.mktemp("guarded"), auth=("ann", "s3cret"))
    yield served
    demo.close()


def _set_number(page, selector: str, value: str) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(value)
    box.press("Enter")


def _generate_long_run(page) -> None:
    """Click Generate, and again if the studio asks to confirm a long run; until sampling has started."""
    page.locator("#cosyn-generate").click()
    page.wait_for_function("() => /Sampling: step|Click Generate again/.test("
                           "document.querySelector('#cosyn-status').textContent)")
    if "Click Generate again" in page.locator("#cosyn-status").text_content():
        page.locator("#cosyn-generate").click()
    _wait_text(page, "#cosyn-status", "Sampling: step")


def _panel_sources(page) -> list[str]:
    """The four result panels' image URLs once all are served and decoded."""
    page.wait_for_function(f"() => {RESULT_IMAGES}.length === 4 && {RESULT_IMAGES}.every("
                           "i => i.complete && i.naturalWidth > 0)")
    return page.evaluate(f"() => {RESULT_IMAGES}.map(i => i.src)")


def test_browser_results_come_back_after_a_reload_and_clear_deletes_every_copy(studio, browser):
    page = _open(browser, studio.url)
    _set_number(page, "#cosyn-sample-steps", "2")
    page.evaluate("""() => {  // every picture the panels show, live previews included
        window.__cosynShown = new Set();
        const note = () => document.querySelectorAll('.cosyn-result img').forEach(i => window.__cosynShown.add(i.src));
        new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    page.locator("#cosyn-generate").click()
    _wait_text(page, "#cosyn-status", "Done")
    before = _panel_sources(page)
    previews = set(page.evaluate("() => [...window.__cosynShown]")) - set(before)
    assert previews and {page.request.get(u).status for u in previews} == {403}  # gone when the run ended

    page.reload()  # the panels show the latest result again, without a click on its thumbnail
    _wait_text(page, "#cosyn-status", "Ready")
    assert len(_panel_sources(page)) == 4

    page.locator("#cosyn-export-all").click()
    link = page.locator("#cosyn-export-file a").first
    link.wait_for()
    page.wait_for_function("() => document.querySelectorAll('#cosyn-gallery img').length === 1")
    urls = [*before, *_panel_sources(page), link.get_attribute("href"),
            *page.evaluate("() => [...document.querySelectorAll('#cosyn-gallery img')].map(i => i.src)")]
    assert all(page.request.get(u).status == 200 for u in urls)

    page.locator("#cosyn-clear-results").click()
    _wait_text(page, "#cosyn-status", "Results cleared.")
    page.wait_for_function(f"() => {RESULT_IMAGES}.length === 0")  # the panels are empty too
    # Gradio's copies are gone from its cache folder; it answers a request for a missing file "not allowed"
    assert [page.request.get(u).status for u in urls] == [403] * len(urls)
    assert not [u for u in urls if Path(unquote(u.split("/file=", 1)[1])).exists()]
    page.close()


def test_browser_status_line_holds_only_the_studios_own_text(studio, browser):
    page = _open(browser, studio.url)
    _set_number(page, "#cosyn-sample-steps", "100")
    _generate_long_run(page)
    # over a few frames of the run, the line is our text alone (no progress bar, timer or Gradio's "sampling")
    texts = page.evaluate("""() => new Promise(done => {
        const seen = [];
        const look = () => {
            seen.push(document.querySelector("#cosyn-status").textContent.trim());
            seen.length < 10 ? requestAnimationFrame(look) : done(seen);
        };
        requestAnimationFrame(look);
    })""")
    assert all(re.fullmatch(r"Sampling: step \d+ of 100", t) for t in texts), texts
    page.locator("#cosyn-cancel").click()
    _wait_text(page, "#cosyn-status", "Cancelled at step")
    page.close()


HAS_ERROR_OVERLAY = """(ids) => ids.some(id => [...document.querySelectorAll(`#${id} *`)].some(
    e => e.children.length === 0 && e.textContent.trim() === "Error"))"""


def test_browser_a_refused_upload_is_a_toast_and_leaves_no_overlay(studio, browser, tmp_path):
    page = _open(browser, studio.url)
    bad = tmp_path / "broken.json"
    bad.write_text("{ not json")
    page.get_by_text("Layout sources").click()
    page.get_by_role("tab", name="Upload / download").click()
    page.locator("input[type=file][accept*='.geojson']").first.set_input_files(str(bad))
    page.get_by_text("broken.json").last.wait_for()
    page.locator(".toast-body").filter(has_text="JSON").first.wait_for()  # the refusal, said once
    ids = ["cosyn-legend", "cosyn-class", "cosyn-layout-json", "cosyn-canvas"]
    assert not page.evaluate(HAS_ERROR_OVERLAY, ids)
    page.get_by_role("tab", name="JSON").click()
    page.locator("#cosyn-layout-json .cm-content").click(timeout=10_000)  # the editor takes clicks
    page.close()


def test_browser_arrow_keys_on_the_size_slider_resize_the_canvas(studio, browser):
    page = _open(browser, studio.url)
    _wait_text(page, "#cosyn-legend", "256×256 px")
    page.locator("#cosyn-size input[type=range]").focus()
    for _ in range(8):  # 8 steps of 32 px
        page.keyboard.press("ArrowRight")
    assert page.locator("#cosyn-size input[type=number]").input_value() == "512"
    _wait_text(page, "#cosyn-legend", "512×512 px")
    page.locator("#cosyn-size input[type=number]").focus()
    page.keyboard.press("ArrowDown")  # the number box's own arrows
    _wait_text(page, "#cosyn-legend", "480×480 px")
    page.close()


@pytest.mark.skipif(not CARD.is_file(), reason=f"the shipped card {CARD} is absent")
def test_browser_model_card_is_the_users_card_and_its_links_open(studio, browser):
    page = _open(browser, studio.url)
    page.locator("#cosyn-card").get_by_text("Model card").click()
    card = page.locator("#cosyn-card")
    card.get_by_text("How to cite").wait_for()
    assert card.get_by_text("What it is good at").count() and card.get_by_text("Limits").count()
    links = card.locator("a").evaluate_all("as => as.map(a => [a.getAttribute('href'), a.target])")
    assert links, "the card has links"
    # each opens a page on the web, in a new tab (the studio serves no repository files to link to)
    assert all(href.startswith("https://") and target == "_blank" for href, target in links), links
    page.close()


def test_browser_login_lockout_says_for_how_long_and_is_logged(guarded, browser, caplog):
    page = browser.new_page()
    page.goto(guarded.url)

    def login(user: str, password: str) -> None:
        page.get_by_label("username").fill(user)
        page.get_by_label("password").fill(password)
        page.get_by_role("button", name="Login").click()

    with caplog.at_level(logging.INFO, logger="cosyn.studio"):
        for k in range(5):
            login("ann", f"guess{k}")
            page.get_by_text("Incorrect Credentials").wait_for()
            page.wait_for_function("() => !document.querySelector('input[type=password]').value")  # form reset
        login("ann", "s3cret")  # the right password, during the lockout
        page.get_by_text(re.compile(r"logins are locked for \d+ s")).wait_for()
        reply = httpx.post(guarded.url + "login", data={"username": "ann", "password": "s3cret"}, timeout=30)
    assert reply.status_code == 429 and "locked for" in reply.json()["detail"] and int(reply.headers["retry-after"])
    lines = [r.getMessage() for r in caplog.records]
    assert sum("failed login as 'ann' from 127.0.0.1" in m for m in lines) == 5
    assert any(re.match(r"logins locked for 30 s after 5 failed logins", m) for m in lines)
    assert any("refused: logins are locked" in m for m in lines)
    assert not any("guess" in m or "s3cret" in m for m in lines)  # never a password
    page.close()
