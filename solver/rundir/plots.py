"""Pictures (rank-local, matplotlib's Agg backend): plotting lives at the edge, not in the core.

Each picture is written atomically (``solver.rundir.files.atomic_file``): whole, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solver.rundir.files import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> None:
    """Write ``fig`` to ``path`` (PNG) atomically and close it."""
    try:
        with atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)


def _slice_2d(grid: np.ndarray, *values: np.ndarray):
    """For a 3D grid, the points (and values) of the plane nearest the middle of x3."""
    if grid.shape[1] == 2:
        return (grid, *values)
    x3 = grid[:, 2]
    levels = np.unique(np.round(x3, 12))
    middle = levels[np.argmin(np.abs(levels - 0.5 * (x3.min() + x3.max())))]
    mask = np.abs(x3 - middle) < 1e-9
    return (grid[mask][:, :2], *(v[mask] for v in values))


def comparison_figure(
    path: str | Path,
    grid: np.ndarray,
    fe_grid: np.ndarray,
    ref_grid: np.ndarray,
    trajectories: np.ndarray | None,
    title: str,
) -> None:
    """u_h(0, ·), the characteristics solution with sample characteristics, and |error| (log).

    Args:
        path: the PNG to write.
        grid: points, shape=(n, d); in 3D the middle x3-plane is shown.
        fe_grid: u_h(0) at the points, component 0, shape=(n,).
        ref_grid: f(q(T; x)) at the points, shape=(n,).
        trajectories: sample characteristics q(t), shape=(num_times, num_points, d), or None.
        title: the figure's title.
    """
    plt = _pyplot()
    xy, fe, ref = _slice_2d(grid, fe_grid, ref_grid)
    if grid.shape[1] == 3:
        title += f" (3D: the grid's x3-plane nearest the middle, {len(xy)} of {len(grid)} points)"
    err = np.abs(fe - ref)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    vmin, vmax = min(fe.min(), ref.min()), max(fe.max(), ref.max())
    for ax, values, name in ((axes[0], fe, "u_h(0, x)  (finite elements)"), (axes[1], ref, "f(q(T; x))  (characteristics)")):
        tc = ax.tricontourf(xy[:, 0], xy[:, 1], values, levels=30, vmin=vmin, vmax=vmax, cmap="viridis")
        fig.colorbar(tc, ax=ax, shrink=0.85)
        ax.set_title(name)
    if trajectories is not None:
        for i in range(trajectories.shape[1]):
            path_i = trajectories[:, i, :2]
            axes[1].plot(path_i[:, 0], path_i[:, 1], "w-", lw=0.8, alpha=0.9)
            axes[1].plot(path_i[0, 0], path_i[0, 1], "wo", ms=3)
            axes[1].plot(path_i[-1, 0], path_i[-1, 1], "r.", ms=4)
    floor = max(err.max() * 1e-6, 1e-16)
    tc = axes[2].tricontourf(
        xy[:, 0], xy[:, 1], np.log10(np.maximum(err, floor)), levels=30, cmap="magma"
    )
    fig.colorbar(tc, ax=axes[2], shrink=0.85, label="log10 |difference|")
    axes[2].set_title(f"|u_h − f∘q|, max {err.max():.2e}")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.suptitle(title)
    _save(plt, fig, path)


def convergence_figure(path: str | Path, study: dict, title: str) -> None:
    """Errors against h_min on log-log axes, with the fitted orders."""
    plt = _pyplot()
    rows = study["rows"]
    h = np.array([r["h_min"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 4.5), constrained_layout=True)
    for key, label, order in (
        ("l2", "L2", study["fitted_order_l2"]),
        ("max_points", "max at points", study["fitted_order_max"]),
    ):
        ax.loglog(h, [r[key] for r in rows], "o-", label=f"{label} (order {order:.2f})")
    ax.set_xlabel("h_min")
    ax.set_ylabel("|u_h(0) − f(q(T))|")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    _save(plt, fig, path)


# --- training pictures: drawn in data coordinates ---------------------------------------------


@dataclass(frozen=True)
class View:
    """How a training run's Ω is drawn: in data coordinates, the inverse of the input scaling
    (``model.data.Scaling``; one factor for all axes, so shapes are kept), with the data's names.

    Attributes:
        domain: Ω (``model.domain``).
        scaling: the map data -> Ω.
        names: the coordinate names, len = dim.
    """

    domain: object
    scaling: object
    names: tuple[str, ...]

    @property
    def dim(self) -> int:
        return len(self.names)

    def data(self, x: np.ndarray) -> np.ndarray:
        """Ω coordinates (shape=(..., dim)) -> data coordinates."""
        x = np.asarray(x, dtype=np.float64)
        return self.scaling.inverse(x.reshape(-1, self.dim)).reshape(x.shape)

    def label(self, i: int) -> str:
        return f"{self.names[i]} (data coordinates)"

    def limits(self) -> list[tuple[float, float]]:
        """Ω's bounding box per axis, data coordinates."""
        lo, hi = self.data(np.asarray(self.domain.lower)), self.data(np.asarray(self.domain.upper))
        return list(zip(lo, hi))

    def extent(self) -> list[float]:
        """imshow's extent of Ω's bounding box in the x1-x2 plane, data coordinates."""
        lo, hi = self.data(np.asarray(self.domain.lower)), self.data(np.asarray(self.domain.upper))
        return [lo[0], hi[0], lo[1], hi[1]]

    def boundary(self, ax, **kw) -> None:
        """∂Ω (where χ = 0) in the x1-x2 plane (of a slice through the middle in 3D)."""
        lo, hi = self.data(np.asarray(self.domain.lower)), self.data(np.asarray(self.domain.upper))
        if hasattr(self.domain, "radius"):
            c = self.data(np.asarray(self.domain.center))
            r = self.domain.radius / self.scaling.scale[0]
            a = np.linspace(0, 2 * np.pi, 200)
            ax.plot(c[0] + r * np.cos(a), c[1] + r * np.sin(a), **kw)
        else:
            ax.plot([lo[0], hi[0], hi[0], lo[0], lo[0]], [lo[1], lo[1], hi[1], hi[1], lo[1]], **kw)


