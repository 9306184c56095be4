"""Which resolution resolves a learned field best for its cost: h, p, or h where the data go.

    .venv/bin/mpirun -n 2 .venv/bin/python scripts/bench_resolution.py RUN \
        [--resolutions 9:1,9:2,15:1] [--tube 9:1:0.3]

For the parameters of a trained run (RUN/theta.npz, RUN/config.toml), on each resolution
CELLS:DEGREE: the DG dofs per component, the time steps of a solve, the max logit difference
and label agreement between the PDE and the characteristics at the training points, and the
seconds of one forward solve and one value + gradient (side by side in one run: compare ratios,
not absolute times, on a shared machine).

``--tube CELLS:DEGREE:FRACTION`` adds the h-refinement that a goal-oriented indicator would
give: on that mesh, each cell's indicator is the largest logit error e_i = |u_h(0, X_i) −
f(q(T; X_i))| of the training points whose characteristic q(·; X_i) crosses the cell (the error
of u_h(0, X_i) is made along q(·; X_i), the support of its dual solution), and the FRACTION of
cells with the largest indicator is refined once (``dolfinx.mesh.refine`` on their edges,
Plaza's conforming bisection). This is the measurement behind ``Resolution.raised`` choosing
p, then uniform h.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.config import load_config
from solver.fem import refine
from solver.fem.mesh import create_mesh, min_cell_size
from solver.fem.affine import transported_components
from solver.fem.transport import TransportSolver
from solver.learn.reduced import ReducedFunctional
from solver.learn.train import load_dataset
from solver.model import characteristics
from solver.model.from_config import velocity_model
from solver.parallel import rank_share
from solver.rundir import store


def measure(comm, mesh, degree, config, dataset, model, p, label: str) -> np.ndarray:
    """Print one row; return this rank's training points' logit errors."""
    with TransportSolver(mesh, degree=degree, num_components=transported_components(dataset.num_classes, mesh.geometry.dim),
                             cfl=config.solver.cfl) as solver:
        mine = rank_share(comm, len(dataset.y_train))
        X, y = dataset.X_train[mine], dataset.y_train[mine]
        tc = config.train
        with ReducedFunctional(solver, model, X, y, dataset.num_classes, loss=tc.loss,
                              weight_decay=tc.weight_decay, smoothness=tc.smoothness, kinetic=tc.kinetic,
                              roughness=tc.roughness) as J:
            comm.Barrier()
            started = time.perf_counter()
            evaluation = J.evaluate(p)
            forward = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
            theta, A, b = J.split(p)
            exact = characteristics.flow(model.field(theta), X, 0.0, model.T) @ A.T + b
            errors = np.abs(evaluation.predictions - exact).max(axis=1)
            worst = comm.allreduce(float(errors.max(initial=0.0)), op=MPI.MAX)
            agree = comm.allreduce(int(np.sum(evaluation.predictions.argmax(1) == exact.argmax(1)))) / len(dataset.y_train)
            comm.Barrier()
            started = time.perf_counter()
            J.value_and_gradient(p)
            gradient = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
            cells = mesh.topology.index_map(mesh.topology.dim).size_global
            h_min = min_cell_size(mesh)
            if comm.rank == 0:
                print(f"| {label} | {cells} | {solver.num_dofs_global} | {sum(evaluation.steps)} | "
                      f"{h_min:.3f} | {worst:.3f} | {100 * agree:.1f}% | "
                      f"{forward:.2f} | {gradient:.2f} |", flush=True)
    return errors


def tube_refined(comm, domain, cells: int, mesh, model, theta, X: np.ndarray, errors: np.ndarray,
                 fraction: float):
    """``mesh`` (the base mesh of ``cells``) refined once on the ``fraction`` of cells with the
    largest indicator (``fem/refine.py``, as training computes it); all ranks' points and errors
    take part (gathered)."""
    X_all = np.concatenate(comm.allgather(X))
    e_all = np.concatenate(comm.allgather(errors))
    field = model.field(theta)
    h = 2.0 * min_cell_size(mesh)
    speed = max(float(np.max(np.abs(field(t, X_all)))) for t in np.linspace(0.0, model.T, 2 * model.slabs + 1))
    samples = int(np.ceil(4 * model.T * speed / h)) + 8  # a quarter cell between samples
    paths = characteristics.trajectories(field, X_all, np.linspace(0.0, model.T, samples))
    indicator = refine.tube_indicator(mesh, paths, e_all)
    ranked = np.sort(np.concatenate(comm.allgather(indicator)))[::-1]
    threshold = ranked[int(fraction * len(ranked)) - 1]
    marks = refine.marked_midpoints(mesh, indicator, max(np.nextafter(threshold, -np.inf), 0.0))
    fine = refine.mesh_with_marks(comm, domain, cells, (marks,))
    return fine, len(marks), comm.allreduce(int(np.sum(indicator > 0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--resolutions", default="9:1,9:2,15:1")
    parser.add_argument("--tube", default=None, help="CELLS:DEGREE:FRACTION")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    config = load_config(args.run / store.CONFIG)
    p = store.read_parameters(args.run / store.THETA).p
    domain = config.domain_object()
    dataset = load_dataset(config, domain)
    model = velocity_model(config, domain)
    if comm.rank == 0:
        print(f"{args.run}: {len(dataset.y_train)} training points, {comm.size} rank(s)\n")
        print("| resolution | cells | dofs | steps | h_min | max Δ | labels agree | forward s | value+gradient s |")
        print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.resolutions.split(","):
        cells, degree = (int(v) for v in spec.split(":"))
        measure(comm, create_mesh(comm, domain, cells), degree, config, dataset, model, p, f"{cells}, DG{degree}")
    if args.tube:
        cells, degree, fraction = args.tube.split(":")
        cells, degree, fraction = int(cells), int(degree), float(fraction)
        mesh = create_mesh(comm, domain, cells)
        errors = measure(comm, mesh, degree, config, dataset, model, p, f"{cells}, DG{degree} (before the tube)")
        X = dataset.X_train[rank_share(comm, len(dataset.y_train))]
        fine, marked, crossed = tube_refined(comm, domain, cells, mesh, model, p[: model.n_params], X, errors,
                                             fraction)
        measure(comm, fine, degree, config, dataset, model, p,
                f"{cells}, DG{degree}, tube: {marked} cells marked of {crossed} crossed")


if __name__ == "__main__":
    main()
