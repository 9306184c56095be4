"""Time to the certified target, side by side: the PDE with each transport scheme against the Euler
neural ODE (issue 21). One command, one report:

    .venv/bin/python -m scripts.bench_schemes --out bench-schemes [--problems moons,circles,blobs,spirals]

Per problem of the learning suite (``scripts.bench_lib.learning``: the same problem files, targets and
peer schedules): ``mpirun -n 2 python -m solver train`` with ``solver.scheme = "rk3"`` and with
``"sl"``, and the Euler neural ODE (the same velocity model and initial θ, Adam, one thread). The
PDE's time to the certified target is the training time (optimizer and certification checks) up
to the first check whose characteristics reach the target with the logits within the tolerance
(``scripts.bench_lib.learning.time_to_target``, the suite's one clock); the PDE runs with
``train.target_accuracy`` = the target, so a check runs where its test accuracy first reaches it
and the run ends at the first check that passes at it; the peer has no certification, its time is to its
first iteration at the target. Writes ``report.md`` and ``results.json`` (with the commit and the
machine's load) into ``--out``.
"""

from __future__ import annotations

# mpi4py before dolfinx (imported through solver): dolfinx needs the MPI library mpi4py loads.
from mpi4py import MPI  # noqa: F401

import argparse
import json
import subprocess
import time
import sys
from pathlib import Path

import numpy as np

from scripts.bench_lib import learning, machine, peer
from scripts.bench_lib.common import PROBLEMS, PYTHON, ROOT, SCRIPTS, Bench, write_config
from solver.config import load_config
from solver.learn.train import load_dataset

SCHEMES = ("rk3", "sl")
SECTION = "schemes"
# The PDE runs: (label, scheme, ranks). The peer runs on one thread: "sl-1" is the PDE on one core.
ROUTES = (("rk3", "rk3", 2), ("sl", "sl", 2), ("sl-1", "sl", 1))


# The problem files start "sl" (the default) on P2; "rk3" runs on the DG mesh each file had for it.
RK3_MESH = {"moons.toml": (32, 1), "circles3d.toml": (5, 2), "spirals.toml": (48, 1), "blobs.toml": (32, 1),
            "peaks.toml": (7, 2)}


def scheme_changes(source: Path, scheme: str, quick: bool) -> dict:
    """The problem file's changes for a scheme: "sl" runs the file's own mesh (P2 on half the
    cells of the DG1 start in 2D: per node several times closer to the characteristics, see
    ``scripts/bench_substeps.py``), "rk3" the DG mesh of ``RK3_MESH``."""
    changes = learning.config_changes(source, quick)
    changes["solver"] = {"scheme": scheme}
    if scheme == "rk3" and not quick:
        cells, degree = RK3_MESH[source.name]
        changes["mesh"] = {"cells": cells, "degree": degree}
    return changes


def commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def euler_peer(bench: Bench, python: Path, name: str, config, dataset, target: float) -> dict:
    iterations, lr = learning.peer_schedule(name, bench.quick)
    arrays = dict(X_train=dataset.X_train, y_train=dataset.y_train, X_test=dataset.X_test,
                  y_test=dataset.y_test, **peer.initial_theta(config))
    spec = dict(peer.model_spec(config, dataset.num_classes, "euler"), optimizer="adam", lr=lr,
                iterations=iterations, seed=config.train.seed, mode="train", target_accuracy=target)
    bench.progress(SECTION, name, f"peer euler, {iterations} Adam iterations")
    r = peer.run_job(bench, python, f"schemes-{name}-euler", spec, arrays)
    return dict(time_to_target=r["time_to_target"], iteration_at_target=r["iteration_at_target"],
                test_accuracy=r["test_accuracy"], seconds=r["train_time"], iterations=r["iterations"])


def run(bench: Bench, names: list[str], python: Path) -> dict:
    out = bench.results.setdefault("problems", {})
    for name in names:
        source, target = PROBLEMS / learning.PROBLEM_SUITE[name][0], learning.PROBLEM_SUITE[name][1]
        row = dict(target=target)
        for label, scheme, ranks in ROUTES:
            changes = scheme_changes(source, scheme, bench.quick)
            # The run ends at the first check that certifies the target (train.target_accuracy).
            changes["train"] = dict(changes.get("train", {}), target_accuracy=target)
            path = write_config(source, bench.out / "configs" / f"{name}-{scheme}.toml", changes)
            pde = learning.train_pde(bench, f"{name}-{label}", path, target, SECTION, ranks)
            pde.pop("history", None)
            pde.update(degree=load_config(path).mesh.degree, scheme=scheme)
            row[label] = pde
        config = load_config(bench.out / "configs" / f"{name}-rk3.toml")
        dataset = load_dataset(config, config.domain_object())
        row["euler"] = euler_peer(bench, python, name, config, dataset, target)
        out[name] = row
        bench.save()
    return out


ESTIMATOR_DATA = ("breast_cancer", "digits")


