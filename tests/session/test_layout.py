"""The shape of the package: each module keeps its private names to itself."""

from __future__ import annotations

import ast
from pathlib import Path

import aisopod_session
import aisopod_shared

PACKAGES = [Path(aisopod_session.__file__).parent, Path(aisopod_shared.__file__).parent]


def _private_imports() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aisopod"):
                    found += [
                        f"{path.relative_to(package.parent)}: {node.module}.{alias.name}"
                        for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")
                    ]
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    """A name with a leading underscore is its module's own: a module that needs
    another's helper imports a public name (the helpers live in private modules)."""
    assert _private_imports() == []
