"""Studio end to end: the app served on a free port, its API through gradio_client, the page in Chromium.

The browser tests need the `playwright` package and Debian's /usr/bin/chromium (no downloaded
browser) and are skipped, saying so, without them. Set COSYN_STUDIO_SCREENSHOTS=docs to write
the README's screenshot to docs/studio.png instead of a temporary folder; the studio then serves
the shipped checkpoints/default instead of a tiny random model.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_studio_jobs import TINY_OPTIONS
from test_train import _dataset
from tiny import tiny_pipeline

from cosyn.core.layout import Layout
from cosyn.io.export import read_bundle
from cosyn.studio import canvas as cv
from cosyn.studio import sampling
from cosyn.studio.config import AUTH_ENV, StudioConfig, parse_args
from cosyn.studio.ui import build_app, launch_options

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
EXAMPLE = ROOT / "assets" / "layouts" / "colon_mixed_stroma.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
    checkpoints = tmp / "checkpoints"
    if os.environ.get("COSYN_STUDIO_SCREENSHOTS") == "docs":
        checkpoints = ROOT / "checkpoints"  # the picture shows the model users get
    else:
        pipe = tiny_pipeline()
        pipe.config.mpp = 1.0  # a 256 px canvas at 0.25 µm/px samples at 64 px: a second or two per run
        pipe.save_pretrained(checkpoints / "default")
        tiny_pipeline(seed=1, mpp=1.0).save_pretrained(checkpoints / "second")
        (checkpoints / "default" / "MODEL_CARD.md").write_text("# Tiny model\n\n![the grid](grid.png)\n")
        Image.fromarray(np.full((40, 120, 3), (200, 80, 160), np.uint8)).save(checkpoints / "default" / "grid.png")
    data = _dataset(tmp / "data" / "tiles")
    cfg = StudioConfig(port=_free_port(), checkpoints=checkpoints, data_roots=(tmp / "data",),
                       runs=tmp / "runs", outputs=tmp / "outputs")
    demo = build_app(cfg)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(cfg))
    yield SimpleNamespace(url=f"http://127.0.0.1:{cfg.port}/", config=cfg, data=data)
    demo.close()


# -- settings ------------------------------------------------------------------------------------------
def test_the_studio_is_private_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    cfg = parse_args([], cwd=tmp_path)
    assert (cfg.host, cfg.port, cfg.share, cfg.auth, cfg.data_roots) == ("127.0.0.1", 7860, False, None, ())
    opts = launch_options(cfg)
    assert (opts["server_name"], opts["share"], opts["auth"]) == ("127.0.0.1", False, None)
    assert opts["max_file_size"] == 200 * 2**20 and opts["allowed_paths"] == [str(cfg.outputs.resolve())]


def test_login_locks_out_guessing_and_doubles_the_wait(tmp_path):
    from cosyn.studio.login import LoginGuard

    now = [0.0]
    guard = LoginGuard("ann", "s3cret", free_failures=3, base_lock_s=30, max_lock_s=100, clock=lambda: now[0])
    assert guard("ann", "s3cret") and not guard("ann", "wrong") and not guard("bob", "s3cret")
    assert guard.locked_for() == 0
    assert not guard("ann", "wrong")  # third failure in a row: locked for 30 s
    assert guard.locked_for() == 30 and not guard("ann", "s3cret")  # even the right password waits
    now[0] = 31.0
    assert not guard("ann", "nope") and guard.locked_for() == 60  # one more failure: twice as long
    now[0] = 92.0
    assert not guard("x", "y") and guard.locked_for() == 100  # capped
    now[0] = 193.0
    assert guard("ann", "s3cret") and guard.locked_for() == 0
    assert not guard("ann", "wrong") and guard.locked_for() == 0  # a success reset the count
    opts = launch_options(StudioConfig(auth=("ann", "s3cret"), outputs=tmp_path / "o"))
    assert isinstance(opts["auth"], LoginGuard) and opts["auth"]("ann", "s3cret")


def test_failed_logins_and_lockouts_are_logged_and_a_locked_login_is_told_for_how_long(caplog):
    import asyncio
    import logging

    from cosyn.studio.login import LoginGate, LoginGuard

    now = [0.0]
    guard = LoginGuard("ann", "s3cret", free_failures=2, base_lock_s=30, clock=lambda: now[0])
    checked, sent = [], []

    async def gradio_login(scope, receive, send):  # stands in for Gradio's login route, which calls the check
        checked.append(guard("ann", "wrong-pass"))

    async def send(message):
        sent.append(message)

    def post(headers=()):
        scope = {"type": "http", "method": "POST", "path": "/login", "client": ("10.0.0.7", 5555),
                 "headers": list(headers)}
        asyncio.run(LoginGate(gradio_login, guard)(scope, None, send))

    with caplog.at_level(logging.INFO, logger="cosyn.studio"):
        post()
        post()  # the second failure in a row locks logins for 30 s
        now[0] = 10.0
        post()  # an API client: 429, Retry-After
        post([(b"sec-fetch-mode", b"cors")])  # a browser's login form: 200 and no cookie, the page then says why
    assert checked == [False, False]  # the locked tries never reached the check
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [429, 200]
    assert dict(starts[0]["headers"])[b"retry-after"] == b"20"
    bodies = [json.loads(m["body"]) for m in sent if m["type"] == "http.response.body"]
    assert all(b["detail"].startswith("Too many failed logins: logins are locked for 20 s.") for b in bodies)
    assert [r.getMessage() for r in caplog.records] == [
        "failed login as 'ann' from 10.0.0.7 (1 in a row)",
        "failed login as 'ann' from 10.0.0.7 (2 in a row)",
        "logins locked for 30 s after 2 failed logins in a row (the last from 10.0.0.7)",
        "login from 10.0.0.7 refused: logins are locked for 20 s more",
        "login from 10.0.0.7 refused: logins are locked for 20 s more",
    ]  # never the password


def test_uploads_land_in_the_studios_own_folder_not_the_shared_gradio_temp(studio):
    import httpx

    reply = httpx.post(studio.url + "gradio_api/upload", files={"files": ("cells.json", b"{}")}, timeout=30)
    (stored,) = reply.json()
    own = studio.config.gradio_temp.resolve()
    assert Path(stored).resolve().is_relative_to(own) and Path(stored).read_bytes() == b"{}"
    assert not own.is_relative_to(studio.config.outputs.resolve())  # the served folder does not hold uploads


def test_telemetry_is_off_before_gradio_reads_it():
    """A fresh interpreter, none of the variables set, starting as app.py does: gradio and the hub
    must see telemetry off (the hub reads its variables once, when gradio imports it)."""
    check = ("import app, gradio.analytics, huggingface_hub.constants as hub; "
             "print(gradio.analytics.analytics_enabled(), hub.HF_HUB_OFFLINE, hub.HF_HUB_DISABLE_TELEMETRY)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True"]


def test_command_line_options(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    (tmp_path / "data").mkdir()
    assert parse_args([], cwd=tmp_path).data_roots == (tmp_path / "data",)
    cfg = parse_args(["--host", "0.0.0.0", "--auth", "ann:s3:cret", "--data-root", "/a", "--data-root", "/b",
                      "--max-upload-mb", "5"], cwd=tmp_path)
    assert cfg.auth == ("ann", "s3:cret") and cfg.data_roots == (Path("/a"), Path("/b"))
    assert cfg.max_upload_bytes == 5 * 2**20 and cfg.host == "0.0.0.0"
    with pytest.raises(SystemExit):
        parse_args(["--auth", "nopassword"])
    # the login from the environment, where `ps` does not show it; the command line wins
    monkeypatch.setenv(AUTH_ENV, "bob:pa:ss")
    assert parse_args([], cwd=tmp_path).auth == ("bob", "pa:ss")
    assert parse_args(["--auth", "ann:x"], cwd=tmp_path).auth == ("ann", "x")
    monkeypatch.setenv(AUTH_ENV, "nopassword")
    with pytest.raises(SystemExit):
        parse_args([], cwd=tmp_path)
    assert f"{AUTH_ENV} take user:password" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert AUTH_ENV in capsys.readouterr().out


def test_without_a_checkpoint_the_page_says_how_to_get_one(tmp_path):
    cfg = StudioConfig(checkpoints=tmp_path / "none", runs=tmp_path / "runs", outputs=tmp_path / "out")
    page = build_app(cfg).get_config_file()
    notice = next(c["props"] for c in page["components"] if c["props"].get("elem_id") == "cosyn-notice")
    assert notice["visible"] and "No checkpoint available" in notice["value"]
    assert "export-checkpoint" in notice["value"]


# -- the API -------------------------------------------------------------------------------------------------
def test_api_generate_returns_a_valid_bundle(studio, tmp_path):
    from gradio_client import Client

    layout = Layout.load(EXAMPLE)
    client = Client(studio.url, verbose=False)
    zip_path, summary = client.predict(layout_json=layout.to_json(), prompt="", steps=2, guidance=2.0,
                                       sampler="ddim", seed=3, n=1, checkpoint="default", api_name="/generate")
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(tmp_path)
    bundle = tmp_path / summary["bundles"][0]
    out = Layout.load(bundle / "layout.json")  # sampled at the model's 1 µm/px, upsampled to the canvas's
    assert (out.width, out.height, out.mpp, len(out.points)) == (256, 256, 0.25, len(layout.points))
    inst = tifffile.imread(bundle / "inst.tif")
    assert inst.dtype == np.int32 and inst.shape == (256, 256)
    assert np.load(bundle / "inst.npy").dtype == np.int32
    assert Image.open(bundle / "image.png").size == (256, 256)
    params = json.loads((bundle / "params.json").read_text())
    assert (params["seed"], params["steps"], params["sampler"], params["layout_mpp"]) == (3, 2, "ddim", 0.25)
    assert read_bundle(bundle).inst_map.max() >= 1
    assert "centroids" in summary["missed"][0]


def test_api_refine_runs_or_skips_the_second_stage(studio, tmp_path):
    from gradio_client import Client

    client = Client(studio.url, verbose=False)
    sides = {}
    for refine in (True, False):
        zip_path, summary = client.predict(layout_json=EXAMPLE.read_text(), steps=1, seed=1, checkpoint="second",
                                           refine=refine, api_name="/generate")
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp_path / str(refine))
        bundle = tmp_path / str(refine) / summary["bundles"][0]
        sides[refine] = Image.open(bundle / "image.png").size
        stages = json.loads((bundle / "params.json").read_text())["stages"]
        assert stages == (["base", "upsampler"] if refine else ["base"])
        assert summary["stages"] == (["base + upsampler at 0.25 µm/px"] if refine else ["base at 1 µm/px"])
    # the 256² canvas at 0.25 µm/px: upsampled to it, or left at the base model's 1 µm/px
    assert sides == {True: (256, 256), False: (64, 64)}


def test_api_errors_read_as_messages(studio):
    from gradio_client import Client

    client = Client(studio.url, verbose=False)
    with pytest.raises(Exception, match="not valid JSON"):
        client.predict(layout_json="{", api_name="/generate")
    with pytest.raises(Exception, match="is not in"):
        client.predict(layout_json=EXAMPLE.read_text(), checkpoint="nope", api_name="/generate")
    assert list(client.view_api(return_format="dict")["named_endpoints"]) == ["/generate"]


def test_api_refuses_fractional_counts_as_the_cli_does(studio):
    from gradio_client import Client

    client = Client(studio.url, verbose=False)
    for name, value in (("seed", 1.5), ("steps", 2.5), ("n", 1.5)):  # once rounded to 2, 2 and 2 unsaid
        with pytest.raises(Exception, match=f"{name}={value} must be an integer"):
            client.predict(layout_json=EXAMPLE.read_text(), **{name: value}, api_name="/generate")


def test_api_requests_are_bounded_and_old_results_deleted(studio):
    from gradio_client import Client

    results = studio.config.outputs / "api"
    old, recent = results / "old", results / "recent"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "bundles.zip").write_bytes(b"zip")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    client = Client(studio.url, verbose=False)
    layout = EXAMPLE.read_text()
    with pytest.raises(Exception, match="1 to 8 triples per request"):
        client.predict(layout_json=layout, n=9, api_name="/generate")
    assert not old.exists() and (recent / "bundles.zip").exists()  # any request clears results over an hour old
    with pytest.raises(Exception, match="1 to 100 steps"):
        client.predict(layout_json=layout, steps=101, api_name="/generate")
    # JSON has no NaN, so gradio_client cannot send one; a hand-written request body can, and reaches this
    generate = next(f.fn for f in build_app(studio.config).fns.values() if f.api_name == "generate")
    with pytest.raises(Exception, match="guidance=nan must be a finite number"):
        generate(layout, "", 25, float("nan"), "dpm++", 0, 1, "default", True)
    huge = {**json.loads(layout), "width": 2048, "height": 2048, "mpp": 1.0}  # 2048 px at the model's 1 µm/px
    with pytest.raises(Exception, match="exceeds the limit of 1024 px"):
        client.predict(layout_json=json.dumps(huge), api_name="/generate")


# -- the page in a browser ----------------------------------------------------------------------------------
def chromium():
    """Headless Chromium for a module's browser tests (a generator for a fixture to yield from); skips the
    module, saying why, without playwright or /usr/bin/chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture
