"""flow.gif: the data moving along their characteristics from t = 0 to T (matplotlib's animation,
the pillow writer), drawn in data coordinates.

2D: over u_h(t, ·), the PDE's solution at the same t, drawn as the class it predicts. u is
constant along characteristics, so each point keeps the colour of the region it sits in while
the regions move with it; at t = 0 the background is the prediction, at t = T the linear
classifier f = A x + b that the flow has made the data separable for.
3D: a 3D scatter of the moving points, coloured by class, seen by a fixed camera (a rotating
one hid the motion of the points behind its own), without a background (a volume cannot be
drawn honestly in one picture); the title says so. The legend names the classes by the
user's labels.

The frames are states the forward solve keeps (``outputs.solve_with_states``), so the
background is u_h at exactly the frame's t; the points are the characteristics at those t.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.model import characteristics
from solver.parallel import gather_rows, on_rank0, rank_share
from solver.rundir import store
from solver.rundir.files import atomic_file

# At most this many points move in the picture (a seeded sample beyond: drawing is the cost).
MAX_POINTS = 1000


def frame_states(result, frames: int) -> list[tuple[float, int | None]]:
    """(t, step) of up to ``frames`` of the states the solve kept, evenly spread over them and in
    increasing t, from t = 0 (step None: u_h(0, ·) itself) to t = T (the first step)."""
    steps = sorted(result.trajectory.states)  # step 0 is t = T; later steps, smaller t
    states = [(0.0, None)] + [(float(result.trajectory.times[s]), s) for s in reversed(steps)]
    pick = np.unique(np.round(np.linspace(0, len(states) - 1, min(frames, len(states)))).astype(int))
    return [states[i] for i in pick]


def write_flow_animation(comm: MPI.Comm, problem, p: np.ndarray, result, path: Path, frames: int,
                         view, raster=None) -> int:
    """Write ``path`` (a GIF) for the trained problem at parameters p (collective; rank 0 draws).

    Args:
        result: a forward solve at p with its states kept.
        view: how Ω is drawn (``plots.View``).
        raster: the raster of the background (``outputs.Raster``, 2D); None in 3D.

    Returns:
        The number of frames.
    """
    from solver.fem.pointeval import grid_evaluator

    dataset, solver = problem.dataset, problem.solver
    X = np.concatenate([dataset.X_train, dataset.X_test])
    y = np.concatenate([dataset.y_train, dataset.y_test])
    if len(X) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(X), MAX_POINTS, replace=False))
        X, y = X[keep], y[keep]
    chosen = frame_states(result, frames)
    times = np.array([t for t, _ in chosen])
    field = problem.model.field(problem.J.split(p)[0])
    mine = characteristics.trajectories(field, X[rank_share(comm, len(X))], times)
    paths = gather_rows(comm, mine.transpose(1, 0, 2)).transpose(1, 0, 2)  # (frames, n, d)

    images = None
    if raster is not None:
        evaluator = grid_evaluator(solver.V, raster.plane_points(problem.domain), "plot grid")
        n_local = solver.V.dofmap.index_map.size_local + solver.V.dofmap.index_map.num_ghosts
        images = []
        for _, step in chosen:
            logits = []
            rows = None if step is None else result.logit_rows(result.trajectory.states[step])
            for c in range(len(result.u0)):
                if step is None:
                    values = result.u0[c].x.array
                else:
                    values = np.zeros(n_local)
                    values[: solver.num_owned] = rows[c]
                logits.append(evaluator(values))  # P touches owned dofs only (owned cells, DG)
            logits = gather_rows(comm, np.stack(logits, axis=1))
            images.append(raster.image(logits.argmax(axis=1)))
    source = Path(problem.config.source)  # a problem file, or a run's config.toml: name the run
    name = source.parent.name if source.name == store.CONFIG else source.stem
    return on_rank0(comm, draw_flow_animation, path, view, times, paths, y, dataset.num_classes, images, name)


def draw_flow_animation(path: Path, view, times, paths, labels, K: int, images, name: str) -> int:
    """The GIF of :func:`write_flow_animation` (rank-local); returns the number of frames."""
    from matplotlib.animation import PillowWriter
    from matplotlib.lines import Line2D

    from solver.rundir.plots import class_image, figure, tab10

    cmap = tab10()
    colours = [cmap(int(k)) for k in labels]
    data = view.data(paths)
    three = view.dim == 3
    fig = figure(figsize=(5.6, 5.6), dpi=64)  # a plain Figure on an Agg canvas: the user's backend stays
    if three:
        ax = fig.add_subplot(projection="3d")
        dots = ax.scatter(*data[0].T, c=colours, s=6, depthshade=False)
        (x1, x2, x3) = view.limits()  # Ω, in data coordinates
        ax.set(xlim=x1, ylim=x2, zlim=x3, xlabel=view.names[0], ylabel=view.names[1], zlabel=view.names[2])
        ax.view_init(elev=20, azim=-60)  # fixed: only the points move
        what = ("3D scatter of the data points (colour: true class), fixed camera;\n"
                "no background: u_h(t, ·) is 3D (see u_t.bp)")
    else:
        ax = fig.add_subplot()
        background = ax.imshow(np.transpose(class_image(images[0], K, cmap), (1, 0, 2)), origin="lower",
                               extent=view.extent(), interpolation="none")
        dots = ax.scatter(*data[0, :, :2].T, c=colours, s=7, edgecolor="k", linewidth=0.3)
        view.boundary(ax, color="k", lw=1)
        ax.set_aspect("equal")
        ax.set_xlabel(view.label(0))
        ax.set_ylabel(view.label(1))
        what = ("points q(t; X) (colour: true class) over the class u_h(t, ·) predicts;\n"
                "t = 0: the prediction, t = T: the output layer f")
    present = sorted(set(int(k) for k in labels))
    fig.legend(handles=[Line2D([], [], color=cmap(k), marker="o", ls="", label=view.class_name(k))
                        for k in present], loc="lower center", ncols=min(len(present), 5), fontsize=7)
    heading = ax.set_title("", fontsize=8)
    ax.locator_params(nbins=5)  # text layout is most of a frame's cost: fewer tick labels

    def frame(i: int) -> None:
        if three:
            dots._offsets3d = tuple(data[i].T)
        else:
            background.set_data(np.transpose(class_image(images[i], K, cmap), (1, 0, 2)))
            dots.set_offsets(data[i, :, :2])
        heading.set_text(f"{name}: t = {times[i]:.3f} of T = {times[-1]:.3g}\n{what}")

    # The pillow writer names the format by the file's suffix: write a .gif, then move it in whole.
    # Frames are drawn once each and grabbed (FuncAnimation.save would draw each twice: measured
    # 7.3 s of CPU for the moons GIF that way).
    writer = PillowWriter(fps=8)
    with tempfile.TemporaryDirectory() as scratch:
        gif = Path(scratch) / "flow.gif"
        with writer.saving(fig, gif, dpi=fig.dpi):
            for i in range(len(times)):
                frame(i)
                writer.grab_frame()
        with atomic_file(path) as f:
            f.write(gif.read_bytes())
    return len(times)
