"""SIGTERM during the Monte Carlo check of a viscous run (issue 25): the check polls the stop
flag, so the run ends within seconds, with exit status 143 on every rank and a checkpoint to
resume from (1 and 2 ranks, mpirun passing the signal on); a second signal stops at once, also
with 143."""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

import os
import signal
import subprocess
import sys
import time

import pytest

from solver.rundir import store
from cli_harness import ENV, MPIRUN

pytestmark = [pytest.mark.serial, pytest.mark.slow]  # each test starts its own mpirun (slow: the quick lane skips them)

# 40 points x 10000 paths x 200 steps = 8e7 path-steps per check: under the guard (1e8 per rank),
# minutes of work, so the signal always comes during the first check.
VISCOUS = """
[mesh]
cells = 6
[field]
width = 3
slabs = 2
viscosity = 0.01
[data]
kind = "moons"
points = 50
[train]
iterations = 5
check_points = 40
paths = 10000
sde_steps = 200
[output]
png = false
animation = false
vtx = false
"""


def start(tmp_path, ranks: int) -> subprocess.Popen:
    (tmp_path / "p.toml").write_text(VISCOUS)
    cmd = [str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "solver", "train", "p.toml", "--out", "run"]
    return subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_the_check(process: subprocess.Popen) -> None:
    """Until the log's "train: ..." line (the first solve and check follow), then 3 s more."""
    for line in process.stdout:
        if line.startswith("train:"):
            break
    time.sleep(3.0)


@pytest.mark.parametrize("ranks", [1, 2])
def test_sigterm_during_the_monte_carlo_check_stops_within_seconds(tmp_path, ranks):
    process = start(tmp_path, ranks)
    try:
        wait_for_the_check(process)
        assert process.poll() is None, "the run ended before the signal"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        seconds = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err
    assert seconds < 10, f"{seconds:.1f} s after SIGTERM"
    assert "Traceback" not in err, err
    assert "stopped at iteration 0 (SIGTERM); checkpoint written" in err, err
    state, history = store.read_checkpoint(tmp_path / "run" / store.CHECKPOINT)
    assert int(state["iteration"]) == 0 and len(history) == 1


def test_a_second_sigterm_stops_at_once_with_143(tmp_path):
    process = start(tmp_path, 1)
    try:
        wait_for_the_check(process)
        # The first signal only sets the flag: block its polling by sending the second at once.
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err
    assert "Traceback" not in err, err
