"""The tests' own layout: tests share code only through tests/helpers, never by importing one
another (a test module imported by another is collected through two names' worth of fixtures
and helpers, and changing a test then breaks tests elsewhere)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# The folders a test module may be in, one per layer it exercises (README: Development).
LAYERS = ("unit", "adapters", "scenarios", "properties")


def imports_of(source: str, package: str) -> list[str]:
    """Every module `source` (a module of `package`) imports, by absolute name; for
    `from X import name`, `X.name` too, since the name may be a module."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


def forbidden(module: str) -> bool:
    """A test module or a conftest, which only pytest imports."""
    parts = module.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") or p == "conftest" for p in parts[1:])


def test_no_module_under_tests_imports_a_test_module_or_a_conftest():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.relative_to(TESTS.parent).parent.parts)
        offenders += [
            f"{path.relative_to(TESTS.parent)} imports {module}"
            for module in imports_of(path.read_text(), package)
            if forbidden(module)
        ]
    assert offenders == []


def test_the_check_sees_every_form_of_import():
    """The check above would pass on anything if it missed a way to import."""
    caught = {
        "from tests.test_final import live": "tests.test_final",
        "import tests.scenarios.test_final": "tests.scenarios.test_final",
        "from tests.scenarios import test_final": "tests.scenarios.test_final",
        "from . import test_final": "tests.scenarios.test_final",
        "from .test_final import live": "tests.scenarios.test_final",
        "from ..conftest import sign": "tests.conftest",
        "from tests.conftest import sign": "tests.conftest",
        "def f():\n    from tests.unit.test_x import y\n": "tests.unit.test_x",
    }
    for source, module in caught.items():
        found = imports_of(source, "tests.scenarios")
        assert module in found and any(forbidden(m) for m in found), (source, found)
    allowed = (
        "from tests.helpers.messages import release_message",
        "from tests.helpers import steps",
        "from bot.devtools import shell",
        "import pytest",
        "from .helpers_of_mine import x",
    )
    for source in allowed:
        assert not any(forbidden(m) for m in imports_of(source, "tests.scenarios")), source


def test_every_test_module_is_in_the_folder_of_its_layer():
    misplaced = [
        str(path.relative_to(TESTS.parent))
        for path in sorted(TESTS.rglob("test_*.py"))
        if path.relative_to(TESTS).parts[0] not in LAYERS
    ]
    assert misplaced == []
