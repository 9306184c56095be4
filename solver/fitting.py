"""Training from a problem as one call: ``fit(config, out)`` is ``python -m solver train``.

The command line's ``train`` calls ``fit`` and only turns its errors into messages and exit
statuses: the guards, the run directory, the signal handling and the outputs are here, once.
Everything that can fail on the inputs (the problem, the size and time guards, the data,
``train.init``, the checkpoint to resume from) is checked before the run directory is made or
replaced, and before dolfinx is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver import guards, stopping
from solver.config import TRAIN_SECTIONS, Config, config_from_dict, load_config
from solver.errors import InputError, UnstableSolve
from solver.parallel import on_rank0
from solver.rundir import store

log = logging.getLogger("solver")

# What a resumed run may change: how far it goes and what it writes; the rest is the run's.
RESUMABLE_KEYS = {("train", "iterations"), ("train", "save_every"), ("output", "vtx"), ("output", "png"),
                  ("output", "animation"), ("output", "frames")}


@dataclass
class FitOutcome:
    """What ``fit`` ends with. It holds no PETSc object: the mesh and the solver are released
    before ``fit`` returns.

    Attributes:
        out: the run directory written, or None (``fit(config)`` writes nothing).
        config: the resolved problem.
        dataset: the training and test points in Ω (``model.data.Dataset``; ``dataset.scaling``
            maps data coordinates into Ω).
        state: the optimizer's final state (``state.p`` = (θ, A.ravel(), b, q)).
        history: one dict per iteration (the columns of history.csv).
        check: the final certification (``learn.certify.Check``).
        resolution: the mesh training ended on (``learn.certify.Resolution``).
        metrics: the run's summary, as metrics.json holds it (docs/outputs.md).
    """

    out: Path | None
    config: Config
    dataset: object
    state: object
    history: list[dict]
    check: object
    resolution: object
    metrics: dict

    @property
    def certified(self) -> bool:
        """Whether the PDE and the characteristics agreed at the end (``metrics["certified"]``)."""
        return bool(self.metrics["certified"])

    @property
    def parameters(self) -> np.ndarray:
        """p = (θ, A.ravel(), b, q) at the end, shape=(n_params,)."""
        return self.state.p


def fit(config: str | Path | Config | Mapping | None, out: str | Path | None = None, *,
        comm: MPI.Comm | None = None, force: bool = False, resume: bool = False,
        wording: str = "api") -> FitOutcome:
    """Learn the velocity field of ``config``; with ``out``, write the run directory that
    ``python -m solver train CONFIG --out OUT`` writes (it calls this). Collective over ``comm``.

    Args:
        config: a problem file (its path), a ``solver.config.Config``, or a dict of sections as
            the TOML file holds them (``{"data": {"kind": "moons"}, ...}``); None only with
            ``resume`` (the run's own config.toml).
        out: the run directory (config.toml, theta.npz, checkpoint.npz, history.csv,
            metrics.json and the configured pictures). None: nothing is written, there is no
            checkpoint, and SIGINT interrupts as in any Python program.
        comm: the communicator (default ``MPI.COMM_WORLD``: like ``FlowClassifier``, ``fit`` is
            where a program starts).
        force: replace an existing run directory (only one this solver made, never one holding
            an input).
        resume: continue the run in ``out`` from its checkpoint; ``config``, if given, may differ
            from the run's only in ``RESUMABLE_KEYS``.
        wording: how the refusals of ``out``, ``force`` and ``resume`` name the options: "api"
            (``out=``, ``force=True``, ``resume=True``) or "cli" (``--out``, ``--force``,
            ``--resume``: the command line's); ``rundir.files.WORDING``.

    With ``out``, SIGINT and SIGTERM stop training at the next safe point (``solver.stopping``):
    the checkpoint is written and ``stopping.Stopped`` raised; ``fit(config, out, resume=True)``
    continues. The handlers are those of before when ``fit`` returns.

    Raises:
        InputError: bad input (the problem, a guard, the data, ``train.init``, the checkpoint, the
            run directory, an unstable solve at the start), alike on every rank.
    """
    if wording not in ("api", "cli"):
        raise ValueError(f'wording: "api" or "cli", got {wording!r}')
    comm = MPI.COMM_WORLD if comm is None else comm
    out = None if out is None else Path(out)
    if resume and out is None:
        raise InputError("resume needs the run directory to continue (out)")
    if config is None and not resume:
        raise InputError("fit needs a problem: a problem file, a Config or a dict (or resume=True)")
    problem_file = Path(config) if isinstance(config, (str, Path)) else None
    if isinstance(config, Config) and Path(config.source).is_file():  # loaded from a file: an input too
        problem_file = Path(config.source)
    if resume:
        config = _resume_config(comm, out, config, wording)
        arrays, _ = store.read_checkpoint(out / store.CHECKPOINT)  # readable, finite: before the mesh
    else:
        config = _config(config)
        if out is not None:
            _refuse(comm, out, force, _inputs(problem_file, config), wording)
    guards.check_data(comm, config)
    init = _init_parameters(config)
    n_theta = guards.n_theta(config)
    guards.check_train(comm, config, config.data.classes or 2, None if init is None else init[:n_theta])
    dataset = _dataset(config)
    n_params = (n_theta + dataset.num_classes * (config.dim + 1)
                + (0 if dataset.input_layer is None else dataset.input_layer.n_params))
    if resume:
        store.check_checkpoint(arrays, n_params, str(out / store.CHECKPOINT))
    if init is not None and init.shape != (n_params,):
        raise InputError(f"train.init has {init.size} parameters, this config's field, classes and input "
                         f"layer need {n_params}", _init_file(config))
    if out is not None and not resume:
        from solver.rundir.files import prepare_run_directory

        out = prepare_run_directory(comm, out, force, _inputs(problem_file, config), wording)
        on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml(TRAIN_SECTIONS))
    # On a checkpoint's schedule only: without one a stop request could not be honoured.
    handlers = (stopping.install() if out is not None and threading.current_thread() is threading.main_thread()
                else None)
    try:
        return _train(comm, config, dataset, out, resume)
    finally:
        if handlers is not None:
            stopping.uninstall(handlers)


def _train(comm: MPI.Comm, config: Config, dataset, out: Path | None, resume: bool) -> FitOutcome:
    """Build, train, write the outputs and log the summary (collective); the problem is released."""
    from solver.learn import train as training  # dolfinx from here on; looked up at each call
    from solver.learn.certify import advice
    from solver.model.data import describe
    from solver.rundir.outputs import training_metrics, write_training_outputs

    started = time.perf_counter()
    problem = training.Problem.build(comm, config, dataset=dataset)  # the data generated once, not twice
    log.info("%s", describe(problem.dataset))
    log.info(
        "train: %d parameters (%d velocity, %d output%s), mesh %d cells/direction, %s%d, %d dofs x %d, "
        "%s, %d iterations, %d ranks",
        problem.J.n_params, problem.J.n_theta, problem.J.n_output,
        f", {problem.J.n_input} input layer" if problem.J.n_input else "",
        config.mesh.cells, "P" if config.solver.scheme == "sl" else "DG", config.mesh.degree,
        problem.solver.num_dofs_global, problem.solver.num_components, config.train.optimizer,
        config.train.iterations, comm.size,
    )
    try:
        outcome = training.train(comm, problem, out, resume=resume)
    except UnstableSolve as error:  # not a trial point (those are backed off from): the start
        problem.destroy()
        raise InputError(f"unstable solve: {error.message}; lower solver.dt (or remove it), "
                         f"solver.cfl or field.scale", config.source) from None
    with outcome.problem:
        if out is not None and (signum := stopping.requested(comm)):  # during the final check: all is saved
            raise stopping.Stopped(signum, outcome.state.iteration, out / store.CHECKPOINT)
        metrics = write_training_outputs(comm, outcome, out) if out is not None else training_metrics(comm, outcome)
    log.info(
        "trained: loss %.5f, train accuracy %.4f, test accuracy %.4f (PDE on %s; %s: %.4f), "
        "%d iterations, %.1f s%s",
        metrics["final_loss"], metrics["train_accuracy"], metrics["test_accuracy"],
        outcome.problem.resolution, "the flow" if outcome.check.reference == "characteristics" else
        "its Monte Carlo", metrics["check"]["test"]["accuracy_characteristics"],
        metrics["iterations"], time.perf_counter() - started, "" if out is None else f" -> {out}",
    )
    if metrics["certified"]:
        log.info("certified: %s", training.describe_check(outcome.check))
    else:
        tc = config.train
        log.info("NOT CERTIFIED: %s (train.tolerance = %g, train.agreement = %g); the numbers above "
                 "are the PDE's on %s, not the learned flow's; see metrics.json 'check'. What to do: %s",
                 training.describe_check(outcome.check), tc.tolerance, tc.agreement,
                 outcome.problem.resolution, advice(outcome.check, tc.adapt, tc.tolerance, metrics["dofs"]))
    return FitOutcome(out, config, outcome.problem.dataset, outcome.state, outcome.history, outcome.check,
                      outcome.problem.resolution, metrics)


def _config(config: str | Path | Config | Mapping) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config)
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise InputError(f"config: a problem file's path, a Config or a dict, got {type(config).__name__}")


def _inputs(problem_file: Path | None, config: Config) -> list[Path]:
    """The files a run reads: its problem file, data file, ``train.init`` and points file."""
    paths = [problem_file, config.data.params.get("path"), config.train.init, config.compare.points_file]
    return [Path(p) for p in paths if p]


def _refuse(comm: MPI.Comm, out: Path, force: bool, inputs: list[Path], wording: str) -> None:
    """InputError if ``out`` may not become this run's directory (``rundir.files``), checked before
    the inputs are read in full (collective)."""
    from solver.rundir.files import refuse_run_directory

    reason = on_rank0(comm, refuse_run_directory, out, force, tuple(inputs), wording)
    if reason:
        raise InputError(reason, str(out))


def _resume_config(comm: MPI.Comm, out: Path, given, wording: str) -> Config:
    """The config of the run in ``out`` to resume, or ``given`` if it differs only in
    ``RESUMABLE_KEYS`` (then written into the run); the run's stale temporary files removed.
    ``wording``: the caller's (``rundir.files.WORDING``), how the refusals name the options."""
    from solver.rundir.files import WORDING, remove_temporaries

    say = WORDING[wording]
    path = out / store.CONFIG
    if out.is_symlink():
        raise InputError(f"is a symbolic link; {say['resuming']} continues a run directory given as itself",
                         str(out))
    if not path.is_file():
        raise InputError(f"{say['resuming']} needs a run directory with {store.CONFIG} (is this a run?)", str(out))
    config = load_config(path)
    for name in on_rank0(comm, remove_temporaries, out):
        log.info("removed %s, left by a write that was killed", out / name)
    if given is None:
        return config
    given = _config(given)
    run, new = config.to_dict(TRAIN_SECTIONS), given.to_dict(TRAIN_SECTIONS)
    differences = [(section, key, run[section].get(key), new[section].get(key))
                   for section in run.keys() | new.keys()
                   for key in run.get(section, {}).keys() | new.get(section, {}).keys()
                   if run.get(section, {}).get(key) != new.get(section, {}).get(key)]
    refused = sorted(d for d in differences if d[:2] not in RESUMABLE_KEYS)
    if refused:
        listed = "; ".join(f"{s}.{k} = {a!r} in the run, {b!r} here" for s, k, a, b in refused[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        raise InputError(f"differs from the config of the run {path}: {listed}{more}; {say['resuming']} continues "
                         f"that run as it was (only {', '.join(sorted(f'{s}.{k}' for s, k in RESUMABLE_KEYS))} "
                         f"may change): {say['keep']}, or {say['new_run']}", given.source)
    if differences:
        on_rank0(comm, store.write_config, path, given.to_toml(TRAIN_SECTIONS))
        log.info("resume with %s", ", ".join(f"{s}.{k} = {b!r}" for s, k, _, b in sorted(differences)))
    return given


def _dataset(config: Config):
    """The configured data set, placed in Ω (``model.data.configured_dataset``, without dolfinx)."""
    from solver.model.data import configured_dataset

    dataset = configured_dataset(config)
    if dataset.dim != config.dim:
        raise InputError(f"the data are {dataset.dim}-dimensional but Ω is {config.dim}-dimensional "
                         f"(set data.augment_dim = {config.dim} or change the domain)", config.source)
    return dataset


def _init_file(config: Config) -> str:
    path = Path(config.train.init)
    return str(path / store.THETA if path.is_dir() else path)


def _init_parameters(config: Config) -> np.ndarray | None:
    """p of the run ``train.init`` names (read, finite, at least θ's length), or None."""
    if config.train.init is None:
        return None
    if not Path(config.train.init).exists():
        raise InputError(f"train.init: {config.train.init} does not exist (train that run first)", config.source)
    p = store.read_parameters(_init_file(config)).p
    if p.size < guards.n_theta(config):
        raise InputError(f"train.init has {p.size} parameters, this config's field alone needs "
                         f"{guards.n_theta(config)}", _init_file(config))
    return p
