"""The command line under ``mpirun -n 2``: results, and bad input giving one clear message and a
non-zero exit on every rank (never a hang, never a traceback from deep inside)."""

from mpi4py import MPI  # noqa: F401

import json
import os
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
degree = 2
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
    """``python -m solver ARGS`` on ``ranks`` ranks in ``cwd``, importing this checkout's solver
    (not whichever one the interpreter would find from ``cwd``)."""
    cmd = [str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "solver", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def write(tmp_path, text, name="problem.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow  # a solve, a refinement study, PNG and VTX under mpirun: over 20 s
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
    ("forced dt breaks CFL", "[mesh]\ncells = 8\n[solver]\ndt = 0.5\n", ["solver.dt = 0.5", "CFL"]),
    ("negative viscosity", "[field]\nviscosity = -0.1\n", ["field.viscosity", "-0.1", ">= 0"]),
    ("viscosity beyond max_steps", "[mesh]\ncells = 8\n[field]\nviscosity = 100.0\n",
     ["field.viscosity = 100", "time steps", "solver.max_steps = 10000", "explicit diffusion step"]),
    (
        "points outside",
        '[mesh]\ncells = 8\n[compare]\npoints_file = "points.csv"\n',
        ["2 of 3 points lie outside", "points.csv", "lines [3, 4]"],
    ),
    (
        "non-finite points",
        '[mesh]\ncells = 8\n[compare]\npoints_file = "nan.csv"\n',
        ["not a finite number", "nan.csv"],
    ),
]


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("case", ["depth 0", "no theta.npz", "truncated theta.npz"])
def test_export_of_a_bad_run_exits_2_on_every_rank(tmp_path, case, make_run):
    """export works on rank 0 only; its InputError reaches rank 1 too (it used to wait forever)."""
    from solver.rundir import store
    run_dir = tmp_path / "run"
    make_run(run_dir)
    args, fragment = ["export", run_dir, "--depth", "2"], None
    if case == "depth 0":
        args[-1], fragment = "0", "--depth must be >= 1, got 0"
    elif case == "no theta.npz":
        (run_dir / store.THETA).unlink()
        fragment = "theta.npz: file not found"
    else:
        data = (run_dir / store.THETA).read_bytes()
        (run_dir / store.THETA).write_bytes(data[:100])
        fragment = "theta.npz: cannot read learned parameters: the file is empty or truncated"
    done = run(args, tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], done.stderr


def test_export_writes_on_rank_0_and_logs_once(tmp_path, make_run):
    make_run(tmp_path / "run")
    done = run(["export", tmp_path / "run", "--depth", "2", "--format", "npz"], tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("wrote") == 1 and (tmp_path / "run" / "resnet-euler-2.npz").exists()


@pytest.mark.slow  # 100 iterations on 5³ DG2 and the pictures under mpirun: 262 s on a loaded machine (2026-12-04)
def test_a_one_section_problem_file_trains_on_3d_csv_data(tmp_path):
    """``[data] kind = "csv"`` and a path, nothing else: Ω is the 3D box because the file has 3
    features, the mesh the coarse DG2 start of 3D, and the run is certified."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1.0, 0.6, (40, 3)), rng.normal(1.0, 0.6, (40, 3))])
    y = np.repeat([0, 1], 40)
    rows = "\n".join(f"{a:.6f},{b:.6f},{c:.6f},{k}" for (a, b, c), k in zip(X, y))
    (tmp_path / "points.csv").write_text("x1,x2,x3,label\n" + rows + "\n")
    config = write(tmp_path, '[data]\nkind = "csv"\npath = "points.csv"\n')
    done = run(["train", config, "--out", tmp_path / "run"], tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["certified"] and metrics["iterations"] == 100
    assert (metrics["mesh_cells"], metrics["degree"]) == (5, 2)  # raised only by local refinements
    resolved = (tmp_path / "run" / "config.toml").read_text()
    assert "lower = [-1.0, -1.0, -1.0]" in resolved and "cells = 5" in resolved and "degree = 2" in resolved


def test_warnings_are_log_lines_and_uncertified_runs_say_what_to_do(tmp_path):
    """Data on facets (2D moons at x3 = 0 of a 4³ box, DG: rk3): one ``warning:`` line on stdout
    for the training and one for the test points, without Python's file:line; a run the check
    fails with adapt off says to turn adapt on."""
    config = write(tmp_path, "[domain]\nlower = [-1.0, -1.0, -1.0]\nupper = [1.0, 1.0, 1.0]\n[mesh]\ncells = 4\n"
                             "[solver]\nscheme = \"rk3\"\n"
                             "[field]\nslabs = 2\n[data]\npoints = 60\naugment_dim = 3\n"
                             "[train]\niterations = 2\nadapt = false\ntolerance = 1e-9\n"
                             "[output]\npng = false\nvtx = false\nanimation = false\n")
    done = run(["train", config, "--out", tmp_path / "run"], tmp_path)
    assert done.returncode == 0, done.stderr
    facets = [line for line in done.stdout.splitlines() if "lie on mesh facets" in line]
    assert [line.split(" points lie")[0] for line in facets] == [  # one line per point set
        "warning: data: 48 of 48", "warning: data (test points): 12 of 12"], done.stdout
    assert "pointeval.py" not in done.stdout + done.stderr
    verdict = [line for line in done.stdout.splitlines() if line.startswith("NOT CERTIFIED")]
    assert len(verdict) == 1 and "What to do: turn on train.adapt" in verdict[0]
    assert "iter    2/2" in done.stdout


def test_a_csv_run_trains_on_the_whole_file_and_takes_a_test_file(tmp_path):
    """data.test_path: every row of data.path trains; the test file's point outside Ω is a
    warning line and metrics.json's test_outside, not an abort."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1.0, 0.5, (30, 2)), rng.normal(1.0, 0.5, (30, 2))])
    rows = "".join(f"{a:.6f},{b:.6f},{'ab'[k]}\n" for (a, b), k in zip(X, np.repeat([0, 1], 30)))
    (tmp_path / "train.csv").write_text("x1,x2,label\n" + rows)
    (tmp_path / "test.csv").write_text("x1,x2,label\n-1.0,-1.0,a\n1.0,1.0,b\n40.0,0.0,b\n")
    config = write(tmp_path, '[mesh]\ncells = 9\n[field]\nslabs = 2\n[data]\nkind = "csv"\npath = "train.csv"\n'
                             'test_path = "test.csv"\n[train]\niterations = 2\nadapt = false\n'
                             '[output]\npng = false\nvtx = false\nanimation = false\n')
    done = run(["train", config, "--out", tmp_path / "run"], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["train_points"], metrics["test_points"], metrics["test_outside"]) == (60, 2, 1)
    assert metrics["classes"] == ["a", "b"]
    lines = [line for line in done.stdout.splitlines() if "1 of 3 test points fall outside" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "test.csv" in lines[0], done.stdout
