"""report.md and the PNG plots, from results.json alone: nothing in the report is typed by hand."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MiB = 2**20


def seconds(value: float | None) -> str:
    """A time with three significant digits, or "not reached"."""
    if value is None:
        return "not reached"
    return f"{value:.3g} s" if value >= 1e-3 else f"{1e3 * value:.3g} ms"


def mib(value: float) -> str:
    """Bytes as MiB with one decimal."""
    return f"{value / MiB:.1f} MiB"


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def section_machine(results: dict) -> str:
    """Machine, load and versions."""
    m = results["machine"]
    v = m["versions"]
    peer_versions = results.get("peer_versions", {})
    rows = [["CPU", m["cpu"]], ["cores", m["cores"]], ["memory", f"{m['memory_bytes'] / 2**30:.1f} GiB"],
            ["OS", m["os"]], ["load average (1, 5, 15 min) at start", m["load_average_at_start"]],
            ["load average at end", results.get("load_average_at_end", "–")]]
    versions = [[name, value] for name, value in v.items()] + [[k, val] for k, val in peer_versions.items()]
    return ("## Machine and software\n\n" + table(["", ""], rows) + "\nThe load average counts every job on "
            "the machine, this suite's own included: well above the cores the suite itself keeps busy, other jobs "
            "ran beside it, and the times are upper bounds.\n\n"
            + table(["package", "version"], versions))


def section_learning(s: dict, out: Path) -> str:
    """Section 1: one row per problem and route; learning.png."""
    mlp = s["mlp"]
    text = ["## 1. Learning\n",
            f"Same train/test split in Ω coordinates for every route. PDE: `mpirun -n {s['pde_ranks']} python -m "
            "solver train CONFIG` (the problem file's optimizer and regularization: weight decay, smoothness of θ "
            "across slabs, kinetic energy), optimizer time from history.csv. Peer (torchdiffeq, one thread): the "
            "same velocity model and initial θ, Adam, cross-entropy + weight decay only; Euler with "
            f"{s['euler_steps_per_slab']} steps per slab. MLP: scikit-learn MLPClassifier, hidden layers "
            f"{tuple(mlp['hidden_layer_sizes'])}, solver {mlp['solver']}, max_iter {mlp['max_iter']}, one thread; "
            "it has no per-iteration record, so its time to the target is its whole fit time (≤) when its final "
            "accuracy reaches the target. Training runs are not repeated. Configs: `configs/`.\n"]
    rows = []
    for name, p in s["problems"].items():
        routes = [("PDE (L-BFGS)" if p["pde"]["optimizer"] == "lbfgs" else "PDE (Adam)", p["pde"])]
        routes += [(f"peer {m} (Adam, lr {r['lr']})", r) for m, r in p["peer"].items()]
        routes.append(("MLP (scikit-learn)", p["mlp"]))
        for route, r in routes:
            reached = seconds(r["time_to_target"])
            if r.get("time_to_target_is_bound") and r["time_to_target"] is not None:
                reached = "≤ " + reached
            elif r.get("iteration_at_target") is not None:
                reached += f" (it. {r['iteration_at_target']})"
            rows.append([f"{name} ({p['dim']}D, {p['classes']} classes, {p['n_train']}/{p['n_test']})", p["target"],
                         route, r["cores"], r["parameters"], r["iterations"], f"{r['test_accuracy']:.3f}",
                         seconds(r["seconds"]), reached])
    text.append(table(["problem (train/test)", "target", "route", "cores", "parameters", "iterations",
                       "test accuracy", "training time", "time to target"], rows))
    text.append("\n![test accuracy against training time](learning.png)\n")
    plot_learning(s, out / "learning.png")
    return "\n".join(text)


def plot_learning(s: dict, path: Path) -> None:
    """Test accuracy against training time, one panel per problem."""
    problems = s["problems"]
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    for ax, (name, p) in zip(axes[0], problems.items()):
        curves = [("PDE", p["pde"]["history"])] + [(f"peer {m}", r["history"]) for m, r in p["peer"].items()]
        for label, curve in curves:
            t = [max(c["time"], 1e-3) for c in curve]
            ax.plot(t, [c["test_accuracy"] for c in curve], label=label)
        ax.plot([p["mlp"]["seconds"]], [p["mlp"]["test_accuracy"]], "k*", label="MLP (end of fit)")
        ax.axhline(p["target"], color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(name)
        ax.set_xlabel("training time [s]")
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section_scaling(s: dict, out: Path) -> str:
    """Section 2: times per iteration, ratios, crossovers, memory; scaling.png."""
    sizes = s["sizes"]
    header = ["N"] + [f"PDE {r} [s]" for r in s["pde"]] + [f"peer {m} [s]" for m in s["peer"]]
    header += [f"{m} / PDE {r}" for m in s["peer"] for r in s["pde"]]
    rows = []
    for i, n in enumerate(sizes):
        row = [f"{n:,}"] + [seconds(t[i]) for t in s["pde"].values()] + [seconds(t[i]) for t in s["peer"].values()]
        row += [f"{s['peer'][m][i] / s['pde'][r][i]:.3g}" for m in s["peer"] for r in s["pde"]]
        rows.append(row)
    crossings = []
    for name, c in s["crossover"].items():
        where = {"at": f"at N ≈ {c['N']:,.0f}", "below": f"below {c['N']:,}", "above": f"above {c['N']:,}"}[c["where"]]
        crossings.append(f"- PDE cheaper per iteration than {name.replace(' vs ', ': ')}: {where}")
    ratios = [f"- {name} at N = {sizes[-1]:,}: {value:.3g}" for name, value in s["ratio_at_largest_N"].items()]
    memory = [[f"{n:,}"] + [mib(s["peer_peak_rss_bytes"][m][i]) for m in s["peer"]] for i, n in enumerate(sizes)]
    pde_memory = ", ".join(f"{r}: {mib(v)}" for r, v in s["pde_peak_rss_bytes_per_rank"].items())
    plot_scaling(s, out / "scaling.png")
    return ("## 2. Scaling in the data size\n\n"
            f"Time of one optimizer iteration (value + gradient; the peer's includes the Adam update) against the "
            f"number N of training points: moons data on the moons problem's mesh and field (`{s['config']}`, "
            f"{s['dofs']:,} dofs, {s['steps']} time steps), the same initial θ and output layer for both routes. "
            f"PDE: `scripts/bench_gradient.py --config` (the problem file's objective, its regularization "
            f"included), time steps frozen; peer: `iteration_time`, cross-entropy + weight decay, one thread, "
            f"Adam lr {s['peer_lr']}. Medians of {s['repeats']}.\n\n" + table(header, rows)
            + "\nCrossover (log-log interpolation of the ratio between measured N):\n\n" + "\n".join(crossings)
            + "\n\nRatio peer / PDE at the largest N:\n\n" + "\n".join(ratios)
            + "\n\n![time per iteration against N](scaling.png)\n\nPeak resident memory of each peer process "
            f"(set-up included); the PDE's largest rank over all N: {pde_memory}.\n\n"
            + table(["N"] + [f"peer {m}" for m in s["peer"]], memory))


def plot_scaling(s: dict, path: Path) -> None:
    """Time per iteration against N, log-log."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, times in [(f"PDE, {r}", t) for r, t in s["pde"].items()] + [(f"peer {m}, 1 thread", t)
                                                                           for m, t in s["peer"].items()]:
        ax.loglog(s["sizes"], times, "o-", label=label)
    ax.set_xlabel("training points N")
    ax.set_ylabel("time per iteration [s]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section_prediction(s: dict, out: Path) -> str:
    """Section 3: times, ratios, differences; prediction.png."""
    parts = s["pde_parts"]
    rows = [["PDE (solve + locate + evaluate)", 1, seconds(s["seconds"]["PDE"]),
             f"solve {seconds(parts['solve'])}, locate points {seconds(parts['locate'])}, "
             f"evaluate {seconds(parts['evaluate'])}; {s['dofs']:,} dofs, {s['steps']} steps"],
            ["characteristics (DOP853, rtol 1e-10)", 1, seconds(s["seconds"]["characteristics"]), ""],
            [f"ResNet ({s['resnet']['depth']} {s['resnet']['scheme']} blocks, onnxruntime float32)", 1,
             seconds(s["seconds"]["ResNet"]), s["resnet"]["onnx"]]]
    ratios = [[name, f"{value:.3g}"] for name, value in s["ratios"].items()]
    differences = [[name, f"{d['max_logit_difference']:.3g}", f"{100 * d['label_agreement']:.2f}%"]
                   for name, d in s["differences"].items()]
    plot_prediction(out / s["maps"], out / "prediction.png")
    return ("## 3. Whole-domain prediction\n\n"
            f"The trained moons run (`{s['run']}`) on a {s['grid']}² grid of Ω ({s['points']:,} points), one core "
            f"each, medians of {s['repeats']}.\n\n" + table(["route", "cores", "time", "notes"], rows) + "\n"
            + table(["ratio", "value"], ratios) + "\n"
            + table(["pair", "max |Δ logits|", "label agreement"], differences)
            + "\n![predicted labels: PDE, characteristics, ResNet](prediction.png)\n")


def plot_prediction(maps_path: Path, path: Path) -> None:
    """The predicted labels of the three routes side by side, with the training points."""
    maps = np.load(maps_path)
    grid = maps["grid"]
    n = int(round(np.sqrt(len(grid))))
    extent = [grid[:, 0].min(), grid[:, 0].max(), grid[:, 1].min(), grid[:, 1].max()]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, name in zip(axes, ("PDE", "characteristics", "ResNet")):
        labels = maps[name].argmax(axis=1).reshape(n, n).T  # the grid is ij-ordered: x1 first
        ax.imshow(labels, origin="lower", extent=extent, cmap="coolwarm", alpha=0.6, interpolation="nearest")
        ax.scatter(*maps["X_train"][:, :2].T, c=maps["y_train"], cmap="coolwarm", s=4, edgecolors="none")
        ax.set_title(name)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section_parallel(s: dict) -> str:
    """Section 4: 1 and 2 ranks, speedup, efficiency, memory, projection."""
    rows, projections = [], []
    for name, c in s["cases"].items():
        memory = {p: mib(max(v)) for p, v in c["peak_rss_bytes_per_rank"].items()}
        for kind in ("forward", "gradient"):
            k = c[kind]
            rows.append([name, f"{c['cells']} cells/dir, DG1, {c['dofs']:,} dofs × {c['classes']}", c["steps"], kind,
                         seconds(k["seconds"]["1"]), seconds(k["seconds"]["2"]), f"{k['speedup']:.2f}",
                         f"{k['efficiency']:.2f}", memory["1"], memory["2"]])
            proj = k["projection"]
            projections.append([name, kind, f"{proj['seconds_per_dof_step_per_rank']:.3g}"]
                               + [seconds(proj["fixed_total_dofs"][p]) for p in sorted(proj["fixed_total_dofs"], key=int)]
                               + [seconds(proj["fixed_dofs_per_rank"][p]) for p in sorted(proj["fixed_dofs_per_rank"], key=int)])
    ranks = sorted(next(iter(s["cases"].values()))["forward"]["projection"]["fixed_total_dofs"], key=int)
    return ("## 4. Parallel scaling\n\n"
            f"`scripts/bench_gradient.py --config` on 1 and 2 ranks, {s['points']} data points, medians of "
            f"{s['repeats']}; peak memory is the largest rank's ru_maxrss over the whole process (set-up "
            "included).\n\n" + table(["case", "mesh", "steps", "operation", "1 rank", "2 ranks", "speedup",
                                      "efficiency", "peak/rank, 1 rank", "peak/rank, 2 ranks"], rows)
            + "\nProjection, from the 2-rank time: c = time · 2 / (dofs · steps) seconds per dof-step per rank; at "
            "a fixed total size the time is c · dofs · steps / P; at fixed dofs per rank (the 2-rank load) the mesh "
            "is refined to P/2 times the dofs, which shrinks h by (P/2)^(1/d) and raises the CFL step count in "
            "proportion. The model ignores the growth of communication with P: read it as a lower bound.\n\n"
            + table(["case", "operation", "c [s]"] + [f"fixed total, {p} ranks" for p in ranks]
                    + [f"fixed per rank, {p} ranks" for p in ranks], projections))


def section_memory(s: dict, out: Path) -> str:
    """Section 5: peak memory and time per trajectory choice; memory.png."""
    rows = []
    for r in s["rows"]:
        kept = f"{r['stages_kept']} of {r['steps']}" if "stages_kept" in r else ""
        checkpoints = str(r["checkpoints_kept"]) if "checkpoints_kept" in r else ""
        trajectory = mib(r["trajectory_bytes"]) if "trajectory_bytes" in r else ""
        rows.append([r["name"], r["operation"], "unbounded" if r["stage_memory_unbounded"] else (
                         "—" if r["stage_memory"] is None else mib(r["stage_memory"])),
                     kept, checkpoints, trajectory, mib(r["peak_increase"]), seconds(r["seconds"])])
    reset = all(r["peak_reset"] for r in s["rows"])
    plot_memory(s, out / "memory.png")
    first = s["rows"][0]
    return ("## 5. Memory\n\n"
            f"The 3D problem (`{s['config']}`, {s['cells']}³ cells, DG1, {first['dofs']:,} dofs × {first['classes']} "
            f"classes), one rank, each row its own process: peak resident memory of the operation (the high-water mark "
            f"VmHWM after it minus VmRSS before it, after one value solve; the high-water mark was {'reset before the operation' if reset else 'NOT reset: the numbers include the set-up'}), "
            f"and its time (median of {s['repeats']} further calls). The forward keeps what the adjoint needs "
            "(checkpoints, and the stage states that fit in the stage memory); \"kept\" is the size of those "
            "arrays (Trajectory.nbytes). Freed but still resident heap memory is reused without raising the "
            "RSS, so an increase can fall a little short of what was allocated.\n\n"
            + table(["trajectory", "operation", "stage memory", "stages kept", "checkpoints", "kept",
                     "peak increase", "time"], rows) + "\n![peak memory and time](memory.png)\n")


def plot_memory(s: dict, path: Path) -> None:
    """Peak memory increase and time per row, as bars."""
    rows = s["rows"]
    labels = [f"{r['name']}\n{r['operation']}" for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.5), sharey=True)
    y = np.arange(len(rows))
    a.barh(y, [r["peak_increase"] / MiB for r in rows])
    a.set_xlabel("peak memory increase [MiB]")
    a.set_yticks(y, labels, fontsize=7)
    a.invert_yaxis()
    b.barh(y, [r["seconds"] for r in rows], color="tab:orange")
    b.set_xlabel("time [s]")
    b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _time(value) -> str:
    return "not reached" if value is None else f"{value:.3g} s"


