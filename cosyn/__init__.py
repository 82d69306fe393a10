"""CoSyn Studio: co-synthesis of H&E nuclei image / label / instance triples."""

from pathlib import Path

__version__ = "0.2.0"

# Example layouts, prompt presets and the prompt vocabulary. In the repository cosyn/assets links to
# the top-level assets/; a built wheel carries the files themselves (pyproject.toml, package-data).
ASSETS = Path(__file__).resolve().parent / "assets"
