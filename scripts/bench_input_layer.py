"""Data of any dimension (issue 22): the flow with a learned input layer against the fixed projection
and the MLPs, 5-fold cross-validation on scikit-learn's bundled data. One command, one report:

    .venv/bin/python scripts/bench_input_layer.py --out bench-input [--data digits,breast_cancer,diabetes]

Per data set (standardized features; classification: digits 64 features, 10 classes; breast
cancer 30 features, 2 classes; regression: diabetes 10 features), side by side on the same folds:

- ``flow (learned input)``: FlowClassifier / FlowRegressor on all features (the learned input
  layer z = c + s⊙tanh(E x̂ + e) into the 3D box, started by PCA, or LDA with ``--init lda``);
- ``layers alone (no flow)``: the flow's own input and output layers as ``fit`` pretrains them
  before the flow starts (the same restarts; u(0, x) = A z + b): what the flow adds is the
  difference to the row above;
- ``PCA(3) + flow``: the fixed projection, then the flow;
- ``bottleneck MLP``: n → 3 (tanh) → 16 (tanh) → output, the same input width with an MLP in
  place of the flow;
- ``MLP(16)``: the full MLP, n → 16 → output;
- ``logistic regression`` / ``ridge``.

Reports accuracy or R² (mean ± std over the folds), the mean fit time, and for the flows the
share of fits certified (the PDE against the characteristics at the end of training). Writes
``report.md`` and ``results.json`` (with the commit and the machine's load) into ``--out``.
"""

from __future__ import annotations

from mpi4py import MPI  # noqa: F401  (before dolfinx, which the flows load)

import argparse
import json
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from solver import FlowClassifier, FlowRegressor
from solver.config import DataConfig, DomainConfig
from solver.estimator import INPUT_PRETRAIN, INPUT_RESTARTS
from solver.learn.train import pretrain_input
from solver.model.domain import make_domain
from solver.model.input_layer import InputLayer

DATA = {"digits": (datasets.load_digits, "classification"),
        "breast_cancer": (datasets.load_breast_cancer, "classification"),
        "diabetes": (datasets.load_diabetes, "regression")}


class LayersAlone(BaseEstimator):
    """The flow estimator's input layer (into its default 3D box) and output layer, pretrained
    without the flow as its ``fit`` does (``pretrain_input``, the estimator's decay of E,
    ``INPUT_PRETRAIN`` iterations, ``INPUT_RESTARTS`` restarts): u(0, x) = A z + b."""

    def __init__(self, flow=None, init="pca", seed=0, restarts=INPUT_RESTARTS):
        self.flow, self.init, self.seed, self.restarts = flow, init, seed, restarts

    def fit(self, X, y):
        classes = isinstance(self.flow, FlowClassifier)
        domain = make_domain("box", lower=[DomainConfig.lower[0]] * 3, upper=[DomainConfig.upper[0]] * 3)
        self.layer_ = InputLayer.fit(X, domain, DataConfig.margin, constant="ignore")
        if classes:
            self.classes_, targets = np.unique(y, return_inverse=True)
            outputs, loss = len(self.classes_), "cross_entropy"
        else:
            self.mean_, self.std_ = y.mean(), y.std()
            targets, outputs, loss = ((y - self.mean_) / self.std_)[:, None], 1, "squared_error"
        q0 = self.layer_.initial(X, targets if classes else None, self.init)
        self.q_, self.A_, self.b_, _ = pretrain_input(MPI.COMM_SELF, self.layer_, q0, X, targets, outputs, loss,
                                                      self.flow._default_input_decay, INPUT_PRETRAIN,
                                                      self.restarts, seed=self.seed)
        return self

    def _outputs(self, X):
        return self.layer_(self.q_, X) @ self.A_.T + self.b_


class ClassifierAlone(ClassifierMixin, LayersAlone):
    def predict(self, X):
        return self.classes_[np.argmax(self._outputs(X), axis=1)]


class RegressorAlone(RegressorMixin, LayersAlone):
    def predict(self, X):
        return self._outputs(X)[:, 0] * self.std_ + self.mean_


def restart_rows(task: str, init: str, seed: int, sweep: tuple[int, ...]) -> dict:
    """The "layers alone" model with each of the restart counts ``sweep``, by name (factories)."""
    alone = ClassifierAlone if task == "classification" else RegressorAlone
    owner = FlowClassifier if task == "classification" else FlowRegressor
    return {f"layers alone (best of {r})": (lambda r=r: make_pipeline(StandardScaler(), alone(owner(), init, seed, r)))
            for r in sweep}


