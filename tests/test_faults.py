"""Faults on 2 ranks: signals during training, SIGKILL during the writes of theta.npz and
checkpoint.npz, a forced dt that line-search trial points break, a rank left alone with an error;
and --force, which replaces a run directory the solver made and nothing else."""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cli_harness import ENV, MPIRUN
from solver.rundir import files, store


pytestmark = [pytest.mark.serial, pytest.mark.slow]  # each test starts its own mpirun

SMALL = """
[mesh]
cells = 8
[field]
width = 4
slabs = 2
[data]
kind = "moons"
points = 60
[train]
iterations = {iterations}
save_every = 5
max_step = 2.0
adapt = false
check_points = 20
[output]
png = false
animation = false
vtx = false
"""


def command(*args) -> list[str]:
    return [str(MPIRUN), "-n", "2", sys.executable, "-m", "solver", *map(str, args)]


def solver(*args, cwd: Path, code: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(command(*args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done


def parameters(run: Path) -> np.ndarray:
    return store.read_parameters(run / store.THETA).p


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_resumably(tmp_path, signum):
    """The signal (to mpirun, which passes it on, as a terminal's Ctrl-C or a batch system's
    SIGTERM does) stops both ranks at the next iteration: the checkpoint is written, one line
    says how to resume, the exit status is 128 + the signal; the resumed run ends at the θ of an
    uninterrupted one."""
    config = write(tmp_path / "p.toml", SMALL.format(iterations=30))
    solver("train", config, "--out", "whole", cwd=tmp_path)
    process = subprocess.Popen(command("train", config, "--out", "stopped"), cwd=tmp_path, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in process.stdout:  # the run is under way: signal it after iteration 3
            if line.startswith("iter    3"):
                process.send_signal(signum)
                break
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and "debugger" not in err, err  # no PETSc signal banner
    (resume,) = [line for line in err.splitlines() if line.startswith("stopped at iteration")]
    assert "train --resume --out stopped" in resume, err
    stopped_at = int(resume.split()[3])
    assert 3 <= stopped_at < 30, resume
    assert store.read_checkpoint(tmp_path / "stopped" / store.CHECKPOINT)[0]["iteration"] == stopped_at
    assert not (tmp_path / "stopped" / store.THETA).exists()
    done = solver("train", "--resume", "--out", "stopped", cwd=tmp_path)
    assert f"resumed at iteration {stopped_at}" in done.stdout
    np.testing.assert_allclose(parameters(tmp_path / "stopped"), parameters(tmp_path / "whole"), rtol=0, atol=1e-12)


WRITER = """
import sys, numpy as np
from pathlib import Path
from solver.rundir import store
run, name = Path(sys.argv[1]), sys.argv[2]
if name == store.THETA:
    params = store.read_parameters(run / store.THETA)
    from solver.config import load_config
    from solver.model.from_config import velocity_model
    config = load_config(run / store.CONFIG)
    model = velocity_model(config, config.domain_object())
    write = lambda: store.write_parameters(run / store.THETA, model, params.theta, params.A, params.b,
                                           **{k: params.meta[k] for k in ("domain", "scaling", "resolution")})
else:
    state, history = store.read_checkpoint(run / store.CHECKPOINT)
    write = lambda: store.write_checkpoint(run / store.CHECKPOINT, state, history)
print("writing", flush=True)
while True:
    write()
"""


@pytest.mark.parametrize("name", [store.THETA, store.CHECKPOINT])
def test_sigkill_during_a_write_loses_nothing(tmp_path, name):
    """A process that rewrites theta.npz or checkpoint.npz over and over is SIGKILLed 20 times at
    random moments: the file always reads whole, and the next command on the run removes the
    temporary files the kills left; export, compare RUN and --resume then work."""
    config = write(tmp_path / "p.toml", SMALL.format(iterations=4))
    solver("train", config, "--out", "run", cwd=tmp_path)
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    left = 0
    for _ in range(20):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run), name], env=ENV, stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline() == "writing\n"
        time.sleep(rng.uniform(0.0, 0.05))
        writer.kill()
        writer.wait()
        left += sum(files.is_temporary(p.name) for p in run.iterdir())
        if name == store.THETA:
            store.read_parameters(run / name)
        else:
            store.read_checkpoint(run / name)
    assert left > 0, "no kill landed during a write"
    if name == store.THETA:
        solver("export", run, "--depth", "4", "--format", "npz", cwd=tmp_path)
        assert not [p for p in run.iterdir() if files.is_temporary(p.name)]
        solver("compare", run, cwd=tmp_path)
    else:
        write(tmp_path / "more.toml", SMALL.format(iterations=6))
        done = solver("train", tmp_path / "more.toml", "--resume", "--out", run, cwd=tmp_path)
        assert "removed" in done.stdout and "resumed at iteration 4" in done.stdout
        assert not [p for p in run.iterdir() if files.is_temporary(p.name)]
        assert len(store.read_history(run / store.HISTORY)) == 7


def test_forced_dt_is_a_bound_on_trial_points(tmp_path):
    """dt = 0.12 respects the CFL bound at the start (0.1223) and trial points break it: they are
    unstable trial points, the line search backs off, training goes on and ends where it can get
    no further (measured: 10 iterations), exit 0; resumed from the middle it ends at the same θ."""
    text = SMALL.format(iterations=30) + "[solver]\ndt = 0.12\n"
    config = write(tmp_path / "p.toml", text)
    done = solver("-v", "train", config, "--out", "whole", cwd=tmp_path)
    assert "unstable trial point, backing off: forced time step dt=0.12 breaks the CFL bound" in done.stdout
    assert "training ends early" in done.stdout and "forced solver.dt" in done.stdout
    iterations = len(store.read_history(tmp_path / "whole" / store.HISTORY)) - 1
    assert iterations >= 5, done.stdout
    write(tmp_path / "first.toml", text.replace("iterations = 30", "iterations = 4"))
    solver("train", tmp_path / "first.toml", "--out", "parts", cwd=tmp_path)
    done = solver("train", config, "--resume", "--out", "parts", cwd=tmp_path)
    assert "resume with train.iterations = 30" in done.stdout
    np.testing.assert_allclose(parameters(tmp_path / "parts"), parameters(tmp_path / "whole"), rtol=0, atol=1e-12)


def test_force_replaces_only_a_run_and_a_failed_run_does_not_block(tmp_path):
    config = write(tmp_path / "p.toml", "[mesh]\ncells = 4\n[compare]\npoints = 10\ngrid = 5\n"
                                        "[output]\npng = false\nvtx = false\nanimation = false\n")
    solver("compare", config, "--out", "run", "--refine", "", cwd=tmp_path)
    assert (tmp_path / "run" / files.MARKER).is_file()
    (tmp_path / "run" / "mine.txt").write_text("a file in a run directory goes with it")
    solver("compare", config, "--out", "run", "--refine", "", cwd=tmp_path, code=2)
    solver("compare", config, "--out", "run", "--refine", "", "--force", cwd=tmp_path)
    assert not (tmp_path / "run" / "mine.txt").exists()
    # A run that fails on its data leaves nothing that blocks the corrected rerun (no --force).
    csv = "[data]\nkind = \"csv\"\npath = \"d.csv\"\npoints = 30\n[train]\niterations = 1\n[mesh]\ncells = 4\n" \
          "[output]\npng = false\nvtx = false\nanimation = false\n"
    write(tmp_path / "t.toml", csv)
    done = solver("train", "t.toml", "--out", "trained", cwd=tmp_path, code=2)
    assert "d.csv: data file not found" in done.stderr and str(tmp_path / "trained") not in done.stderr
    assert not (tmp_path / "trained").exists()
    rows = [f"{np.cos(0.3 * i):.3f},{np.sin(0.3 * i):.3f},{'1.0' if i % 2 else '0'}" for i in range(30)]
    (tmp_path / "d.csv").write_text("x1,x2,label\n" + "\n".join(rows) + "\n")
    solver("train", "t.toml", "--out", "trained", cwd=tmp_path)
    metrics = store.read_json(tmp_path / "trained" / store.METRICS)
    assert metrics["classes"] == ["0", "1"]  # labels 0 and 1.0: two classes, not three


RANK_ALONE = """
import sys
from mpi4py import MPI
import solver.__main__ as main
main.EXIT_WAIT = 2.0
comm = MPI.COMM_WORLD
exits = comm.Dup()
if comm.rank == 0:
    sys.exit(main.finish(comm, exits, 2))  # an error known on rank 0 only
comm.Barrier()  # rank 1 waits for rank 0 in a collective, forever
"""


def test_a_rank_left_alone_with_an_error_aborts_the_job(tmp_path):
    started = time.monotonic()
    done = subprocess.run([str(MPIRUN), "-n", "2", sys.executable, "-c", RANK_ALONE], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and time.monotonic() - started < 30
    assert "the other ranks did not" in done.stderr