def section_millions(s: dict, out: Path) -> str:
    """Section 6: time to the target with 10⁶ and 10⁷ points, the PDE against the peers."""
    header = ["case", "N train", "route", "iterations", "time to target", "test accuracy", "peak memory"]
    rows = []
    for name, c in s["cases"].items():
        p = c["pde"]
        certified = p.get("certified_time_to_target")
        rows.append([name, f"{c['n_train']:,}", "PDE, L-BFGS, 2 ranks", p["iterations"],
                     f"{_time(p['time_to_target'])} (certified {_time(certified)}; wall "
                     f"{p['process_seconds']:.0f} s)", f"{p['test_accuracy']:.4f}",
                     f"{p['peak_rss_bytes'] / 2**20:.0f} MiB per rank" if p.get("peak_rss_bytes") else "—"])
        for variant, r in c["peer"].items():
            rows.append([name, f"{c['n_train']:,}", f"peer {variant}", r["iterations"],
                         _time(r["time_to_target"]) + ("" if r["time_to_target"] is not None
                                                              else f" in {r['seconds']:.0f} s"),
                         f"{r['test_accuracy']:.4f}", f"{r['peak_rss_bytes'] / 2**20:.0f} MiB"])
    ratios = []
    for name, c in s["cases"].items():
        if c["ratio_best_peer_to_pde"] is not None:
            ratios.append(f"- {name}: the best peer takes {c['ratio_best_peer_to_pde']:.3g}× the PDE's time")
        elif c.get("ratio_bound") is not None:
            ratios.append(f"- {name}: no peer reached the target in its budget: ≥ {c['ratio_bound']:.3g}×")
    return ("## 6. Millions of points\n\n"
            f"Training to a target test accuracy on N data points (80% train), the same velocity model from the "
            f"same θ. PDE: the problem file's L-BFGS on 2 ranks; its time to the target is training time (the "
            f"optimizer and the certification checks; set-up and point location are in the wall time). Peers: "
            f"one thread, Adam lr {s['lr']}, a budget of {s['budget']:.0f} s of training time each (evaluation "
            f"off the clock), stopped at the target; the minibatch peer takes {s['batch']} points a step and is "
            f"evaluated every {s.get('evaluate_every', 0)} steps on a fixed random {s.get('evaluate_subset', 0):,} "
            f"test points (a subset at the target is confirmed on the whole test set). Above "
            f"{s.get('full_batch_limit', 0):,} training points the full-batch peers are skipped (Euler's "
            f"backpropagation would need ~65 GB; one dopri5-adjoint iteration at 10⁷ took 1077 s on 2026-11-29).\n\n"
            + table(header, rows) + "\n" + "\n".join(ratios) + "\n")


