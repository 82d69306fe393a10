"""Does the studio's memory level off under many API calls? RSS of the studio process after each call.

    .venv/bin/python benchmarks/studio_soak.py --calls 300 --steps 4 --out benchmarks/results/studio_soak.json

The studio runs in this process (as `python app.py` would, on a free loopback port, with its own
temporary outputs folder); a gradio_client calls /generate with the shipped example layout. The
result lists the resident set size after every call and the growth over the first and last thirds
of the run: a leak shows as growth that does not shrink.
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosyn.studio.config import StudioConfig  # noqa: E402  (first: the studio switches telemetry off)
from cosyn.studio.ui import build_app, launch_options  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    ap.add_argument("--layout", default=str(ROOT / "assets" / "layouts" / "colon_mixed_stroma.json"))
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/studio_soak.json")
    args = ap.parse_args()
    from gradio_client import Client

    tmp = Path(tempfile.mkdtemp(prefix="cosyn-soak-"))
    cfg = StudioConfig(port=free_port(), checkpoints=Path(args.checkpoints), runs=tmp / "runs",
                       outputs=tmp / "outputs")
    demo = build_app(cfg)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(cfg))
    me = psutil.Process()
    layout = Path(args.layout).read_text()
    client = Client(f"http://127.0.0.1:{cfg.port}/", verbose=False)
    rss, seconds = [], []
    for i in range(args.calls):
        t0 = time.perf_counter()
        client.predict(layout_json=layout, steps=args.steps, seed=i, n=1, api_name="/generate")
        seconds.append(time.perf_counter() - t0)
        gc.collect()
        rss.append(me.memory_info().rss / 2**20)
        if (i + 1) % 25 == 0:
            print(f"call {i + 1}/{args.calls}: RSS {rss[-1]:.0f} MiB, {seconds[-1]:.2f} s", flush=True)
    demo.close()
    third = max(1, args.calls // 3)
    result = {"calls": args.calls, "steps": args.steps, "layout": args.layout, "rss_mib": [round(r, 1) for r in rss],
              "rss_after_first_mib": rss[0], "rss_last_mib": rss[-1],
              "growth_first_third_mib": rss[third - 1] - rss[0], "growth_last_third_mib": rss[-1] - rss[-third],
              "seconds_per_call_median": statistics.median(seconds)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mib"}, indent=1))


if __name__ == "__main__":
    main()
