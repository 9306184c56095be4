"""The command line under ``mpirun -n 2``: results, and bad input giving one clear message and a
non-zero exit on every rank (never a hang, never a traceback from deep inside)."""

from mpi4py import MPI  # noqa: F401

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MPIRUN = Path(sys.executable).parent / "mpirun"

pytestmark = pytest.mark.serial  # each test starts its own mpirun

SMALL = """
[mesh]
cells = 8
[field]
slabs = 2
[compare]
points = 50
grid = 9
{extra}
[output]
vtx = {vtx}
png = {png}
"""


def run(args, cwd, timeout=180, ranks=2):
    cmd = [str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "solver", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write(tmp_path, text, name="problem.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_compare_writes_results(tmp_path):
    config = write(tmp_path, SMALL.format(extra="refine = [4, 8]", vtx="true", png="true"))
    out = tmp_path / "run"
    done = run(["compare", config, "--out", out], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == 2
    assert metrics["comparison"]["l2"] < 0.05
    assert len(metrics["refinement"]["rows"]) == 2
    for name in ("compare.png", "convergence.png", "config.toml", "u0.bp"):
        assert (out / name).exists(), name
    # One rank reports: the summary line appears once.
    assert done.stdout.count("PDE vs characteristics") == 1
    # An existing run directory is not overwritten without --force.
    again = run(["compare", config, "--out", out, "--refine", ""], tmp_path)
    assert again.returncode == 2
    assert "exists" in again.stderr and "--force" in again.stderr
    forced = run(["compare", config, "--out", out, "--refine", "", "--force"], tmp_path)
    assert forced.returncode == 0, forced.stderr


BAD = [
    # name, config text (None: no file), expected fragments of the message
    ("missing file", None, ["config file not found", "missing.toml"]),
    ("syntax error", "[mesh]\ncells = = 3\n", ["invalid TOML", "problem.toml:2"]),
    ("unknown key", "[field]\nwidht = 3\n", ["field.widht", "Valid keys", "problem.toml"]),
    ("bad activation", '[field]\nactivation = "swish"\n', ["field.activation", "swish", "tanh", "relu"]),
    ("bad domain kind", '[domain]\nkind = "torus"\n', ["domain.kind", "torus", "box", "disk", "ball"]),
    ("wrong type", '[mesh]\ncells = "many"\n', ["mesh.cells", "many", "integer"]),
    ("rotation on a box", '[field]\nkind = "rotation"\n', ["rotation", "box"]),
    ("forced dt breaks CFL", "[mesh]\ncells = 8\n[solver]\ndt = 0.5\n", ["dt=0.5", "CFL"]),
    (
        "points outside",
        '[mesh]\ncells = 8\n[compare]\npoints_file = "points.csv"\n',
        ["2 of 3 points lie outside", "points.csv", "rows [2, 3]"],
    ),
    (
        "non-finite points",
        '[mesh]\ncells = 8\n[compare]\npoints_file = "nan.csv"\n',
        ["not finite", "nan.csv"],
    ),
]


@pytest.mark.parametrize("name, text, fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_message_nonzero_exit(tmp_path, name, text, fragments):
    (tmp_path / "points.csv").write_text("x1,x2\n0.1,0.2\n1.5,0.0\n0.0,-3\n")
    (tmp_path / "nan.csv").write_text("0.1,0.2\nnan,0.0\n")
    config = tmp_path / "missing.toml" if text is None else write(tmp_path, text)
    done = run(["compare", config, "--out", tmp_path / "run"], tmp_path, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr  # one message, from rank 0
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