def section_gradient(s: dict) -> str:
    """Section 7: the gradient ratio table per stage-memory setting."""
    rows = []
    for setting, r in s["settings"].items():
        for row in r["rows"]:
            rows.append([row["label"], setting, f"{row['dofs']:,} × {row['K']}", row["steps"],
                         mib(row["stage_memory"]), seconds(row["forward_s"]), seconds(row["value_and_gradient_s"]),
                         f"**{row['ratio'] - 1:.2f}**", mib(row["peak_rss_bytes"])])
    theta = f"peaks at the θ of section 1's run (`{s['theta']}`)" if s["theta"] else "peaks at its initial θ"
    return ("## 7. The gradient's cost\n\n"
            f"`scripts/bench_gradient.py --cases {s['cases']} --stage-memory SETTING --theta THETA` on 1 rank, "
            f"N = 10³ points, time steps frozen; {theta}, the box at its initial θ. gradient / forward = "
            "(value + gradient − forward) / forward, each the median of "
            f"{s['repeats']} back-to-back pairs. 'auto' (the default `solver.stage_memory`) keeps what the "
            "adjoint reads back in half the memory available to the rank; 256 MiB was the default before, "
            "and recomputes the stage states that do not fit from checkpoints. Peak memory is the process's "
            "ru_maxrss so far (cases run in the order shown, so it includes the earlier ones).\n\n"
            + table(["case", "stage memory setting", "dofs × K", "steps", "stage memory", "forward",
                     "value + gradient", "gradient / forward", "peak RSS"], rows))


