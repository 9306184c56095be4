"""The Python API is collective like the command line (issue 25): a parameter or input that one
rank refuses raises on every rank, before any collective, instead of leaving the others waiting
(``solver.parallel.agreed``). Each case is a ``mpirun -n 2`` of its own under a timeout."""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

import subprocess
import time

import pytest

from cli_harness import solver

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
    elif case == "labels":  # rank 1 only passes one class (and so labels other than rank 0's)
        FlowClassifier(**good).fit(X, y if comm.rank == 0 else np.zeros_like(y))
    elif case == "predict":  # rank 1 only passes points of 3 features
        model = FlowClassifier(**good).fit(X, y)
        model.predict(X if comm.rank == 0 else np.hstack([X, X[:, :1]]))
    elif case == "fit-data":  # rank 1 passes other points: each rank would train on its own data
        FlowClassifier(**good).fit(X if comm.rank == 0 else X + 0.01, y)
    elif case == "predict-rows":  # rank 1 passes fewer points: the ranks' shares would mismatch
        model = FlowClassifier(**good).fit(X, y)
        model.predict(X if comm.rank == 0 else X[:10])
    else:  # export: rank 1 only asks for an unknown scheme (rank 0 would write the file)
        model = FlowClassifier(**good).fit(X, y)
        model.export_onnx("net.onnx", depth=4, scheme="euler" if comm.rank == 0 else "nope")
    print(f"[rank {comm.rank} no error]", flush=True)
except ValueError as error:
    print(f"[rank {comm.rank} {type(error).__name__}: {error}]", flush=True)
"""


@pytest.mark.parametrize("case, fragment", [
    ("fit", "'cells' parameter"),
    ("predict", "features"),
    ("export", "Invalid scheme"),
])
def test_one_ranks_bad_input_raises_on_every_rank(tmp_path, case, fragment):
    process, out, err, _ = run_two_ranks(tmp_path, SCRIPT, case)
    # The ranks' lines may interleave on one line of mpirun's output: split at each "[rank ".
    lines = ["[rank" + part for part in out.split("[rank")[1:]]
    assert len(lines) == 2 and process.returncode == 0, out + err
    assert all("no error" not in line and "Error" in line for line in lines), out
    one = next(line for line in lines if line.startswith("[rank 1"))
    other = next(line for line in lines if line.startswith("[rank 0"))
    assert fragment in one, one
    assert "rank 1 refused its input" in other and fragment in other, other


@pytest.mark.parametrize("case, fragment", [
    ("fit-data", "X differs between the ranks (rank 1's values or dtype are not rank 0's); under MPI every rank "
                 "passes the same X"),
    ("predict-rows", "X differs between the ranks (rank 0's has shape (60, 2), rank 1's (10, 2))"),
    ("labels", "y differs between the ranks (rank 1's values or dtype are not rank 0's)"),
])
def test_ranks_that_pass_different_data_raise_the_same_error(tmp_path, case, fragment):
    """Each rank's input is valid alone, but they differ: the same InputError on every rank
    (silently, fit trained each rank on its own data; predict said "terminal must return shape")."""
    process, out, err, _ = run_two_ranks(tmp_path, SCRIPT, case)
    lines = sorted("[rank" + part.rstrip() for part in out.split("[rank")[1:])
    assert process.returncode == 0 and len(lines) == 2, out + err
    assert lines[0].replace("[rank 0", "[rank 1") == lines[1] and fragment in lines[0], out


def run_two_ranks(tmp_path, script: str, *args: str,
                  timeout: float = 120) -> tuple[subprocess.CompletedProcess, str, str, float]:
    """``mpirun -n 2 python -c script args`` in ``tmp_path`` (``cli_harness.solver``: the test fails
    on a hang): the finished process, its stdout and stderr, and its wall time."""
    started = time.monotonic()
    done = solver(args, tmp_path, timeout=timeout, driver=script)
    return done, done.stdout, done.stderr, time.monotonic() - started


FAULT = """
import sys
import numpy as np
from mpi4py import MPI
from sklearn.datasets import make_moons
import solver.learn.train
import solver.model.characteristics
import solver.parallel
from solver import FlowClassifier

solver.parallel.PEER_WAIT = 3.0
comm = MPI.COMM_WORLD
X, y = make_moons(60, noise=0.1, random_state=0)
model = FlowClassifier(cells=6, width=3, slabs=2, iterations=1, check_every=1)


def fault(*args, **kwargs):
    raise MemoryError("a fault on rank 1 only")


if sys.argv[1] == "fit":  # rank 1 fails inside fit, before training's first collective
    if comm.rank == 1:
        solver.learn.train.train = fault
    model.fit(X, y)
else:  # rank 1 fails inside predict, before the characteristics' gather
    model.fit(X, y)
    if comm.rank == 1:
        solver.model.characteristics.solve = fault
    model.predict(X)
print(f"[rank {comm.rank} went on]", flush=True)
"""


@pytest.mark.parametrize("where", ["fit", "predict"])
def test_a_fault_on_one_rank_aborts_the_job_instead_of_a_hang(tmp_path, where):
    """A fault that no check foresees (here a MemoryError) on rank 1 only, while rank 0 waits for
    it in a collective: rank 1 waits PEER_WAIT seconds for rank 0, then prints its traceback and
    aborts the job (without the net this hung until killed)."""
    process, out, err, seconds = run_two_ranks(tmp_path, FAULT, where)
    assert process.returncode != 0 and "went on" not in out, out + err
    assert "MemoryError: a fault on rank 1 only" in err, err  # the traceback
    assert "error: rank 1 failed (MemoryError: a fault on rank 1 only) and the other ranks did not arrive " \
           "within 3.0 s" in err and "aborting the job" in err, err
    assert seconds < 100, seconds


LATE = """
from mpi4py import MPI
from solver.parallel import one_outcome

comm = MPI.COMM_WORLD
for attempt in range(2):  # the ranks stay in step: the second block and its collective run as well
    try:
        with one_outcome(comm, wait=60.0):
            total = comm.allreduce(comm.rank + 1)
            if comm.rank == 1:  # after the block's last collective: rank 0 arrives at its end
                raise KeyError(f"late fault {attempt}")
        print(f"[rank {comm.rank} no error {total}]", flush=True)
    except (KeyError, RuntimeError) as error:
        print(f"[rank {comm.rank} {type(error).__name__}: {error}]", flush=True)
"""


def test_a_fault_on_one_rank_that_the_others_survive_raises_on_every_rank(tmp_path):
    process, out, err, seconds = run_two_ranks(tmp_path, LATE)
    lines = sorted("[rank" + part.rstrip() for part in out.split("[rank")[1:])
    assert process.returncode == 0 and seconds < 60, out + err
    assert lines == ["[rank 0 RuntimeError: rank 1 failed: KeyError: 'late fault 0']",
                     "[rank 0 RuntimeError: rank 1 failed: KeyError: 'late fault 1']",
                     "[rank 1 KeyError: 'late fault 0']", "[rank 1 KeyError: 'late fault 1']"], out
