"""docs/limits.md names, beside every limit, the tests that hold it: each name must be a real test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMITS = ROOT / "docs" / "limits.md"
_NAME = re.compile(r"\btest_\w+(?:::test_\w+)?")


def test_every_test_named_in_limits_md_exists() -> None:
    named = set(_NAME.findall(LIMITS.read_text()))
    assert len(named) > 20, "docs/limits.md should name the tests beside its limits"
    missing = []
    for name in sorted(named):
        module, _, function = name.partition("::")
        path = ROOT / "tests" / f"{module}.py"
        if not path.is_file():
            missing.append(f"{name}: no tests/{module}.py")
        elif function and not re.search(rf"^\s*(?:async )?def {function}\(", path.read_text(), re.M):
            missing.append(f"{name}: no such test in tests/{module}.py")
    assert not missing, "docs/limits.md names tests that do not exist:\n" + "\n".join(missing)
