"""What the benchmark and experiment tools share: paths, the processes they start, the peer venv,
and problem files with some keys changed.

Every solver process a tool starts is a subprocess of the project venv's python (a training
run, ``mpirun -n P`` workers, the torch peer) with one thread per process (``THREAD_ENV``), so
that a process uses exactly the cores its report says, and with the repository root on
``PYTHONPATH``, so that ``python -m scripts.…`` workers import from any working directory.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from solver.config import Config, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
PROBLEMS = ROOT / "problems"
PYTHON = Path(sys.executable)  # the project venv's python (the tools run under it)
MPIRUN = PYTHON.parent / "mpirun"
PEER_SETUP = SCRIPTS / "peer" / "setup.sh"

# One thread per process: BLAS and OpenMP pools would otherwise take both cores.
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


class Process(NamedTuple):
    """A finished subprocess: wall time (s) and peak resident memory (bytes)."""

    seconds: float
    peak_rss: int


def subprocess_env() -> dict[str, str]:
    """The environment of every process a tool starts: one thread each, the repository root on
    ``PYTHONPATH`` (``python -m scripts.bench_lib.prediction`` and the like)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, **THREAD_ENV, PYTHONPATH=path)


def mpirun(ranks: int, args: list) -> list[str]:
    """The command ``mpirun -n ranks python ARGS`` with the venv's mpirun and python."""
    return [str(MPIRUN), "-n", str(ranks), str(PYTHON), *map(str, args)]


def run_measured(command: list, log: Path) -> Process:
    """Run ``command`` from the repository root, its output into ``log`` (after a ``$ command``
    line), through the ``scripts.peak`` launcher, so that its peak memory is its own.

    Returns:
        Its wall time and peak resident memory (for ``mpirun``: its largest rank's).

    Raises:
        RuntimeError: if it fails, with the end of its log.
    """
    peak = log.with_suffix(".peak")
    started = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(map(str, command)) + "\n")
        f.flush()
        done = subprocess.run([str(PYTHON), "-m", "scripts.peak", str(peak), *map(str, command)], cwd=ROOT,
                              stdout=f, stderr=subprocess.STDOUT, env=subprocess_env())
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{command[0]} ... exited with {done.returncode} (log {log}):\n{tail}")
    peak_rss = int(peak.read_text())
    peak.unlink()
    return Process(seconds, peak_rss)


def peer_python(log: Path | None = None) -> Path:
    """The torch peer venv's python, made by ``scripts/peer/setup.sh`` if missing (~30 s and
    1.1 GB the first time; a stamp makes later calls instant).

    The one way to find it: ``PEER_PYTHON`` means what setup.sh says, the Python 3.11 the venv
    is created with, never the venv's own python. setup.sh's messages go to ``log`` if given.

    Raises:
        RuntimeError: if setup.sh fails, with the end of its messages.
    """
    done = subprocess.run([str(PEER_SETUP)], cwd=ROOT, capture_output=True, text=True)
    if log:
        log.write_text(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/peer/setup.sh failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def config_with(source: Path, changes: dict[str, dict[str, Any]]) -> Config:
    """The problem file ``source`` (never modified) with some keys changed, validated.

    Args:
        changes: ``{section: {key: value}}``, e.g. ``{"mesh": {"cells": 8}}``; a value None
            removes the key (back to its default).
    """
    merged = copy.deepcopy(load_config(source).to_dict())
    for section, values in changes.items():
        target = merged.setdefault(section, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return config_from_dict(merged)
