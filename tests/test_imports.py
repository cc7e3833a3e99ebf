"""The package's import graph has no circle, and its modules stay small (read from the source with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "futurelat"
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> set[str]:
    """The futurelat modules an import statement runs: the named module, its parent packages,
    and for ``from pkg import name`` the submodule ``pkg.name`` when there is one.

    The packages that contain ``module`` are left out: Python runs them before ``module`` itself,
    so an import of a sibling (``futurelat.models.heads.attention`` from ``...heads.mamba``) does
    not close a circle through ``futurelat.models.heads``."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import
            package = module.split(".")[: len(module.split(".")) - node.level + (module in _PACKAGES)]
            base = ".".join(package + ([base] if base else []))
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    parts = module.split(".")
    containing = {".".join(parts[:i]) for i in range(1, len(parts))}
    found = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate in MODULES and candidate not in containing:
                found.add(candidate)
    return found


_PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(modules imported when ``module`` is imported, modules imported later inside its functions);
    imports under ``if TYPE_CHECKING:`` are not run and are left out."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top: set[str] = set()
    deferred: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (deferred if in_function else top).update(_targets(child, module) - {module})
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, deferred


GRAPH = {module: _imports(module) for module in MODULES}


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return False


def test_the_graph_sees_the_package():
    """The checks below read real edges: the builder imports the registry, the trainer its checkpoints."""
    assert "futurelat.registry" in GRAPH["futurelat.models.latent_video_model"][0]
    assert "futurelat.training.checkpoint" in GRAPH["futurelat.training.trainer"][0]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_module_level_imports_form_no_cycle():
    cycle = _find_cycle({module: top for module, (top, _) in GRAPH.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_function_level_import_closes_a_cycle():
    """An import moved into a function to dodge a circle is still a circle: none may exist."""
    top = {module: set(t) for module, (t, _) in GRAPH.items()}
    dodges = [f"{module} -> {target}" for module, (_, deferred) in GRAPH.items() for target in sorted(deferred)
              if _reaches(top, target, module)]
    assert not dodges, f"function-level imports that close a cycle: {dodges}"


def test_the_registry_imports_no_model_or_dataset_module():
    top, deferred = GRAPH["futurelat.registry"]
    assert not (top | deferred), f"futurelat.registry imports {sorted(top | deferred)}"
    for package in ("futurelat.models.backbones", "futurelat.models.heads"):
        assert GRAPH[package] == (set(), set()), f"{package}/__init__.py should import nothing"


def _long_modules() -> dict[str, int]:
    lengths = {str(p.relative_to(PACKAGE.parent)): len(p.read_text(encoding="utf-8").splitlines())
               for p in MODULES.values()}
    return {path: n for path, n in sorted(lengths.items()) if n > MAX_LINES}


def test_no_module_over_the_line_limit():
    assert not _long_modules(), f"modules over {MAX_LINES} lines: {_long_modules()}"
