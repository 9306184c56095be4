"""What every section of the benchmark suite needs: the report directory, its progress lines and
results, the processes it starts and the configs it writes (both through ``scripts.harness``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

from scripts.harness import PROBLEMS, PYTHON, ROOT, SCRIPTS, Process, config_with, mpirun, run_measured
from solver.rundir.files import write_json_atomic

__all__ = ["PROBLEMS", "PYTHON", "ROOT", "SCRIPTS", "Bench", "Process", "median", "write_config"]


def median(values) -> float:
    """The median of a non-empty sequence of numbers."""
    return float(statistics.median(values))


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

    def finish(self, report: Callable[[Bench], str]) -> None:
        """The end of a benchmark: the load average now (``results["load_at_end"]``, which the
        report states), results.json, and report.md (``report(self)``), printed too."""
        from scripts.bench_lib import machine

        self.results["load_at_end"] = machine.load_average()
        self.save()
        text = report(self)
        (self.out / "report.md").write_text(text)
        print(text)

    def run(self, command: list, log: str) -> Process:
        """Run ``command`` (``scripts.harness.run_measured``), its output into ``logs/<log>.log``:
        its wall time and peak resident memory; RuntimeError with the end of its log if it fails."""
        return run_measured(command, self.out / "logs" / f"{log}.log")

    def mpirun(self, ranks: int, args: list, log: str) -> Process:
        """``mpirun -n ranks python ARGS`` (see :meth:`run`)."""
        return self.run(mpirun(ranks, args), log)


def write_config(source: Path, path: Path, changes: dict[str, dict[str, Any]]) -> Path:
    """A problem file with some keys changed (``scripts.harness.config_with``), written as the
    resolved config (``Config.to_toml``, as a run directory's config.toml); returns ``path``.

    Args:
        source: the problem file (never modified).
        path: where to write the changed config.
        changes: ``{section: {key: value}}``, e.g. ``{"mesh": {"cells": 8}}``.
    """
    path.write_text(f"# {source.name} with {changes}\n" + config_with(source, changes).to_toml())
    return path
