"""Time to a target test accuracy when training a problem on 1 and on 2 ranks.

    .venv/bin/python scripts/bench_time_to_accuracy.py [CONFIG] [--target 0.98] [--ranks 1,2]

Each rank count trains CONFIG (default problems/moons.toml) with ``python -m solver train`` in a
temporary run directory; the time to the target is the sum of the per-iteration ``seconds`` of
history.csv (optimizer time, without start-up and output) up to the first iteration whose test
accuracy reaches the target. The rank counts are run one after the other, so they see the same
machine load only if nothing else runs.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def time_to_target(history: Path, target: float) -> tuple[int | None, float | None, float, float]:
    """(iteration, optimizer seconds) at the first test accuracy ≥ target, total seconds, final accuracy."""
    with open(history) as f:
        rows = list(csv.DictReader(f))
    elapsed, hit = 0.0, (None, None)
    for row in rows:
        elapsed += float(row["seconds"])
        if hit[0] is None and float(row["test_accuracy"]) >= target:
            hit = (int(row["iteration"]), elapsed)
    return hit[0], hit[1], elapsed, float(rows[-1]["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "problems" / "moons.toml"))
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--ranks", default="1,2")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in [int(r) for r in args.ranks.split(",")]:
            out = Path(tmp) / f"run{ranks}"
            command = [str(BIN / "mpirun"), "-n", str(ranks), sys.executable, "-m", "solver",
                       "train", args.config, "--out", str(out), "--force"]
            subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
            rows.append((ranks, *time_to_target(out / "history.csv", args.target)))
    print(f"{Path(args.config).name}: time to test accuracy >= {args.target:g}")
    print(f"{'ranks':>5} {'iteration':>9} {'seconds':>8} {'total s':>8} {'final test':>10}")
    for ranks, iteration, seconds, total, final in rows:
        it = "-" if iteration is None else str(iteration)
        sec = "not reached" if seconds is None else f"{seconds:.2f}"
        print(f"{ranks:5d} {it:>9} {sec:>8} {total:8.2f} {final:10.3f}")


if __name__ == "__main__":
    main()
