"""What a finished command writes into its run directory.

Training (``write_training_outputs``): theta.npz and metrics.json (through ``store``), the
pictures prediction.png, velocity.png, characteristics.png, loss.png, certification.png,
confusion.png, reliability.png and (two classes) roc.png (``output.png``), the
animation flow.gif (``output.animation``; also written by ``compare RUN``), and u0.bp and
u_t.bp for ParaView (``output.vtx``). The pictures of a training run are drawn in data
coordinates (the inverse of the scaling into Ω).

Comparison of a configured field (``write_comparison_outputs``): compare.png and u0.bp; the
command line writes its metrics.json itself.

The pictures are drawn on rank 0 (``plots``), the fields written collectively (``fields``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.config import Config
from solver.fem.affine import solve_affine
from solver.model import characteristics
from solver.model.activations import softmax
from solver.model.domain import Ball
from solver.parallel import on_rank0
from solver.rundir import store
from solver.rundir.fields import nodal_copies, write_fields, write_trajectory

log = logging.getLogger("solver")


def plane_grid(domain, n: int) -> np.ndarray:
    """A uniform n × n grid of the middle x1-x2 plane of Ω (the plane augmented data live in),
    shifted off the mesh's facets (``compare_field.off_facets``)."""
    from solver.check.compare_field import off_facets

    lower, upper = np.asarray(domain.lower), np.asarray(domain.upper)
    axes = [np.linspace(lower[i], upper[i], n) for i in range(2)]
    g = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    points = np.tile(0.5 * (lower + upper), (len(g), 1))
    points[:, :2] = g
    return off_facets(domain, points)


# --- training -------------------------------------------------------------------------------


def input_record(problem, p: np.ndarray) -> dict:
    """``write_parameters``' input_layer and q of a run with a learned input layer, else none."""
    layer = problem.dataset.input_layer
    if layer is None:
        return {}
    return dict(input_layer=layer.to_dict(), q=problem.J.input_parameters(p))


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
             augmented=problem.dataset.augmented, **input_record(problem, state.p))
    metrics = training_metrics(comm, outcome)
    problem.J.complete(state.p)  # u0.bp and the pictures read every cell
    if config.output.png:
        write_training_pictures(comm, problem, state.p, outcome.history, out, metrics["test_accuracy"])
    if config.output.vtx or config.output.animation:
        result = solve_with_states(problem, state.p, config.output.frames)
        if config.output.vtx:
            write_training_fields(comm, problem, result, out)
        if config.output.animation:
            write_animation(comm, problem, state.p, out / "flow.gif", result)
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
        test_outside=dataset.test_outside,  # held-out points left out: outside Ω (model/data.py)
        classes=list(dataset.class_names),  # class k's label in the data (a CSV file's names)
    )


@dataclass
class Raster:
    """A square raster of the x1-x2 plane of Ω (in 3D: of planes x3 = const), for pictures.

    Attributes:
        axes: the raster's x1 and x2 values, Ω coordinates, 2 arrays of shape=(n,).
        levels: the x3 of each plane (3D), or [None] (2D).
        inside: which raster points of a plane lie in Ω (and are evaluated), shape=(n*n,) bool.
        slab: in 3D, the thickness (Ω units) of the slab about a plane whose points are drawn on it.
        num_classes, slices: filled in by :meth:`classify`: [(x3, labels, confidence)], images of
            shape=(n, n), NaN outside Ω.
    """

    axes: list
    levels: list
    inside: np.ndarray
    slab: float = 0.0
    num_classes: int = 0
    slices: list | None = None

    @classmethod
    def of(cls, domain, n: int, levels: list | None = None) -> Raster:
        lower, upper = np.asarray(domain.lower), np.asarray(domain.upper)
        axes = [np.linspace(lower[i], upper[i], n) for i in range(2)]
        plane = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
        if isinstance(domain, Ball):  # as compare_field.off_facets keeps it: in the polygonal mesh
            inside = np.linalg.norm(plane - np.asarray(domain.center)[:2], axis=1) <= 0.97 * domain.radius
        else:
            inside = np.ones(len(plane), dtype=bool)
        levels = levels if domain.dim == 3 else [None]
        slab = 0.0 if domain.dim == 2 else 0.1 * (upper[2] - lower[2])
        return cls(axes, levels, inside, slab=slab)

    def plane_points(self, domain) -> np.ndarray:
        """The points of every plane in Ω, plane by plane, shape=(len(levels)·inside.sum(), d)."""
        from solver.check.compare_field import off_facets

        plane = np.stack([a.ravel() for a in np.meshgrid(*self.axes, indexing="ij")], axis=1)[self.inside]
        if domain.dim == 2:
            return off_facets(domain, plane)
        return np.concatenate([off_facets(domain, np.column_stack([plane, np.full(len(plane), x3)]))
                               for x3 in self.levels])

    def image(self, values: np.ndarray) -> np.ndarray:
        """A plane's values (shape=(inside.sum(),)) as an (n, n) image, NaN outside Ω."""
        out = np.full(self.inside.shape, np.nan)
        out[self.inside] = values
        return out.reshape(len(self.axes[0]), len(self.axes[1]))

    def classify(self, logits: np.ndarray) -> None:
        """The predicted class and its probability on each plane, from u_h at ``plane_points``."""
        probabilities = softmax(logits)
        self.num_classes = logits.shape[1]
        m = int(self.inside.sum())
        self.slices = [(x3, self.image(probabilities[j * m:(j + 1) * m].argmax(axis=1)),
                        self.image(probabilities[j * m:(j + 1) * m].max(axis=1)))
                       for j, x3 in enumerate(self.levels)]

    def axes_data(self, view) -> list[np.ndarray]:
        """The raster's axes in data coordinates (the scaling acts per axis)."""
        scale, shift = np.asarray(view.scaling.scale), np.asarray(view.scaling.shift)
        return [(a - shift[i]) / scale[i] for i, a in enumerate(self.axes)]


