"""What a comparison run writes besides metrics.json: a PNG and fields for ParaView (VTX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi4py import MPI

from dolfinx import fem
from dolfinx.io import VTXWriter

from solver.model import characteristics
from solver.config import Config


def nodal_copies(functions: list[fem.Function], degree: int) -> list[fem.Function]:
    """Interpolate DG functions of the orthonormal basis into nodal DG (VTX needs nodal)."""
    mesh = functions[0].function_space.mesh
    V = fem.functionspace(mesh, ("DG", degree))
    copies = []
    for f in functions:
        g = fem.Function(V, name=f.name)
        g.interpolate(f)
        copies.append(g)
    return copies


def write_fields(comm: MPI.Comm, path: Path, functions: list[fem.Function], t: float = 0.0) -> None:
    """Write functions to one VTX (ADIOS2) file for ParaView (collective)."""
    with VTXWriter(comm, path, functions, engine="BP4") as writer:
        writer.write(t)


def write_trajectory(comm: MPI.Comm, path: Path, solver, result, every: int = 1) -> None:
    """u_h(t, ·) at the kept step starts (and t = 0) as one VTX time series for ParaView (collective).

    Written in t (not τ): the series runs from t = T (u = f) down to t = 0 (the prediction).
    """
    legendre = [fem.Function(solver.V, name=f"u{c}") for c in range(solver.num_components)]
    V = fem.functionspace(solver.mesh, ("DG", solver.degree))
    nodal = [fem.Function(V, name=f"u{c}") for c in range(solver.num_components)]
    traj = result.trajectory
    kept = sorted(traj.states)[::every]
    with VTXWriter(comm, path, nodal, engine="BP4") as writer:
        for step in kept:
            for c, (f, g) in enumerate(zip(legendre, nodal)):
                f.x.array[: solver.num_owned] = traj.states[step][c]
                f.x.scatter_forward()
                g.interpolate(f)
            writer.write(float(traj.times[step]))
        for f, g in zip(result.u0, nodal):
            g.interpolate(f)
        writer.write(0.0)


def write_comparison_outputs(comm: MPI.Comm, config: Config, out: Path, grid: np.ndarray, state: dict) -> None:
    """The comparison picture (rank 0) and u_h(0, ·) for ParaView (collective)."""
    if config.output.png:
        field, terminal = state["field"], state["terminal"]
        rng = np.random.default_rng(0)
        inside = grid[config.domain_object().cutoff(grid) > 0.05]
        starts = inside[rng.choice(len(inside), size=min(16, len(inside)), replace=False)]
        traj = characteristics.solve(comm, field, terminal, starts, num_trajectory_times=60).trajectories
        if comm.rank == 0:
            from solver.rundir.plots import comparison_figure

            comparison_figure(
                out / "compare.png",
                grid,
                state["fe_grid"][:, 0],
                state["ref_grid"][:, 0],
                traj,
                f"{config.source}: PDE (DG{config.mesh.degree}) vs characteristics",
            )
    if config.output.vtx:
        solver = state["solver"]
        write_fields(comm, out / "u0.bp", nodal_copies(state["result"].u0, solver.degree))


def plane_grid(domain, n: int) -> np.ndarray:
    """A uniform n × n grid of the middle x1-x2 plane of Ω (the plane augmented data live in),
    moved off the mesh's facets (``compare.off_facets``)."""
    from solver.check.compare_field import off_facets

    lower, upper = np.asarray(domain.lower), np.asarray(domain.upper)
    axes = [np.linspace(lower[i], upper[i], n) for i in range(2)]
    g = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    points = np.tile(0.5 * (lower + upper), (len(g), 1))
    points[:, :2] = g
    return off_facets(domain, points)


