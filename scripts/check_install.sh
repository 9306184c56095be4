#!/usr/bin/env bash
# A user's install: `pip install .` (not editable) into a fresh venv outside the tree, then train
# problems/moons.toml and a small disk problem from a directory away from the checkout, so that the
# installed package (its meshes from package data) is what runs. Needs a package index.
#
# Usage: scripts/check_install.sh [DIR]   (default /tmp/transport-install-check; replaced)
# Set PYTHON=/path/to/python3.12 to choose the interpreter (default: the one .venv is built on).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-/tmp/transport-install-check}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    "$root/scripts/bootstrap.sh"
    python="$("$root/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
fi
rm -rf "$dir"
mkdir -p "$dir"
echo "check_install: fresh venv $dir/venv with $python ($("$python" --version 2>&1))"
"$python" -m venv "$dir/venv"
trap 'rm -rf "$root/build"' EXIT  # setuptools' build tree of the non-editable install
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$root"

cd "$dir"
cat > disk.toml <<'TOML'
# moons data on the unit disk (a gmsh mesh from the package's meshes), a few iterations
[domain]
kind = "disk"
center = [0.0, 0.0]
radius = 1.0
[mesh]
cells = 16
[field]
kind = "mlp"
width = 6
slabs = 2
[data]
kind = "moons"
points = 200
[train]
iterations = 5
[output]
png = false
vtx = false
animation = false
TOML
py="$dir/venv/bin/python"
"$py" -c 'import solver, sys; print("check_install: solver", solver.__version__, "from", solver.__file__)'
"$py" -m solver train "$root/problems/moons.toml" --out "$dir/moons"
"$py" -m solver train disk.toml --out "$dir/disk"
echo "check_install: OK ($dir)"