def class_image(labels: np.ndarray, K: int, cmap, alpha: float = 0.35) -> np.ndarray:
    """RGBA image (shape=(n, n, 4)) of class labels (shape=(n, n), NaN outside Ω)."""
    rgba = np.zeros((*labels.shape, 4))
    for k in range(K):
        rgba[labels == k] = (*cmap(k)[:3], alpha)
    return rgba


def _image(ax, view: View, rgba: np.ndarray) -> None:
    # rows of the raster are x1 (indexing "ij"): transpose to imshow's (row = x2)
    ax.imshow(np.transpose(rgba, (1, 0, 2)), origin="lower", extent=view.extent(), interpolation="nearest")


def _scatter_classes(ax, X, y, K, cmap, **kw) -> None:
    for k in range(K):
        ax.scatter(*X[y == k, :2].T, color=cmap(k), **kw)


def prediction_figure(path, view: View, raster, X_train, y_train, X_test, y_test, predicted_test, title) -> None:
    """The predicted class (colour) and its probability (contours) of u_h(0, ·), with the data.

    2D: one panel. 3D: slices x3 = const, each with the points within half a slab of it (the slab
    thickness is said), and a 3D scatter of the test points coloured by their predicted label.

    Args:
        view: how Ω is drawn (data coordinates).
        raster: ``outputs.Raster`` images: ``slices`` = [(x3 or None, labels (n, n), confidence (n, n))].
        X_train, X_test: points in Ω, shape=(n, d); y_train, y_test: true classes.
        predicted_test: the PDE's predicted class at X_test, shape=(n_test,).
    """
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    K = raster.num_classes
    slices = raster.slices
    panels = len(slices) + (1 if view.dim == 3 else 0)
    fig = plt.figure(figsize=(5.2 * panels, 5.2), constrained_layout=True)
    misclassified = int(np.sum(predicted_test != y_test))
    shown = ""
    if len(X_train) > SHOWN_POINTS or len(X_test) > SHOWN_POINTS:
        # Drawing 10⁶ markers took minutes and shows nothing more: a fixed random subset of each set.
        shown = (f"; shown: {min(len(X_train), SHOWN_POINTS)} of {len(X_train)} train, "
                 f"{min(len(X_test), SHOWN_POINTS)} of {len(X_test)} test points (random)")
        tr, te = _subset(len(X_train)), _subset(len(X_test))
        X_train, y_train, X_test, y_test, predicted_test = (
            X_train[tr], y_train[tr], X_test[te], y_test[te], predicted_test[te])
    Xtr, Xte = view.data(X_train), view.data(X_test)
    for j, (x3, labels, confidence) in enumerate(slices):
        ax = fig.add_subplot(1, panels, j + 1)
        _image(ax, view, class_image(labels, K, cmap))
        ax.contour(*np.meshgrid(*raster.axes_data(view), indexing="ij"), confidence, levels=[0.6, 0.8, 0.95],
                   colors="k", linewidths=0.4, alpha=0.5)
        if x3 is None:
            near_tr, near_te, where = slice(None), slice(None), "all points"
        else:
            half = 0.5 * raster.slab
            near_tr, near_te = np.abs(X_train[:, 2] - x3) < half, np.abs(X_test[:, 2] - x3) < half
            c3 = view.data(np.array([[0, 0, x3]]))[0, 2]
            w = raster.slab / view.scaling.scale[2]
            where = (f"slice {view.names[2]} = {c3:.3g}; points with |{view.names[2]} − {c3:.3g}| < "
                     f"{w / 2:.3g} (slab {w:.3g} thick): {int(np.sum(near_tr))} train, {int(np.sum(near_te))} test")
        _scatter_classes(ax, Xtr[near_tr], y_train[near_tr], K, cmap, s=8, edgecolor="none")
        _scatter_classes(ax, Xte[near_te], y_test[near_te], K, cmap, s=16, edgecolor="k", linewidth=0.5, marker="s")
        ax.set_aspect("equal")
        ax.set_xlabel(view.label(0))
        ax.set_ylabel(view.label(1))
        ax.set_title(where, fontsize=8)
    if view.dim == 3:
        ax = fig.add_subplot(1, panels, panels, projection="3d")
        wrong = predicted_test != y_test
        for k in range(K):
            mine = (predicted_test == k) & ~wrong
            ax.scatter(*Xte[mine].T, color=cmap(k), s=10, depthshade=False)
        ax.scatter(*Xte[wrong].T, color="k", marker="x", s=30, label=f"misclassified ({misclassified})")
        ax.set(xlim=view.limits()[0], ylim=view.limits()[1], zlim=view.limits()[2],
               xlabel=view.names[0], ylabel=view.names[1], zlabel=view.names[2])
        ax.set_title("3D: test points coloured by the class u_h(0, ·) predicts (axes: Ω)", fontsize=8)
        if wrong.any():
            ax.legend(fontsize=7, loc="upper left")
    handles = [plt.Line2D([], [], color=cmap(k), marker="s", ls="", label=f"class {k}") for k in range(K)]
    handles += [plt.Line2D([], [], color="gray", marker="o", ls="", ms=4, label="train point (true class)"),
                plt.Line2D([], [], color="gray", marker="s", ls="", mec="k", label="test point (true class)"),
                plt.Line2D([], [], color="k", lw=0.5, label="probability 0.6, 0.8, 0.95")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3 if panels == 1 else len(handles), fontsize=7)
    fig.suptitle(f"{title}\nbackground: class predicted by u_h(0, ·){shown}", fontsize=10)
    _save(plt, fig, path)


