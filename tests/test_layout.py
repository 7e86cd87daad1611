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


# ---- import cycles -------------------------------------------------------------------------------

CYCLE_CHECKED = (*SHIPPED, "bench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the modules of ``packages`` it imports (every import statement: lazy ones and
    ``TYPE_CHECKING`` ones included; ``from a import b`` counts as importing ``a.b`` when that is a
    module, else ``a``)."""
    paths = {module_name(p): p for package in packages for p in (REPO / package).rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(m for a in node.names if (m := known(a.name)))
            elif isinstance(node, ast.ImportFrom):
                prefix = base[: len(base) - node.level + 1] if node.level else []
                module = ".".join([*prefix, *([node.module] if node.module else [])])
                deps.update(m for a in node.names if (m := known(f"{module}.{a.name}")))
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_cycle_in_the_shipped_packages_or_bench() -> None:
    assert cycles(import_graph(CYCLE_CHECKED)) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    real = import_graph(("stream_server",))
    assert "stream_server.hub.live_sessions" in real["stream_server.hub.detached"]
    assert "stream_server.config" in real["stream_server.main"]  # a relative import


# ---- the hub behind ports ------------------------------------------------------------------------

COMPOSITION_ROOT = "stream_server.main"


def test_only_the_composition_root_imports_the_hub() -> None:
    """Every other module reaches the hub through a small ``typing.Protocol`` port."""
    graph = import_graph(SHIPPED)
    assert sorted(m for m, deps in graph.items() if "stream_server.hub.hub" in deps) == [COMPOSITION_ROOT]


def test_no_hub_field_is_set_from_outside() -> None:
    """The hub is built with everything it needs: no ``hub.x = ...`` anywhere in the product."""
    found = []
    for package in SHIPPED:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                targets = node.targets if isinstance(node, ast.Assign) else []
                found += [
                    f"{path.relative_to(REPO)}:{node.lineno}"
                    for t in targets
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "hub"
                ]
    assert found == []


def test_no_class_name_means_two_things() -> None:
    """A class name is defined once across the shipped packages (a reader who sees it knows which)."""
    where: dict[str, list[str]] = {}
    for package in SHIPPED:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    where.setdefault(node.name, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
