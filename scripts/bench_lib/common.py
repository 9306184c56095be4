"""What every section of the benchmark suite needs: paths, subprocesses, progress, configs.

The suite runs under the project's venv; every solver process it starts is a subprocess (a
training run, ``mpirun -n P`` workers, the peer), started with one thread per process
(``THREAD_ENV``), so that a process uses exactly the cores the report says it does.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from solver.config import Config, load_config
from solver.rundir.files import write_json_atomic

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PYTHON = Path(sys.executable)  # the project venv's python (the suite runs under it)
MPIRUN = PYTHON.parent / "mpirun"
PROBLEMS = ROOT / "problems"

# One thread per process: BLAS and OpenMP pools would otherwise take both cores.
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


class Process(NamedTuple):
    """A finished subprocess: wall time (s) and peak resident memory (bytes)."""

    seconds: float
    peak_rss: int


def median(values) -> float:
    """The median of a non-empty sequence of numbers."""
    return float(statistics.median(values))


def subprocess_env() -> dict[str, str]:
    """The environment of every process the suite starts: one thread each, ``bench_lib`` importable."""
    path = os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, **THREAD_ENV, PYTHONPATH=path)


class Bench:
    """The report directory, the results gathered so far, and progress lines.

    Attributes:
        out: the report directory (configs/, runs/, logs/, work/ and the report inside).
        quick: the reduced suite.
        repeats: how many times a timing is repeated (its median is reported).
        results: the raw numbers, by section; written to ``out/results.json`` by :meth:`save`.
    """

    def __init__(self, out: Path, quick: bool, repeats: int):
        self.out = out
        self.quick = quick
        self.repeats = repeats
        self.results: dict[str, Any] = {}
        self.started = time.perf_counter()
        for sub in ("configs", "runs", "logs", "work"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def progress(self, section: str, what: str, message: str = "") -> None:
        """One progress line: elapsed time, section, problem or case, message."""
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:7.1f} s] {section}: {what}{' — ' + message if message else ''}", flush=True)

    def save(self) -> None:
        """Write results.json (atomically), so that an interrupted run keeps what it measured."""
        write_json_atomic(self.out / "results.json", self.results)

    def run(self, command: list, log: str) -> Process:
        """Run ``command`` from the repository root; its output goes to ``logs/<log>.log``.

        Started through ``bench_lib.peak``, so that its peak memory is its own.

        Returns:
            Its wall time and peak resident memory (for ``mpirun``: its largest rank's).

        Raises:
            RuntimeError: if it fails, with the end of its log.
        """
        path, peak = self.out / "logs" / f"{log}.log", self.out / "logs" / f"{log}.peak"
        started = time.perf_counter()
        with open(path, "w") as f:
            f.write("$ " + " ".join(map(str, command)) + "\n")
            f.flush()
            done = subprocess.run([str(PYTHON), "-m", "bench_lib.peak", str(peak), *map(str, command)], cwd=ROOT,
                                  stdout=f, stderr=subprocess.STDOUT, env=subprocess_env())
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            tail = "".join(path.read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(f"{command[0]} ... exited with {done.returncode} (log {path}):\n{tail}")
        peak_rss = int(peak.read_text())
        peak.unlink()
        return Process(seconds, peak_rss)

    def mpirun(self, ranks: int, args: list, log: str) -> Process:
        """``mpirun -n ranks python ARGS`` (see :meth:`run`)."""
        return self.run([MPIRUN, "-n", str(ranks), PYTHON, *args], log)


def write_config(source: Path, path: Path, changes: dict[str, dict[str, Any]]) -> Path:
    """A problem file with some keys changed, written as the resolved config (``Config.to_toml``,
    as a run directory's config.toml) and read back, so that it is validated.

    Args:
        source: the problem file (never modified).
        path: where to write the changed config.
        changes: ``{section: {key: value}}``, e.g. ``{"mesh": {"cells": 8}}``.
    """
    config: Config = load_config(source)
    for section, values in changes.items():
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)})
    path.write_text(f"# {source.name} with {changes}\n" + config.to_toml())
    load_config(path)
    return path