def shots(tmp_path) -> Path:
    return ROOT / "docs" if os.environ.get("COSYN_STUDIO_SCREENSHOTS") == "docs" else tmp_path


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    _wait_text(page, "#cosyn-status", "Ready")
    return page


def _wait_text(page, selector: str, text: str, timeout: float = 60_000) -> None:
    try:
        page.wait_for_function("([s, t]) => document.querySelector(s)?.textContent.includes(t)",
                               arg=[selector, text], timeout=timeout)
    except PlaywrightTimeout:  # say what the page showed instead
        shown = page.evaluate("(s) => document.querySelector(s)?.textContent", selector)
        raise AssertionError(f"{selector} never showed {text!r}; it shows {shown!r}") from None


SETTLED_FRAMES = 10


def _wait_settled(page, selector: str, timeout: float = 60_000) -> None:
    """Until the editor under `selector` shows a canvas and a zoom label that stay the same for SETTLED_FRAMES
    animation frames: counted in frames the browser draws, not in milliseconds, so a loaded machine only
    makes it wait longer."""
    page.wait_for_function("""([s, frames]) => {
        const root = document.querySelector(s), canvas = root?.querySelector("canvas");
        const zoom = root && [...root.querySelectorAll("*")].find(
            e => e.children.length === 0 && /\\d\\s*%$/.test(e.textContent.trim()));
        if (!canvas || !zoom || !canvas.getBoundingClientRect().width) return false;
        const r = canvas.getBoundingClientRect(), key = [r.width, r.height, zoom.textContent.trim()].join();
        const seen = window.__cosynSettled ??= {};
        seen[s] = seen[s]?.key === key ? {key, frames: seen[s].frames + 1} : {key, frames: 0};
        return seen[s].frames >= frames;
    }""", arg=[selector, SETTLED_FRAMES], polling="raf", timeout=timeout)


