"""No import cycles between cirlib's packages and top-level modules.

Every ``import`` in cirlib (at module level or inside a function: both are dependencies) is an
edge from the importing unit to the imported one, a unit being a subpackage (``cirlib.data``,
``cirlib.models``, ...) or a top-level module (``cirlib.train``, ``cirlib.registry``, ...). The
graph must have no cycle, so each layer can be read, tested and replaced from the bottom up.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "cirlib"


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def import_edges(root: Path = ROOT) -> dict[str, set[tuple[str, str]]]:
    """``{unit: {(imported unit, file), ...}}`` over every cirlib source file."""
    edges: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        source = _unit(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "cirlib":  # from cirlib import methods
                    names = [f"cirlib.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("cirlib.") and _unit(name) != source:
                    edges.setdefault(source, set()).add((_unit(name), str(path.relative_to(root))))
    return edges


def cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    graph = {u: {v for v, _ in out} for u, out in edges.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_cirlib_packages():
    edges = import_edges()
    found = cycles(edges)
    detail = [
        f"{a} -> {b} ({where})"
        for component in found
        for a in component
        for b, where in sorted(edges.get(a, ()))
        if b in component
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_the_cycles_the_issue_named_stay_gone():
    edges = {u: {v for v, _ in out} for u, out in import_edges().items()}
    assert "cirlib.notebook" not in edges.get("cirlib.train", set())
    assert "cirlib.registry" not in edges.get("cirlib.methods", set())
    assert "cirlib.data" not in edges.get("cirlib.models", set())


def test_the_checker_sees_a_cycle(tmp_path):
    """The test above could fail: two units importing each other are reported."""
    pkg = tmp_path / "cirlib"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from cirlib.b import x\n")
    (pkg / "b.py").write_text("def f():\n    import cirlib.a.inner\n")
    assert cycles(import_edges(pkg)) == [["cirlib.a", "cirlib.b"]]
