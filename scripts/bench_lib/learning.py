"""Section 1, learning: per problem, the PDE route, the neural-ODE peer and a plain MLP.

All three see the same train/test split in Ω coordinates (``solver.learn.train.load_dataset``, as
the training run builds it). The PDE route is the project's command line
(``mpirun -n 2 python -m solver train``); the peer trains the same velocity model from the
same θ with Adam, once with dopri5 and the continuous adjoint and once with fixed-step Euler;
scikit-learn's MLPClassifier is the plain-net baseline. The time to the target accuracy is the
training time (start-up and evaluation off the clock) up to the first iteration whose test
accuracy reaches it.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from scripts.bench_lib import peer
from scripts.bench_lib.common import PROBLEMS, Bench, write_config
from solver.config import load_config
from solver.learn.train import load_dataset

SECTION = "1 learning"

# name: (problem file, target test accuracy, peer Adam iterations, peer learning rate)
PROBLEM_SUITE = {
    "moons": ("moons.toml", 0.98, 200, 0.05),
    "circles": ("circles3d.toml", 0.98, 300, 0.05),
    "spirals": ("spirals.toml", 0.95, 1000, 0.02),
    "blobs": ("blobs.toml", 0.95, 300, 0.05),
    "peaks": ("peaks.toml", 0.90, 2000, 0.02),
}
QUICK_SUITE = ("moons", "circles")
QUICK_PEER = (5, 0.05)  # Adam iterations, learning rate
PDE_RANKS = 2
MLP = dict(hidden_layer_sizes=(32, 32), solver="lbfgs", max_iter=2000, random_state=0)
QUICK_MLP_ITERATIONS = 50


def config_changes(source: Path, quick: bool) -> dict:
    """What the benchmark changes in a problem file: no VTX/PNG output (the run directory is
    only read for its numbers and θ); in quick mode tiny meshes, few points and iterations."""
    changes = {"output": {"vtx": False, "png": False, "animation": False}}
    if quick:
        cells = 4 if load_config(source).dim == 3 else 8
        changes.update(mesh={"cells": cells}, train={"iterations": 5}, data={"points": 200})
    return changes


def mlp_options(quick: bool) -> dict:
    """MLPClassifier's arguments (fewer iterations in quick mode)."""
    return dict(MLP, max_iter=QUICK_MLP_ITERATIONS if quick else MLP["max_iter"])


def peer_schedule(name: str, quick: bool) -> tuple[int, float]:
    """The peer's Adam iterations and learning rate for a problem."""
    return QUICK_PEER if quick else PROBLEM_SUITE[name][2:]


def train_pde(bench: Bench, name: str, config_path: Path, target: float, section: str = SECTION,
              ranks: int = PDE_RANKS) -> dict:
    """The project's training command on ``ranks`` ranks; its metrics.json and history.csv (the
    time to the target, and the test accuracy against the training time for the plot)."""
    run = bench.out / "runs" / name
    bench.progress(section, name, f"PDE: mpirun -n {ranks} python -m solver train")
    process = bench.mpirun(ranks, ["-m", "solver", "train", config_path, "--out", run, "--force"],
                           f"train-{name}")
    metrics = json.loads((run / "metrics.json").read_text())
    iteration, seconds, certified_iteration, certified_seconds, *_ = time_to_target(run, target)
    return dict(cores=ranks, parameters=metrics["parameters"], iterations=metrics["iterations"],
                optimizer=load_config(config_path).train.optimizer, test_accuracy=metrics["test_accuracy"],
                train_accuracy=metrics["train_accuracy"], seconds=metrics["wall_seconds"],
                time_to_target=seconds, iteration_at_target=iteration, process_seconds=process.seconds,
                certified_time_to_target=certified_seconds, certified_iteration_at_target=certified_iteration, peak_rss_bytes=process.peak_rss,
                dofs=metrics["dofs"], mesh_cells=metrics["mesh_cells"], run=str(run.relative_to(bench.out)),
                history=history_curve(run))


def train_peer(bench: Bench, python: Path, name: str, config, dataset, target: float) -> dict:
    """The peer with each method, Adam, on the same data and from the same θ."""
    iterations, lr = peer_schedule(name, bench.quick)
    arrays = dict(X_train=dataset.X_train, y_train=dataset.y_train, X_test=dataset.X_test,
                  y_test=dataset.y_test, **peer.initial_theta(config))
    out = {}
    for method in ("dopri5-adjoint", "euler"):
        bench.progress(SECTION, name, f"peer {method}, {iterations} Adam iterations")
        spec = dict(peer.model_spec(config, dataset.num_classes, method), optimizer="adam", lr=lr,
                    iterations=iterations, seed=config.train.seed, mode="train", target_accuracy=target)
        r = peer.run_job(bench, python, f"learn-{name}-{method}", spec, arrays)
        out[method] = dict(cores=r["threads"], parameters=r["params"]["total"], iterations=r["iterations"],
                           optimizer="adam", lr=lr, euler_steps=spec.get("euler_steps"),
                           test_accuracy=r["test_accuracy"], train_accuracy=r["train_accuracy"],
                           seconds=r["train_time"], time_to_target=r["time_to_target"],
                           iteration_at_target=r["iteration_at_target"],
                           history=[dict(time=h["time"], test_accuracy=h["test_acc"]) for h in r["history"]])
    return out