def _click_canvas(page, x: float, y: float, side: int = 256) -> None:
    """Click the screen point over layout position (x, y), from the image's box and natural size."""
    img = page.locator("#cosyn-canvas img")
    img.scroll_into_view_if_needed()
    left, top, w, h, nw, nh = img.evaluate(
        "e => {const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height, "
        "e.naturalWidth, e.naturalHeight]}")
    scale = min(w / nw, h / nh, 1)  # object-fit: scale-down, centred
    dx, dy = cv.to_display(x, y, cv.display_zoom(side, side))
    page.mouse.click(left + (w - nw * scale) / 2 + (dx + 0.5) * scale,
                     top + (h - nh * scale) / 2 + (dy + 0.5) * scale)


def _edit_and_export(page) -> tuple[np.ndarray, dict]:
    """Tick Edit, Generate, export the result: its image and params.json."""
    page.locator("#cosyn-edit-mode input").check()
    page.locator("#cosyn-generate").click()
    _wait_text(page, "#cosyn-status", "Done")
    page.locator("#cosyn-export-selected").click()
    link = page.locator("#cosyn-export-file a").first
    link.wait_for()
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(link.get_attribute("href")).body()))
    (image_name,) = [n for n in archive.namelist() if n.endswith("/image.png")]
    edited = np.asarray(Image.open(io.BytesIO(archive.read(image_name))).convert("RGB"))
    return edited, json.loads(archive.read(image_name.replace("image.png", "params.json")))


