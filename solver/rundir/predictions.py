"""What ``predict`` writes (rank-local, atomic): the points' labels (and probabilities) as CSV,
and the whole-domain map as npz + PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from solver.rundir.files import atomic_file, write_text_atomic


def write_predictions(path: str | Path, X: np.ndarray, names: list[str], labels: np.ndarray,
                      classes: tuple[str, ...], probabilities: np.ndarray | None = None) -> None:
    """``names..., label[, p_<class>...]``: the points as given (shape=(n, d)), the predicted
    class's label (``classes[k]``), and the class probabilities if given (shape=(n, K))."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    header = [*names, "label"]
    if probabilities is not None:
        header += [f"p_{c}" for c in classes]
    writer.writerow(header)
    for i in range(len(X)):
        row = [repr(float(v)) for v in X[i]] + [classes[labels[i]]]
        if probabilities is not None:
            row += [f"{p:.10g}" for p in probabilities[i]]
        writer.writerow(row)
    write_text_atomic(path, text.getvalue())


def write_map(stem: str | Path, points: np.ndarray, data_points: np.ndarray, inside: np.ndarray, n: int,
              logits: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], title: str) -> list[Path]:
    """``stem.npz`` (the n^d grid in Ω and data coordinates, ``inside`` Ω, labels (−1 outside),
    logits and probabilities (NaN outside), class names) and ``stem.png`` (the middle x1-x2
    plane: the predicted class, shaded by its probability)."""
    stem = Path(stem)
    dim = points.shape[1]
    labels = np.full(len(points), -1)
    labels[inside] = logits[inside].argmax(axis=1)
    npz, png = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".png")
    with atomic_file(npz) as f:
        np.savez(f, points=points, data_points=data_points, inside=inside, shape=np.array([n] * dim),
                 labels=labels, logits=logits, probabilities=probabilities, classes=np.array(classes))
    _map_figure(png, data_points.reshape(*[n] * dim, dim), labels.reshape([n] * dim),
                probabilities.max(axis=1).reshape([n] * dim), classes, title)
    return [npz, png]


def _map_figure(path: Path, data_points: np.ndarray, labels: np.ndarray, confidence: np.ndarray,
                classes: tuple[str, ...], title: str) -> None:
    from solver.rundir.plots import _pyplot, _save

    if labels.ndim == 3:  # the middle plane x3 = const
        middle = labels.shape[2] // 2
        data_points, labels, confidence = data_points[:, :, middle], labels[:, :, middle], confidence[:, :, middle]
        title = f"{title} (middle plane x3 = {data_points[0, 0, 2]:.3g})"
    plt = _pyplot()
    colors = plt.get_cmap("tab10")(np.arange(len(classes)) % 10)
    rgba = np.ones((*labels.shape, 4))
    rgba[labels >= 0] = colors[labels[labels >= 0]]
    # Shade by confidence: white at 1/K (a tie), the class colour at 1.
    K = len(classes)
    weight = np.clip((np.nan_to_num(confidence) - 1.0 / K) / (1.0 - 1.0 / K), 0.0, 1.0)[..., None]
    rgba[..., :3] = 1.0 - weight * (1.0 - rgba[..., :3])
    rgba[labels < 0] = (1.0, 1.0, 1.0, 0.0)
    x, y = data_points[..., 0], data_points[..., 1]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(np.transpose(rgba, (1, 0, 2)), origin="lower", interpolation="nearest",
              extent=(x.min(), x.max(), y.min(), y.max()), aspect="equal")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in range(K)]
    ax.legend(handles, [f"class {c}" for c in classes], loc="upper right", fontsize=8)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title, fontsize=9)
    _save(plt, fig, path)
