"""What ``predict`` writes (rank-local, atomic): the points' labels (and probabilities) as CSV,
and the whole-domain map as npz + PNG.

``refuse_outputs`` decides, before anything is computed, whether predict may write there: never
over its inputs (the run directory's files, the points file), and over another existing file
only with ``--force``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np

from solver.rundir.files import atomic_file, write_text_atomic

# What predict itself writes into a run directory: the default --map (RUN/map-METHOD-N).
OWN_MAP = re.compile(r"map-(pde|characteristics|resnet)-\d+\.(npz|png)")


def map_files(stem: str | Path) -> list[Path]:
    """The two files of the map ``stem``: stem.npz and stem.png."""
    stem = Path(stem)
    return [stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".png")]


def refuse_outputs(outputs: list[tuple[str, Path]], force: bool, run: Path,
                   inputs: list[Path]) -> str | None:
    """Why predict may not write the files ``outputs`` ((option, path) pairs, e.g. ("--out",
    OUT.csv)), or None (rank-local, reads only).

    Refused even with ``force``: a file inside the run directory ``run`` (but predict's own map
    there, ``OWN_MAP``), one of ``inputs`` (the points file) or a file that leads to one through
    symbolic links, a directory, two outputs at one path. Refused without ``force``: any other
    existing file (a symbolic link is replaced, not followed).
    """
    run_dir = _real(run)
    protected = {_real(p) for p in inputs}
    seen = set()
    for option, path in outputs:
        where = f"{option} {path}"
        # The path as written (its directory resolved) and where it leads.
        named, leads = _real(path.parent) / path.name, _real(path)
        if named in seen:
            return f"{where}: two outputs would be written to the same file"
        seen.add(named)
        if protected & {named, leads}:
            return f"{where} is the points file this prediction reads; write the predictions elsewhere"
        for target in (named, leads):
            if target != run_dir and run_dir not in target.parents:
                continue
            if target.parent == run_dir and OWN_MAP.fullmatch(target.name):
                continue
            return (f"{where} is inside the run directory {run}, whose files predict reads and never "
                    f"replaces (--force does not change that); write the predictions elsewhere")
        if path.is_dir() and not path.is_symlink():
            return f"{where} is a directory; name a file"
        if (path.exists() or path.is_symlink()) and not force:
            return f"{where} exists; pass --force to replace it"
    return None


def _real(path: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


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
    from matplotlib.patches import Rectangle

    from solver.rundir.plots import figure, save_figure, tab10

    if labels.ndim == 3:  # the middle plane x3 = const
        middle = labels.shape[2] // 2
        data_points, labels, confidence = data_points[:, :, middle], labels[:, :, middle], confidence[:, :, middle]
        title = f"{title} (middle plane x3 = {data_points[0, 0, 2]:.3g})"
    colors = tab10()(np.arange(len(classes)) % 10)
    rgba = np.ones((*labels.shape, 4))
    rgba[labels >= 0] = colors[labels[labels >= 0]]
    # Shade by confidence: white at 1/K (a tie), the class colour at 1.
    K = len(classes)
    weight = np.clip((np.nan_to_num(confidence) - 1.0 / K) / (1.0 - 1.0 / K), 0.0, 1.0)[..., None]
    rgba[..., :3] = 1.0 - weight * (1.0 - rgba[..., :3])
    rgba[labels < 0] = (1.0, 1.0, 1.0, 0.0)
    x, y = data_points[..., 0], data_points[..., 1]
    fig = figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.imshow(np.transpose(rgba, (1, 0, 2)), origin="lower", interpolation="nearest",
              extent=(x.min(), x.max(), y.min(), y.max()), aspect="equal")
    handles = [Rectangle((0, 0), 1, 1, color=colors[k]) for k in range(K)]
    ax.legend(handles, [f"class {c}" for c in classes], loc="upper right", fontsize=8)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
