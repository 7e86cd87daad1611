"""The layout shows the architecture: servers never import clients, and nothing shipped imports the
test or benchmark harnesses. Checked on the source (every import statement, lazy ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package -> top-level packages it must not import
FORBIDDEN = {
    "broker": {"clients", "sesame_voice", "stream_server", "synth_worker", "tests", "bench"},
    "stream_server": {"clients", "sesame_voice", "tests", "bench"},
    "synth_worker": {"clients", "sesame_voice", "stream_server", "tests", "bench"},
    "clients": {"sesame_voice", "tests", "bench"},
    "sesame_voice": {"tests", "bench"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_inside_the_layout(package: str) -> None:
    bad = {
        str(path.relative_to(REPO)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_checker_sees_imports() -> None:
    roots = imported_roots(REPO / "tests" / "conftest.py")
    assert "tests" in roots and "broker" in roots


def test_the_local_stack_harness_is_not_shipped() -> None:
    assert not (REPO / "clients" / "localstack.py").exists()
    assert (REPO / "tests" / "support" / "localstack.py").is_file()


MAX_MODULE_LINES = 350
SHIPPED = ("broker", "stream_server", "synth_worker", "clients", "sesame_voice")


def module_lines(package: str) -> dict[str, int]:
    return {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted((REPO / package).rglob("*.py"))
    }


@pytest.mark.parametrize("package", SHIPPED)
def test_no_shipped_module_is_over_350_lines(package: str) -> None:
    lines = module_lines(package)
    assert lines, f"{package} has no modules"
    assert {name: n for name, n in lines.items() if n > MAX_MODULE_LINES} == {}
