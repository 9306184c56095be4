"""Section 2 (the paper's section 5, item 2): deeper is better, in two senses.

(a) the time resolution of the field: L slabs at a fixed width, on spirals and peaks;
(b) the depth of the explicit ResNet a given field needs: the smallest Euler export depth N whose
    labels agree with the characteristics on 100% of the data (and at every larger N tried),
    against ∫₀ᵀ max|∇v| dt, over every field trained in this report.
"""

from __future__ import annotations

from pathlib import Path


from scripts.experiments_lib.common import export_depth, field_changes, problem_config, spread, train_run

WIDTH = 16
SLABS = (1, 2, 4, 8, 16)
# name: (problem file, mesh cells, iterations, seeds); peaks (3D, 1000 points) is the expensive one
FULL = {"spirals": ("spirals", 24, 30, 1), "peaks": ("peaks", 7, 10, 1)}
QUICK = {"spirals": ("spirals", 8, 2, 1), "peaks": ("peaks", 5, 1, 1)}
QUICK_SLABS = (1, 2)


def run_slabs(out: Path, quick: bool, trained_fields: list) -> dict:
    """(a): one run per data set, slab count and seed."""
    results = {}
    for dataset, (problem, cells, iterations, seeds) in (QUICK if quick else FULL).items():
        for slabs in QUICK_SLABS if quick else SLABS:
            runs = []
            for seed in range(seeds):
                c = problem_config(problem, dict(
                    field=field_changes(2, "tanh", slabs, width=WIDTH), mesh={"cells": cells},
                    data={"seed": seed}, train={"seed": seed, "iterations": iterations, "adapt": False,
                                                 "check_every": max(iterations, 1)}))
                trained = train_run(c, out / "runs" / f"s2-{dataset}-L{slabs}-{seed}")
                runs.append(trained.numbers)
                trained_fields.append((f"s2a {dataset} L={slabs} seed {seed}", trained))
            results[f"{dataset}/L={slabs}"] = dict(
                dataset=dataset, slabs=slabs, width=WIDTH, cells=cells, iterations=iterations,
                parameters=runs[0]["parameters"], seeds=list(range(seeds)), runs=runs,
                test_accuracy=spread([r["test_accuracy"] for r in runs]),
                loss=spread([r["loss"] for r in runs]),
                seconds_per_iteration=spread([r["seconds_per_iteration"] for r in runs]),
            )
    return results


def run_export_depths(trained_fields: list) -> list[dict]:
    """(b): the depth table of every trained field, with its deformation measure."""
    rows = []
    for label, trained in trained_fields:
        table = export_depth(trained)
        rows.append(dict(label=label, slabs=trained.model.slabs, layers=trained.model.layers,
                         activation=trained.model.activation, **table))
    return rows


def errors_monotone(row: dict) -> bool:
    """The Euler export error does not grow from one depth to the next once the steps are small:
    N >= 4 L, N >= 16 and a step h = T/N with h ∫max|∇v| dt / T <= 1/8 (Euler in its
    first-order regime; N a multiple of L, as every depth here is for L a power of 2). What the
    quick run asserts."""
    depths, errors = row["depths"], row["max_error"]
    smallest = max(4 * row["slabs"], 16, 8 * row["deformation"])
    tail = [e for n, e in zip(depths, errors) if n >= smallest and n % row["slabs"] == 0]
    return all(b <= a * (1 + 1e-9) for a, b in zip(tail, tail[1:]))


def rank_correlation(rows: list[dict]) -> float:
    """Spearman's rank correlation between the deformation and the smallest depth (fields with
    no depth up to the largest tried count as deeper than all)."""
    from scipy.stats import spearmanr

    depth = [r["smallest_depth"] or 2 * max(r["depths"]) for r in rows]
    if len(rows) < 3 or len(set(depth)) < 2:
        return float("nan")
    return float(spearmanr([r["deformation"] for r in rows], depth).statistic)


def depth_figure(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for group, marker in (("s1", "o"), ("s2a", "s")):
        pick = [r for r in rows if r["label"].startswith(group + " ")]
        if pick:
            ax.scatter([r["deformation"] for r in pick],
                       [r["smallest_depth"] or 2 * max(r["depths"]) for r in pick],
                       marker=marker, label={"s1": "section 1 fields", "s2a": "section 2a fields"}[group])
    ax.set_xlabel("∫₀ᵀ max|∇v| dt")
    ax.set_ylabel("smallest Euler depth N, 100% labels")
    ax.set_yscale("log", base=2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def slabs_figure(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for dataset in sorted({r["dataset"] for r in results.values()}):
        rows = [r for r in results.values() if r["dataset"] == dataset]
        L = [r["slabs"] for r in rows]
        for ax, key in zip(axes, ("test_accuracy", "loss", "seconds_per_iteration")):
            ax.errorbar(L, [r[key]["mean"] for r in rows], yerr=[r[key]["std"] for r in rows],
                        marker="o", label=dataset, capsize=3)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("slabs L")
            ax.set_title(key.replace("_", " "), fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