def _layout_points(page) -> list[dict]:
    page.get_by_text("Layout sources").click()
    page.get_by_role("tab", name="JSON").click()
    return json.loads(page.locator("#cosyn-layout-json .cm-content").text_content())["points"]


def _held_after_first_previews(stream_samples):
    """`stream_samples` whose sampler, once two previews are out, waits for Cancel: the run cannot finish
    before the browser's Cancel arrives, however fast the machine samples (the real sampler and cancel path)."""
    def held_stream(sample, cancel):
        def held_sample(on_step):
            def held(preview):
                go_on = on_step(preview)
                if preview.step >= 2:
                    cancel.wait(120)
                return go_on
            return sample(held)
        return stream_samples(held_sample, cancel)
    return held_stream


def test_browser_place_points_generate_and_export(studio, browser, shots, monkeypatch):
    page = _open(browser, studio.url)
    targets = [(40.0, 50.0, "epithelial"), (180.0, 60.0, "inflammatory"), (120.0, 200.0, "epithelial")]
    for k, (x, y, cls) in enumerate(targets, start=1):
        page.locator("#cosyn-class").get_by_label(cls).check()
        _click_canvas(page, x, y)
        _wait_text(page, "#cosyn-legend", f"total: {k}")
    page.locator("#cosyn-undo").click()
    _wait_text(page, "#cosyn-legend", "total: 2")
    points = _layout_points(page)
    assert [p["cls"] for p in points] == ["epithelial", "inflammatory"]
    for p, (x, y, _) in zip(points, targets, strict=False):
        assert abs(p["x"] - x) <= 1.5 and abs(p["y"] - y) <= 1.5, (p, x, y)
    _click_canvas(page, 40.5, 49.5)  # on the first point: removes it
    _wait_text(page, "#cosyn-legend", "total: 1")
    page.locator("#cosyn-undo").click()
    _wait_text(page, "#cosyn-legend", "total: 2")

    steps = page.locator("#cosyn-sample-steps input[type=number]")
    steps.fill("100")
    steps.press("Enter")
    with monkeypatch.context() as held:
        held.setattr(sampling, "stream_samples", _held_after_first_previews(sampling.stream_samples))
        page.locator("#cosyn-generate").click()
        _wait_text(page, "#cosyn-status", "Sampling: step")  # a live preview
        page.locator("#cosyn-cancel").click()
        # the Cancel handler answers with the run's own last line: one message, naming the step
        _wait_text(page, "#cosyn-status", "Cancelled at step")
    steps.fill("8")  # a cancelled run leaves the page usable
    steps.press("Enter")
    page.locator("#cosyn-generate").click()
    _wait_text(page, "#cosyn-status", "Done")
    page.locator("#cosyn-out-image img").wait_for()
    assert "centroids" in page.locator("#cosyn-missed").text_content()

    page.locator("#cosyn-export-all").click()
    link = page.locator("#cosyn-export-file a").first
    link.wait_for()
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(link.get_attribute("href")).body()))
    names = archive.namelist()
    for f in ("image.png", "inst.tif", "hovernet.mat", "qupath.geojson", "coco.json", "params.json"):
        assert f"001_seed0_0/{f}" in names
    assert len(json.loads(archive.read("001_seed0_0/layout.json"))["points"]) == 2

    page.get_by_role("tab", name="Examples").click()  # a real layout, for the README's picture
    page.locator("#cosyn-example input").click()
    page.get_by_role("option", name=EXAMPLE.stem).click()
    page.get_by_role("button", name="Load example").click()
    _wait_text(page, "#cosyn-legend", "total: 68")
    steps.fill("25")  # the studio's default, as users see it
    steps.press("Enter")
    page.locator("#cosyn-seed input").fill("7")
    page.locator("#cosyn-generate").click()
    _wait_text(page, "#cosyn-status", "seed 7")
    page.wait_for_function("() => [...document.querySelectorAll('.cosyn-result img')].every("
                           "i => i.complete && i.naturalWidth > 0)")  # all four panels served and decoded
    page.get_by_text("Layout sources").click()
    page.set_viewport_size({"width": 1400, "height": 1480})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "studio.png"))

    page.reload()  # the layout and the results live in the browser's storage and survive a reload
    _wait_text(page, "#cosyn-status", "Ready")
    _wait_text(page, "#cosyn-legend", "total: 68")
    page.wait_for_function("() => document.querySelectorAll('#cosyn-gallery img').length === 2")
    page.locator("#cosyn-export-all").click()  # and they are still there to export
    link = page.locator("#cosyn-export-file a").first
    link.wait_for()
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(link.get_attribute("href")).body()))
    assert {"001_seed0_0/image.png", "002_seed7_0/image.png"} <= set(archive.namelist())
    page.close()


