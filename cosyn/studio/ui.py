"""The studio page: both tabs and the API in one gr.Blocks, and how it is served."""

from __future__ import annotations

import os
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from cosyn.studio import api, canvas_events, generate_events, synthesize_tab, train_events, train_tab
from cosyn.studio.config import StudioConfig
from cosyn.studio.context import StudioContext
from cosyn.studio.login import LoginGate, LoginGuard
from cosyn.studio.upload_quota import UploadQuota

CSS = """
.cosyn-legend {display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; font-size: 0.95em;}
.cosyn-legend-item {display: inline-flex; align-items: center; gap: 0.35em;}
.cosyn-swatch {width: 0.9em; height: 0.9em; border-radius: 50%; border: 1px solid #222; display: inline-block;}
.cosyn-canvas-size {color: var(--body-text-color-subdued); font-size: 0.85em; margin-top: 0.2em;}
#cosyn-canvas img {cursor: crosshair;}
/* results are small (the model's resolution): enlarge on screen only, pixels kept sharp */
.cosyn-result img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}
"""
DELETE_CACHE = (3600, 24 * 3600)  # every hour, drop Gradio's cached copies older than a day
# Gradio's slider sends `release` (which resizes the canvas) only on a pointer up or when its number box loses
# focus: a key that steps it (arrows, Page Up/Down, Home, End) or Enter in its box would change the number
# and leave the canvas as it was. Such a key ends with the pointer-up the slider listens for.
SIZE_KEYS_JS = """() => {
  document.addEventListener("keyup", (e) => {
    if (e.target.closest?.("#cosyn-size") && /^(Arrow|Page|Home$|End$|Enter$)/.test(e.key)) {
      e.target.dispatchEvent(new PointerEvent("pointerup", {bubbles: true}));  // Svelte listens on the root
    }
  });
}"""


def build_app(config: StudioConfig) -> gr.Blocks:
    # Gradio reads the variable whenever it stores an upload or a cached output
    config.gradio_temp.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(config.gradio_temp.resolve())
    ctx = StudioContext.create(config)
    with gr.Blocks(title="CoSyn Studio", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# CoSyn Studio\nPlace nuclei, describe the tissue, and sample a matching H&E image with its "
                    "label and instance maps.")
        with gr.Tab("Synthesize", id="synthesize"):
            synth = synthesize_tab.build(ctx)
        with gr.Tab("Train", id="train"):
            train = train_tab.build(ctx, train_events.job_markdown(ctx.jobs.view()))
        # every tab: laid out above, wired here
        canvas_events.wire(ctx, demo, synth)
        generate_events.wire(ctx, demo, synth)
        train_events.wire(ctx, train, synth.model_dd)  # an exported model joins the Synthesize tab's list
        api.build(ctx)
    demo.cosyn_synthesize = synth  # the Synthesize tab's components by name, for scripts and tests
    for fn in demo.fns.values():  # the UI's own events stay out of the API docs: /generate is the API
        if fn.api_name != api.API_NAME:
            fn.api_visibility = "private"
    # a bounded queue: past max_queue waiting requests, new ones are told to come back later
    demo.queue(max_size=config.max_queue, default_concurrency_limit=4)
    return demo


def launch_options(config: StudioConfig) -> dict[str, Any]:
    """gr.Blocks.launch keywords for `config` (bind address, auth, upload limit, served folders)."""
    config.outputs.mkdir(parents=True, exist_ok=True)
    guard = None if config.auth is None else LoginGuard(*config.auth)
    quota_bytes = int(config.upload_quota_mb * 2**20)
    middleware = [Middleware(UploadQuota, folder=config.gradio_temp, per_client_bytes=quota_bytes,
                             folder_bytes=2 * quota_bytes)]
    if guard is not None:
        middleware.append(Middleware(LoginGate, guard=guard))
    return {
        "server_name": config.host,
        "server_port": config.port,
        "share": config.share,
        "auth": guard,
        "max_file_size": config.max_upload_bytes,
        "allowed_paths": [str(config.outputs.resolve())],  # generated bundles, nothing else on disk
        "css": CSS,
        "js": SIZE_KEYS_JS,
        "footer_links": ["api", "settings"],
        "run_history": False,  # Gradio 6 would otherwise keep every call's inputs in the browser
        "app_kwargs": {"middleware": middleware},
    }