def train_mlp(bench: Bench, name: str, dataset, target: float) -> dict:
    """scikit-learn's MLPClassifier on one core. It keeps no per-iteration record, so its time
    to the target is the whole fit time if the final accuracy reaches the target (an upper bound)."""
    options = mlp_options(bench.quick)
    bench.progress(SECTION, name, f"scikit-learn MLP {options['hidden_layer_sizes']}, {options['solver']}")
    net = MLPClassifier(**options)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        net.fit(dataset.X_train, dataset.y_train)
        seconds = time.perf_counter() - started
    accuracy = float(net.score(dataset.X_test, dataset.y_test))
    parameters = sum(w.size for w in net.coefs_) + sum(b.size for b in net.intercepts_)
    return dict(cores=1, parameters=int(parameters), iterations=int(net.n_iter_), test_accuracy=accuracy,
                train_accuracy=float(net.score(dataset.X_train, dataset.y_train)), seconds=seconds,
                time_to_target=seconds if accuracy >= target else None, time_to_target_is_bound=True,
                hidden_layer_sizes=list(options["hidden_layer_sizes"]), solver=options["solver"],
                max_iter=options["max_iter"])


def history(run: Path) -> list[dict]:
    """The rows of a training run's history.csv (strings, by column)."""
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def training_clock(rows: list[dict]) -> list[float]:
    """The one clock of a training run: the training seconds up to the end of each history.csv
    row, its optimizer's ``seconds`` plus the certification check's ``check_seconds`` where one
    ran (start-up and output are off the clock)."""
    elapsed, clock = 0.0, []
    for row in rows:
        check = float(row.get("check_seconds") or "nan")
        elapsed += float(row["seconds"]) + (check if math.isfinite(check) else 0.0)
        clock.append(elapsed)
    return clock


def time_to_target(run: Path, target: float) -> tuple:
    """On ``training_clock``: (iteration, seconds) at the first test accuracy >= target, the
    same for the first certification check whose characteristics' test accuracy reaches it with
    the logits within the run's tolerance, total seconds, final test accuracy, final cells."""
    rows = history(run)
    metrics = json.loads((run / "metrics.json").read_text())
    tolerance = metrics.get("tolerance", math.inf)
    hit, certified = (None, None), (None, None)
    for row, elapsed in zip(rows, training_clock(rows)):
        if hit[0] is None and float(row["test_accuracy"]) >= target:
            hit = (int(row["iteration"]), elapsed)
        flow = float(row.get("accuracy_characteristics") or "nan")
        if certified[0] is None and flow >= target and float(row["max_logit_difference"]) <= tolerance:
            certified = (int(row["iteration"]), elapsed)
    total = training_clock(rows)[-1] if rows else 0.0
    return (*hit, *certified, total, float(rows[-1]["test_accuracy"]), metrics["mesh_cells"])


def history_curve(run: Path) -> list[dict]:
    """(training seconds on ``training_clock``, test accuracy) per iteration of a training run."""
    rows = history(run)
    return [dict(time=elapsed, test_accuracy=float(row["test_accuracy"]))
            for row, elapsed in zip(rows, training_clock(rows))]


def run(bench: Bench, peer_python: Path) -> dict:
    """Section 1 for every problem of the suite (two in quick mode); saved after each problem."""
    names = QUICK_SUITE if bench.quick else tuple(PROBLEM_SUITE)
    section = bench.results["learning"] = dict(
        pde_ranks=PDE_RANKS, euler_steps_per_slab=peer.EULER_STEPS_PER_SLAB,
        mlp=mlp_options(bench.quick), problems={})
    for name in names:
        source, target = PROBLEMS / PROBLEM_SUITE[name][0], PROBLEM_SUITE[name][1]
        config_path = write_config(source, bench.out / "configs" / f"{name}.toml", config_changes(source, bench.quick))
        config = load_config(config_path)
        dataset = load_dataset(config, config.domain_object())
        pde = train_pde(bench, name, config_path, target)
        section["problems"][name] = dict(
            source=source.name, config=str(config_path.relative_to(bench.out)), target=target,
            dim=config.dim, classes=dataset.num_classes, n_train=len(dataset.y_train), n_test=len(dataset.y_test),
            width=config.field.width, slabs=config.field.slabs, activation=config.field.activation,
            peer_adam=dict(zip(("iterations", "lr"), peer_schedule(name, bench.quick))),
            pde=pde, peer=train_peer(bench, peer_python, name, config, dataset, target),
            mlp=train_mlp(bench, name, dataset, target),
        )
        bench.progress(SECTION, name, "done")
        bench.save()
    return section
