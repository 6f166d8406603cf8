"""The protocol layer stays pure: no aiohttp, no asyncio, no I/O libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import skycore_async

PACKAGE = Path(skycore_async.__file__).parent
PURE = [
    "protocol.py",
    "fields.py",
    "errors.py",
    "validation.py",
    "template.py",
    "notifications.py",
    "models.py",
    "params.py",
    "outcomes.py",
]
FORBIDDEN = {"aiohttp", "asyncio", "socket", "ssl"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a file imports (absolute or from the package)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add("." + node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module: str) -> None:
    """Pure modules import no I/O library, directly or through an impure sibling."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        imports = imported_modules(PACKAGE / current)
        assert not imports & FORBIDDEN, f"{current} imports {imports & FORBIDDEN}"
        todo += [name[1:] + ".py" for name in imports if name.startswith(".")]