SECTIONS = (("learning", section_learning), ("scaling", section_scaling), ("prediction", section_prediction),
            ("parallel", lambda s, out: section_parallel(s)), ("memory", section_memory),
            ("millions", section_millions), ("gradient", lambda s, out: section_gradient(s)))


def write(results: dict, out: Path) -> Path:
    """report.md (and its PNGs) in ``out`` from the results; a section that failed shows its error."""
    mode = "quick (reduced suite)" if results["settings"]["quick"] else "full"
    parts = [f"# Benchmarks\n\n`{results['settings']['command']}`: {mode}, {results['machine']['date']}, "
             f"{results['settings']['seconds']:.0f} s in all. Raw numbers: `results.json`.\n"
             + "".join(f"\nResumed: `{r['command']}`, {r['date']}, ran sections {r['sections']} (the others are "
                       f"kept from the first run).\n" for r in results["settings"].get("resumed", [])),
             section_machine(results)]
    for key, render in SECTIONS:
        s = results.get(key)
        if s is None:
            parts.append(f"## {key}\n\nnot run\n")
            continue
        if "error" not in s:
            parts.append(render(s, out))
            continue
        try:  # what the section measured before it failed
            parts.append(render(s, out))
        except (KeyError, IndexError, StopIteration, TypeError, ValueError, OSError):
            parts.append(f"## {key}\n")
        parts.append(f"**This section failed:**\n\n```\n{s['error']}\n```\n")
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
