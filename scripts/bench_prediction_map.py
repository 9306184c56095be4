"""The whole-domain prediction map of a trained run, side by side on one core: the PDE (one solve
on the run's final mesh, then point location and evaluation), the exported ResNet in onnxruntime
(1 thread), and optionally the characteristics and dolfinx's own point location (the previous
locator) for reference.

    .venv/bin/python scripts/bench_prediction_map.py runs/moons --grid 512
    .venv/bin/python scripts/bench_prediction_map.py RUN3D --grid 128 --depth 128

Times are CPU seconds of this process (``time.process_time``: all its threads; everything runs
on one thread here), medians of ``--repeats`` after a warm-up call: on a machine shared with other
jobs, wall-clock times measure the load more than the code. The table is printed as markdown and
``--json`` keeps the numbers.
"""

from __future__ import annotations

# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: no BLAS/OpenMP threads beside the timed one

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeats: int):
    """The median CPU seconds of ``repeats`` calls of ``fn`` after one warm-up call, and its value."""
    value = fn()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        value = fn()
        times.append(time.process_time() - started)
    return statistics.median(times), value


def dolfinx_locate(V, points: np.ndarray) -> None:
    """The previous locator: dolfinx's determine_point_ownership over the owned cells."""
    import dolfinx.geometry

    mesh = V.mesh
    padded = np.zeros((len(points), 3))
    padded[:, : points.shape[1]] = points
    cells = np.arange(mesh.topology.index_map(mesh.topology.dim).size_local, dtype=np.int32)
    dolfinx.geometry.determine_point_ownership(mesh, padded, 1e-10, cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--grid", type=int, default=512, help="points per direction")
    parser.add_argument("--depth", type=int, default=128, help="Euler blocks of the exported ResNet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--characteristics", action="store_true", help="also time the characteristics (slow)")
    parser.add_argument("--dolfinx", action="store_true", help="also time dolfinx's point location (slow)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from solver.check import predict
    from solver.fem.refine import mesh_with_marks
    from solver.fem.locate import CellLocator
    from solver.fem.pointeval import PointEvaluator, cell_locator
    from solver.fem.affine import solve_affine, transported_components
    from solver.fem.transport import TransportSolver
    from solver.model.from_config import velocity_model
    from solver.resnet.export import learned_net
    from solver.resnet.onnx_net import load_onnx_session, save_onnx

    comm = MPI.COMM_SELF  # one core each
    run = predict.read_run(args.run)
    config, parameters = run.config, run.parameters
    A, b = parameters.A, parameters.b
    grid, inside = predict.grid_points(run, args.grid)
    points = grid[inside]
    model = velocity_model(config, config.domain_object())
    field = model.field(parameters.theta)
    terminal = lambda x: x @ A.T + b  # noqa: E731 (the output layer f of eq. 13)

    mesh = mesh_with_marks(comm, config.domain_object(), run.resolution.cells, run.resolution.marks)
    with TransportSolver(mesh, degree=run.resolution.degree, num_components=transported_components(*A.shape),
                             cfl=config.solver.cfl,
                             dt=config.solver.dt, checkpoint_every=config.solver.checkpoint_every,
                             viscosity=config.field.viscosity) as solver:
        solve_s, result = timed(lambda: solve_affine(solver, field, A, b, keep=False), args.repeats)

        # The locator's set-up (lattice or tree) is part of the cost: each repeat builds one afresh,
        # as a first evaluator on the mesh does; the evaluator itself takes the mesh's cached one.
        locator = cell_locator(solver.V.mesh)

        def locate():
            CellLocator(solver.V.mesh)
            return PointEvaluator(solver.V, points, "grid", report=False)

        locate_s, evaluator = timed(locate, args.repeats)
        evaluate_s, pde = timed(lambda: np.stack([evaluator(u) for u in result.u0], axis=1), args.repeats)
        rows = {"PDE (solve + locate + evaluate)": solve_s + locate_s + evaluate_s}
        parts = dict(solve=solve_s, locate=locate_s, evaluate=evaluate_s)

        with tempfile.TemporaryDirectory() as tmp:
            onnx = save_onnx(learned_net(args.run, args.depth, "euler"), Path(tmp) / "net.onnx", "float32")
            net = load_onnx_session(onnx, threads=1)
            x_data = run.scaling.inverse(points)  # the net takes data coordinates
            resnet_s, resnet = timed(lambda: net(x_data).astype(np.float64), args.repeats)
        rows[f"ResNet, {args.depth} Euler blocks (onnxruntime float32, 1 thread)"] = resnet_s
        agreement = {"PDE vs ResNet": float(np.mean(pde.argmax(1) == resnet.argmax(1)))}
        if args.characteristics:
            from solver.model import characteristics

            char_s, char = timed(lambda: characteristics.solve(comm, field, terminal, points).u0, 1)
            rows["characteristics (DOP853, 1e-10)"] = char_s
            agreement["PDE vs characteristics"] = float(np.mean(pde.argmax(1) == char.argmax(1)))
        if args.dolfinx:
            parts["locate (dolfinx determine_point_ownership)"] = timed(lambda: dolfinx_locate(solver.V, points), 1)[0]

        dim = config.dim
        print(f"{args.run}: {len(points):,} points ({args.grid}^{dim} grid), {run.resolution}, "
              f"{solver.num_dofs_global:,} dofs x {len(b)}, {sum(result.steps_per_piece)} time steps, "
              f"lattice locator: {locator.lattice is not None}")
        print("\n| route | CPU seconds |\n|---|---|")
        for name, seconds in rows.items():
            print(f"| {name} | {seconds:.4f} |")
        for name, seconds in parts.items():
            print(f"| — {name} | {seconds:.4f} |")
        print(f"\nResNet / PDE: {resnet_s / rows['PDE (solve + locate + evaluate)']:.1f}x; labels agree: "
              + ", ".join(f"{k} {100 * v:.2f}%" for k, v in agreement.items()))
        if args.json:
            args.json.write_text(json.dumps(dict(run=str(args.run), grid=args.grid, points=len(points), routes=rows,
                                                 parts=parts, agreement=agreement), indent=1))


if __name__ == "__main__":
    main()