def estimator_cv(bench: Bench, names: list[str], iterations: int, schemes: dict[str, list[str]] | None = None) -> dict:
    """FlowClassifier (each scheme, default mesh) against MLPClassifier(16) on scikit-learn's
    bundled data, StandardScaler → PCA(3), 5-fold CV in this process (one rank): accuracy,
    fit time per fold, the share of certified fits."""
    import warnings

    from sklearn import datasets
    from sklearn.decomposition import PCA
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from solver import FlowClassifier

    out = bench.results.setdefault("estimator", {})
    for name in names:
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
        models = {f"FlowClassifier(scheme={s!r}, iterations={iterations})": lambda s=s: FlowClassifier(
            scheme=s, iterations=iterations) for s in (schemes or {}).get(name, SCHEMES)}
        models["MLPClassifier(16)"] = lambda: MLPClassifier(16, max_iter=2000, random_state=0)
        rows = {}
        for label, make in models.items():
            bench.progress(SECTION, name, label)
            scores, seconds, certified = [], [], []
            for train, test in folds:
                model = make_pipeline(StandardScaler(), PCA(3, random_state=0), make())
                with threadpool_limits(1), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    started = time.perf_counter()
                    model.fit(X[train], y[train])
                    seconds.append(time.perf_counter() - started)
                scores.append(float(model.score(X[test], y[test])))
                certified.append(bool(getattr(model[-1], "certified_", True)))
            rows[label] = dict(accuracy=scores, fit_seconds=seconds, certified=certified)
            bench.save()
        out[name] = rows
    return out


def optimizers(bench: Bench, names: list[str], seconds: float) -> dict:
    """L-BFGS against Newton–Krylov on the "sl" configs of these problems (``bench_optimizers.py``
    on one rank, ``seconds`` of optimizer time each): iterations, gradients, time to target."""
    out = bench.results.setdefault("optimizers", {})
    for name in names:
        source, target = PROBLEMS / learning.PROBLEM_SUITE[name][0], learning.PROBLEM_SUITE[name][1]
        path = write_config(source, bench.out / "configs" / f"{name}-sl.toml", scheme_changes(source, "sl", bench.quick))
        json_path = bench.out / "work" / f"optimizers-{name}.json"
        bench.progress(SECTION, name, f"L-BFGS and Newton–Krylov, {seconds:g} s each")
        bench.run([PYTHON, SCRIPTS / "bench_optimizers.py", path, "--target", str(target),
                   "--seconds", str(seconds), "--json", json_path], f"optimizers-{name}")
        rows = json.loads(json_path.read_text())
        for r in rows.values():
            r.pop("curve", None)
        out[name] = dict(target=target, seconds=seconds, methods=rows)
        bench.save()
    return out


def gradient_ratios(bench: Bench, cases: str) -> dict:
    """value + gradient against a forward solve per scheme (``bench_gradient.py --cases``, one
    rank, the initial θ; ``--quick``: tiny cases)."""
    out = bench.results.setdefault("gradient", {})
    for scheme in SCHEMES:
        json_path = bench.out / "work" / f"gradient-{scheme}.json"
        bench.progress(SECTION, "gradient", f"bench_gradient.py --cases {cases} --scheme {scheme}")
        bench.run([PYTHON, SCRIPTS / "bench_gradient.py", "--cases", cases, "--scheme", scheme,
                   "--repeats", "3", "--json", json_path] + (["--quick"] if bench.quick else []), f"gradient-{scheme}")
        out[scheme] = json.loads(json_path.read_text())["rows"]
        bench.save()
    return out


