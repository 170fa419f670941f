"""The shape of the code, read from the source: no import cycle in netbench/, no module over 450 lines,
and every error netbench raises on purpose derives from NetbenchError."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "netbench"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every netbench module the file imports, at the top or inside a function (both run some day).
    `from netbench import x` counts as netbench.x when x is a module, else as netbench."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, name, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_imports_inside_functions_and_from_packages():
    graph = import_graph()
    assert "netbench.trace.tracer" in graph["netbench.run"]  # imported inside Session._trace
    assert "netbench.cluster" in graph["netbench.run"]  # `from netbench import cluster`


def test_no_import_cycle_in_netbench():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (limit {MAX_LINES}): split it by noun"


BUILTIN_ERRORS = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
                  and issubclass(getattr(builtins, n), BaseException)}


def raised_builtins(source: str, label: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, label)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BUILTIN_ERRORS:
                found.append(f"{label}:{node.lineno}: raise {exc.id}")
    return found


def test_the_raise_scan_sees_builtin_errors():
    source = "def f():\n    raise RuntimeError('x')\n\ndef g():\n    raise OurError('y')\n    raise\n"
    assert raised_builtins(source, "m.py") == ["m.py:2: raise RuntimeError"]


def test_netbench_raises_only_its_own_errors():
    """ValueError, RuntimeError, Exception … are for bugs; what netbench raises on purpose is a
    NetbenchError (InvalidValue is also a ValueError, for pydantic validators)."""
    found = [line for path in sorted(PACKAGE.rglob("*.py"))
             for line in raised_builtins(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)
