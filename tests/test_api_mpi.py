"""The Python API is collective like the command line (issue 25): a parameter or input that one
rank refuses raises on every rank, before any collective, instead of leaving the others waiting
(``solver.parallel.agreed``). Each case is a ``mpirun -n 2`` of its own under a timeout."""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

import os
import signal
import subprocess
import sys

import pytest

from cli_harness import ENV, MPIRUN

pytestmark = [pytest.mark.serial, pytest.mark.slow]  # each case starts its own mpirun (slow: the quick lane skips them)

SCRIPT = """
import sys
import numpy as np
from mpi4py import MPI
from sklearn.datasets import make_moons
from solver import FlowClassifier

comm = MPI.COMM_WORLD
X, y = make_moons(60, noise=0.1, random_state=0)
case = sys.argv[1]
good = dict(cells=6, width=3, slabs=2, iterations=1, check_every=1)
try:
    if case == "fit":  # rank 1 only has a bad parameter
        FlowClassifier(**dict(good, cells=-1 if comm.rank == 1 else 6)).fit(X, y)
    elif case == "labels":  # rank 1 only passes one class
        FlowClassifier(**good).fit(X, y if comm.rank == 0 else np.zeros_like(y))
    else:  # predict: rank 1 only passes points of 3 features
        model = FlowClassifier(**good).fit(X, y)
        model.predict(X if comm.rank == 0 else np.hstack([X, X[:, :1]]))
    print(f"[rank {comm.rank} no error]", flush=True)
except ValueError as error:
    print(f"[rank {comm.rank} {type(error).__name__}: {error}]", flush=True)
"""


@pytest.mark.parametrize("case, fragment", [
    ("fit", "'cells' parameter"),
    ("labels", "at least 2 classes"),
    ("predict", "features"),
])
def test_one_ranks_bad_input_raises_on_every_rank(tmp_path, case, fragment):
    cmd = [str(MPIRUN), "-n", "2", sys.executable, "-c", SCRIPT, case]
    process = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"hang\n{out}\n{err}")
    # The ranks' lines may interleave on one line of mpirun's output: split at each "[rank ".
    lines = ["[rank" + part for part in out.split("[rank")[1:]]
    assert len(lines) == 2 and process.returncode == 0, out + err
    assert all("no error" not in line and "Error" in line for line in lines), out
    one = next(line for line in lines if line.startswith("[rank 1"))
    other = next(line for line in lines if line.startswith("[rank 0"))
    assert fragment in one, one
    assert "rank 1 refused its input" in other and fragment in other, other