def report(bench: Bench) -> str:
    info = bench.results["machine"]
    lines = [
        "# Transport schemes: time to the certified target against the Euler neural ODE",
        "",
        f"`{bench.results['command']}` at commit `{bench.results['commit']}`, {info['date']}; "
        f"load average at start {info['load_average_at_start']}, at end {bench.results['load_at_end']} "
        f"({info['cores']} cores; other jobs beside the run make the times upper bounds).",
        "",
        "PDE: `mpirun -n 2 python -m solver train` of the problem file with `solver.scheme` set and "
        "`train.target_accuracy` = the target (a check where the test accuracy first reaches it; the run ends at "
        "the first check that passes at it); time to "
        "the first certification check at the target (optimizer and checks on the clock). Peer: the "
        "Euler neural ODE, Adam, one thread, time to its first iteration at the target (no certification).",
        "",
        "| problem | target | scheme | ranks | mesh | dofs | iterations | s / iteration | time to target "
        "| time to certified target | Euler peer time to target | certified / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    show = lambda v: "—" if v is None else f"{v:.3g} s"  # noqa: E731
    for name, row in bench.results.get("problems", {}).items():
        peer_time = row["euler"]["time_to_target"]
        for label, scheme, _ in ROUTES:
            if label not in row:
                continue
            r = row[label]
            ratio = ("—" if r["certified_time_to_target"] is None or not peer_time
                     else f"{r['certified_time_to_target'] / peer_time:.2f}")
            per = r["seconds"] / max(1, r["iterations"])
            mesh = f"{'DG' if scheme == 'rk3' else 'P'}{r['degree']}, {r['mesh_cells']} cells"
            lines.append(f"| {name} | {row['target']} | {scheme} | {r['cores']} | {mesh} | {r['dofs']} | {r['iterations']} | {per:.3f} | "
                         f"{show(r['time_to_target'])} | {show(r['certified_time_to_target'])} | "
                         f"{show(peer_time)} | {ratio} |")
    lines += ["", "s / iteration: the run's wall seconds (set-up, checks and outputs included) over its iterations."]
    if bench.results.get("estimator"):
        lines += ["", "## FlowClassifier against MLPClassifier(16)", "",
                  "scikit-learn's bundled data, StandardScaler → PCA(3) → the model, 5-fold stratified CV "
                  "(shuffled, seed 0), one process, one thread; FlowClassifier with its defaults but the scheme.",
                  "", "| data | model | accuracy (mean ± std) | fit s per fold (mean) | fit / MLP fit | certified folds |",
                  "|---|---|---|---|---|---|"]
        for name, rows in bench.results["estimator"].items():
            mlp = np.mean(rows["MLPClassifier(16)"]["fit_seconds"])
            for label, r in rows.items():
                fit = np.mean(r["fit_seconds"])
                lines.append(f"| {name} | {label} | {np.mean(r['accuracy']):.3f} ± {np.std(r['accuracy']):.3f} | "
                             f"{fit:.2f} | {fit / mlp:.1f} | {sum(r['certified'])} of {len(r['certified'])} |")
    if bench.results.get("gradient"):
        lines += ["", "## The gradient's cost", "",
                  "`scripts/bench_gradient.py --cases ... --scheme S`, one rank, N = 10³, the initial θ, "
                  "medians of 3 paired measurements: (value + gradient − forward) / forward.", "",
                  "| scheme | case | dofs × components | steps | forward s | value + gradient s | gradient / forward |",
                  "|---|---|---|---|---|---|---|"]
        for scheme, rows in bench.results["gradient"].items():
            for r in rows:
                lines.append(f"| {scheme} | {r['label']} | {r['dofs']:,} × {r['components']} | {r['steps']} | "
                             f"{r['forward_s']:.3f} | {r['value_and_gradient_s']:.3f} | {r['ratio'] - 1:.2f} |")
    if bench.results.get("optimizers"):
        lines += ["", "## L-BFGS against Newton–Krylov", "",
                  "`scripts/bench_optimizers.py` on the \"sl\" config, one rank, the same optimizer-time budget "
                  "each: trust-region Newton-CG with Hessian-vector products by gradient differences (one "
                  "forward and one adjoint each, the cost of a Gauss–Newton product).", "",
                  "| problem | target | method | iterations | gradients | time to target | final test accuracy |",
                  "|---|---|---|---|---|---|---|"]
        for name, o in bench.results["optimizers"].items():
            for method, r in o["methods"].items():
                shown = "—" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.3g} s (it. {r['iterations_to_target']})"
                lines.append(f"| {name} | {o['target']} | {method} | {r['iterations']} | {r['gradients']} | {shown} | "
                             f"{r['final_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-schemes"))
    parser.add_argument("--problems", default="moons,circles,blobs,spirals,peaks")
    parser.add_argument("--quick", action="store_true", help="tiny meshes and few iterations (tests)")
    parser.add_argument("--estimator", default="breast_cancer,digits",
                        help=f"FlowClassifier against an MLP on these of {list(ESTIMATOR_DATA)} ('' for none)")
    parser.add_argument("--estimator-iterations", type=int, default=40)
    parser.add_argument("--estimator-schemes", default="",
                        help="per data set, the schemes to fit, e.g. 'digits=sl' (default: every scheme)")
    parser.add_argument("--optimizers", default="moons,peaks", help="L-BFGS against Newton–Krylov on these ('' for none)")
    parser.add_argument("--optimizer-seconds", type=float, default=120.0)
    parser.add_argument("--gradient-cases", default="box48,peaks13-dg1,peaks13-dg2",
                        help="bench_gradient.py's cases for the gradient/forward table ('' for none)")
    args = parser.parse_args()
    names = [n for n in args.problems.split(",") if n]
    unknown = [n for n in names if n not in learning.PROBLEM_SUITE]
    if unknown:
        parser.error(f"unknown problems {unknown}; choose from {list(learning.PROBLEM_SUITE)}")
    bench = Bench(args.out.resolve(), args.quick, repeats=1)
    bench.results.update(machine=machine.describe(), commit=commit(), command=" ".join(["python -m scripts.bench_schemes"] + sys.argv[1:]))
    python = peer.ensure_peer(bench) if names else None
    run(bench, names, python)
    schemes = {k: v.split("+") for k, v in (item.split("=") for item in args.estimator_schemes.split(",") if item)}
    estimator_cv(bench, [n for n in args.estimator.split(",") if n], args.estimator_iterations, schemes)
    optimizers(bench, [n for n in args.optimizers.split(",") if n], args.optimizer_seconds)
    if args.gradient_cases:
        gradient_ratios(bench, args.gradient_cases)
    bench.finish(report)


if __name__ == "__main__":
    main()
