"""Pictures (rank-local): plotting lives at the edge, not in the core.

Every picture is a plain ``matplotlib.figure.Figure`` drawn by Agg (:func:`figure`), never
through pyplot: the user's backend (a notebook's inline one) and pyplot's figures stay as they
were. Each picture is written atomically (``solver.rundir.files.atomic_file``): whole, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from solver.rundir.files import atomic_file


def figure(**kw) -> Figure:
    """A new Figure (``Figure``'s keywords: figsize, dpi, layout) on its own Agg canvas.

    Not pyplot: ``matplotlib.use("Agg")`` would switch the user's backend for the rest of the
    session (a notebook's ``plt.show()`` then shows nothing), and pyplot keeps every figure
    until it is closed. This figure is freed with its last reference.
    """
    fig = Figure(**kw)
    FigureCanvasAgg(fig)  # sets fig.canvas; also what an animation's writer draws the frames with
    return fig


def tab10():
    """The class colours: class k is ``tab10()(k)``."""
    return matplotlib.colormaps["tab10"]


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` to ``path`` (PNG) atomically."""
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)


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
    xy, fe, ref = _slice_2d(grid, fe_grid, ref_grid)
    if grid.shape[1] == 3:
        title += f" (3D: the grid's x3-plane nearest the middle, {len(xy)} of {len(grid)} points)"
    err = np.abs(fe - ref)
    fig = figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
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
    save_figure(fig, path)


def convergence_figure(path: str | Path, study: dict, title: str) -> None:
    """Errors against h_min on log-log axes, with the fitted orders."""
    rows = study["rows"]
    h = np.array([r["h_min"] for r in rows])
    fig = figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
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
    save_figure(fig, path)


# --- training pictures: drawn in data coordinates ---------------------------------------------


@dataclass(frozen=True)
class View:
    """How a training run's Ω is drawn: in data coordinates, the inverse of the input scaling
    (``model.data.Scaling``; one factor for all axes, so shapes are kept), with the data's names.

    Attributes:
        domain: Ω (``model.domain``).
        scaling: the map data -> Ω.
        names: the coordinate names, len = dim.
        classes: the class names (the user's labels), len = K; empty: "class k".
    """

    domain: object
    scaling: object
    names: tuple[str, ...]
    classes: tuple[str, ...] = ()

    def class_name(self, k: int) -> str:
        """Class k as the legends name it: the user's label (a CSV file's), else "class k"."""
        if k < len(self.classes) and self.classes[k] != str(k):
            return str(self.classes[k])
        return f"class {k}"

    def velocity(self, v: np.ndarray) -> np.ndarray:
        """A velocity in Ω units per unit time (shape=(..., dim)) -> data units per unit time."""
        return np.asarray(v, dtype=np.float64) / np.asarray(self.scaling.scale)

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


def scatter_classes(ax, X, y, K, cmap, **kw) -> None:
    """Scatter the points X (shape=(n, >=2)) of each class k < K in colour cmap(k) on ax."""
    for k in range(K):
        ax.scatter(*X[y == k, :2].T, color=cmap(k), **kw)


def principal_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean (shape=(d,)), the principal axes (rows, shape=(d, d), by decreasing variance) and
    the share of the variance each carries (shape=(d,)) of points ``x`` (shape=(n, d))."""
    mean = x.mean(axis=0)
    _, sv, axes = np.linalg.svd(x - mean, full_matrices=False)
    variance = sv**2
    total = variance.sum()
    return mean, axes, variance / total if total > 0 else variance


def prediction_figure(path, view: View, raster, X_train, y_train, X_test, y_test, predicted_test, title,
                      flow=None) -> None:
    """The predicted class (colour) and its probability (contours) of u_h(0, ·), with the data.

    2D: one panel. 3D: a top row of slices x3 = const, each with the points within half a slab
    of it (the slab thickness and the counts are said); a bottom row that shows every point: the
    start positions X and the end positions q(T; X) projected on the data's first two principal
    axes, and a 3D scatter of the test points coloured by their predicted label.

    Args:
        view: how Ω is drawn (data coordinates, class names).
        raster: ``outputs.Raster`` images: ``slices`` = [(x3 or None, labels (n, n), confidence (n, n))].
        X_train, X_test: points in Ω, shape=(n, d); y_train, y_test: true classes.
        predicted_test: the PDE's predicted class at X_test, shape=(n_test,).
        flow: 3D: (start, end, y), the points X and q(T; X) in Ω (shape=(m, 3) each) and their
            true classes (shape=(m,)): every point drawn (up to SHOWN_POINTS of each set); None
            leaves the bottom row out but the 3D scatter.
    """
    cmap = tab10()
    K = raster.num_classes
    slices = raster.slices
    three = view.dim == 3
    columns = max(len(slices), 3) if three else 1
    rows = 2 if three else 1
    fig = figure(figsize=(5.2 * columns, 5.0 * rows + 0.6), layout="constrained")
    misclassified = int(np.sum(predicted_test != y_test))
    shown = ""
    if len(X_train) > SHOWN_POINTS or len(X_test) > SHOWN_POINTS:
        # Drawing 10⁶ markers took minutes and shows nothing more: a fixed random subset of each set.
        shown = (f"; shown: {min(len(X_train), SHOWN_POINTS)} of {len(X_train)} train, "
                 f"{min(len(X_test), SHOWN_POINTS)} of {len(X_test)} test points (random)")
        tr, te = shown_subset(len(X_train)), shown_subset(len(X_test))
        X_train, y_train, X_test, y_test, predicted_test = (
            X_train[tr], y_train[tr], X_test[te], y_test[te], predicted_test[te])
    Xtr, Xte = view.data(X_train), view.data(X_test)
    for j, (x3, labels, confidence) in enumerate(slices):
        ax = fig.add_subplot(rows, columns, j + 1)
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
            where = (f"slice {view.names[2]} = {c3:.3g}: the class u_h predicts on this plane;\n"
                     f"points with |{view.names[2]} − {c3:.3g}| < {w / 2:.3g}: {int(np.sum(near_tr))} of "
                     f"{len(X_train)} train, {int(np.sum(near_te))} of {len(X_test)} test")
        scatter_classes(ax, Xtr[near_tr], y_train[near_tr], K, cmap, s=8, edgecolor="none")
        scatter_classes(ax, Xte[near_te], y_test[near_te], K, cmap, s=16, edgecolor="k", linewidth=0.5, marker="s")
        ax.set_aspect("equal")
        ax.set_xlabel(view.label(0))
        ax.set_ylabel(view.label(1))
        ax.set_title(where, fontsize=8)
    if three:
        if flow is not None:
            _projection_panels(fig, rows, columns, view, flow, K, cmap)
        ax = fig.add_subplot(rows, columns, rows * columns, projection="3d")
        wrong = predicted_test != y_test
        for k in range(K):
            mine = (predicted_test == k) & ~wrong
            ax.scatter(*Xte[mine].T, color=cmap(k), s=10, depthshade=False)
        ax.scatter(*Xte[wrong].T, color="k", marker="x", s=30, label=f"misclassified ({misclassified})")
        ax.set(xlim=view.limits()[0], ylim=view.limits()[1], zlim=view.limits()[2],
               xlabel=view.names[0], ylabel=view.names[1], zlabel=view.names[2])
        ax.set_title(f"all {len(Xte)} test points, coloured by the class u_h(0, ·) predicts\n(axes: Ω, data "
                     f"coordinates)", fontsize=8)
        if wrong.any():
            ax.legend(fontsize=7, loc="upper left")
    handles = [Line2D([], [], color=cmap(k), marker="s", ls="", label=view.class_name(k)) for k in range(K)]
    handles += [Line2D([], [], color="gray", marker="o", ls="", ms=4, label="train point (true class)"),
                Line2D([], [], color="gray", marker="s", ls="", mec="k", label="test point (true class)"),
                Line2D([], [], color="k", lw=0.5, label="probability 0.6, 0.8, 0.95")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3 if columns == 1 else len(handles), fontsize=7)
    fig.suptitle(f"{title}\nbackground: class predicted by u_h(0, ·){shown}", fontsize=10)
    save_figure(fig, path)


def _projection_panels(fig, rows: int, columns: int, view: View, flow, K: int, cmap) -> None:
    """Two panels of the bottom row: the start positions X and the end positions q(T; X) of
    every point, projected on the first two principal axes of the start positions."""
    start, end, y = flow
    start, end = view.data(start), view.data(end)
    mean, axes, share = principal_axes(start)
    for j, (points, what) in enumerate(((start, "start positions X (t = 0)"),
                                        (end, "end positions q(T; X), where the output layer classifies"))):
        ax = fig.add_subplot(rows, columns, columns + j + 1)
        projected = (points - mean) @ axes[:2].T
        scatter_classes(ax, projected, y, K, cmap, s=7, edgecolor="none", alpha=0.8)
        ax.set_aspect("equal")
        ax.set_xlabel(f"principal axis 1 of X ({100 * share[0]:.0f}% of the variance; data units)")
        ax.set_ylabel(f"principal axis 2 of X ({100 * share[1]:.0f}%)")
        ax.set_title(f"all {len(y)} points: {what},\nprojected on the data's principal axes; colour: true class",
                     fontsize=8)


# At most this many points of each set are drawn in a figure.
SHOWN_POINTS = 5000


def shown_subset(n: int) -> np.ndarray:
    """A fixed random subset of range(n) with at most SHOWN_POINTS elements, sorted."""
    if n <= SHOWN_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, SHOWN_POINTS, replace=False))


def velocity_figure(path, view: View, grid, velocities, times, chi, title) -> None:
    """Quiver plots of v(t, ·) at several times, with ∂Ω (χ = 0) and where χ < 0.05, in the
    axes' units: an arrow is the displacement v·τ in data coordinates over a time τ that makes
    the longest arrow about one grid spacing (the title says τ).

    Args:
        grid: points of the x1-x2 plane (the middle slice in 3D), shape=(n, d), Ω coordinates.
        velocities: Ω units per unit time, shape=(len(times), n, d); chi: χ at the grid, shape=(n,).
    """
    fig = figure(figsize=(4.3 * len(times), 4.8), layout="constrained")
    axes = fig.subplots(1, len(times))
    axes = np.atleast_1d(axes)
    xy = view.data(grid)[:, :2]
    v_data = view.velocity(velocities)[..., :2]  # data units per unit time
    speeds = np.linalg.norm(v_data, axis=-1)
    spacing = float(np.max(np.ptp(xy, axis=0))) / max(1.0, np.sqrt(len(xy)) - 1)
    tau = spacing / float(speeds.max()) if speeds.max() > 0 else 1.0
    for ax, v, speed, t in zip(axes, v_data, speeds, times):
        ax.quiver(xy[:, 0], xy[:, 1], tau * v[:, 0], tau * v[:, 1], speed, cmap="viridis",
                  angles="xy", scale_units="xy", scale=1.0)
        ax.tricontourf(xy[:, 0], xy[:, 1], chi, levels=[-1.0, 0.05], colors=["0.6"], alpha=0.3)
        view.boundary(ax, color="r", lw=2)
        ax.set_aspect("equal")
        ax.set_xlabel(view.label(0))
        ax.set_ylabel(view.label(1))
        ax.set_title(f"v(t = {t:.2f}, ·); max |v| {speed.max():.3g} data units per unit t", fontsize=9)
    handles = [Line2D([], [], color="r", lw=2, label="χ = 0: ∂Ω, where v vanishes"),
               Patch(color="0.6", alpha=0.3, label="χ < 0.05: v damped to < 5%")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    where = "" if view.dim == 2 else f"; the slice {view.names[2]} = middle of Ω, in-plane components (v1, v2)"
    fig.suptitle(f"{title}: arrows v(t, x)·τ, τ = {tau:.3g} (data units, as the axes), colour |v|{where}",
                 fontsize=10)
    save_figure(fig, path)


def characteristics_figure(path, view: View, trajectories, labels, title) -> None:
    """Characteristics q(t; X_i) from t = 0 (dot) to T (cross), coloured by class; a 3D plot in 3D.

    Args:
        trajectories: Ω coordinates, shape=(num_times, n, d); labels: shape=(n,).
    """
    cmap = tab10()
    fig = figure(figsize=(6.2, 5.8), layout="constrained")
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
    present = sorted(set(int(k) for k in labels))
    ax.legend(handles=[Line2D([], [], color=cmap(k), lw=1, label=view.class_name(k)) for k in present],
              fontsize=7, loc="best")
    save_figure(fig, path)


def loss_figure(path, history: list[dict], title) -> None:
    """Loss (log scale) and train/test accuracy against the iteration; the legend below the axes."""
    it = [h["iteration"] for h in history]
    fig = figure(figsize=(6, 4.4), layout="constrained")
    ax = fig.subplots()
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
    save_figure(fig, path)


# --- how good the model's predictions are -----------------------------------------------------


def confusion_figure(path, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], title: str) -> None:
    """The confusion matrix: counts (and each row's share) of true class × predicted class.

    Args:
        y_true, y_pred: classes 0..K−1, shape=(n,); classes: the K class names.
    """
    K = len(classes)
    counts = np.zeros((K, K), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    import textwrap

    size = 2.2 + 0.55 * K
    fig = figure(figsize=(max(size + 1.6, 5.6), size + 0.4), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f"{counts[i, j]}\n{100 * share[i, j]:.0f}%", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(K), classes, rotation=45 if K > 4 else 0)
    ax.set_yticks(range(K), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(1, counts.sum())
    ax.set_title(f"{textwrap.fill(title, 60)}\n{counts.sum()} points, accuracy {accuracy:.3f}", fontsize=9)
    save_figure(fig, path)


def certification_figure(path, history: list[dict], tolerance: float, agreement: float, title: str) -> None:
    """The certification history (history.csv): per check, the max logit difference between the
    PDE and the characteristics (left, log scale, with ``train.tolerance``) and the label
    agreement (right, with ``train.agreement``); a dashed line and its label where the
    resolution changed (cells, degree, local refinements).

    Args:
        history: history.csv's rows (``store.HISTORY_COLUMNS``); the checks are the rows with a
            finite max_logit_difference.
    """
    rows = [h for h in history if np.isfinite(h.get("max_logit_difference", np.nan))]
    fig = figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.subplots()
    it = [h["iteration"] for h in rows]
    lines = ax.semilogy(it, [max(h["max_logit_difference"], 1e-16) for h in rows], "ko-", ms=4,
                        label="max |u_h − f∘q| over the logits")
    lines.append(ax.axhline(tolerance, color="k", ls=":", lw=1, label=f"train.tolerance {tolerance:g}"))
    ax.set_xlabel("iteration")
    ax.set_ylabel("max logit difference, PDE vs characteristics (log)")
    ax2 = ax.twinx()
    lines += ax2.plot(it, [h["label_agreement"] for h in rows], "bs-", ms=4, lw=0.8, label="label agreement")
    lines.append(ax2.axhline(agreement, color="b", ls=":", lw=1, label=f"train.agreement {agreement:g}"))
    ax2.set_ylabel("label agreement (share of equal labels)", color="b")
    low = min([agreement, *[h["label_agreement"] for h in rows if np.isfinite(h["label_agreement"])]])
    ax2.set_ylim(max(0.0, low - 0.02), 1.005)
    changes = 0
    previous = None
    for h in history:  # every row: a resolution change may fall between checks
        resolution = tuple(float(h.get(key, np.nan)) for key in ("cells", "degree", "refinements"))
        if not all(np.isfinite(resolution)):  # a run from before these columns
            continue
        if previous is not None and resolution != previous:
            ax.axvline(h["iteration"], color="r", ls="--", lw=0.8)
            ax.annotate(f"{int(resolution[0])} cells DG{int(resolution[1])}"
                        + (f", {int(resolution[2])} refined" if resolution[2] else ""),
                        (h["iteration"], 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=7, color="r")
            changes += 1
        previous = resolution
    lines.append(Line2D([], [], color="r", ls="--", lw=0.8, label=f"resolution raised ({changes})"))
    fig.legend(handles=lines, loc="outside lower center", ncols=3, fontsize=7)
    ax.set_title(f"{title}: {len(rows)} checks of the PDE against the characteristics", fontsize=9)
    save_figure(fig, path)


def roc_figure(path, y_true: np.ndarray, probability: np.ndarray, classes: list[str], title: str) -> None:
    """Two classes: the ROC curve (with its AUC) and the precision-recall curve (with the
    average precision) of the probability of the second class.

    Args:
        y_true: classes 0 or 1, shape=(n,); probability: P(class 1), shape=(n,).
    """
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    positive = classes[1]
    y = np.asarray(y_true) == 1
    fig = figure(figsize=(9.6, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    if y.all() or not y.any():
        for ax in (left, right):
            ax.text(0.5, 0.5, f"only one class among the {len(y)} points:\nno curve", ha="center",
                    va="center", transform=ax.transAxes)
        auc_text = ap_text = "n/a"
    else:
        fpr, tpr, _ = roc_curve(y, probability)
        left.plot(fpr, tpr, "b-", lw=1.5)
        auc_text = f"{auc(fpr, tpr):.3f}"
        precision, recall, _ = precision_recall_curve(y, probability)
        right.plot(recall, precision, "b-", lw=1.5)
        ap_text = f"{average_precision_score(y, probability):.3f}"
        right.axhline(y.mean(), color="0.5", ls=":", lw=1, label=f"chance ({y.mean():.2f})")
        right.legend(fontsize=7, loc="lower left")
    left.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1)
    left.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=f"false positive rate (not {positive}, called {positive})",
             ylabel=f"true positive rate (recall of {positive})")
    left.set_title(f"ROC, AUC {auc_text}", fontsize=9)
    right.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=f"recall of {positive}", ylabel=f"precision of {positive}")
    right.set_title(f"precision-recall, average precision {ap_text}", fontsize=9)
    fig.suptitle(f"{title}\npositive class: {positive}, score: its predicted probability ({len(y)} points)",
                 fontsize=10)
    save_figure(fig, path)


def reliability_figure(path, y_true: np.ndarray, probabilities: np.ndarray, title: str,
                       bins: int | None = None) -> None:
    """The reliability curve of predict_proba: for the predicted class's probability in each of
    ``bins`` equal bins, the share of points whose prediction is right (marker area ∝ the bin's
    points), against the diagonal of perfect calibration; below, how many points fall in each bin.

    Args:
        y_true: classes, shape=(n,); probabilities: shape=(n, K), rows summing to 1.
        bins: None: about 25 points a bin on average, 3 to 10 bins (a bin of 2 points says little).
    """
    bins = bins or int(np.clip(len(y_true) // 25, 3, 10))
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == np.asarray(y_true)
    K = probabilities.shape[1]
    edges = np.linspace(1.0 / K, 1.0, bins + 1)  # the predicted class has probability >= 1/K
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    mean_conf = np.bincount(which, weights=confidence, minlength=bins)[filled] / counts[filled]
    accuracy = np.bincount(which, weights=right.astype(float), minlength=bins)[filled] / counts[filled]
    ece = float(np.sum(counts[filled] * np.abs(accuracy - mean_conf)) / max(1, len(confidence)))
    fig = figure(figsize=(5.6, 6.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([1.0 / K, 1.0], [1.0 / K, 1.0], color="0.5", ls=":", lw=1, label="perfect calibration")
    top.plot(mean_conf, accuracy, "b-", lw=1, label="this model")
    top.scatter(mean_conf, accuracy, s=8 + 200 * counts[filled] / counts.max(), color="b", zorder=3)
    top.set_ylabel("share predicted right")
    top.set_ylim(0, 1.02)
    top.legend(fontsize=7, loc="upper left")
    top.set_title(f"{title}\n{len(confidence)} points in {bins} bins, expected calibration error {ece:.3f}",
                  fontsize=9)
    bottom.bar(0.5 * (edges[:-1] + edges[1:]), counts, width=0.9 * np.diff(edges), color="0.6")
    bottom.set_xlabel("probability of the predicted class (predict_proba's largest)")
    bottom.set_ylabel("points")
    bottom.set_title("points per bin", fontsize=8)
    save_figure(fig, path)
