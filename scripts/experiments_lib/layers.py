"""Section 1 (the paper's section 5, item 1): why two-layer blocks.

One-layer fields v = χ a(W x + b) ("mlp1") against two-layer fields v = χ [W2 a(W1 x + b1) + b2]
("mlp", width m = d as in eq. 2), with relu and tanh, at equal parameter counts: the one-layer
field has twice the slabs (d² + d parameters per slab against 2d² + 2d). For every one-layer relu
run the property the paper's argument rests on is measured: every component of v is >= 0 where
χ > 0, so each coordinate of every characteristic is non-decreasing in t.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scripts.experiments_lib.common import Trained, field_changes, problem_config, spread, train_run
from solver.model import characteristics

# name: (problem file, 2D/3D mesh cells, full-run seeds)
DATASETS = {"moons": ("moons", 16, 2), "blobs": ("blobs", 16, 2), "circles3d": ("circles3d", 7, 2)}
ITERATIONS = 20
QUICK = {"moons": ("moons", 8, 1)}
COMBOS = [(layers, act) for layers in (1, 2) for act in ("relu", "tanh")]
QUICK_COMBOS = [(1, "relu"), (2, "relu")]
SLABS_TWO_LAYER = 4


def config(dataset: str, layers: int, act: str, seed: int, quick: bool):
    problem, cells, _ = (QUICK if quick else DATASETS)[dataset]
    d = problem_config(problem, {}).dim
    slabs = SLABS_TWO_LAYER * (2 if layers == 1 else 1)  # equal parameter counts
    return problem_config(problem, dict(
        field=field_changes(layers, act, slabs, width=d),
        mesh={"cells": cells},
        data={"seed": seed},
        train={"seed": seed, "iterations": 3 if quick else ITERATIONS, "adapt": False,
               "check_every": ITERATIONS},  # the final check only (each costs seconds)
    ))


def monotonicity(trained: Trained, points: int = 25) -> dict:
    """For a one-layer relu field: the smallest component of v over a grid where χ > 0 (each
    slab), and the smallest increase of a coordinate along the characteristics of the data from
    one slab time to the next (both must be >= 0, up to the integrator's tolerance)."""
    model, theta = trained.model, trained.theta
    grid = model.domain.grid(points)
    grid = grid[model.domain.cutoff(grid) > 0]
    times = model.slab_times
    v_min = min(float(model.velocity(theta, 0.5 * (a + b), grid).min()) for a, b in zip(times[:-1], times[1:]))
    field = model.field(theta)
    x, step_min = trained.X, np.inf
    for a, b in zip(times[:-1], times[1:]):
        y = characteristics.flow(field, x, float(a), float(b))
        step_min = min(step_min, float((y - x).min()))
        x = y
    return dict(velocity_min=v_min, coordinate_increase_min=step_min)


def run(out: Path, quick: bool, trained_fields: list) -> dict:
    """All combinations; returns the section's raw numbers. Each trained field is appended to
    ``trained_fields`` (as (label, Trained)) for section 2b."""
    results = {}
    for dataset, (_, _, seeds) in (QUICK if quick else DATASETS).items():
        for layers, act in QUICK_COMBOS if quick else COMBOS:
            runs = []
            for seed in range(seeds):
                c = config(dataset, layers, act, seed, quick)
                trained = train_run(c, out / "runs" / f"s1-{dataset}-{layers}layer-{act}-{seed}")
                numbers = dict(trained.numbers)
                if layers == 1 and act == "relu":
                    numbers.update(monotonicity(trained))
                runs.append(numbers)
                trained_fields.append((f"s1 {dataset} {layers}-layer {act} seed {seed}", trained))
            results[f"{dataset}/{layers}-layer/{act}"] = dict(
                dataset=dataset, layers=layers, activation=act, slabs=c.field.slabs,
                parameters=runs[0]["parameters"], seeds=list(range(seeds)), runs=runs,
                test_accuracy=spread([r["test_accuracy"] for r in runs]),
                test_accuracy_characteristics=spread([r["test_accuracy_characteristics"] for r in runs]),
                loss=spread([r["loss"] for r in runs]),
            )
    return results


def figure_run(out: Path, quick: bool) -> Trained:
    """A two-layer relu field on moons (the problem's width 8, 4 slabs) for the figure."""
    c = problem_config("moons", dict(field=field_changes(2, "relu", 4, width=8),
                                     mesh={"cells": 8 if quick else 16},
                                     train={"iterations": 3 if quick else ITERATIONS, "adapt": False,
                                            "check_every": ITERATIONS}))
    return train_run(c, out / "runs" / "s1-figure-moons-2layer-relu")


def hyperplane_figure(trained: Trained, path: Path) -> None:
    """Per slab: the data carried to the slab's start time, the inner hyperplanes
    W1_i·x + b1_i = 0 (where unit i switches on; the tick marks the side where it is on) and the
    outer vector W2[:, i] (the direction unit i pushes, drawn from the line's point nearest the
    centre, length proportional to |W2[:, i]|)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, theta = trained.model, trained.theta
    nodes, times = model.unpack(theta), model.slab_times
    lo, hi = np.asarray(model.domain.lower), np.asarray(model.domain.upper)
    centre = 0.5 * (lo + hi)
    fig, axes = plt.subplots(1, model.slabs, figsize=(3.0 * model.slabs, 3.2), squeeze=False)
    field = model.field(theta)
    x = trained.X
    longest = max(float(np.linalg.norm(p.W2, axis=0).max()) for p in nodes) or 1.0
    for j, (ax, p) in enumerate(zip(axes[0], nodes)):
        if j:
            x = characteristics.flow(field, x, float(times[j - 1]), float(times[j]))
        ax.scatter(x[:, 0], x[:, 1], c=trained.y, s=2, cmap="coolwarm", alpha=0.5, rasterized=True)
        for i in range(model.width):
            w, b = p.W1[i], p.b1[i]
            norm = np.linalg.norm(w)
            if norm == 0:
                continue
            foot = centre - (w @ centre + b) / norm**2 * w  # the line's point nearest the centre
            along = np.array([-w[1], w[0]]) / norm
            ends = np.array([foot - 3 * along, foot + 3 * along])
            line, = ax.plot(ends[:, 0], ends[:, 1], lw=1)
            ax.annotate("", xy=foot + 0.6 * p.W2[:, i] / longest, xytext=foot,
                        arrowprops=dict(arrowstyle="->", color=line.get_color(), lw=1.5))
            ax.plot(*np.array([foot, foot + 0.08 * w / norm]).T, color=line.get_color(), lw=3)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_title(f"slab {j}: t ∈ [{times[j]:.2g}, {times[j + 1]:.2g}]", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("inner hyperplanes W1_i·x + b1_i = 0 (tick: the side where unit i is on), "
                 "outer vectors W2[:, i] (arrows)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)
