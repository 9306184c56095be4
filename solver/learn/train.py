"""Learning the velocity field: the supervised problem as the inverse problem of eq. 1.

A run builds the mesh, the data (scaled into Ω), the transport solver and the reduced functional
J(θ, A, b), then iterates an optimizer (L-BFGS or Adam) with the exact discrete gradient. Every
``save_every`` iterations the optimizer state and the history are written atomically to
``checkpoint.npz``; ``resume`` continues from it to the same iterates as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver import stopping
from solver.learn import certify, optimize
from solver.config import Config
from solver.model.data import Dataset, configured_dataset
from solver.errors import InputError, UnstableSolve
from solver.fem.affine import transported_components
from solver.fem.schemes import make_solver
from solver.fem import refine
from solver.fem.mesh import min_cell_size
from solver.model import characteristics
from solver.fem.pointeval import PointEvaluator
from solver.learn.reduced import ReducedFunctional
from solver.model.from_config import velocity_model
from solver.owned import Owned
from solver.parallel import on_rank0, one_blas_thread, rank_share, shared_out
from solver.model.velocity import VelocityModel
from solver.rundir import store

log = logging.getLogger("solver")

# The final check's raises of the resolution for labels alone (the logits within the tolerance):
# on breast cancer PCA(3) with the semi-Lagrangian scheme on 5³ P2, 9 of 569 labels differed at
# max |Δ| 0.43, all with near-tied logits (scripts/bench_schemes.py --estimator breast_cancer).
AGREEMENT_RAISES = 2


def load_dataset(config: Config, domain=None) -> Dataset:
    """The configured data set, placed in Ω (the same on every rank): ``model.data.configured_dataset``
    (``domain``, if given, must be the config's Ω)."""
    return configured_dataset(config)


@dataclass(frozen=True)
class Checked:
    """Masks over this rank's training and test points: those the certification checks."""

    train: np.ndarray
    test: np.ndarray


def checked_points(dataset: Dataset, limit: int) -> Checked:
    """Masks over all training and test points: those the certification checks (at most
    ``limit`` of each, ``certify.subset``; the same on every rank)."""
    return Checked(certify.subset(len(dataset.y_train), limit), certify.subset(len(dataset.y_test), limit, seed=1))


@dataclass
class Problem(Owned):
    """Everything a run needs, built collectively from a config."""

    config: Config
    domain: object
    dataset: Dataset
    model: VelocityModel
    solver: object  # the scheme's solver (fem/schemes.make_solver)
    J: ReducedFunctional
    test: PointEvaluator
    train_share: slice  # this rank's training points: X_train[train_share] (parallel.rank_share)
    test_share: slice  # and test points
    checked: Checked  # which of this rank's points the certification checks
    resolution: certify.Resolution

    def rebuilt(self, comm: MPI.Comm, resolution: certify.Resolution) -> Problem:
        """The same problem on another resolution; this one's PETSc objects are freed."""
        self.destroy()
        return Problem.build(comm, self.config, resolution, self.dataset)

    def destroy(self) -> None:
        self.J.destroy()
        self.solver.destroy()

    @classmethod
    def build(cls, comm: MPI.Comm, config: Config, resolution: certify.Resolution | None = None,
              dataset: Dataset | None = None, limit: bool = True) -> Problem:
        """Build on ``resolution`` (default the config's mesh cells and degree). Collective.

        ``dataset``: the points in Ω (the same on every rank); default the config's ``[data]``
        (``load_dataset``). ``solver.estimator`` passes the points a user gave as arrays.
        ``limit``: refuse a mesh over ``train.max_dofs`` (an InputError); False for a local
        refinement, whose size is known only once built (``_rebuilt_within_limit``).
        """
        resolution = dataclasses.replace(resolution or certify.Resolution(config.mesh.cells, config.mesh.degree),
                                         space="P" if config.solver.scheme == "sl" else "DG")
        domain = config.domain_object()
        dataset = load_dataset(config, domain) if dataset is None else dataset
        if dataset.dim != domain.dim:
            raise InputError(
                f"the data are {dataset.dim}-dimensional but Ω is {domain.dim}-dimensional "
                f"(set data.augment_dim = {domain.dim} or change the domain)", config.source)
        model = velocity_model(config, domain)
        mesh = refine.mesh_with_marks(comm, domain, resolution.cells, resolution.marks)
        solver = make_solver(mesh, config.solver, degree=resolution.degree,
                             num_components=transported_components(dataset.num_classes, domain.dim),
                             viscosity=config.field.viscosity)
        if limit and solver.num_dofs_global > config.train.max_dofs:
            dofs = solver.num_dofs_global
            solver.destroy()
            raise InputError(
                f"train.max_dofs = {config.train.max_dofs} is below the starting mesh's {dofs} dofs "
                f"per component ({resolution}); raise it or start on a coarser mesh", config.source)
        mine, theirs = rank_share(comm, len(dataset.y_train)), rank_share(comm, len(dataset.y_test))
        layer = dataset.input_layer
        try:
            J = ReducedFunctional(
                solver, model, dataset.X_train[mine] if layer is None else dataset.features_train[mine],
                dataset.y_train[mine], dataset.num_classes,
                loss=config.train.loss, weight_decay=config.train.weight_decay,
                smoothness=config.train.smoothness, kinetic=config.train.kinetic,
                roughness=config.train.roughness, input_layer=layer, input_start=dataset.input_q,
                input_decay=config.input.decay,
            )
        except InputError as error:
            solver.destroy()
            raise InputError(error.message, error.source or config.source) from None
        test = PointEvaluator(solver.V, dataset.X_test[theirs], "data (test points)")
        J.restrict(test)  # only the nodes that the training and test points read
        every = checked_points(dataset, config.train.check_points)
        checked = Checked(every.train[mine], every.test[theirs])
        return cls(config, domain, dataset, model, solver, J, test, mine, theirs, checked, resolution)

    def sync(self) -> None:
        """With a learned input layer: the data set's points (and the test points' evaluator)
        at the input layer of J's latest evaluation (collective; a no-op when they are)."""
        q = self.J.last_input
        if q is None or np.array_equal(q, self.dataset.input_q):
            return
        self.dataset = self.dataset.placed(q)
        self.test = PointEvaluator(self.solver.V, self.dataset.X_test[self.test_share], "data (test points)")

    def test_logits(self) -> np.ndarray:
        """u_h(0) of the latest evaluation at this rank's test points, shape=(n, K) (collective:
        the K components in one message, as the evaluator takes k columns)."""
        return self.test(np.stack([u.x.array for u in self.J.last.u0], axis=1))

    def accuracy(self, comm: MPI.Comm) -> tuple[float, float]:
        """Train and test accuracy of the latest evaluation; NaN for regression targets
        (collective)."""
        self.sync()
        if not certify.is_labels(self.dataset.y_train):
            return float("nan"), float("nan")
        pred_train = self.J.last.predictions.argmax(axis=1)
        correct_train = int(np.sum(pred_train == self.dataset.y_train[self.train_share]))
        correct_test = int(np.sum(self.test_logits().argmax(axis=1) == self.dataset.y_test[self.test_share]))
        n_train, n_test = len(self.dataset.y_train), len(self.dataset.y_test)
        return (comm.allreduce(correct_train) / n_train,
                comm.allreduce(correct_test) / n_test if n_test else float("nan"))


def save_checkpoint(comm: MPI.Comm, path: Path, state: optimize.OptimizerState, history: list[dict],
                    resolution: certify.Resolution) -> None:
    """Write the optimizer state, the resolution and the history (checkpoint.npz, history.csv
    beside it) on rank 0 (collective)."""
    arrays = state.to_arrays()
    arrays["resolution"] = np.array([resolution.cells, resolution.degree])
    for i, level in enumerate(resolution.marks):
        arrays[f"resolution_marks_{i}"] = np.array(level)
    on_rank0(comm, store.write_checkpoint, path, arrays, history)
    on_rank0(comm, store.write_history, path.parent / store.HISTORY, history)


def load_checkpoint(path: Path) -> tuple[optimize.OptimizerState, list[dict], certify.Resolution | None]:
    """The optimizer state, the history and the resolution saved in ``path`` (rank-local); the
    resolution is None in checkpoints written before certified training."""
    arrays, history = store.read_checkpoint(path)
    try:
        resolution = arrays.pop("resolution", None)
        levels = sorted((k for k in arrays if k.startswith("resolution_marks_")), key=lambda k: int(k.rsplit("_", 1)[1]))
        marks = [arrays.pop(k) for k in levels]
        if resolution is not None:
            resolution = certify.Resolution(*(int(v) for v in resolution))
            for level in marks:
                resolution = resolution.with_marks(level)
        state = optimize.OptimizerState.from_arrays(arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"cannot resume: not an optimizer state ({type(error).__name__}: {error})", str(path)) from None
    return state, history, resolution


def initial_parameters(problem: Problem) -> np.ndarray:
    """The seeded initial (θ, A, b), or those of the run ``train.init`` names (a warm start,
    e.g. from a run on a coarser mesh)."""
    tc = problem.config.train
    J = problem.J
    if tc.init is None:
        layer, iterations = problem.dataset.input_layer, problem.config.input.pretrain
        if layer is None or not iterations:
            return J.initial(tc.seed, problem.config.field.scale)
        return pretrained(problem, layer, iterations)
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


# θ's scale after ``input.pretrain``, relative to field.scale: small, so that training starts near
# the pretrained model (the flow nearly the identity). Measured on digits (fold 0 of
# scripts/bench_input_layer.py's, 100 iterations): with θ at field.scale the random flow took the
# start's loss from 0.56 (pretrained) to 0.95, and test accuracy ended at 0.667.
PRETRAINED_THETA_SCALE = 0.1


def pretrain_input(comm: MPI.Comm, layer, q: np.ndarray, X: np.ndarray, targets: np.ndarray, num_outputs: int,
                   loss: str, decay: float, iterations: int, restarts: int = 1,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """``InputLayer.pretrain`` from ``restarts`` seeded starts of A (its arguments), the lowest
    objective kept (the first of equals): (q, A, b, every restart's objective). Collective: the
    restarts are dealt out over the ranks, and every rank gets the same numbers, bit for bit, on
    any number of ranks."""
    fits = shared_out(comm, lambda r: layer.pretrain(q, X, targets, num_outputs, loss, decay, iterations,
                                                     seed=seed, restart=r), restarts)
    values = [fit[3] for fit in fits]
    return (*fits[values.index(min(values))][:3], values)


def pretrained(problem: Problem, layer, iterations: int) -> np.ndarray:
    """The starting p after :func:`pretrain_input` of the input and output layers on all
    training points (``input.restarts`` restarts), θ seeded at PRETRAINED_THETA_SCALE ×
    field.scale (collective over J's communicator)."""
    config, ds, comm = problem.config, problem.dataset, problem.J.comm
    started = time.perf_counter()
    q, A, b, values = pretrain_input(comm, layer, ds.input_q, ds.features_train, ds.y_train, ds.num_classes,
                                     config.train.loss, config.input.decay, iterations, config.input.restarts,
                                     seed=config.train.seed)
    log.info("input layer pretrained without the flow (%d L-BFGS iterations at most; objective %s over %d "
             "restarts, the lowest kept): %.1f s", iterations, " ".join(f"{v:.4g}" for v in values), len(values),
             time.perf_counter() - started)
    theta = problem.model.init(config.train.seed, PRETRAINED_THETA_SCALE * config.field.scale)
    return np.concatenate([theta, A.ravel(), b, q])


def train(comm: MPI.Comm, problem: Problem, out: Path | None, resume: bool = False) -> Outcome:
    """Run the optimizer with certification checks and resolution control (collective).

    Logs a line per iteration, checkpoints every ``train.save_every`` iterations (with the
    resolution the run is on, so that ``resume`` continues on it; none if ``out`` is None, as
    for ``solver.estimator`` without a run directory), checks the PDE against the
    characteristics (ε > 0: the Monte Carlo of the SDE) every ``train.check_every`` iterations
    (``certify.py``) and raises the
    resolution (``Resolution.raised``) when the logits differ by more than
    ``train.refine_above``. At the end the final parameters are checked, raising the
    resolution (a forward solve each) until the logits pass or ``train.max_dofs`` stops it. The checkpoint keeps the resolution training was on, so a
    resumed run with more iterations goes on from there. On return ``J.last`` is at the final
    parameters on the final mesh.
    """
    with one_blas_thread():  # many small products: threads only compete (parallel.one_blas_thread)
        return _train(comm, problem, out, resume)


def _train(comm: MPI.Comm, problem: Problem, out: Path | None, resume: bool, first_of_two: bool = False) -> Outcome:
    """``train``'s loop; ``first_of_two``: the first stage's (``first_stage``), which a stop request
    ends (the run then saves and stops where the second starts)."""
    tc = problem.config.train
    checkpoint = None if out is None else out / store.CHECKPOINT
    if resume:
        state, history, resolution = load_checkpoint(checkpoint)
        if resolution is not None and resolution != problem.resolution:
            problem = problem.rebuilt(comm, resolution)
        if state.p.shape != (problem.J.n_params,):
            raise InputError(f"checkpoint has {state.p.size} parameters, the config needs {problem.J.n_params}", str(checkpoint))
        problem.J.evaluate(state.p)  # the predictions of the restored iterate, for the log
        log.info("resumed at iteration %d (J = %.6g) on %s", state.iteration, state.value, problem.resolution)
        progress = Progress(tc.iterations, state.iteration)
    else:
        progress = Progress(tc.iterations, 0)
        staged = first_stage(comm, problem)
        history, start = [], None
        if staged is not None:  # go on from its last iterate, on all the points: its row is replaced
            with staged.problem:
                history, start = staged.history, staged.state.p
                if staged.problem.resolution != problem.resolution:
                    problem = problem.rebuilt(comm, staged.problem.resolution)
        started = time.perf_counter()
        state = optimize.start(problem.J.value_and_gradient, initial_parameters(problem) if start is None else start)
        if history:
            state = dataclasses.replace(state, iteration=history[-1]["iteration"])
            at_target = problem.accuracy(comm)[1] >= tc.target_accuracy
        try:  # with a target, the start's check certifies nothing the run ends with (unless it starts there)
            first = check(comm, problem, state.p) if tc.target_accuracy is None or (history and at_target) else None
            if history and at_target_but_resolution(tc, first):
                problem, state, first = raise_at_target(comm, problem, state, first)
        except stopping.Interrupted as stop:  # a signal during the first check: the start, unchecked
            first = None
            stopped = stop
        else:
            stopped = None
        seconds = time.perf_counter() - started if not history else history.pop()["seconds"] + time.perf_counter() - started
        history.append(record(comm, problem, state, seconds, first))
        log_line(history[-1], progress, problem.resolution.space)
        if checkpoint is not None:
            save_checkpoint(comm, checkpoint, state, history, problem.resolution)
            if stopped is None and staged is not None and (signum := stopping.requested(comm)):
                stopped = stopping.Interrupted(signum)  # asked during the first stage: stop here, resumable
        if stopped is not None:
            raise stopping.Stopped(stopped.signum, state.iteration, checkpoint)

    result, checked_on, finished = None, None, False
    if not resume and staged is not None and certified_target(tc, first):  # certified where the first stage ended
        result, checked_on, finished = first, problem.resolution, True
        log.info("training ends at iteration %d: the check certifies test accuracy %.4f >= "
                 "train.target_accuracy = %g", state.iteration, first.test.accuracy_characteristics,
                 tc.target_accuracy)
    step, options = stepper(tc)
    while not finished and state.iteration < tc.iterations:
        started = time.perf_counter()
        before = state  # the last complete iteration, what a stop during this one saves
        try:
            state = step(problem.J.value_and_gradient, state, **options)
        except optimize.NoDecrease as stalled:  # e.g. a forced solver.dt caps the field: end here
            log.warning("training ends early: %s", stalled)
            problem.J.evaluate(state.p)  # J.last at the iterate again, for the final check
            break
        seconds = time.perf_counter() - started
        scheduled = state.iteration % tc.check_every == 0
        try:
            wanted = scheduled or state.iteration == tc.iterations or reaches_target(comm, problem, history[-1])
            result = check(comm, problem, state.p) if wanted else None
        except stopping.Interrupted as stop:  # resumed, the step and its check are redone alike
            if checkpoint is not None:
                save_checkpoint(comm, checkpoint, before, history, problem.resolution)
            raise stopping.Stopped(stop.signum, before.iteration, checkpoint) from None
        checked_on = problem.resolution
        history.append(record(comm, problem, state, seconds, result))
        log_line(history[-1], progress, problem.resolution.space)
        done = certified_target(tc, result)
        if not done and at_target_but_resolution(tc, result):
            # The flow classifies the test points as well as the target asks and only the PDE's
            # resolution keeps the check from passing: raise it here (as the final check does)
            # rather than train on (peaks: the logits within 0.5-1.1 of the tolerance at the
            # first iterates at the target; with 10⁶ points 3-6 off at every scheduled check
            # once the flow was there, training on to its end, measured). Where checks are made
            # depends on the history only, so a resumed run raises where this one does.
            problem, state, result = raise_at_target(comm, problem, state, result)
            checked_on = problem.resolution
            history[-1] = record(comm, problem, state, seconds, result)
            done = certified_target(tc, result)
        # Raised past refine_above only on the schedule (the end is the final check's), so that a
        # run stopped and resumed with more iterations takes the same path as an uninterrupted one.
        if scheduled and result.certified_difference > tc.refine_threshold and tc.adapt:
            new = next_resolution(comm, problem, state.p, tc.refine_threshold)
            problem, state = raise_resolution(comm, problem, state, new) or (problem, state)
        if checkpoint is not None and (done or state.iteration % tc.save_every == 0 or state.iteration == tc.iterations):
            save_checkpoint(comm, checkpoint, state, history, problem.resolution)
        if done and checked_on == problem.resolution:
            log.info("training ends at iteration %d: the check certifies test accuracy %.4f >= "
                     "train.target_accuracy = %g", state.iteration, result.test.accuracy_characteristics,
                     tc.target_accuracy)
            break
        if checkpoint is not None and (signum := stopping.requested(comm)):  # SIGINT/SIGTERM: stop here, resumable
            save_checkpoint(comm, checkpoint, state, history, problem.resolution)
            raise stopping.Stopped(signum, state.iteration, checkpoint)
        if first_of_two and stopping.requested(comm):  # the first stage ends; the run saves where the second starts
            log.info("first stage ends at iteration %d: a stop was asked", state.iteration)
            break

    # The last iteration's check, if it had one on the mesh the run ends on.
    same = result is not None and history[-1]["iteration"] == state.iteration and checked_on == problem.resolution
    try:
        final = result if same else check(comm, problem, state.p)
        # The logit error drives the resolution. A label that still disagrees once the logits are
        # within the tolerance lies where the two largest logits are within twice the logit error
        # of each other: a finer mesh narrows that band, but a point on the decision boundary
        # itself stays (measured: 96.7% agreement at max |Δ| 0.29 on 15³ and 0.11 on 23³, the
        # same point). So the labels get AGREEMENT_RAISES raises at most (marking where the
        # logits differ by more than half the largest difference), then it is reported.
        agreement_raises = 0
        while tc.adapt and not final.passed:
            threshold = tc.tolerance
            if final.close:
                if agreement_raises == AGREEMENT_RAISES:
                    break
                agreement_raises += 1
                threshold = final.certified_difference
            if checkpoint is not None and (signum := stopping.requested(comm)):  # between refinements
                raise stopping.Interrupted(signum)
            finer = _rebuilt_within_limit(comm, problem, next_resolution(comm, problem, state.p, threshold))
            if finer is None:
                break
            problem = finer
            log.info("final check: solving on %s (%d dofs per component) ...", problem.resolution,
                     problem.solver.num_dofs_global)
            problem.J.evaluate(state.p)
            final = check(comm, problem, state.p)
            log.info("final check on %s: %s", problem.resolution, describe_check(final))
    except stopping.Interrupted as stop:  # resumed, the final check starts again on this mesh
        if checkpoint is not None:
            save_checkpoint(comm, checkpoint, state, history, problem.resolution)
        raise stopping.Stopped(stop.signum, state.iteration, checkpoint) from None
    problem.J.complete(state.p)  # J.last's u_h(0) at every node, for what follows
    if final.monte_carlo_bound > tc.tolerance / 2:  # the check could not see errors this large
        log.warning("the Monte Carlo's error bound %.3f is more than half train.tolerance = %g: what "
                    "the check certifies is loose; raise train.paths (standard error ~ 1/√paths) or "
                    "train.sde_steps", final.monte_carlo_bound, tc.tolerance)
    return Outcome(problem, state, history, final)


def stepper(tc):
    """The optimizer's step function and its options (``train.optimizer``)."""
    if tc.optimizer == "lbfgs":
        return optimize.lbfgs_step, dict(memory=tc.memory, max_step=tc.max_step)
    return optimize.adam_step, dict(learning_rate=tc.learning_rate)


def first_stage(comm: MPI.Comm, problem: Problem) -> Outcome | None:
    """With ``train.target_accuracy``, test points and more than ``train.subsample`` training
    points: training (checks and raised resolutions included) on a seeded random
    ``train.subsample`` of the training points and all the test points, ended where a check
    certifies the target (or by ``train.iterations``); else None. The run goes on from its
    parameters and resolution on all the points, for the iterations left (collective; the
    outcome's problem is the caller's to destroy).

    Why: an iteration's cost grows with the training points (their evaluation, the loss, Pᵀr)
    while the transport's does not, and the iterations that reach the target barely do
    (docs/benchmarks/hard_target.md)."""
    config, ds = problem.config, problem.dataset
    tc, n = config.train, len(ds.y_train)
    if (tc.target_accuracy is None or not tc.subsample or n <= tc.subsample or not len(ds.y_test)
            or not certify.is_labels(ds.y_train)):  # no accuracy, no target to end the stage
        return None
    keep = np.sort(np.random.default_rng(tc.seed).choice(n, tc.subsample, replace=False))
    subset = dataclasses.replace(
        ds, X_train=ds.X_train[keep], y_train=ds.y_train[keep],
        train_index=None if ds.train_index is None else ds.train_index[keep],
        features_train=None if ds.features_train is None else ds.features_train[keep])
    staged = dataclasses.replace(config, train=dataclasses.replace(tc, subsample=0))
    log.info("first stage: %d of the %d training points (train.subsample)", tc.subsample, n)
    outcome = _train(comm, Problem.build(comm, staged, problem.resolution, subset), None, False, first_of_two=True)
    log.info("first stage ends at iteration %d on %s; on all %d training points from here",
             outcome.state.iteration, outcome.problem.resolution, n)
    return outcome


def reaches_target(comm: MPI.Comm, problem: Problem, previous: dict) -> bool:
    """Whether the iterate just evaluated is the first whose PDE test accuracy reaches
    ``train.target_accuracy`` (the row before it, ``previous``, was below): a check runs there,
    not only on the schedule. It depends only on the history, so a resumed run checks where an
    uninterrupted one does (collective: the accuracy is global)."""
    target = problem.config.train.target_accuracy
    if target is None or previous["test_accuracy"] >= target:
        return False
    return problem.accuracy(comm)[1] >= target


# At most this many raises of the resolution at one check at the target (``raise_at_target``).
TARGET_RAISES = 3


def at_target_but_resolution(tc, result: certify.Check | None) -> bool:
    """Whether a check at ``train.target_accuracy`` failed on the PDE's resolution alone: the
    characteristics' test accuracy reaches the target, the logits are outside the tolerance."""
    return (tc.target_accuracy is not None and tc.adapt and result is not None and not result.passed
            and result.test.accuracy_characteristics >= tc.target_accuracy)


def raise_at_target(comm: MPI.Comm, problem: Problem, state: optimize.OptimizerState,
                    result: certify.Check) -> tuple[Problem, optimize.OptimizerState, certify.Check]:
    """Raise the resolution where the check at the target says (``next_resolution`` at the
    tolerance) and check again, up to ``TARGET_RAISES`` times or until it passes or
    ``train.max_dofs`` stops it; the problem, the state re-evaluated on it and the last check,
    whose seconds count every raise and check (collective)."""
    tc = problem.config.train
    started, spent = time.perf_counter(), result.seconds
    for _ in range(TARGET_RAISES):
        raised = raise_resolution(comm, problem, state, next_resolution(comm, problem, state.p, tc.tolerance))
        if raised is None:
            break
        problem, state = raised
        result = check(comm, problem, state.p)
        if result.passed:
            break
    seconds = spent + comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
    return problem, state, dataclasses.replace(result, seconds=seconds)


def certified_target(tc, result: certify.Check | None) -> bool:
    """Whether a check certifies ``train.target_accuracy``: it passed (logits within the
    tolerance, labels agreeing) and the characteristics classify the test points at least that
    well."""
    return (tc.target_accuracy is not None and result is not None and result.passed
            and result.test.accuracy_characteristics >= tc.target_accuracy)


@dataclass
class Outcome:
    """What a training run ends with: the problem on its final resolution, the optimizer state,
    the history rows and the final certification check."""

    problem: Problem
    state: optimize.OptimizerState
    history: list[dict]
    check: certify.Check


def check(comm: MPI.Comm, problem: Problem, p: np.ndarray, reference: str | None = None) -> certify.Check:
    """The PDE's logits at the training and test points (of the latest evaluation, which must be
    at ``p``) against the characteristics of the field θ, or for ε > 0 against the Monte Carlo
    of its SDE (``certify.py``); ``reference`` (``certify.CHARACTERISTICS`` or ``MONTE_CARLO``)
    overrides that choice (collective)."""
    started = time.perf_counter()
    problem.sync()
    theta, A, b = problem.J.split(p)
    field = problem.model.field(theta)
    ds, mine, theirs, pick = problem.dataset, problem.train_share, problem.test_share, problem.checked
    fe_train = problem.J.last.predictions
    fe_test = problem.test_logits()
    y_train, y_test = ds.y_train[mine][pick.train], ds.y_test[theirs][pick.test]
    if reference is None:
        reference = certify.MONTE_CARLO if problem.config.field.viscosity > 0 else certify.CHARACTERISTICS
    if reference == certify.MONTE_CARLO:
        (m_train, e_train), (m_test, e_test) = monte_carlo_reference(comm, problem, field, A, b)
        train = certify.compare_logits(comm, fe_train[pick.train], m_train, y_train, e_train)
        test = certify.compare_logits(comm, fe_test[pick.test], m_test, y_test, e_test)
    else:
        train = certify.agreement(comm, field, A, b, ds.X_train[mine][pick.train], y_train, fe_train[pick.train])
        test = certify.agreement(comm, field, A, b, ds.X_test[theirs][pick.test], y_test, fe_test[pick.test])
    tc = problem.config.train
    passed = train.within(tc.tolerance, tc.agreement) and test.within(tc.tolerance, tc.agreement)
    seconds = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
    close = train.close(tc.tolerance) and test.close(tc.tolerance)
    return certify.Check(train, test, passed, close, seconds, reference)


def monte_carlo_reference(comm: MPI.Comm, problem: Problem, field, A: np.ndarray,
                          b: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Monte Carlo reference (``certify.monte_carlo``, ``train.paths``, ``train.sde_steps``,
    seeded by ``train.seed``) at this rank's checked training and test points: for each set the
    mean logits and their bound, shape=(n_checked_here, K). It runs over all checked points, so
    a point's paths do not depend on the ranks; each rank keeps its rows. Collective."""
    ds, tc = problem.dataset, problem.config.train
    every = checked_points(ds, tc.check_points)
    sets = certify.monte_carlo(comm, field, problem.domain, A, b, [ds.X_train[every.train], ds.X_test[every.test]],
                               problem.config.field.viscosity, tc.paths, tc.sde_steps, tc.seed)
    mine = []
    for mask, share, (mean, bound) in zip((every.train, every.test), (problem.train_share, problem.test_share), sets):
        start, stop = int(np.sum(mask[: share.start])), int(np.sum(mask[: share.stop]))
        mine.append((mean[start:stop], bound[start:stop]))
    return mine


def raise_resolution(comm: MPI.Comm, problem: Problem, state: optimize.OptimizerState,
                     new: certify.Resolution):
    """The problem on resolution ``new`` and the state re-evaluated there, or None if that would
    exceed ``train.max_dofs`` (collective).

    θ does not live on the mesh, so p carries over unchanged. J and ∇J at p are those of the
    new discretization; the L-BFGS pairs (s, y) are kept: y holds differences of gradients of
    the old discrete J, which approximate the same continuous curvature. Measured
    (``mpirun -n 2 python scripts/bench_lbfgs_memory.py --iterations 40``: circles 3D from 5³ DG1,
    raised to DG2 and then refined locally): final loss 0.00378 with the pairs kept, 0.00502 with
    them dropped at each raise (46 and 44 evaluations; 100% by the flow either way).
    """
    old = problem.resolution
    problem = _rebuilt_within_limit(comm, problem, new)
    if problem is None:
        return None
    try:
        value, gradient = problem.J.value_and_gradient(state.p)
    except UnstableSolve as error:  # a forced solver.dt that the finer mesh's CFL bound breaks
        log.warning("resolution: staying on %s, %s breaks the time step: %s", old, new, error)
        problem = problem.rebuilt(comm, old)
        problem.J.evaluate(state.p)  # J.last at the iterate again
        return None
    state = dataclasses.replace(state, value=value, gradient=gradient, evaluations=state.evaluations + 1)
    log.info("resolution raised to %s (%d dofs per component): J = %.6g", new,
             problem.solver.num_dofs_global, value)
    return problem, state


def next_resolution(comm: MPI.Comm, problem: Problem, p: np.ndarray, threshold: float) -> certify.Resolution:
    """The resolution to raise to where the logits differ by more than ``threshold``: DG2 first
    (``Resolution.raised``), then a local refinement of the cells the characteristics of the
    checked points cross whose logits differ by more than threshold / 2 (``fem/refine.py``);
    with one semi-Lagrangian step from T to 0, the cells holding those points.
    ``J.last`` must be at ``p``. Collective.

    Measured on circles 3D (``scripts/bench_resolution.py``, a field trained 40 iterations on
    9³ DG1): the 10% of the cells with the largest indicator refined once give max |Δ| 0.37
    at 0.68× the cost of a value + gradient on a uniform 15³ mesh (side by side), which gives
    0.42.
    """
    resolution = problem.resolution
    if resolution.degree < 2:
        return resolution.raised()
    problem.sync()
    theta, A, b = problem.J.split(p)
    field = problem.model.field(theta)
    ds, pick = problem.dataset, problem.checked
    X = np.concatenate([ds.X_train[problem.train_share][pick.train], ds.X_test[problem.test_share][pick.test]])
    fe_test = problem.test_logits()
    fe = np.concatenate([problem.J.last.predictions[pick.train], fe_test[pick.test]])
    if getattr(problem.solver, "slabs_per_step", 0) is None:
        # One semi-Lagrangian step from T to 0: the nodes' values are f at their traced ends, so
        # the error of u_h(0, X_i) is the interpolation's in the cell holding X_i, not along its
        # path (fem/semilagrangian.py): the "tube" is that cell.
        samples = 2
    else:
        # Samples a quarter of the smallest cell apart along the fastest path.
        speed = max(float(np.max(np.abs(field(t, X)), initial=0.0)) for t in np.linspace(0.0, field.T, 2 * problem.model.slabs + 1))
        samples = int(np.ceil(4 * field.T * comm.allreduce(speed, op=MPI.MAX) / min_cell_size(problem.solver.mesh))) + 8
    paths = characteristics.trajectories(field, X, np.linspace(0.0, field.T, samples))
    if problem.config.field.viscosity > 0:
        # ε > 0: the error of the Monte Carlo check (what lies beyond its bound), but still along
        # the inviscid path q(·; X_i). The error of u_h(0, X_i) is then made where the SDE's paths
        # go, a tube of width ~√(2εT) about a mean path that differs from q by O(ε); for the ε
        # that the explicit solver affords (≤ 1e-2: √(2εT) ≤ 0.14 for T = 1, less than a cell of
        # 12² on [-1, 1]²) the cells along q are the middle of that tube. Widening the tube would mark cells whose
        # share of the transition density is small, and DG2 comes first anyway.
        (m_train, e_train), (m_test, e_test) = monte_carlo_reference(comm, problem, field, A, b)
        errors = certify.excess(fe, np.concatenate([m_train, m_test]), np.concatenate([e_train, e_test]))
    else:
        errors = np.max(np.abs(fe - (paths[-1] @ A.T + b)), axis=1, initial=0.0)
    if samples == 2:
        paths = paths[:1]
    paths = np.concatenate(comm.allgather(paths), axis=1)
    errors = np.concatenate(comm.allgather(errors))
    indicator = refine.tube_indicator(problem.solver.mesh, paths, errors)
    marks = refine.marked_midpoints(problem.solver.mesh, indicator, threshold / 2)
    if len(marks) == 0:  # cannot happen while some point is off by more than threshold
        return resolution.raised()
    return resolution.with_marks(marks)


def _rebuilt_within_limit(comm: MPI.Comm, problem: Problem, new: certify.Resolution) -> Problem | None:
    """``problem`` on ``new`` (``problem`` destroyed), or None (``problem`` kept) if ``new`` has
    more than ``train.max_dofs`` dofs per component. Collective."""
    tc = problem.config.train
    old = problem.resolution
    if new.cells == old.cells and new.degree == old.degree:
        # A local refinement: its size is known once built (at most 2^d times the mesh), so it
        # is built without build's own max_dofs refusal and dropped here if too large.
        finer = Problem.build(comm, problem.config, new, problem.dataset, limit=False)
        if finer.solver.num_dofs_global <= tc.max_dofs:
            problem.destroy()
            return finer
        dofs = finer.solver.num_dofs_global
        finer.destroy()
    else:
        dofs = problem.solver.num_dofs_global * old.dofs_ratio(new, problem.domain.dim)
        if dofs <= tc.max_dofs:
            return problem.rebuilt(comm, new)
    log.info("resolution: %s would have about %d dofs per component, over train.max_dofs = %d; "
             "staying on %s", new, dofs, tc.max_dofs, old)
    return None


def record(comm: MPI.Comm, problem: Problem, state: optimize.OptimizerState, seconds: float,
           result: certify.Check | None = None) -> dict:
    train_acc, test_acc = problem.accuracy(comm)
    last = problem.J.last
    nan = float("nan")
    return dict(iteration=state.iteration, loss=state.value, data_loss=last.data_loss,
                train_accuracy=train_acc, test_accuracy=test_acc,
                gradient_norm=float(np.linalg.norm(state.gradient)), steps=int(sum(last.steps)),
                seconds=seconds, evaluations=state.evaluations,
                cells=problem.resolution.cells, degree=problem.resolution.degree,
                refinements=len(problem.resolution.marks),
                max_logit_difference=result.max_logit_difference if result else nan,
                label_agreement=result.label_agreement if result else nan,
                accuracy_characteristics=result.test.accuracy_characteristics if result else nan,
                check_seconds=result.seconds if result else nan,
                monte_carlo_bound=result.monte_carlo_bound if result else nan)


def describe_check(result: certify.Check) -> str:
    if result.passed:
        verdict = "(within tolerance)"
    elif result.close:  # the logits are within it: labels flip only on the decision boundary
        verdict = "(logits within train.tolerance, label agreement below train.agreement)"
    else:
        verdict = "(OUTSIDE tolerance)"
    if result.reference == certify.MONTE_CARLO:
        checked = [a.certified_agreement for a in (result.train, result.test) if a.points]
        resolved = min(checked, default=float("nan"))
        return (f"PDE vs Monte Carlo: labels agree {100 * result.label_agreement:.1f}% "
                f"({100 * resolved:.1f}% with those the Monte Carlo cannot decide), max logit difference "
                f"{result.max_logit_difference:.3f}, Monte Carlo bound {result.monte_carlo_bound:.3f}, "
                f"beyond it {result.certified_difference:.3f} {verdict}")
    return (f"PDE vs characteristics: labels agree {100 * result.label_agreement:.1f}%, "
            f"max logit difference {result.max_logit_difference:.3f} {verdict}")


class Progress:
    """The iteration count, elapsed time and ETA of the log lines: the ETA is this session's
    mean time per iteration (from ``first``, where it started or resumed) times those left."""

    def __init__(self, total: int, first: int):
        self.total, self.first, self.started = total, first, time.perf_counter()

    def describe(self, iteration: int) -> str:
        elapsed = time.perf_counter() - self.started
        done, left = iteration - self.first, max(self.total - iteration, 0)
        eta = f", ETA {_duration(elapsed / done * left)}" if done > 0 and left else ""
        return f"{_duration(elapsed)} elapsed{eta}"


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def log_line(row: dict, progress: Progress | None = None, space: str = "DG") -> None:
    """One iteration's line: ``iter 12/100``, loss, accuracies (test only if there are test
    points), |g|, time steps, seconds, elapsed and ETA; at a check, the flow's numbers."""
    total = f"/{progress.total}" if progress is not None else ""
    test = "" if not np.isfinite(row["test_accuracy"]) else "  test %.3f" % row["test_accuracy"]
    line = ("iter %4d%s  loss %.5f  train %.3f%s  |g| %.2e  steps %4d  %.2f s" % (
        row["iteration"], total, row["loss"], row["train_accuracy"], test,
        row["gradient_norm"], row["steps"], row["seconds"]))
    if progress is not None:
        line += f" ({progress.describe(row['iteration'])})"
    if np.isfinite(row["max_logit_difference"]):
        local = f" + {int(row['refinements'])} local" if row.get("refinements", 0) > 0 else ""
        bound = row.get("monte_carlo_bound", float("nan"))
        accuracy = row["accuracy_characteristics"]
        line += "  | %s:%s agree %.1f%%, max Δ %.2f%s (%s%d, %d cells%s)" % (
            "flow" if not np.isfinite(bound) else "Monte Carlo",
            " test %.3f," % accuracy if np.isfinite(accuracy) else "", 100 * row["label_agreement"],
            row["max_logit_difference"], "" if not np.isfinite(bound) else ", its bound %.2f" % bound,
            space, row["degree"], row["cells"], local)
    log.info("%s", line)
