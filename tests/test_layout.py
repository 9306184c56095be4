"""The package's import layering, read from the source with ``ast`` (nothing is imported here).

Every ``import`` of a ``solver`` module counts, at module level or inside a function (a lazy
import still ties the two modules together), except under ``if TYPE_CHECKING:``, which never
runs. The packages form layers, lowest first (``LAYERS``): a module may import modules of its
own package and of the packages below it, never above. ``solver/__init__.py`` imports only
``solver._lazy`` and nothing heavy. The numpy-only packages must not load dolfinx when imported.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "solver"

# Lowest first. A single-module "package" (errors.py, config.py, ...) is a layer of its own.
# resnet/ (numpy and ONNX) sits below check/, which measures the exported ResNet of a run.
# rundir/files.py (atomic writes), rundir/columns.py (history.csv's columns) and rundir/store.py (the run directory's file formats; numpy
# and json only) are the layer "rundir.store": every layer that reads or writes a run directory
# or a net uses them, so that each format and the write-then-rename live in one place; the rest
# of rundir/ (what commands write at the end: outputs, fields, plots) is the top layer.
LAYERS = ("_lazy", "errors", "owned", "validate", "convergence", "parallel", "stopping", "model", "config", "guards", "rundir.store",
          "fem", "learn", "resnet", "check", "plain2resnet", "rundir", "fitting", "estimator", "__main__")
LOW_MODULES = {"solver.rundir.files": "rundir.store", "solver.rundir.store": "rundir.store",
               "solver.rundir.columns": "rundir.store"}

# Imports that go up a layer, each with its reason.
ALLOWED_UPWARD = {
    # config checks [train] with the optimizer's own names and defaults; learn/optimize.py is
    # numpy-only (no FE code), so config stays free of dolfinx.
    ("solver.config", "solver.learn.optimize"),
    # InputLayer.pretrain fits the input and output layers by the training's own L-BFGS (imported
    # inside the method; learn/optimize.py is numpy-only, as above).
    ("solver.model.input_layer", "solver.learn.optimize"),
}

# Packages that must not load dolfinx (numpy, scipy, scikit-learn and onnx only).
WITHOUT_DOLFINX = ("solver.convergence", "solver.model", "solver.config", "solver.resnet", "solver.plain2resnet")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imported_names(module: str, tree: ast.AST) -> list[str]:
    """Absolute names of everything ``tree`` imports (``from a import b`` gives ``a.b``: the
    module a.b, or else the name b of the module a), skipping ``if TYPE_CHECKING:`` blocks."""
    names: list[str] = []
    is_package = MODULES[module].name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.split(".")
                parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
                base = ".".join(parent + ([base] if base else []))
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _solver_module(name: str) -> str | None:
    """The solver module ``name`` refers to (the longest prefix that is one), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _package_lazy_split(tree: ast.Module) -> tuple[ast.Module, list[ast.AST]]:
    """solver/__init__.py without its ``__getattr__`` (PEP 562: imports on first access, e.g.
    ``solver.FlowClassifier``), and that function."""
    lazy = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    return ast.Module(body=[node for node in tree.body if node not in lazy], type_ignores=[]), lazy


def import_graph() -> dict[str, set[str]]:
    """module -> the solver modules it imports (itself excluded; for the package itself, the
    eager imports only: its lazy ``__getattr__`` ties it to nothing at import time)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if module == "solver":
            tree = _package_lazy_split(tree)[0]
        targets = {_solver_module(n) for n in _imported_names(module, tree)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


GRAPH = import_graph()


def layer(module: str) -> str | None:
    """The layer of a module: ``solver.model.data`` -> model; None for ``solver`` itself."""
    if module in LOW_MODULES:
        return LOW_MODULES[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_is_in_a_layer():
    unknown = sorted(m for m in MODULES if m != "solver" and layer(m) not in LAYERS)
    assert not unknown, f"modules outside LAYERS (add their package to it): {unknown}"


def test_no_import_cycles():
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_packages_import_only_downward():
    upward = set()
    for module, targets in GRAPH.items():
        if module == "solver":
            continue
        rank = LAYERS.index(layer(module))
        for target in targets:
            if target != "solver" and LAYERS.index(layer(target)) > rank:
                upward.add((module, target))
    unexpected = sorted(upward - ALLOWED_UPWARD)
    assert not unexpected, "imports up a layer (LAYERS, lowest first): " + ", ".join(
        f"{m} -> {t}" for m, t in unexpected)
    stale = sorted(ALLOWED_UPWARD - upward)
    assert not stale, f"ALLOWED_UPWARD lists imports that are gone (remove them): {stale}"


def test_package_init_is_light():
    # mpi4py must come before dolfinx: importing solver loads it, the version from the metadata,
    # and the lazy re-exports (solver._lazy: their names are imported on first use, PEP 562;
    # tests/test_exports.py checks in a fresh interpreter that import solver loads no sklearn).
    eager, _ = _package_lazy_split(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")))
    names = _imported_names("solver", eager)
    imported = {n.split(".")[0] for n in names if not n.startswith("solver.")} - {"__future__"}
    assert imported <= {"mpi4py", "importlib"}, f"solver/__init__.py imports {sorted(imported)}"
    ours = {_solver_module(n) for n in names if n.startswith("solver.")}
    assert ours <= {"solver._lazy"}, f"solver/__init__.py imports {sorted(ours)}"


@pytest.mark.serial  # a child python inside an MPI job would try to join it
def test_numpy_packages_do_not_load_dolfinx():
    modules = sorted((m for m in MODULES if any(m == p or m.startswith(p + ".") for p in WITHOUT_DOLFINX)),
                     key=lambda m: (LAYERS.index(layer(m)), m))
    # One fresh interpreter imports them one by one, lowest layer first: dolfinx would stay
    # loaded once any of them loaded it, and the first module after which it is present is named.
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'dolfinx' not in sys.modules, f'importing {name} loads dolfinx'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
