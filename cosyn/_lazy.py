"""Package faces that import nothing until a name is used (PEP 562 module `__getattr__`).

Each package's __init__ lists its public names without importing its modules, so that importing one
module (say cosyn.io.fileio) loads neither its heavier siblings nor, through them, packages that
import this one back (cosyn.io.export reads cosyn.data, whose prepare step writes through cosyn.io).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and `__getattr__` for `package`: each name in `exports` is imported on first use
    from the submodule it maps to (a name relative to `package`)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return sorted(exports), __getattr__
