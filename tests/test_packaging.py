"""The package as installed: its mesh sources are package data, its package list is complete, its
version is the metadata's, and a wheel (a non-editable install) meshes a disk and trains on it.

The full check, `pip install .` into a fresh venv with its dependencies from the index, is
``scripts/check_install.sh`` (minutes, needs the network); the slow test here installs the wheel
next to the development venv's dependencies instead.
"""

import importlib.metadata
import importlib.resources
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import solver
from solver.errors import InputError
from solver.fem import mesh

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_meshes_are_read_from_package_data():
    """geo_file finds each geometry through importlib.resources, and it is meshes/'s file."""
    package = importlib.resources.files("solver.meshes")
    for dim, name in ((2, "disk.geo"), (3, "ball.geo")):
        geo = mesh.geo_file(dim)
        assert str(geo) == str(package / name)
        with importlib.resources.as_file(geo) as path:
            assert path.read_bytes() == (ROOT / "meshes" / name).read_bytes()
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"]["solver.meshes"] == "meshes"
    shipped = {p.name for p in (ROOT / "meshes").glob(setuptools["package-data"]["solver.meshes"][0])}
    assert shipped == {"disk.geo", "ball.geo"}


def test_an_install_without_the_meshes_says_to_reinstall(monkeypatch):
    """An editable install made before solver.meshes existed: one clear error, not a traceback."""
    monkeypatch.setattr(mesh, "MESH_DIR", None)
    with pytest.raises(InputError, match=r"solver\.meshes .* is not installed; reinstall the package"):
        mesh.geo_file(2)


@pytest.mark.serial
def test_every_package_is_listed():
    """pyproject lists the packages (the mapped solver.meshes rules out packages.find): all of them."""
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "solver").rglob("__init__.py")}
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == on_disk | {"solver.meshes"}


def test_version_is_the_metadata_version():
    assert solver.__version__ == importlib.metadata.version("transport-inverse")
    assert solver.__version__ == PYPROJECT["project"]["version"]


DISK = """\
[domain]
kind = "disk"
[mesh]
cells = 12
[field]
kind = "mlp"
width = 4
slabs = 2
[data]
kind = "moons"
points = 100
[train]
iterations = 2
[output]
png = false
vtx = false
animation = false
"""


@pytest.mark.slow
@pytest.mark.serial
def test_wheel_trains_on_a_disk(tmp_path):
    """Build the wheel, install it alone into a directory, and train a disk from elsewhere."""
    # From a copy of what the wheel is made of: setuptools builds in the project's build/.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("solver", "meshes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel"),
                          str(src)], check=True, env=env, cwd=tmp_path)
    wheel = next((tmp_path / "wheel").glob("transport_inverse-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"solver/meshes/disk.geo", "solver/meshes/ball.geo", "solver/fem/gradient_kernels.c"} <= names
    subprocess.run(pip + ["install", "--no-deps", "-q", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, env=env, cwd=tmp_path)
    (tmp_path / "disk.toml").write_text(DISK)
    # The wheel's directory comes before the development install on the path: solver is the wheel's.
    env["PYTHONPATH"] = str(tmp_path / "site")
    where = subprocess.run([sys.executable, "-c", "import solver.fem.mesh as m; print(m.__file__, m.MESH_DIR)"],
                           check=True, env=env, cwd=tmp_path, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "site") for p in where), where
    result = subprocess.run([sys.executable, "-m", "solver", "train", "disk.toml", "--out", "run"],
                            env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "theta.npz").is_file()
