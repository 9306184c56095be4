"""What flow.gif costs on a trained run: wall and CPU seconds of its parts, one process.

    .venv/bin/python scripts/bench_animation.py runs/moons [--out /tmp/flow.gif]

Reads the run's config.toml and theta.npz, builds the problem on the mesh the run ended on, and
times one forward solve, the solve that keeps the frames' states, and the GIF drawn from it
(``rundir.outputs.write_animation``). CPU seconds are this process's, so they say the cost even
when other jobs share the machine.
"""

from mpi4py import MPI

import argparse
import time
from pathlib import Path

from solver.config import load_config
from solver.learn.certify import Resolution
from solver.learn.train import Problem
from solver.rundir import store
from solver.rundir.outputs import solve_with_states, write_animation


def timed(what: str, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    print(f"{what}: wall {time.perf_counter() - wall:.2f} s, cpu {time.process_time() - cpu:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/flow.gif"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    config = load_config(args.run / store.CONFIG)
    parameters = store.read_parameters(args.run / store.THETA)
    ended = parameters.meta["resolution"]
    with Problem.build(comm, config, Resolution(int(ended["cells"]), int(ended["degree"]))) as problem:
        import matplotlib.pyplot  # noqa: F401 (its import is not the animation's cost)

        timed("one forward solve", lambda: problem.J.evaluate(parameters.p))
        result = timed("the solve keeping the frames' states",
                       lambda: solve_with_states(problem, parameters.p, config.output.frames))
        timed(f"flow.gif ({config.output.frames} frames) from it",
              lambda: write_animation(comm, problem, parameters.p, args.out, result))
        print(f"{args.out}: {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
