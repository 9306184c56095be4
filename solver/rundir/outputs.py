"""What a finished command writes into its run directory.

Training (``write_training_outputs``): theta.npz and metrics.json (through ``store``), the
pictures prediction.png, velocity.png, characteristics.png and loss.png (``output.png``), and
u0.bp and u_t.bp for ParaView (``output.vtx``).

Comparison of a configured field (``write_comparison_outputs``): compare.png and u0.bp; the
command line writes its metrics.json itself.

The pictures are drawn on rank 0 (``plots``), the fields written collectively (``fields``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.config import Config
from solver.model import characteristics
from solver.parallel import on_rank0
from solver.rundir import store
from solver.rundir.fields import nodal_copies, write_fields, write_trajectory


def plane_grid(domain, n: int) -> np.ndarray:
    """A uniform n × n grid of the middle x1-x2 plane of Ω (the plane augmented data live in),
    moved off the mesh's facets (``compare_field.off_facets``)."""
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


# --- training -------------------------------------------------------------------------------


def write_training_outputs(comm: MPI.Comm, outcome, out: Path) -> dict:
    """theta.npz, the PNGs, u_h(0, ·) and u_h(t, ·) for ParaView, metrics.json (collective).

    ``outcome`` is ``learn.train``'s: the problem on the resolution the run ended on, its J last
    evaluated at the final parameters, and the final certification check.

    Returns:
        The metrics (the same on every rank).
    """
    problem, state = outcome.problem, outcome.state
    config = problem.config
    theta, A, b = problem.J.split(state.p)
    on_rank0(comm, store.write_parameters, out / store.THETA, problem.model, theta, A, b,
             domain=config.to_dict()["domain"], scaling=problem.dataset.scaling.to_dict(),
             resolution=problem.resolution.to_dict(), classes=list(problem.dataset.class_names),
             augmented=problem.dataset.augmented)
    metrics = training_metrics(comm, outcome)
    if config.output.png:
        write_training_pictures(comm, problem, state.p, outcome.history, out, metrics["test_accuracy"])
    if config.output.vtx:
        write_training_fields(comm, problem, state.p, out)
    on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    return metrics


def training_metrics(comm: MPI.Comm, outcome) -> dict:
    """The summary of a run: the PDE's loss and accuracies on the final mesh, beside the
    certification check against the characteristics; its cost and its sizes."""
    problem, state, history, check = outcome.problem, outcome.state, outcome.history, outcome.check
    config, dataset, J = problem.config, problem.dataset, problem.J
    train_accuracy, test_accuracy = problem.accuracy(comm)  # J.last is at the final p, final mesh
    return dict(
        final_loss=state.value, data_loss=J.last.data_loss,
        train_accuracy=train_accuracy, test_accuracy=test_accuracy,
        certified=check.passed, check=check.to_dict(),
        tolerance=config.train.tolerance, agreement=config.train.agreement,
        iterations=state.iteration, evaluations=state.evaluations,
        wall_seconds=float(sum(h["seconds"] for h in history)), ranks=comm.size,
        mesh_cells=problem.resolution.cells, degree=problem.resolution.degree,
        refinements=len(problem.resolution.marks),  # local ones, of the cells the data's paths cross
        dofs=problem.solver.num_dofs_global, components=dataset.num_classes,
        parameters=J.n_params, time_steps=int(sum(J.last.steps)),
        train_points=len(dataset.y_train), test_points=len(dataset.y_test),
        classes=list(dataset.class_names),  # class k's label in the data (a CSV file's names)
    )


def write_training_pictures(comm: MPI.Comm, problem, p: np.ndarray, history: list[dict], out: Path,
                            test_accuracy: float) -> None:
    """prediction.png (from the latest evaluation, at p), velocity.png, characteristics.png and
    loss.png (collective: the characteristics; rank 0 draws)."""
    from solver.fem.pointeval import evaluate_everywhere

    dataset, J = problem.dataset, problem.J
    grid = plane_grid(problem.domain, 81)
    probabilities = softmax(evaluate_everywhere(problem.solver.V, J.last.u0, grid, "plot grid"))
    field = problem.model.field(J.split(p)[0])
    sample = np.arange(0, len(dataset.y_test), max(1, len(dataset.y_test) // 60))
    traj = characteristics.solve(comm, field, lambda x: x, dataset.X_test[sample], num_trajectory_times=40).trajectories
    on_rank0(comm, draw_training_pictures, problem, field, grid, probabilities, traj, sample, history,
             out, test_accuracy)


def draw_training_pictures(problem, field, grid, probabilities, traj, sample, history, out: Path,
                           test_accuracy: float) -> None:
    """The pictures of ``write_training_pictures`` (rank-local)."""
    from solver.rundir import plots

    dataset = problem.dataset
    name = Path(problem.config.source).stem
    plots.prediction_figure(out / "prediction.png", grid, probabilities, dataset.X_train, dataset.y_train,
                            dataset.X_test, dataset.y_test,
                            f"{name}: prediction u_h(0, ·), test accuracy {test_accuracy:.3f}")
    coarse = plane_grid(problem.domain, 17)
    slab_times = problem.model.slab_times
    times = [0.5 * (a + b) for a, b in zip(slab_times[:-1], slab_times[1:])][:4]
    plots.velocity_figure(out / "velocity.png", coarse, np.array([field(t, coarse) for t in times]), times,
                          f"{name}: learned velocity field")
    plots.characteristics_figure(out / "characteristics.png", traj, dataset.y_test[sample],
                                 f"{name}: characteristics of test points, t = 0 → T")
    plots.loss_figure(out / "loss.png", history, f"{name}: training")


def write_training_fields(comm: MPI.Comm, problem, p: np.ndarray, out: Path) -> None:
    """u0.bp (the latest evaluation's u_h(0, ·)) and u_t.bp (u_h(t, ·) over the whole solve, from
    one more forward solve at p with its checkpoints kept) for ParaView (collective)."""
    solver, J = problem.solver, problem.J
    write_fields(comm, out / "u0.bp", nodal_copies(J.last.u0, solver.degree))
    theta, A, b = J.split(p)
    result = solver.solve(problem.model.field(theta), lambda x: x @ A.T + b)
    steps = result.trajectory.num_steps
    write_trajectory(comm, out / "u_t.bp", solver, result, every=max(1, steps // (50 * solver.checkpoint_every)))


# --- comparison of a configured field -------------------------------------------------------


def write_comparison_outputs(comm: MPI.Comm, config: Config, out: Path, grid: np.ndarray, run) -> None:
    """compare.png (rank 0 draws) and u_h(0, ·) for ParaView (collective); ``run`` is
    ``check.compare_field.solve_and_compare``'s MeshComparison."""
    if config.output.png:
        field, terminal = run.field, run.terminal
        rng = np.random.default_rng(0)
        inside = grid[config.domain_object().cutoff(grid) > 0.05]
        starts = inside[rng.choice(len(inside), size=min(16, len(inside)), replace=False)]
        traj = characteristics.solve(comm, field, terminal, starts, num_trajectory_times=60).trajectories
        from solver.rundir.plots import comparison_figure

        on_rank0(comm, comparison_figure, out / "compare.png", grid, run.fe_grid[:, 0],
                 run.ref_grid[:, 0], traj, f"{config.source}: PDE (DG{config.mesh.degree}) vs characteristics")
    if config.output.vtx:
        write_fields(comm, out / "u0.bp", nodal_copies(run.result.u0, run.solver.degree))