def models(task: str, iterations: int, init: str, seed: int) -> dict:
    """The models compared, by name: each a factory of a fresh estimator (a pipeline)."""
    flow = dict(iterations=iterations, random_state=seed, input_init=init)
    if task == "classification":
        return {
            "flow (learned input)": lambda: make_pipeline(StandardScaler(), FlowClassifier(**flow)),
            "layers alone (no flow)": lambda: make_pipeline(StandardScaler(), ClassifierAlone(FlowClassifier(), init, seed)),
            "PCA(3) + flow": lambda: make_pipeline(StandardScaler(), PCA(3), FlowClassifier(iterations=iterations, random_state=seed)),
            "bottleneck MLP": lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(3, 16), activation="tanh", max_iter=2000, random_state=seed)),
            "MLP(16)": lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=seed)),
            "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        }
    return {
        "flow (learned input)": lambda: make_pipeline(StandardScaler(), FlowRegressor(**{**flow, "input_init": "pca"})),
        "layers alone (no flow)": lambda: make_pipeline(StandardScaler(), RegressorAlone(FlowRegressor(), "pca", seed)),
        "PCA(3) + flow": lambda: make_pipeline(StandardScaler(), PCA(3), FlowRegressor(iterations=iterations, random_state=seed)),
        "bottleneck MLP": lambda: make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(3, 16), activation="tanh", max_iter=5000, random_state=seed)),
        "MLP(16)": lambda: make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=5000, random_state=seed)),
        "ridge": lambda: make_pipeline(StandardScaler(), Ridge()),
    }


def cross_validate(name: str, task: str, iterations: int, init: str, folds: int, seed: int,
                   only: list[str] | None = None, sweep: tuple[int, ...] = ()) -> dict:
    """Every model (or those named in ``only``) on the same folds: scores, fit seconds,
    certification (flows)."""
    X, y = DATA[name][0](return_X_y=True)
    splitter = (StratifiedKFold if task == "classification" else KFold)(folds, shuffle=True, random_state=seed)
    rows = {}
    chosen = {label: make for label, make in models(task, iterations, init, seed).items() if not only or label in only}
    for label, make in (chosen | restart_rows(task, init, seed, sweep)).items():
        scores, seconds, certified = [], [], []
        for train, test in splitter.split(X, y):
            model = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # UncertifiedWarning is counted below; convergence notes
                started = time.perf_counter()
                model.fit(X[train], y[train])
                seconds.append(time.perf_counter() - started)
            scores.append(float(model.score(X[test], y[test])))
            last = model[-1]
            if hasattr(last, "certified_"):
                certified.append(bool(last.certified_))
        rows[label] = dict(mean=float(np.mean(scores)), std=float(np.std(scores)), scores=scores,
                           fit_seconds=float(np.mean(seconds)),
                           certified=None if not certified else f"{sum(certified)}/{len(certified)}")
        print(f"{name:14s} {label:22s} {rows[label]['mean']:.3f} ± {rows[label]['std']:.3f}  "
              f"{rows[label]['fit_seconds']:7.2f} s  certified {rows[label]['certified']}", flush=True)
    return dict(task=task, samples=len(y), features=X.shape[1], models=rows)


def report(results: dict, meta: dict) -> str:
    lines = ["# Data of any dimension: the learned input layer", "",
             f"Generated by `{meta['command']}` at commit {meta["commit"]} on {meta['machine']} "
             f"(load average at start {meta['load_start']}, at end {meta['load_end']}); "
             f"{meta['folds']}-fold cross-validation, the same folds for every model; flows: "
             f"{meta['iterations']} iterations, input layer started by {meta['init']} and pretrained "
             f"without the flow for {INPUT_PRETRAIN} iterations (the best of {INPUT_RESTARTS} restarts), "
             f"the estimators' other defaults "
             f"(weight decay of θ: FlowClassifier's 1e-2, FlowRegressor's 1e-4; of the input layer's "
             f"E: 1e-3 and 1).", ""]
    for name, r in results.items():
        what = "accuracy" if r["task"] == "classification" else "R²"
        lines += [f"## {name} ({r['samples']} samples, {r['features']} features, {what})", "",
                  f"| model | {what} (mean ± std) | fit time (s) | certified |", "|---|---|---|---|"]
        for label, row in r["models"].items():
            lines.append(f"| {label} | {row['mean']:.3f} ± {row['std']:.3f} | {row['fit_seconds']:.2f} | "
                         f"{row['certified'] or '—'} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", default=",".join(DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--init", default="pca", choices=("pca", "lda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--restarts-sweep", default="", help="comma-separated restart counts: a 'layers alone "
                        "(best of R)' row for each (default: none)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    meta = dict(command="python scripts/bench_input_layer.py " + " ".join(
                    f"--{k} {v!r}" if k == "models" else f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                    if k != "out" and not (k in ("models", "restarts_sweep") and not v)),
                commit=commit, machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                load_start=[round(x, 2) for x in os.getloadavg()], folds=args.folds,
                iterations=args.iterations, init=args.init)
    results = {}
    for name in args.data.split(","):
        results[name] = cross_validate(name, DATA[name][1], args.iterations, args.init, args.folds, args.seed,
                                       [m for m in args.models.split(",") if m],
                                       tuple(int(r) for r in args.restarts_sweep.split(",") if r))
        meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
        (args.out / "results.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
        (args.out / "report.md").write_text(report(results, meta))  # after each data set: nothing lost
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
