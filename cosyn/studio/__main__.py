"""`cosyn-studio` (installed) or `python app.py` (checkout): CoSyn Studio on http://127.0.0.1:7860."""

from __future__ import annotations

from cosyn.studio.config import parse_args  # first: importing cosyn.studio switches telemetry off
from cosyn.studio.ui import build_app, launch_options


def main() -> None:
    config = parse_args()
    build_app(config).launch(**launch_options(config))


if __name__ == "__main__":
    main()