def test_browser_training_job_exports_a_model_that_appears(studio, browser, tmp_path):
    page = _open(browser, studio.url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#cosyn-train-data textarea, #cosyn-train-data input").first.fill(str(studio.data))
    page.locator("#cosyn-validate").click()
    _wait_text(page, "#cosyn-report", "Dataset report")
    for selector, value in (("#cosyn-run-name", "ui-run"), ("#cosyn-steps", "4"), ("#cosyn-batch", "2"),
                            ("#cosyn-crop", "32")):
        page.locator(f"{selector} input, {selector} textarea").first.fill(value)
    page.get_by_text("More TrainConfig options").click()

    def set_options(options: dict) -> None:
        page.locator("#cosyn-train-options .cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(json.dumps(options))

    set_options({"text_cache": "/etc/hostname"})  # the one path among the options stays inside the data roots
    page.locator("#cosyn-train-start").click()
    page.get_by_text("text_cache '/etc/hostname' lies outside the allowed data roots").wait_for()
    set_options({**TINY_OPTIONS, "preview_every": 2, "preview_steps": 2})
    page.locator("#cosyn-train-start").click()
    _wait_text(page, "#cosyn-job", "exported as", timeout=240_000)
    page.screenshot(path=str(tmp_path / "studio_train.png"), full_page=True)
    page.get_by_role("tab", name="Synthesize").click()
    page.locator("#cosyn-model input").click()
    assert "ui-run" in [o.strip(" ✓\n") for o in page.get_by_role("option").all_inner_texts()]
    page.close()


def test_browser_model_card_shows_its_grid_below_the_results(studio, browser):
    page = _open(browser, studio.url)

    def top(selector: str) -> float:  # in page coordinates: opening the card scrolls the window
        return page.locator(selector).evaluate("e => e.getBoundingClientRect().top + window.scrollY")

    generate_top = top("#cosyn-generate")
    page.locator("#cosyn-card").get_by_text("Model card").click()
    page.wait_for_function("() => [...document.querySelectorAll('#cosyn-card img')].some("
                           "i => i.complete && i.naturalWidth === 120)", timeout=30_000)
    assert top("#cosyn-generate") == generate_top  # the open card does not push Generate down
    assert top("#cosyn-card") > top("#cosyn-out-image")
    page.close()


def test_browser_edit_a_real_tile_keeps_it_outside_the_edit(studio, browser):
    from cosyn.data.formats import read_dataset

    page = _open(browser, studio.url)
    page.get_by_text("Layout sources").click()
    page.get_by_role("tab", name="Dataset sample").click()
    page.get_by_label("Dataset folder on the server").fill(str(studio.data))
    page.locator("#cosyn-ds-load").click()
    tile = read_dataset(studio.data)[0]
    _wait_text(page, "#cosyn-legend", f"total: {len(tile.inst_ids)}")
    page.locator("#cosyn-class").get_by_label("inflammatory").check()
    _click_canvas(page, 40.0, 52.0, side=64)  # below the tile's discs
    _wait_text(page, "#cosyn-legend", f"total: {len(tile.inst_ids) + 1}")
    edited, params = _edit_and_export(page)
    yy, xx = np.indices(tile.image.shape[:2])
    outside = (xx - 40) ** 2 + (yy - 52) ** 2 > (8 / 0.25 + 2) ** 2
    assert params["edit"]["new_instances"] >= 0 and params["edit"]["source_tile"] == tile.name
    assert np.array_equal(edited[outside], tile.image[outside])
    page.close()


def test_browser_edit_an_uploaded_tile_only_where_the_brush_painted(studio, browser, tmp_path, shots):
    from cosyn.data.formats import read_dataset
    from cosyn.data.targets import triple_from_sample
    from cosyn.io.export import qupath_geojson

    tile = read_dataset(studio.data)[1]
    Image.fromarray(tile.image).save(tmp_path / "my tile.png")
    (tmp_path / "my tile.geojson").write_text(json.dumps(qupath_geojson(triple_from_sample(tile))))
    page = _open(browser, studio.url)
    page.get_by_text("Layout sources").click()
    page.get_by_role("tab", name="Real tile").click()
    page.locator("#cosyn-tile-image input[type=file]").set_input_files(str(tmp_path / "my tile.png"))
    page.locator("#cosyn-tile-annotation input[type=file]").set_input_files(str(tmp_path / "my tile.geojson"))
    page.locator("#cosyn-tile-load").click()
    _wait_text(page, "#cosyn-legend", f"total: {len(tile.inst_ids)}")
    page.locator("#cosyn-class").get_by_label("inflammatory").check()
    _click_canvas(page, 20.0, 32.0, side=64)  # inside the region brushed below
    _wait_text(page, "#cosyn-legend", f"total: {len(tile.inst_ids) + 1}")
    page.locator("#cosyn-brush-box").get_by_text("Region to regenerate").click()
    canvas = page.locator("#cosyn-brush canvas").first
    canvas.wait_for()
    _wait_settled(page, "#cosyn-brush")  # the tile is drawn into the editor at its zoom
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    zoom = float(page.locator("#cosyn-brush").get_by_text("%").first.text_content().strip(" %")) / 100
    side = 64 * zoom  # the tile, drawn at the editor's zoom, centred on its canvas
    at = lambda x, y: (box["x"] + box["width"] / 2 + (x / 64 - 0.5) * side,  # noqa: E731
                       box["y"] + box["height"] / 2 + (y / 64 - 0.5) * side)
    page.mouse.move(*at(8, 32))
    page.mouse.down()
    page.mouse.move(*at(56, 32), steps=12)
    page.mouse.up()
    page.screenshot(path=str(shots / "studio_brush.png"), full_page=True)
    edited, params = _edit_and_export(page)
    assert params["edit"]["region"] == "brushed" and params["edit"]["source_tile"] == "my tile"
    assert 0 < params["edit"]["region_pixels"] < 64 * 64 / 2
    changed_rows = np.nonzero((edited != tile.image).any((1, 2)))[0]
    # a 12 px brush along row 32, grown to the whole nuclei it touches; the rest is the tile itself
    assert changed_rows.min() >= 8 and changed_rows.max() <= 48, changed_rows
    assert not np.array_equal(edited[28:36, 8:56], tile.image[28:36, 8:56])  # under it: regenerated
    page.close()


@pytest.mark.parametrize(("flag", "value", "named"), [
    ("--port", "99999", "port=99999 must lie in 1..65535"),
    ("--max-upload-mb", "nan", "max_upload_mb=nan must lie in"),
    ("--upload-quota-mb", "-1", "upload_quota_mb=-1.0 must lie in"),
    ("--max-queue", "-1", "max_queue=-1 must lie in 1..10000"),
])
def test_absurd_studio_numbers_are_refused_by_name(capsys, flag, value, named):
    """Port 99999 and an upload limit of NaN ended in tracebacks at start-up; a negative queue was taken."""
    with pytest.raises(SystemExit) as stop:
        parse_args([flag, value], cwd=Path("."))
    assert stop.value.code == 2
    assert named in capsys.readouterr().err