def view_of(problem):
    """How a training problem's pictures draw Ω: in data coordinates, with the data's names."""
    from solver.rundir.plots import View

    return View(problem.domain, problem.dataset.scaling, tuple(problem.dataset.feature_names),
                tuple(problem.dataset.class_names))


def slice_levels(domain, dataset) -> list[float]:
    """The x3 of the 3D slices: the middle of Ω and halfway to each side; where the data lie in
    one plane (augmented data), that plane in the middle."""
    lower, upper = domain.lower[-1], domain.upper[-1]
    x3 = dataset.X_train[:, -1]
    middle = float(x3[0]) if np.ptp(x3) == 0 else 0.5 * (lower + upper)
    return [middle - 0.25 * (upper - lower), middle, middle + 0.25 * (upper - lower)]


def write_training_pictures(comm: MPI.Comm, problem, p: np.ndarray, history: list[dict], out: Path,
                            test_accuracy: float) -> None:
    """prediction.png (from the latest evaluation, at p), velocity.png, characteristics.png,
    loss.png, certification.png, and of the model's predictions (the characteristics', as
    ``predict`` gives them) confusion.png, reliability.png and, for two classes, roc.png
    (collective: the characteristics and the point evaluation; rank 0 draws)."""
    from solver.fem.pointeval import evaluate_everywhere

    dataset, J = problem.dataset, problem.J
    J.complete(p)  # the plot grid reads every cell
    raster = Raster.of(problem.domain, 81, slice_levels(problem.domain, dataset))
    raster.classify(evaluate_everywhere(problem.solver.V, J.last.u0, raster.plane_points(problem.domain),
                                        "plot grid", internal=True))
    predicted = evaluate_everywhere(problem.solver.V, J.last.u0, dataset.X_test, "data (test)").argmax(axis=1)
    theta, A, b = J.split(p)
    field = problem.model.field(theta)
    # The characteristics' end points q(T; X) of (a fixed subset of) every point: the model's
    # prediction A q + b, and the 3D picture's end positions.
    from solver.rundir.plots import shown_subset  # the subset prediction.png draws

    train, test = shown_subset(len(dataset.y_train)), shown_subset(len(dataset.y_test))
    starts = np.concatenate([dataset.X_train[train], dataset.X_test[test]])
    ends = characteristics.solve(comm, field, lambda x: x, starts).u0
    logits = ends @ A.T + b
    held = len(test) > 0  # judged on the test points, or on the training points if none are held out
    judged = slice(len(train), None) if held else slice(0, len(train))
    y_judged = dataset.y_test[test] if held else dataset.y_train[train]
    shown = dataset.X_test if held else dataset.X_train
    sample = np.arange(0, len(shown), max(1, len(shown) // 60))
    traj = characteristics.solve(comm, field, lambda x: x, shown[sample], num_trajectory_times=40).trajectories
    y_sample = (dataset.y_test if held else dataset.y_train)[sample]
    flow = (starts, ends, np.concatenate([dataset.y_train[train], dataset.y_test[test]]))
    judged_set = Judged("test" if held else "training", y_judged, softmax(logits[judged]))
    on_rank0(comm, draw_training_pictures, problem, field, raster, predicted, traj, y_sample, history,
             out, test_accuracy, flow, judged_set)


@dataclass
class Judged:
    """The points the quality pictures judge: the test points, or the training points if none
    are held out; their true classes (shape=(n,)) and the model's probabilities (shape=(n, K))."""

    what: str
    y: np.ndarray
    probabilities: np.ndarray


def draw_training_pictures(problem, field, raster, predicted, traj, y_sample, history, out: Path,
                           test_accuracy: float, flow=None, judged: Judged | None = None) -> None:
    """The pictures of ``write_training_pictures`` (rank-local)."""
    from solver.rundir import plots

    dataset, view, config = problem.dataset, view_of(problem), problem.config
    name = Path(config.source).stem
    accuracy = f"test accuracy {test_accuracy:.3f}" if len(dataset.y_test) else "no test points held out"
    plots.prediction_figure(out / "prediction.png", view, raster, dataset.X_train, dataset.y_train,
                            dataset.X_test, dataset.y_test, predicted,
                            f"{name}: prediction u_h(0, ·), {accuracy}", flow=flow if problem.domain.dim == 3 else None)
    coarse = plane_grid(problem.domain, 17)
    slab_times = problem.model.slab_times
    times = [0.5 * (a + b) for a, b in zip(slab_times[:-1], slab_times[1:])][:4]
    plots.velocity_figure(out / "velocity.png", view, coarse, np.array([field(t, coarse) for t in times]), times,
                          problem.domain.cutoff(coarse), f"{name}: learned velocity")
    plots.characteristics_figure(out / "characteristics.png", view, traj, y_sample,
                                 f"{name}: characteristics of {'test' if len(dataset.y_test) else 'training'} points")
    plots.loss_figure(out / "loss.png", history, f"{name}: training")
    plots.certification_figure(out / "certification.png", history, config.train.tolerance,
                               config.train.agreement, f"{name}: certification")
    if judged is None or not len(judged.y):
        return
    classes = [view.class_name(k) for k in range(dataset.num_classes)]
    model = f"{name}: the model's prediction (characteristics) on the {judged.what} points"
    plots.confusion_figure(out / "confusion.png", judged.y, judged.probabilities.argmax(axis=1), classes, model)
    plots.reliability_figure(out / "reliability.png", judged.y, judged.probabilities, f"{model}: reliability")
    if dataset.num_classes == 2:
        plots.roc_figure(out / "roc.png", judged.y, judged.probabilities[:, 1], classes, model)


def solve_with_states(problem, p: np.ndarray, frames: int):
    """One more forward solve at p that keeps about ``frames`` to ``2·frames`` states u_h(t, ·)
    between T and 0 (every n-th step start, n from the last solve's step count), for u_t.bp
    and flow.gif (collective)."""
    solver, J = problem.solver, problem.J
    theta, A, b = J.split(p)
    steps = int(sum(J.last.steps)) if J.last is not None else frames
    kept = solver.checkpoint_every, getattr(solver, "slabs_per_step", None)
    solver.checkpoint_every = max(1, steps // frames)
    if hasattr(solver, "slabs_per_step"):
        # Semi-Lagrangian: a state at every slab's start for the pictures (training's one step
        # from T to 0 keeps none between; its u_h(0) differs from this one's by the
        # interpolation between slabs only).
        solver.slabs_per_step = 1
    try:
        return solve_affine(solver, problem.model.field(theta), A, b)
    finally:
        solver.checkpoint_every = kept[0]
        if hasattr(solver, "slabs_per_step"):
            solver.slabs_per_step = kept[1]


def write_animation(comm: MPI.Comm, problem, p: np.ndarray, path: Path, result=None) -> None:
    """flow.gif (``rundir.animation``) of the problem at p, from ``result`` (a solve at p with
    states kept; None: solved here) (collective). Logs its frames and its cost."""
    from solver.rundir.animation import write_flow_animation

    started = time.perf_counter()
    frames = problem.config.output.frames
    result = result or solve_with_states(problem, p, frames)
    raster = Raster.of(problem.domain, 81) if problem.domain.dim == 2 else None
    count = write_flow_animation(comm, problem, p, result, path, frames, view_of(problem), raster)
    log.info("wrote %s: %d frames, %.1f s (output.animation = false skips it)", path.name, count,
             comm.allreduce(time.perf_counter() - started, op=MPI.MAX))


def write_training_fields(comm: MPI.Comm, problem, result, out: Path) -> None:
    """u0.bp (the latest evaluation's u_h(0, ·)) and u_t.bp (u_h(t, ·) at about 50 of the states
    of ``result``, a solve at the final p with its states kept) for ParaView (collective)."""
    solver, J = problem.solver, problem.J
    write_fields(comm, out / "u0.bp", nodal_copies(J.last.u0, solver.degree))
    states = len(result.trajectory.states)
    write_trajectory(comm, out / "u_t.bp", solver, result, every=max(1, states // 50))


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
