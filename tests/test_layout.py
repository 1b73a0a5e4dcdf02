"""The package layout stays readable: no import cycles between modules, small modules, lazy heavy imports."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "cerbero_hf"
HEAVY = ("torch", "transformers", "datasets", "trl", "sentence_transformers", "evaluate", "peft", "ray")


def _module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:`` (imports for type checkers only, never run)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST):
    """Every import statement in ``node``, inside functions and classes too, except the body of an
    ``if TYPE_CHECKING:`` (its ``else:`` branch runs, so it counts)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for stmt in node.orelse:
            yield from _import_nodes(stmt)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _import_nodes(child)


def _imports(path) -> set[str]:
    """Modules of ours that ``path`` imports anywhere: at module level and lazily inside functions. A lazy
    import still makes the two modules depend on each other, so it counts as an edge of the graph."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module.startswith("cerbero_hf"):
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
        else:
            found.update(a.name for a in node.names if a.name.startswith("cerbero_hf"))
    return found


def test_no_import_cycles():
    """No two modules reach each other through imports, counting the imports inside functions (lazy imports
    hide a cycle at load time but not the tangle). ``cerbero_hf/__init__.py`` is left out of the graph: it
    re-exports the public names of every module on first use (PEP 562), so it imports everything by design,
    and the modules import only its constants (``REPO_URL``, ``__version__``), never through it."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    del modules["cerbero_hf"]
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reach = {name: reachable(name) for name in graph}
    # a cycle: the modules that reach `name` and that `name` reaches (its strongly connected component)
    cycles = {tuple(sorted({name} | {m for m in reach[name] if name in reach[m]})) for name in graph if name in reach[name]}
    assert not cycles, "import cycles (modules that all import each other):\n" + "\n".join(
        " <-> ".join(c) for c in sorted(cycles))


def test_modules_stay_small():
    big = {_module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert not big, f"modules over 300 lines: {big}"


def test_import_and_help_load_no_heavy_library():
    code = ("import sys, cerbero_hf.cli, cerbero_hf.recipe, cerbero_hf.stages as s; s.all_stages(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
