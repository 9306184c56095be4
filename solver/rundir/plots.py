"""Pictures (rank-local, matplotlib's Agg backend): plotting lives at the edge, not in the core.

Each picture is written atomically (``solver.rundir.files.atomic_file``): whole, or not at all.
"""

from __future__ import annotations

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


def _plane(points: np.ndarray) -> np.ndarray:
    return points[:, :2]


def prediction_figure(path, grid, probabilities, X_train, y_train, X_test, y_test, title) -> None:
    """The predicted class (colour) and its probability (shade) over Ω, with the data.

    Args:
        grid: points of a plane of Ω, shape=(n, d) (the first two coordinates are drawn).
        probabilities: softmax of u_h(0, grid), shape=(n, K).
    """
    plt = _pyplot()
    K = probabilities.shape[1]
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6, 5.5), constrained_layout=True)
    xy = _plane(grid)
    label = probabilities.argmax(axis=1)
    ax.tricontourf(xy[:, 0], xy[:, 1], label, levels=np.arange(K + 1) - 0.5, colors=[cmap(k) for k in range(K)], alpha=0.25)
    ax.tricontour(xy[:, 0], xy[:, 1], probabilities.max(axis=1), levels=[0.6, 0.8, 0.95], colors="k", linewidths=0.4, alpha=0.5)
    for k in range(K):
        ax.scatter(*X_train[y_train == k, :2].T, s=8, color=cmap(k), edgecolor="none", label=f"class {k} (train)")
        ax.scatter(*X_test[y_test == k, :2].T, s=14, color=cmap(k), edgecolor="k", linewidth=0.4, marker="s")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    _save(plt, fig, path)


def velocity_figure(path, grid, velocities, times, title) -> None:
    """Quiver plots of v(t, ·) at several times.

    Args:
        grid: points, shape=(n, d); velocities: shape=(len(times), n, d).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 4.2), constrained_layout=True)
    axes = np.atleast_1d(axes)
    xy = _plane(grid)
    for ax, v, t in zip(axes, velocities, times):
        speed = np.linalg.norm(v, axis=1)
        ax.quiver(xy[:, 0], xy[:, 1], v[:, 0], v[:, 1], speed, cmap="viridis")
        ax.set_aspect("equal")
        ax.set_title(f"v(t = {t:.2f}), max |v| {speed.max():.2f}")
    fig.suptitle(title)
    _save(plt, fig, path)


def characteristics_figure(path, trajectories, labels, title) -> None:
    """Characteristics q(t; X_i) from t = 0 (dot) to T (cross), coloured by class.

    Args:
        trajectories: shape=(num_times, n, d); labels: shape=(n,).
    """
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6, 5.5), constrained_layout=True)
    for i in range(trajectories.shape[1]):
        c = cmap(int(labels[i]))
        ax.plot(trajectories[:, i, 0], trajectories[:, i, 1], "-", color=c, lw=0.6, alpha=0.7)
        ax.plot(trajectories[0, i, 0], trajectories[0, i, 1], "o", color=c, ms=2.5)
        ax.plot(trajectories[-1, i, 0], trajectories[-1, i, 1], "x", color=c, ms=3.5)
    ax.set_aspect("equal")
    ax.set_title(title)
    _save(plt, fig, path)


def loss_figure(path, history: list[dict], title) -> None:
    """Loss (log scale) and train/test accuracy against the iteration."""
    plt = _pyplot()
    it = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.semilogy(it, [h["loss"] for h in history], "k-", label="J")
    ax.set_xlabel("iteration")
    ax.set_ylabel("J")
    ax2 = ax.twinx()
    ax2.plot(it, [h["train_accuracy"] for h in history], "b-", lw=0.8, label="train accuracy")
    ax2.plot(it, [h["test_accuracy"] for h in history], "r-", lw=0.8, label="test accuracy")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("accuracy")
    fig.legend(loc="center right", fontsize=8)
    ax.set_title(title)
    _save(plt, fig, path)
