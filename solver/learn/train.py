"""Learning the velocity field: the supervised problem as the inverse problem of eq. 1.

A run builds the mesh, the data (scaled into Ω), the transport solver and the reduced functional
J(θ, A, b), then iterates an optimizer (L-BFGS or Adam) with the exact discrete gradient. Every
``save_every`` iterations the optimizer state and the history are written atomically to
``checkpoint.npz``; ``resume`` continues from it to the same iterates as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.learn import optimize
from solver.config import Config
from solver.model.data import Dataset, make_dataset
from solver.errors import InputError
from solver.fem.transport import TransportSolver
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import PointEvaluator
from solver.learn.reduced import ReducedFunctional
from solver.model.from_config import velocity_model
from solver.model.velocity import VelocityModel
from solver.rundir import store

log = logging.getLogger("solver")


def load_dataset(config: Config, domain) -> Dataset:
    """The configured data set, scaled into Ω (the same on every rank)."""
    dc = config.data
    try:
        return make_dataset(
            dc.kind, dc.points, noise=dc.noise, seed=dc.seed, test_fraction=dc.test_fraction,
            num_classes=dc.classes, augment_dim=dc.augment_dim, domain=domain, margin=dc.margin,
            **dict(dc.params),
        )
    except InputError as error:
        raise InputError(str(error), source=error.source or config.source) from None


@dataclass
class Problem:
    """Everything a run needs, built collectively from a config."""

    config: Config
    domain: object
    dataset: Dataset
    model: VelocityModel
    solver: TransportSolver
    J: ReducedFunctional
    test: PointEvaluator
    mine: slice  # this rank's share of the data: X[mine]

    @classmethod
    def build(cls, comm: MPI.Comm, config: Config) -> Problem:
        domain = config.domain_object()
        dataset = load_dataset(config, domain)
        if dataset.dim != domain.dim:
            raise InputError(
                f"the data are {dataset.dim}-dimensional but Ω is {domain.dim}-dimensional "
                f"(set data.augment_dim = {domain.dim} or change the domain)", config.source)
        model = velocity_model(config, domain)
        mesh = create_mesh(comm, domain, config.mesh.cells)
        solver = TransportSolver(
            comm, mesh, degree=config.mesh.degree, num_components=dataset.num_classes,
            cfl=config.solver.cfl, dt=config.solver.dt or None,
            # The gradient recomputes stages from checkpoints; 0 ("none") makes no sense here.
            checkpoint_every=config.solver.checkpoint_every or 4,
            stage_memory=config.solver.stage_memory * 2**20,
        )
        mine = slice(comm.rank, None, comm.size)
        J = ReducedFunctional(
            comm, solver, model, dataset.X_train[mine], dataset.y_train[mine], dataset.num_classes,
            loss=config.train.loss, weight_decay=config.train.weight_decay,
            smoothness=config.train.smoothness, kinetic=config.train.kinetic,
            roughness=config.train.roughness,
        )
        test = PointEvaluator(comm, solver.V, dataset.X_test[mine], "data (test points)")
        return cls(config, domain, dataset, model, solver, J, test, mine)

    def accuracy(self, comm: MPI.Comm) -> tuple[float, float]:
        """Train and test accuracy of the latest evaluation (collective)."""
        pred_train = self.J.last.predictions.argmax(axis=1)
        correct_train = int(np.sum(pred_train == self.dataset.y_train[self.mine]))
        test_values = np.stack([self.test(u) for u in self.J.last.u0], axis=1)
        correct_test = int(np.sum(test_values.argmax(axis=1) == self.dataset.y_test[self.mine]))
        n_train, n_test = len(self.dataset.y_train), len(self.dataset.y_test)
        return (comm.allreduce(correct_train) / n_train,
                comm.allreduce(correct_test) / n_test if n_test else float("nan"))


def save_checkpoint(comm: MPI.Comm, path: Path, state: optimize.OptimizerState, history: list[dict]) -> None:
    """Write the optimizer state and the history (checkpoint.npz, history.csv beside it) on
    rank 0 (collective barrier)."""
    if comm.rank == 0:
        store.write_checkpoint(path, state.to_arrays(), history)
        store.write_history(path.parent / store.HISTORY, history)
    comm.Barrier()


def load_checkpoint(path: Path) -> tuple[optimize.OptimizerState, list[dict]]:
    """The optimizer state and the history saved in ``path`` (rank-local)."""
    arrays, history = store.read_checkpoint(path)
    try:
        state = optimize.OptimizerState.from_arrays(arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"cannot resume: not an optimizer state ({type(error).__name__}: {error})", str(path)) from None
    return state, history


def initial_parameters(problem: Problem) -> np.ndarray:
    """The seeded initial (θ, A, b), or those of the run ``train.init`` names (a warm start,
    e.g. from a run on a coarser mesh)."""
    tc = problem.config.train
    J = problem.J
    if tc.init is None:
        return J.initial(tc.seed, problem.config.field.scale)
    path = Path(tc.init)
    if not path.exists():
        raise InputError(f"train.init: {path} does not exist (train that run first)",
                         problem.config.source)
    p = store.read_parameters(path / store.THETA if path.is_dir() else path).p
    if p.shape != (J.n_params,):
        raise InputError(
            f"train.init has {p.size} parameters, this config's field and classes need {J.n_params}",
            str(path))
    return p


def train(comm: MPI.Comm, problem: Problem, out: Path, resume: bool = False) -> tuple[optimize.OptimizerState, list[dict]]:
    """Run the optimizer, logging a line per iteration and checkpointing (collective)."""
    tc = problem.config.train
    J = problem.J
    checkpoint = out / store.CHECKPOINT
    if resume:
        state, history = load_checkpoint(checkpoint)
        if state.p.shape != (J.n_params,):
            raise InputError(f"checkpoint has {state.p.size} parameters, the config needs {J.n_params}", str(checkpoint))
        J.evaluate(state.p)  # the predictions of the restored iterate, for the log
        log.info("resumed at iteration %d (J = %.6g)", state.iteration, state.value)
    else:
        started = time.perf_counter()
        state = optimize.start(J.value_and_gradient, initial_parameters(problem))
        history = [record(comm, problem, state, time.perf_counter() - started)]
        log_line(history[-1])
        save_checkpoint(comm, checkpoint, state, history)

    def callback(state: optimize.OptimizerState, seconds: float) -> None:
        history.append(record(comm, problem, state, seconds))
        log_line(history[-1])
        if state.iteration % tc.save_every == 0 or state.iteration == tc.iterations:
            save_checkpoint(comm, checkpoint, state, history)

    options = dict(memory=tc.memory, max_step=tc.max_step) if tc.optimizer == "lbfgs" else dict(learning_rate=tc.learning_rate)
    state = optimize.run(J.value_and_gradient, state, tc.optimizer, tc.iterations, callback, **options)
    return state, history


def record(comm: MPI.Comm, problem: Problem, state: optimize.OptimizerState, seconds: float) -> dict:
    train_acc, test_acc = problem.accuracy(comm)
    last = problem.J.last
    return dict(iteration=state.iteration, loss=state.value, data_loss=last.data_loss,
                train_accuracy=train_acc, test_accuracy=test_acc,
                gradient_norm=float(np.linalg.norm(state.gradient)), steps=int(sum(last.steps)),
                seconds=seconds, evaluations=state.evaluations)


def log_line(row: dict) -> None:
    log.info(
        "iter %4d  loss %.5f  train %.3f  test %.3f  |g| %.2e  steps %4d  %.2f s",
        row["iteration"], row["loss"], row["train_accuracy"], row["test_accuracy"],
        row["gradient_norm"], row["steps"], row["seconds"],
    )
