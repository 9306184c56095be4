"""Time to a target test accuracy when training problems on 1 and on 2 ranks.

    .venv/bin/python -m scripts.bench_time_to_accuracy [CONFIG ...] [--target 0.98] [--ranks 1,2]

Each config (default problems/moons.toml) and rank count trains with ``python -m solver train``
in a temporary run directory; the time to the target is read on the benchmark suite's clock
(``scripts.bench_lib.learning.time_to_target``: the per-iteration ``seconds`` and
``check_seconds`` of history.csv, optimizer and certification time, without start-up and
output) up to the first iteration whose test accuracy reaches the target: the PDE's
("seconds"), and the first certification check whose characteristics' test accuracy reaches
it with the logits within the run's tolerance ("certified s"). The runs go one after
the other, alternating the configs, so they see the same machine load only if nothing else runs.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from scripts.bench_lib.learning import time_to_target
from scripts.harness import PROBLEMS, ROOT, mpirun, subprocess_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=[str(PROBLEMS / "moons.toml")])
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--ranks", default="1,2")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in [int(r) for r in args.ranks.split(",")]:
            for i, config in enumerate(args.configs):
                out = Path(tmp) / f"run{ranks}-{i}"
                command = mpirun(ranks, ["-m", "solver", "train", Path(config).resolve(), "--out", out, "--force"])
                subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=subprocess_env())
                rows.append((Path(config).name, ranks, *time_to_target(out, args.target)))
    print(f"time to test accuracy >= {args.target:g}")
    print(f"{'config':>18} {'ranks':>5} {'iteration':>9} {'seconds':>11} {'certified it':>12} "
          f"{'certified s':>11} {'total s':>8} {'final test':>10} {'cells':>5}")
    for name, ranks, iteration, seconds, c_iteration, c_seconds, total, final, cells in rows:
        show = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        print(f"{name:>18} {ranks:5d} {show(iteration, '{}'):>9} {show(seconds, '{:.2f}'):>11} "
              f"{show(c_iteration, '{}'):>12} {show(c_seconds, '{:.2f}'):>11} {total:8.2f} "
              f"{final:10.3f} {cells:5d}")


if __name__ == "__main__":
    main()
