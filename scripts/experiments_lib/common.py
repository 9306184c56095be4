"""What every section of the experiments needs: configs from the shipped problems, one training
run through the project's own loop, the measures of a trained field, spreads over seeds.

Training runs in this process on ``MPI.COMM_SELF`` (``solver.learn.train.Problem`` and
``train``, exactly what ``python -m solver train`` runs): the runs are small, and many of them
side by side on a shared 2-core machine are better served by one rank each than by mpirun's
start-up per run.
"""

from __future__ import annotations

from mpi4py import MPI

import gc
import json
import logging
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.harness import PROBLEMS, config_with, peer_python, subprocess_env
from solver.config import Config, load_config
from solver.learn.train import Problem, train
from solver.model import characteristics
from solver.model.velocity import VelocityModel
from solver.resnet.net import OutputLayer, depth_table

# Export depths searched for the smallest one whose labels agree with the characteristics.
DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class BackgroundPeer:
    """A torch peer script run in the background on job files, one after the other, while the
    caller trains the FE fields: the caller writes the jobs (``add``: in its own thread, where
    data sets and scikit-learn load), ``start``s, and ``outputs`` waits and reads them.

    Args:
        script: the peer script (``scripts/peer/``), called as ``python SCRIPT JOB --out RESULT``.
        what: the section's name in a failure's message.
    """

    def __init__(self, script: Path, what: str):
        self.script, self.what = script, what
        self.jobs: list[tuple[str, Path, Path]] = []  # (name, job file, result file)
        self.failures: list[str] = []
        self.thread: threading.Thread | None = None

    def add(self, name: str, job: Path, result: Path) -> None:
        self.jobs.append((name, job, result))

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, args=(peer_python(),))
        self.thread.start()

    def _run(self, python: Path) -> None:
        env = subprocess_env()
        for name, job, result in self.jobs:
            done = subprocess.run([str(python), str(self.script), str(job), "--out", str(result)],
                                  env=env, capture_output=True, text=True)
            if done.returncode:
                self.failures.append(f"{name}: {done.stderr[-2000:]}")

    def outputs(self) -> list[tuple[str, dict]]:
        """(name, result JSON) of every job, in order, once all have run; RuntimeError if any failed."""
        self.thread.join()
        if self.failures:
            raise RuntimeError(f"{self.what} (the torch peer) failed: " + "\n".join(self.failures))
        return [(name, json.loads(result.read_text())) for name, _, result in self.jobs]


def problem_config(name: str, changes: dict) -> Config:
    """problems/NAME.toml with ``changes`` ({section: {key: value}}; value None removes the key)
    merged in (``scripts.harness.config_with``), and no VTX/PNG output (the runs are read for
    their numbers and θ only)."""
    source = PROBLEMS / f"{name}.toml"
    changes = {**changes, "output": {"vtx": False, "png": False}}
    field = changes.get("field", {})
    viscosity = field["viscosity"] if "viscosity" in field else load_config(source).field.viscosity
    if (viscosity or 0) > 0 and "scheme" not in changes.get("solver", {}):
        changes["solver"] = {**changes.get("solver", {}), "scheme": "rk3"}  # the resolved "sl" has no viscosity
    return config_with(source, changes)


def field_changes(layers: int, activation: str, slabs: int, width: int | None = None) -> dict:
    """The [field] of a one-layer ("mlp1", no width) or two-layer ("mlp") velocity."""
    if layers == 1:
        return {"kind": "mlp1", "activation": activation, "slabs": slabs, "width": None}
    return {"kind": "mlp", "activation": activation, "slabs": slabs, "width": width}


@dataclass
class Trained:
    """A finished run: its numbers (JSON-ready) and what later measures need."""

    numbers: dict
    model: VelocityModel
    theta: np.ndarray
    A: np.ndarray
    b: np.ndarray
    X: np.ndarray  # all data points (train, then test), in Ω's coordinates
    y: np.ndarray
    test_logits: np.ndarray | None = None  # the PDE's u_h(0, X_test), shape=(n_test, K) (train_run(at=...))
    logits_at: np.ndarray | None = None  # the PDE's u_h(0) at train_run's ``at`` points, shape=(n, K)