def softmax(u: np.ndarray) -> np.ndarray:
    z = np.exp(u - u.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def write_parameters(path: Path, problem, p: np.ndarray) -> None:
    """theta.npz: the learned parameters and what they mean (rank-local)."""
    import json

    theta, A, b = problem.J.split(p)
    model = problem.model
    meta = dict(
        format="transport-inverse parameters", version=1,
        model=dict(dim=model.dim, width=model.width, slabs=model.slabs, T=model.T,
                   activation=model.activation, time=model.time),
        domain=problem.config.to_dict()["domain"],
        scaling=problem.dataset.scaling.to_dict(),
        num_classes=problem.dataset.num_classes,
        blocks={k: [v.start, v.stop] for k, v in model.block_slices().items()},
        # the mesh the run ended on (train raises it until the PDE is certified)
        resolution=dict(cells=problem.resolution.cells, degree=problem.resolution.degree),
    )
    np.savez(path, p=p, theta=theta, A=A, b=b, meta=json.dumps(meta))


def write_training_outputs(comm: MPI.Comm, outcome, out: Path) -> dict:
    """theta.npz, metrics.json, the PNGs and u_h(0, ·) for ParaView (collective).

    ``outcome`` is ``learn.train``'s: the problem on its final resolution, whose J was last
    evaluated at the final parameters, and the final certification check."""
    problem, state, history, check = outcome.problem, outcome.state, outcome.history, outcome.check
    from solver.rundir.files import write_json_atomic
    from solver.fem.pointeval import evaluate_everywhere

    config, dataset, J = problem.config, problem.dataset, problem.J
    if comm.rank == 0:
        write_parameters(out / "theta.npz", problem, state.p)
    last = history[-1]
    train_accuracy, test_accuracy = problem.accuracy(comm)  # the PDE on the final mesh
    metrics = dict(
        final_loss=state.value, data_loss=J.last.data_loss,
        train_accuracy=train_accuracy, test_accuracy=test_accuracy,
        certified=check.passed, check=check.to_dict(),
        tolerance=config.train.tolerance, agreement=config.train.agreement,
        resolution=dict(cells=problem.resolution.cells, degree=problem.resolution.degree),
        iterations=state.iteration, evaluations=state.evaluations,
        wall_seconds=float(sum(h["seconds"] for h in history)), ranks=comm.size,
        mesh_cells=problem.resolution.cells, degree=problem.resolution.degree,
        dofs=problem.solver.num_dofs_global, components=dataset.num_classes,
        parameters=J.n_params, time_steps=int(sum(J.last.steps)),
        train_points=len(dataset.y_train), test_points=len(dataset.y_test),
    )
    if config.output.png:
        grid = plane_grid(problem.domain, 81)
        probabilities = softmax(evaluate_everywhere(comm, problem.solver.V, J.last.u0, grid, "plot grid"))
        theta = J.split(state.p)[0]
        field = problem.model.field(theta)
        from solver.model import characteristics

        sample = np.arange(0, len(dataset.y_test), max(1, len(dataset.y_test) // 60))
        traj = characteristics.solve(comm, field, lambda x: x, dataset.X_test[sample], num_trajectory_times=40).trajectories
        if comm.rank == 0:
            from solver.rundir import plots

            name = Path(config.source).stem
            plots.prediction_figure(out / "prediction.png", grid, probabilities, dataset.X_train, dataset.y_train,
                                    dataset.X_test, dataset.y_test,
                                    f"{name}: prediction u_h(0, ·), test accuracy {test_accuracy:.3f}")
            coarse = plane_grid(problem.domain, 17)
            times = [0.5 * (a + b) for a, b in zip(problem.model.slab_times[:-1], problem.model.slab_times[1:])][:4]
            plots.velocity_figure(out / "velocity.png", coarse, np.array([field(t, coarse) for t in times]), times,
                                  f"{name}: learned velocity field")
            plots.characteristics_figure(out / "characteristics.png", traj, dataset.y_test[sample],
                                         f"{name}: characteristics of test points, t = 0 → T")
            plots.loss_figure(out / "loss.png", history, f"{name}: training")
    if config.output.vtx:
        write_fields(comm, out / "u0.bp", nodal_copies(J.last.u0, problem.solver.degree))
        # u_h(t, ·) over the whole solve: one more forward at the final θ, its checkpoints kept.
        theta, A, b = J.split(state.p)
        result = problem.solver.solve(problem.model.field(theta), lambda x: x @ A.T + b)
        steps = result.trajectory.num_steps
        write_trajectory(comm, out / "u_t.bp", problem.solver, result, every=max(1, steps // (50 * problem.solver.checkpoint_every)))
    if comm.rank == 0:
        write_json_atomic(out / "metrics.json", metrics)
    comm.Barrier()
    return metrics