# At most this many points of each set are drawn in a figure.
SHOWN_POINTS = 5000


def _subset(n: int) -> np.ndarray:
    """A fixed random subset of range(n) with at most SHOWN_POINTS elements, sorted."""
    if n <= SHOWN_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, SHOWN_POINTS, replace=False))


def velocity_figure(path, view: View, grid, velocities, times, chi, title) -> None:
    """Quiver plots of v(t, ·) at several times, with ∂Ω (χ = 0) and where χ < 0.05.

    Args:
        grid: points of the x1-x2 plane (the middle slice in 3D), shape=(n, d), Ω coordinates.
        velocities: shape=(len(times), n, d); chi: χ at the grid, shape=(n,).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(times), figsize=(4.3 * len(times), 4.8), constrained_layout=True)
    axes = np.atleast_1d(axes)
    xy = view.data(grid)[:, :2]
    for ax, v, t in zip(axes, velocities, times):
        speed = np.linalg.norm(v, axis=1)
        ax.quiver(xy[:, 0], xy[:, 1], v[:, 0], v[:, 1], speed, cmap="viridis")
        ax.tricontourf(xy[:, 0], xy[:, 1], chi, levels=[-1.0, 0.05], colors=["0.6"], alpha=0.3)
        view.boundary(ax, color="r", lw=2)
        ax.set_aspect("equal")
        ax.set_xlabel(view.label(0))
        ax.set_ylabel(view.label(1))
        ax.set_title(f"v(t = {t:.2f}, ·); max |v| {speed.max():.2f} (Ω units)", fontsize=9)
    handles = [plt.Line2D([], [], color="r", lw=2, label="χ = 0: ∂Ω, where v vanishes"),
               plt.matplotlib.patches.Patch(color="0.6", alpha=0.3, label="χ < 0.05: v damped to < 5%")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    where = "" if view.dim == 2 else f"; the slice {view.names[2]} = middle of Ω, in-plane components (v1, v2)"
    fig.suptitle(f"{title}: arrows v(t, x) = χ(x)·(eq. 2), colour |v|{where}", fontsize=10)
    _save(plt, fig, path)


def characteristics_figure(path, view: View, trajectories, labels, title) -> None:
    """Characteristics q(t; X_i) from t = 0 (dot) to T (cross), coloured by class; a 3D plot in 3D.

    Args:
        trajectories: Ω coordinates, shape=(num_times, n, d); labels: shape=(n,).
    """
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(6.2, 5.8), constrained_layout=True)
    three = view.dim == 3
    ax = fig.add_subplot(projection="3d") if three else fig.add_subplot()
    paths = view.data(trajectories)
    d = 3 if three else 2
    for i in range(paths.shape[1]):
        c = cmap(int(labels[i]))
        ax.plot(*paths[:, i, :d].T, "-", color=c, lw=0.6, alpha=0.7)
        ax.plot(*paths[0, i, :d, None], "o", color=c, ms=2.5)
        ax.plot(*paths[-1, i, :d, None], "x", color=c, ms=3.5)
    ax.set_xlabel(view.label(0) if not three else view.names[0])
    ax.set_ylabel(view.label(1) if not three else view.names[1])
    if three:
        ax.set_zlabel(view.names[2])
    else:
        ax.set_aspect("equal")
    ax.set_title(f"{title}\nq(t; X) from t = 0 (dot) to T (cross), colour: true class"
                 + (" (3D, data coordinates)" if three else ""), fontsize=9)
    _save(plt, fig, path)


def loss_figure(path, history: list[dict], title) -> None:
    """Loss (log scale) and train/test accuracy against the iteration; the legend below the axes."""
    plt = _pyplot()
    it = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4.4), constrained_layout=True)
    lines = ax.semilogy(it, [h["loss"] for h in history], "k-", label="J (left axis)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("J (objective, log scale)")
    ax2 = ax.twinx()
    lines += ax2.plot(it, [h["train_accuracy"] for h in history], "b-", lw=0.8, label="train accuracy")
    lines += ax2.plot(it, [h["test_accuracy"] for h in history], "r-", lw=0.8, label="test accuracy")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("accuracy (PDE, right axis)")
    fig.legend(handles=lines, loc="outside lower center", ncols=3, fontsize=8)
    ax.set_title(f"{title}: objective and accuracy per iteration", fontsize=10)
    _save(plt, fig, path)
