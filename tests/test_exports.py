"""The packages' re-exports (``__all__``, imported on first use): every listed name is its
module's object, none hides a submodule, and ``import solver`` stays light."""

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import solver

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["solver"] + sorted(f"solver.{p.parent.name}" for p in (ROOT / "solver").glob("*/__init__.py"))


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_is_its_modules_object(name):
    package = importlib.import_module(name)
    assert package.__all__ and package.__all__ == sorted(set(package.__all__)), name
    submodules = {p.stem for p in Path(package.__file__).parent.glob("*.py")} | {
        p.parent.name for p in Path(package.__file__).parent.glob("*/__init__.py")}
    for public in package.__all__:
        assert public not in submodules, f"{name}.{public} would be the module once it is imported"
        value = getattr(package, public)
        home = importlib.import_module(value.__module__)
        assert home.__name__.startswith(name + "."), (public, value.__module__)
        assert getattr(home, public) is value
        assert public in dir(package)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        package.no_such_name


def test_warnings_and_errors_come_from_solver():
    from solver.errors import InputError
    from solver.estimator import UncertifiedWarning

    assert solver.InputError is InputError and issubclass(solver.UnstableSolve, solver.InputError)
    assert solver.UncertifiedWarning is UncertifiedWarning
    with pytest.warns(solver.OutsideDomainWarning):
        warnings.warn("outside", solver.OutsideDomainWarning)


@pytest.mark.serial  # a child python inside an MPI job would try to join it
def test_import_solver_is_light():
    code = ("import sys, solver, solver.model, solver.resnet; "
            "heavy = sorted({'sklearn', 'dolfinx'} & set(sys.modules)); assert not heavy, heavy; "
            "from solver.model import VelocityModel; assert 'dolfinx' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
