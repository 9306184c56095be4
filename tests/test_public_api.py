"""Code outside the package uses only its public names: no module outside ``solver/`` imports a
private module or name of it (one starting with ``_``; dunders such as ``solver.__main__`` are
public), nor reads a private attribute of a solver module it imported.

Read from the source with ``ast``: nothing is imported. Scripts, demos and tests are all held
to it, so that what they use is what a user may use; ``ALLOWED`` lists the exceptions, each
with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "solver"
# Everything outside solver/ that holds Python: the tools, the demos, the tests, the mesh data.
OUTSIDE = ("scripts", "docs", "tests", "meshes")

# (file, private name): each with its reason.
ALLOWED = {
    # The nudge direction of point evaluation, checked against its definition; pointeval.py is
    # being reworked by the lead (issue #23 item 2 leaves it alone), which will make it public.
    ("tests/test_locate.py", "solver.fem.pointeval._direction"),
}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_module(dotted: str) -> bool:
    """Whether ``solver.a.b`` names a module or package of the source tree."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def private_uses(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every private solver module or name ``path`` imports or reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    modules: dict[str, str] = {}  # local name -> the solver module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "solver":
                    continue
                if any(private(part) for part in alias.name.split(".")):
                    found.append((node.lineno, alias.name))
                modules[alias.asname or "solver"] = alias.name if alias.asname else "solver"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "solver":
                continue
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if any(private(part) for part in dotted.split(".")):
                    found.append((node.lineno, dotted))
                if is_module(dotted):
                    modules[alias.asname or alias.name] = dotted
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            chain = []
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                dotted = ".".join([modules[base.id], *reversed(chain)])
                if is_module(dotted):
                    found.append((node.lineno, f"{dotted}.{node.attr}"))
    return found


def test_no_private_solver_names_outside_the_package():
    files = sorted(p for folder in OUTSIDE for p in (ROOT / folder).rglob("*.py"))
    assert any(p.parts[-2] == "scripts" for p in files) and any(p.parts[-2] == "tests" for p in files)
    uses = {(str(p.relative_to(ROOT)), name): line for p in files for line, name in private_uses(p)}
    unexpected = sorted(f"{file}:{line}: {name}" for (file, name), line in uses.items()
                        if (file, name) not in ALLOWED)
    assert not unexpected, "private solver names used outside solver/ (make them public):\n" + "\n".join(unexpected)
    stale = sorted(ALLOWED - set(uses))
    assert not stale, f"ALLOWED lists uses that are gone (remove them): {stale}"


def test_the_check_catches_each_form(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "import solver.fem.pointeval as pe\n"
        "from solver import _lazy\n"
        "from solver.check.compare_run import _hidden, public\n"
        "from solver.fem import pointeval\n"
        "from solver.__main__ import main\n"
        "pe._LOCATORS.clear()\n"
        "pointeval._direction(2)\n"
        "public._fine = 1\n"
    )
    assert sorted(name for _, name in private_uses(source)) == [
        "solver._lazy", "solver.check.compare_run._hidden", "solver.fem.pointeval._LOCATORS",
        "solver.fem.pointeval._direction"]


def test_test_modules_do_not_import_one_another():
    """Shared helpers live in conftest.py fixtures or in helper modules (tests/cli_harness.py),
    not in a test module another imports (which would run its module-level code, and collect
    its tests twice under another name)."""
    tests = ROOT / "tests"
    names = {p.stem for p in tests.glob("test_*.py")}
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            found += [f"{path.name}:{node.lineno}: {m}" for m in imported
                      if m.split(".")[0] in names and m.split(".")[0] != path.stem]
    assert not found, "test modules importing test modules:\n" + "\n".join(found)
