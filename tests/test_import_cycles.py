"""No import cycle between the package's modules (issue 12): read from the source, not from a run.

An edge is a module-level import of another module of the package (also inside top-level ``if`` and
``try`` blocks, and inside ``if TYPE_CHECKING:``, which a type checker follows); the lazy imports
inside functions are not edges, they run only when called. ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``. A package's ``__init__`` importing its own
modules is not counted as a cycle with them (Python runs the parent first by design), so the edge
from a module to its parent packages' ``__init__`` is left out.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import airflow_provider_mj

ROOT = Path(airflow_provider_mj.__file__).parent
PKG = ROOT.name


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def module_level_imports(body: list[ast.stmt], name: str, is_pkg: bool, known: dict) -> set[str]:
    out: set[str] = set()
    for node in body:
        if isinstance(node, ast.If):
            out |= module_level_imports(node.body + node.orelse, name, is_pkg, known)
        elif isinstance(node, ast.Try):
            handlers = [s for h in node.handlers for s in h.body]
            out |= module_level_imports(node.body + node.orelse + node.finalbody + handlers, name, is_pkg, known)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
            out |= subs or {target}
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {}
    for name, (path, is_pkg) in known.items():
        targets = module_level_imports(ast.parse(path.read_text()).body, name, is_pkg, known)
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in known and t != name and t not in parents}
    return graph


def test_the_graph_is_read_from_the_package():
    graph = import_graph()
    # It sees the modules and their imports (a reader that found nothing would pass vacuously).
    assert len(graph) > 40
    assert "airflow_provider_mj.hooks.transport" in graph["airflow_provider_mj.hooks.midjourney"]
    assert "airflow_provider_mj.common" in graph["airflow_provider_mj.triggers.midjourney"]


def test_no_import_cycle_between_modules():
    try:
        order = list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
    assert len(order) == len(import_graph())


def test_a_cycle_would_be_reported():
    # The same check on a graph with a cycle in it fails, naming the cycle.
    graph = import_graph()
    graph["airflow_provider_mj.common"] = graph["airflow_provider_mj.common"] | {"airflow_provider_mj.hooks.midjourney"}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        assert "airflow_provider_mj.common" in err.args[1]
    else:
        raise AssertionError("a cycle through common.py was not detected")