def train_run(config: Config, out: Path, at: np.ndarray | None = None) -> Trained:
    """Train ``config`` with the project's loop on one rank into ``out``; the final numbers:
    loss, accuracies (the PDE's and the characteristics'), the final check, time per iteration,
    time steps per solve. With ``at`` (points in Ω, shape=(n, d), inside the mesh) also the
    PDE's final u_h(0, ·) there and at the test points, on the mesh training ended on."""
    comm = MPI.COMM_SELF
    logging.getLogger("solver").setLevel(logging.WARNING)  # no line per iteration
    out.mkdir(parents=True, exist_ok=True)  # the checkpoint goes there
    started = time.perf_counter()
    problem = Problem.build(comm, config)
    outcome = train(comm, problem, out)
    wall = time.perf_counter() - started
    problem, history, check = outcome.problem, outcome.history, outcome.check
    theta, A, b = (np.array(a) for a in problem.J.split(outcome.state.p))
    ds = problem.dataset
    iteration_seconds = [row["seconds"] for row in history[1:]]
    numbers = dict(
        parameters=int(problem.J.n_params), iterations=int(outcome.state.iteration),
        loss=float(history[-1]["loss"]), data_loss=float(history[-1]["data_loss"]),
        train_accuracy=float(history[-1]["train_accuracy"]),
        test_accuracy=float(history[-1]["test_accuracy"]),
        test_accuracy_characteristics=float(check.test.accuracy_characteristics),
        label_agreement=float(check.label_agreement),
        max_logit_difference=float(check.max_logit_difference),
        seconds_per_iteration=float(np.median(iteration_seconds)) if iteration_seconds else float("nan"),
        steps=int(history[-1]["steps"]),
        wall_seconds=wall, loss_curve=[float(row["loss"]) for row in history],
    )
    trained = Trained(numbers, problem.model, theta, A, b,
                      np.concatenate([ds.X_train, ds.X_test]), np.concatenate([ds.y_train, ds.y_test]))
    if at is not None:
        from solver.fem.pointeval import grid_evaluator

        u0 = problem.J.last.u0  # at the final parameters on the final mesh (learn.train.train)
        trained.test_logits = np.stack([problem.test(u) for u in u0], axis=1)
        evaluator = grid_evaluator(problem.solver.V, at)  # off the facets, by a nudge of ~1e-5
        trained.logits_at = np.stack([evaluator(u) for u in u0], axis=1)
    problem.destroy()
    gc.collect()
    return trained


def deformation(model: VelocityModel, theta: np.ndarray, points: int = 40) -> float:
    """∫₀ᵀ max_x |∇v(t, x)|₂ dt: the spectral norm of the Jacobian of v, maximized over a grid
    of ``points`` per direction in Ω, summed over the slabs times their length (v is constant on
    a slab). The Jacobian is taken by central differences (h = 1e-6): v is eq. 2 times the
    cutoff, and this needs no hand-written derivative of χ."""
    domain = model.domain
    grid = domain.grid(points)
    grid = grid[domain.cutoff(grid) > 0]
    h, d = 1e-6, model.dim
    total = 0.0
    times = model.slab_times
    for j in range(model.slabs):
        t = 0.5 * (times[j] + times[j + 1])
        jac = np.empty((len(grid), d, d))
        for i in range(d):
            e = np.zeros(d)
            e[i] = h
            jac[:, :, i] = (model.velocity(theta, t, grid + e) - model.velocity(theta, t, grid - e)) / (2 * h)
        total += (times[j + 1] - times[j]) * float(np.linalg.norm(jac, ord=2, axis=(1, 2)).max())
    return total


def export_depth(trained: Trained, max_points: int = 200) -> dict:
    """The Euler export depth table of a trained field against its characteristics on (up to
    ``max_points`` of) its data points, and the smallest depth from which every deeper one in
    ``DEPTHS`` agrees with the characteristics on 100% of the labels."""
    x0 = trained.X[np.linspace(0, len(trained.X) - 1, min(max_points, len(trained.X))).astype(int)]
    field = trained.model.field(trained.theta)
    q_T = characteristics.flow(field, x0)
    rows = depth_table(trained.model, trained.theta, x0, q_T, list(DEPTHS), "euler",
                       OutputLayer("linear", trained.A, trained.b))
    smallest = None
    for row in reversed(rows):
        if row.label_agreement < 1.0:
            break
        smallest = row.depth
    return dict(depths=[r.depth for r in rows], max_error=[r.max_error for r in rows],
                label_agreement=[r.label_agreement for r in rows], smallest_depth=smallest,
                deformation=deformation(trained.model, trained.theta))


def spread(values: list[float]) -> dict:
    """Mean, standard deviation, min and max of the values over seeds."""
    values = [float(v) for v in values]
    return dict(mean=statistics.fmean(values), std=statistics.pstdev(values) if len(values) > 1 else 0.0,
                min=min(values), max=max(values), values=values)


def pm(s: dict, digits: int = 3) -> str:
    """'mean ± std [min, max]' of a ``spread``."""
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"
