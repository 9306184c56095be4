"""Cost of one gradient (forward + adjoint + parameter chain) against one forward solve, and the
time per optimizer iteration as the number of data points N grows on a fixed mesh.

Reported: value+gradient / forward, and the gradient alone ((value+gradient − forward) /
forward: the adjoint plus the parameter gradient, the issue's measure), as medians over
repeats of the two timed back to back.

    .venv/bin/mpirun -n 2 .venv/bin/python scripts/bench_gradient.py [--cells 48] [--quick]

Both costs are measured side by side in one run (medians of repeats), at a fixed θ and step
count, so the ratio does not depend on the machine's load as much as the times do.
"""

from __future__ import annotations

# mpi4py before dolfinx (DESIGN.md).
from mpi4py import MPI

import argparse
import time

import numpy as np

from solver.domain import Box
from solver.forward import TransportSolver
from solver.mesh import create_mesh
from solver.reduced import ReducedFunctional
from solver.velocity import VelocityModel


def timed(comm, fn) -> float:
    comm.Barrier()
    t = time.perf_counter()
    fn()
    comm.Barrier()
    return comm.allreduce(time.perf_counter() - t, op=MPI.MAX)


def paired_times(comm, forward, gradient, repeats):
    """Medians of the forward time, the value+gradient time and their ratio, timed in pairs."""
    pairs = [(timed(comm, forward), timed(comm, gradient)) for _ in range(repeats)]
    f, g = np.array(pairs).T
    return float(np.median(f)), float(np.median(g)), float(np.median(g / f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--quick", action="store_true", help="small mesh and N (what the tests run)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    cells, sizes, repeats = args.cells, [int(s) for s in args.sizes.split(",")], args.repeats
    if args.quick:
        cells, sizes, repeats = 8, [100, 1000], 1
    box = Box((-1.0, -1.0), (1.0, 1.0))
    mesh = create_mesh(comm, box, cells)
    model = VelocityModel(dim=2, width=8, slabs=4, T=1.0, activation="tanh", domain=box)
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        solver = TransportSolver(comm, mesh, degree=1, num_components=2, checkpoint_every=4)
        X = rng.uniform(-0.8, 0.8, (n, 2))[comm.rank :: comm.size]
        y = (X[:, 0] * X[:, 1] > 0).astype(int)
        J = ReducedFunctional(comm, solver, model, X, y, 2)
        p = J.initial(0, 1.5)
        J.value_and_gradient(p)  # compile forms, warm caches
        J.freeze_steps(J.last.steps)
        forward, gradient, ratio = paired_times(comm, lambda: J(p), lambda: J.value_and_gradient(p), repeats)
        rows.append((n, solver.num_dofs_global, sum(J.last.steps), forward, gradient, ratio))
        J.destroy()
        solver.destroy()
    if comm.rank == 0:
        print(f"DG1, {cells}x{cells} box, width 8, 4 slabs, K = 2, {comm.size} rank(s), medians of {repeats}")
        print(f"{'N':>9} {'dofs':>7} {'steps':>6} {'forward s':>10} {'value+grad s':>13} "
              f"{'(value+grad)/fwd':>17} {'grad/fwd':>9}")
        for n, dofs, steps, f, g, r in rows:
            print(f"{n:9d} {dofs:7d} {steps:6d} {f:10.3f} {g:13.3f} {r:17.2f} {r - 1:9.2f}")


if __name__ == "__main__":
    main()
