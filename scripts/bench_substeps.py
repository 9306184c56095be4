"""The semi-Lagrangian scheme's two errors on a trained run, apart: interpolation (the mesh) and
tracing (the RK4 substeps). For a run directory: max |u_h(0, X) − f(q(T; X))| over the run's
training and test points and the label agreement, on P_k meshes of the given cells, for each
``solver.substep_rotation``.

    .venv/bin/python -m scripts.bench_substeps RUN [--cells 7,10] [--degree 2] [--rotations 4,2,1,0.5,0.1]
        [--slabs-per-step all,1]

Serial. A row whose difference barely moves with the rotation says the tracing error is below the
interpolation error (``fem/semilagrangian.py``'s SUBSTEP_ROTATION); ``--slabs-per-step`` compares
one step from T to 0 ("all", the default) with steps of fewer slabs (an interpolation between
steps), with the seconds of one forward solve (the least of ``REPEATS``).
"""

from __future__ import annotations

# mpi4py before dolfinx (imported through solver): dolfinx needs the MPI library mpi4py loads.
from mpi4py import MPI

import argparse
import time
from pathlib import Path

import numpy as np

from solver.config import load_config
from solver.fem.affine import solve_affine, transported_components
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import PointEvaluator
from solver.fem.semilagrangian import SemiLagrangianSolver
from solver.learn.train import load_dataset
from solver.model import characteristics
from solver.model.from_config import velocity_model
from solver.rundir import store


REPEATS = 5  # forward solves timed per row: the least of them (a shared machine's noise is additive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--cells", default=None, help="comma-separated (default: the run's mesh.cells)")
    parser.add_argument("--degree", type=int, default=2)
    parser.add_argument("--rotations", default="4,2,1,0.5,0.1")
    parser.add_argument("--slabs-per-step", default="all", help='comma-separated integers or "all"')
    args = parser.parse_args()
    comm = MPI.COMM_SELF
    config = load_config(args.run / store.CONFIG)
    parameters = store.read_parameters(args.run / store.THETA)
    domain = config.domain_object()
    field = velocity_model(config, domain).field(parameters.theta)
    A, b = parameters.A, parameters.b
    dataset = load_dataset(config, domain)
    X = np.concatenate([dataset.X_train, dataset.X_test])
    reference = characteristics.flow(field, X, 0.0, field.T) @ A.T + b
    cells = [int(c) for c in args.cells.split(",")] if args.cells else [config.mesh.cells]
    print(f"{args.run}: {len(X)} points, P{args.degree}")
    print(f"{'cells':>5} {'rotation':>8} {'slabs/step':>10} {'substeps per slab':>24} {'max |Δ|':>8} {'agreement':>9} "
          f"{'forward s':>9}")
    for n in cells:
        mesh = create_mesh(comm, domain, n)
        for rotation in [float(r) for r in args.rotations.split(",")]:
            for per in args.slabs_per_step.split(","):
                solver = SemiLagrangianSolver(mesh, degree=args.degree, num_components=transported_components(*A.shape),
                                              substep_rotation=rotation, slabs_per_step=None if per == "all" else int(per))
                solve_affine(solver, field, A, b, keep=False)  # warm: the locator, the caches
                seconds = []
                for _ in range(REPEATS):
                    started = time.perf_counter()
                    result = solve_affine(solver, field, A, b, keep=False)
                    seconds.append(time.perf_counter() - started)
                seconds = min(seconds)
                evaluator = PointEvaluator(solver.V, X, report=False)
                fe = np.stack([evaluator(u) for u in result.u0], axis=1)
                print(f"{n:5d} {rotation:8g} {per:>10} {str(result.steps_per_piece):>24} "
                      f"{np.abs(fe - reference).max():8.3f} "
                      f"{np.mean(fe.argmax(axis=1) == reference.argmax(axis=1)):9.3f} {seconds:9.4f}")


if __name__ == "__main__":
    main()
