"""`python app.py`: CoSyn Studio on http://127.0.0.1:7860 (see --help; docs/studio.md for the API).
An installed package starts the same studio as `cosyn-studio`."""

from __future__ import annotations

from cosyn.studio.__main__ import main

if __name__ == "__main__":
    main()
