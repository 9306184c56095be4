"""What the process-per-case CLI tests share (test_hostile_cli, test_nothing_lost, test_faults,
test_api_mpi, test_stop_monte_carlo, test_viscous_predict): the mpirun of this checkout, the small
problem and a run directory made by hand, setups of a case's files, and the check of one clear
error on every rank. Not a test module: the test modules import it, never one another.
"""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from solver.config import config_from_dict
from solver.learn.optimize import OptimizerState
from solver.model.from_config import velocity_model
from solver.rundir import store
from solver.rundir.files import MARKER

ROOT = Path(__file__).resolve().parent.parent
MPIRUN = Path(sys.executable).parent / "mpirun"
# This checkout's solver first, whatever the working directory of the job.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
TIMEOUT = 60  # seconds; every hostile case fails within a few (a hang fails the test)

# Runs main() and reports its exit status on each rank (mpirun reports one status for all).
DRIVER = (
    "import sys\n"
    "from mpi4py import MPI\n"
    "from solver.__main__ import main\n"
    "code = main(sys.argv[1:])\n"
    "print(f'[rank {MPI.COMM_WORLD.rank} exit {code}]', file=sys.stderr, flush=True)\n"
    "sys.exit(code)\n"
)

PROBLEM = {
    "mesh": {"cells": 6},
    "field": {"width": 3, "slabs": 2},
    "data": {"kind": "moons", "points": 40},
    "train": {"iterations": 2, "check_points": 20},
    "compare": {"points": 20, "grid": 5},
    "output": {"png": False, "vtx": False, "animation": False},
}


def toml(extra: str = "", base: dict | None = None) -> str:
    """The small problem as TOML, with ``extra`` lines appended to their sections."""
    sections = {name: dict(values) for name, values in (base or PROBLEM).items()}
    text = ""
    for line in extra.strip().splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
            sections.setdefault(section, {})
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        sections[section][key] = _Raw(value)
    for name, values in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in values.items())
    return text


class _Raw(str):
    pass


def _value(v) -> str:
    if isinstance(v, _Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return json.dumps(v) if isinstance(v, list) else repr(v)


# --- the files a case starts from ---------------------------------------------------------------


def make_run(path: Path, *, theta: str = "good", checkpoint: str = "good", marker: bool = True) -> None:
    """A finished training run of PROBLEM, made by hand; theta.npz and checkpoint.npz good,
    "empty", "truncated", "nan" or "none"."""
    path.mkdir(parents=True, exist_ok=True)
    config = config_from_dict(PROBLEM)
    if marker:
        (path / MARKER).write_text("run\n")
    store.write_config(path / store.CONFIG, config.to_toml())
    model = velocity_model(config, config.domain_object())
    rng = np.random.default_rng(0)
    t, A, b = 0.3 * rng.normal(size=model.n_params), rng.normal(size=(2, 2)), np.zeros(2)
    store.write_parameters(path / store.THETA, model, t, A, b, domain=config.to_dict()["domain"],
                           scaling=dict(scale=[0.5, 0.5], shift=[-0.2, -0.1]))
    p = np.concatenate([t, A.ravel(), b])
    state = OptimizerState(2, p, 0.5, np.ones_like(p), evaluations=3).to_arrays()
    state["resolution"] = np.array([6, 1])
    row = dict.fromkeys(store.HISTORY_COLUMNS, 0.0)
    store.write_checkpoint(path / store.CHECKPOINT, state, [dict(row, iteration=i) for i in range(3)])
    store.write_json(path / store.METRICS, dict(final_loss=0.5))
    for name, how in ((store.THETA, theta), (store.CHECKPOINT, checkpoint)):
        damage(path / name, how)


def damage(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "none":
        path.unlink()
    elif how == "nan":
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["p"] = arrays["p"].copy()
        arrays["p"][3] = np.nan
        np.savez(path, **arrays)


def files(**contents):
    """A setup that writes text files (name → text) relative to the case's directory."""

    def setup(tmp: Path, plain_onnx) -> None:
        for name, text in contents.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)

    return setup


def both(*setups):
    def setup(tmp: Path, plain_onnx) -> None:
        for s in setups:
            s(tmp, plain_onnx)

    return setup


def run_at(name: str, **how):
    return lambda tmp, plain_onnx: make_run(tmp / name, **how)


def solver(argv, cwd: Path, timeout: float = TIMEOUT, ranks: int = 2, cap: int | None = None,
           driver: str = DRIVER) -> subprocess.CompletedProcess:
    """``main(argv)`` (or ``driver``) on ``ranks`` ranks in ``cwd``, this checkout's solver; the
    address space of mpirun and every rank capped at ``cap`` bytes if given; the whole job is
    killed at ``timeout`` (a hang)."""
    import resource

    cmd = [str(MPIRUN), "-n", str(ranks), sys.executable, "-c", driver, *map(str, argv)]

    def limit():
        if cap is not None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    process = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=limit)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"hang: no exit within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root``: a file's bytes, a link's target, "dir" for a directory
    (a link is not followed)."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = "dir"
            else:
                entries[key] = path.read_bytes()
    return entries


def assert_one_clear_error(done: subprocess.CompletedProcess, fragments: list[str], ranks: int = 2) -> str:
    """Exit 2 on every rank, no traceback, one "error:" line holding every fragment."""
    report = f"\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout, report
    assert done.returncode == 2, report
    for rank in range(ranks):
        assert f"[rank {rank} exit 2]" in done.stderr, report
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, report
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in the message{report}"
    return lines[0]
