"""``FlowClassifier`` and ``FlowRegressor``: the flow model as scikit-learn estimators (fit,
predict, pipelines, CV).

It is the command line's ``train`` for points given as arrays: the parameters are the problem
file's keys (``PARAMETERS`` says which section each belongs to; the defaults are the config
dataclasses'), ``fit`` scales X into Ω as the CSV route does (``model.data.place_in_domain``,
fitted on the training points), trains with certification (``learn.train``) and keeps θ, A, b,
the scaling and the certificate; nothing is written unless ``fit(..., run_dir=...)`` is asked.

Prediction is by the characteristics: u(0, x) = f(q(T; x)) (eq. 6), DOP853 at 1e-10
(``model.characteristics``). Why not the PDE on the final certified mesh: the learned model is
the velocity field, and the FE solution u_h(0, ·) approximates its flow; training certifies that
the two agree (logits within ``tolerance``, labels on ``agreement`` of the points) on the points
it saw, but a new point may sit where the mesh resolves the flow less well. The characteristics
give the model's own value at any point, need no mesh (a loaded estimator predicts without
dolfinx), give the same numbers on any number of ranks, and are what the exported ResNet
converges to. The PDE's numbers on the training points stay in ``metrics_`` (``train_accuracy``
beside ``check``), as in a run's metrics.json.

Any number of features: data with more features than Ω has dimensions go through a learned
input layer z = c + s ⊙ tanh(E x̂ + e) (``model/input_layer.py``), trained with the flow; every
point then lands inside Ω.

Outside Ω (a new point beyond the training data's range by more than ``margin`` allows) the
cut-off velocity χ·v, which vanishes on ∂Ω, is continued by zero: such points do not move and get
the output layer's logits f(x) = A x + b; a warning says how many there were.

MPI: every rank calls ``fit`` (and ``predict``) with the same data; training is collective over
``comm`` (default ``MPI.COMM_WORLD``: like the command line, an estimator is where a program
meets the library), and every rank returns the same predictions.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from mpi4py import MPI
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_regressor
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from solver import guards
from solver.config import (
    ACTIVATIONS,
    SCHEMES,
    DataConfig,
    DomainConfig,
    FieldConfig,
    SolverConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from solver.errors import FacetWarning, InputError, OutsideDomainWarning, UncertifiedWarning, UnstableSolve
from solver.learn.optimize import OPTIMIZERS
from solver.model import characteristics
from solver.model.activations import softmax
from solver.model.domain import DOMAIN_KINDS
from solver.model.losses import LOSSES
from solver.model.data import Scaling, augment, make_dataset, place_in_domain, write_csv
from solver.model.from_config import velocity_model
from solver.model.input_layer import INPUT_INITS, InputLayer
from solver.parallel import agreed, on_rank0
from solver.rundir import store

from solver.parallel import check_same, one_outcome_method  # one rank's fault is every rank's (issue 25)

log = logging.getLogger("solver")

# The estimator's parameters: (section, key) of the problem file each one sets.
PARAMETERS = {
    "domain": ("domain", "kind"),
    "cells": ("mesh", "cells"),
    "degree": ("mesh", "degree"),
    "width": ("field", "width"),
    "activation": ("field", "activation"),
    "slabs": ("field", "slabs"),
    "T": ("field", "T"),
    "scale": ("field", "scale"),
    "loss": ("train", "loss"),
    "weight_decay": ("train", "weight_decay"),
    "smoothness": ("train", "smoothness"),
    "kinetic": ("train", "kinetic"),
    "roughness": ("train", "roughness"),
    "optimizer": ("train", "optimizer"),
    "iterations": ("train", "iterations"),
    "learning_rate": ("train", "learning_rate"),
    "max_step": ("train", "max_step"),
    "random_state": ("train", "seed"),
    "check_every": ("train", "check_every"),
    "tolerance": ("train", "tolerance"),
    "target_accuracy": ("train", "target_accuracy"),
    "validation_fraction": ("data", "test_fraction"),
    "agreement": ("train", "agreement"),
    "adapt": ("train", "adapt"),
    "max_dofs": ("train", "max_dofs"),
    "cfl": ("solver", "cfl"),
    "scheme": ("solver", "scheme"),
    "margin": ("data", "margin"),
    "augment_dim": ("data", "augment_dim"),
    "input_dim": ("input", "dim"),
    "input_init": ("input", "init"),
    "input_decay": ("input", "decay"),
    "input_pretrain": ("input", "pretrain"),
    "input_restarts": ("input", "restarts"),
}
# A problem-file key in a message from the library (``mesh.cells``) -> the estimator's parameter.
_KEYS = {f"{section}.{key}": name for name, (section, key) in PARAMETERS.items()}
_KEY_PATTERN = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(_KEYS, key=len, reverse=True)) + r")\b")
DATA_FILE = "data.csv"  # the training points, in a run directory that fit writes
# The estimators' input.pretrain: L-BFGS iterations of the learned input layer and the output
# layer without the flow before training. Measured on digits (fold 0 of
# scripts/bench_input_layer.py's folds, one start): 0.850 in 9.1 s with 50 flow iterations after
# it, against 0.825 in 74 s with 200 iterations and no pretraining.
INPUT_PRETRAIN = 1000
# The estimators' input.restarts: that pretraining from as many seeded starts of A, the lowest
# objective kept, dealt out over the ranks. Digits through a 3D box has many local minima (fold 0:
# test accuracy 0.819–0.897 across the starts); the layers alone over 5 folds, best of 1, 2, 4, 8,
# 16: 0.846, 0.860, 0.854, 0.881, 0.874, and the flow after the best of 8: 0.885 against the
# bottleneck MLP's 0.864 (docs/experiments/input-layer/report.md).
INPUT_RESTARTS = 8


class _FlowEstimator(BaseEstimator):
    """What ``FlowClassifier`` and ``FlowRegressor`` share: the parameters, fit with certification,
    prediction by the characteristics, run directories.

    Every parameter is a key of the problem file (``PARAMETERS``: ``cells`` is ``mesh.cells``,
    ``iterations`` is ``train.iterations``, ``random_state`` is ``train.seed``, ...), with the
    same default, checked at ``fit`` (scikit-learn's ``_parameter_constraints``, then the problem
    file's own checks); an error names the parameter. ``loss``, ``tolerance`` and
    ``weight_decay`` left at None take the estimator's own (a classifier's cross-entropy, logit
    tolerance 0.5 and weight decay 1e-2, a regressor's squared error, 0.05 standard deviations of
    the targets and the problem file's weight decay 1e-4). X has any number of
    features: Ω is a box (``domain="box"``, [-1, 1]^D), a disk or a ball, D = ``input_dim``,
    ``augment_dim`` or the number of features (at least 2, at most 3); fewer features than D are
    padded with zero coordinates (``data.augment_dim``), more go through the learned input layer
    (``[input]``, started by ``input_init``: "pca" or "lda"; ``input_decay``, the weight of
    |E|², left at None takes the estimator's own: a classifier's 1e-3, a regressor's 1;
    ``input_pretrain``: L-BFGS iterations fitting the input and output layers without the flow
    before training, ``INPUT_PRETRAIN``, the best of ``input_restarts`` starts, ``INPUT_RESTARTS``). ``cells`` and ``degree`` left at None take the starting mesh of Ω's
    dimension and the scheme (``config.DEFAULT_MESH``: for the default ``scheme="sl"`` 16² P2 in
    2D, 5³ P2 in 3D); training raises it where
    the certification check asks (``adapt``), up to ``max_dofs``.

    ``target_accuracy`` (a classifier's; default None: all ``iterations``) ends training at the
    first check that certifies that accuracy on the ``validation_fraction`` of X held out for it
    (a stratified split seeded by ``random_state``; default 0: every point trains), as
    ``train.target_accuracy`` does on a problem file's test points; with more training points
    than ``train.subsample`` it trains on a subset first (``learn/train.py``, ``first_stage``).

    ``random_state``: an int (the seed of the initial θ and output layer), None or a
    ``RandomState`` (a seed drawn from it on rank 0, the same on every rank). ``seed`` is its
    old name: deprecated, it still works with a FutureWarning.

    Cross-validation: leave ``n_jobs`` at None (one process). Each worker of ``n_jobs=2`` is a
    fresh process that imports dolfinx, PETSc and MPI and compiles the forms again, and a fit is
    already parallel over ``comm`` (``mpirun -n P``). Measured (2026-12-04, 2 cores shared with
    other work, load average ~9): ``cross_val_score(FlowClassifier(cells=8, iterations=10), X, y,
    cv=4, n_jobs=n)`` on ``make_moons(120, noise=0.1, random_state=0)``, run twice in one
    process: n=1 4.6 s and 5.7 s; n=2 16.2 s with new workers, 7.4 s when joblib reused them.

    Attributes (after ``fit``):
        n_features_in_: the number of features d.
        parameters_: p = (θ, A.ravel(), b, q), shape=(n_params,); q the learned input layer's
            parameters (none without one).
        scaling_: the map into Ω, ``{"scale": [...], "shift": [...]}`` (D entries each; the
            identity with a learned input layer).
        input_layer_: the learned input layer's record (``InputLayer.to_dict()``), or None.
        resolution_: the mesh training ended on, ``{"cells": n, "degree": k, "refinements":
            levels of local refinement, "refined_cells": cells they refined, "dofs": DG dofs per
            component}``.
        refinement_marks_: the local refinements: per level, the midpoints of the cells it
            refined (lists of D coordinates); [] without.
        certified_: whether the PDE and the characteristics agreed at the end (``metrics_["check"]``).
        metrics_: the run's summary, as metrics.json holds it (the PDE's accuracies, the check).
        history_: one dict per iteration (history.csv's columns).
        n_iter_: the optimizer's iterations.
        config_: the resolved problem (``Config.to_dict()``).
        run_dir_: the run directory fit wrote or load read (str), else None.
    """

    _default_loss = "cross_entropy"
    _default_tolerance = TrainConfig.tolerance
    # The learned input layer's weight decay δ|E|²/2 (``input.decay``). Without it E can grow
    # until tanh saturates and the points sit near Ω's corners, where the cut-off velocity
    # vanishes and the flow cannot move them (the layers without the flow, fitted alone by L-BFGS
    # on digits: |E| 354, test accuracy 0.68 with δ = 0; 0.86 with δ = 1e-3). Measured with the
    # flow (scripts/bench_input_layer.py's folds, fold 0 of 5, 200 iterations): digits test
    # accuracy 0.714 with δ = 0, 0.825 with δ = 1e-3; δ = 1e-2 was still at train accuracy 0.87
    # after 185 iterations and 10 local refinements (77k dofs, over 4 min), stopped there.
    _default_input_decay = 1e-3
    # The classifier's weight_decay (train.weight_decay, the weight of |θ|²): 100× the problem
    # file's default. A smaller θ is a smoother field, which the certification passes on a
    # coarser mesh. Measured side by side (fold 0 of scripts/bench_input_layer.py's folds): digits
    # through StandardScaler → PCA(3), 40 iterations: test accuracy 0.717 in 55.9 s (3 local
    # refinements, 39k dofs) with 1e-4, 0.703 in 3.8 s (1 refinement, 5k dofs) with 1e-2. 5 folds,
    # PCA(3), 100 iterations, 1e-2: digits 0.693 in 11-13 s per fit, breast cancer 0.947 in 4.1 s.
    # Not the regressor's: a flow in 2D that has to make the nonlinearity itself (tests/
    # test_estimator.py's smooth function, 30 iterations) reached training R² 0.868 with 1e-2.
    _default_weight_decay = 1e-2

    @property
    def _source(self) -> str:
        """Where a bad parameter came from, in messages (``<FlowRegressor>: cells: ...``)."""
        return f"<{type(self).__name__}>"
    _writes_data = True  # fit(run_dir=...) writes the training points as data.csv

    _parameter_constraints: dict = {
        "domain": [StrOptions(set(DOMAIN_KINDS))],
        "cells": [Interval(Integral, 1, None, closed="left"), None],
        "degree": [Interval(Integral, 1, 3, closed="both"), None],
        "width": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "slabs": [Interval(Integral, 1, None, closed="left")],
        "T": [Interval(Real, 0, None, closed="neither")],
        "scale": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions(set(LOSSES)), None],
        "weight_decay": [Interval(Real, 0, None, closed="left"), None],
        "smoothness": [Interval(Real, 0, None, closed="left")],
        "kinetic": [Interval(Real, 0, None, closed="left")],
        "roughness": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "iterations": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_step": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "seed": [Hidden(StrOptions({"deprecated"})), Interval(Integral, 0, None, closed="left")],
        "check_every": [Interval(Integral, 1, None, closed="left")],
        "tolerance": [Interval(Real, 0, None, closed="neither"), None],
        "target_accuracy": [Interval(Real, 0, 1, closed="right"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "agreement": [Interval(Real, 0, 1, closed="right")],
        "adapt": ["boolean"],
        "max_dofs": [Interval(Integral, 1, None, closed="left")],
        "cfl": [Interval(Real, 0, 2, closed="right")],
        "scheme": [StrOptions(set(SCHEMES))],
        "margin": [Interval(Real, 0, 1, closed="neither")],
        "augment_dim": [Interval(Integral, 2, 3, closed="both"), None],
        "input_dim": [Interval(Integral, 2, 3, closed="both"), None],
        "input_init": [StrOptions(set(INPUT_INITS))],
        "input_decay": [Interval(Real, 0, None, closed="left"), None],
        "input_pretrain": [Interval(Integral, 0, None, closed="left")],
        "input_restarts": [Interval(Integral, 1, None, closed="left")],
        "comm": "no_validation",
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        domain=DomainConfig.kind,
        cells=None,
        degree=None,
        width=FieldConfig.width,
        activation=FieldConfig.activation,
        slabs=FieldConfig.slabs,
        T=FieldConfig.T,
        scale=FieldConfig.scale,
        loss=None,
        weight_decay=None,
        smoothness=TrainConfig.smoothness,
        kinetic=TrainConfig.kinetic,
        roughness=TrainConfig.roughness,
        optimizer=TrainConfig.optimizer,
        iterations=TrainConfig.iterations,
        learning_rate=TrainConfig.learning_rate,
        max_step=TrainConfig.max_step,
        random_state=TrainConfig.seed,
        seed="deprecated",
        check_every=TrainConfig.check_every,
        tolerance=None,
        target_accuracy=None,
        validation_fraction=0.0,
        agreement=TrainConfig.agreement,
        adapt=TrainConfig.adapt,
        max_dofs=TrainConfig.max_dofs,
        cfl=SolverConfig.cfl,
        scheme=SolverConfig.scheme,
        margin=DataConfig.margin,
        augment_dim=DataConfig.augment_dim,
        input_dim=None,
        input_init="pca",
        input_decay=None,
        input_pretrain=INPUT_PRETRAIN,
        input_restarts=INPUT_RESTARTS,
        comm=None,
        verbose=False,
    ):
        self.domain = domain
        self.cells = cells
        self.degree = degree
        self.width = width
        self.activation = activation
        self.slabs = slabs
        self.T = T
        self.scale = scale
        self.loss = loss
        self.weight_decay = weight_decay
        self.smoothness = smoothness
        self.kinetic = kinetic
        self.roughness = roughness
        self.optimizer = optimizer
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.max_step = max_step
        self.random_state = random_state
        self.seed = seed
        self.check_every = check_every
        self.tolerance = tolerance
        self.target_accuracy = target_accuracy
        self.validation_fraction = validation_fraction
        self.agreement = agreement
        self.adapt = adapt
        self.max_dofs = max_dofs
        self.cfl = cfl
        self.scheme = scheme
        self.margin = margin
        self.augment_dim = augment_dim
        self.input_dim = input_dim
        self.input_init = input_init
        self.input_decay = input_decay
        self.input_pretrain = input_pretrain
        self.input_restarts = input_restarts
        self.comm = comm
        self.verbose = verbose

    # --- the problem ---------------------------------------------------------------------

    def _comm(self) -> MPI.Comm:
        return MPI.COMM_WORLD if self.comm is None else self.comm

    def _omega_dim(self, n_features: int) -> int:
        """D, the dimension of Ω, for data of ``n_features`` features (ValueError if none fits):
        more features than D go through the learned input layer."""
        fixed = {"disk": 2, "ball": 3}.get(self.domain)
        if self.input_dim is not None and fixed is not None and self.input_dim != fixed:
            raise InputError(f"input_dim={self.input_dim} but a {self.domain!r} domain is {fixed}D", self._source)
        dim = fixed or self.input_dim or self.augment_dim or min(max(n_features, 2), 3)
        if n_features > dim:
            if self.augment_dim is not None:
                raise InputError(f"X has {n_features} features, more than Ω's {dim} dimensions: they go through "
                                 f"the learned input layer, and augment_dim (which pads fewer features with "
                                 f"zeros) must be None", self._source)
            return dim
        if self.augment_dim is not None and dim != self.augment_dim:
            raise InputError(f"X has {n_features} feature(s), which a {self.domain!r} domain with "
                             f"augment_dim={self.augment_dim!r} cannot hold: Ω ({dim}D) needs at least as "
                             f"many dimensions as X has features, and augment_dim must be its dimension", self._source)
        return dim

    def _seed(self, comm: MPI.Comm) -> int:
        """``train.seed``: ``random_state`` (or the deprecated ``seed``) as an int >= 0, drawn on
        rank 0 from None or a RandomState (collective)."""
        state = self.random_state
        if not (isinstance(self.seed, str) and self.seed == "deprecated"):
            warnings.warn("seed was renamed random_state and will be removed: pass random_state="
                          f"{self.seed!r}", FutureWarning, stacklevel=3)
            state = self.seed
        if isinstance(state, Integral) and not isinstance(state, bool):
            return int(state)
        drawn = int(check_random_state(state).randint(np.iinfo(np.int32).max)) if comm.rank == 0 else None
        return comm.bcast(drawn, root=0)

    def _problem_dict(self, n_samples: int, n_features: int, seed: int, data: str = DATA_FILE) -> dict:
        """The problem file of this estimator for n_samples points of n_features features, which
        are those of the CSV file ``data`` when fit writes a run directory; ``seed``: train.seed."""
        dim = self._omega_dim(n_features)
        if is_regressor(self) and (self.target_accuracy is not None or self.validation_fraction):
            raise InputError(f"target_accuracy={self.target_accuracy!r}, validation_fraction="
                             f"{self.validation_fraction!r}: a regressor has no accuracy to reach; leave "
                             f"them None and 0", self._source)
        if self.target_accuracy is not None and not self.validation_fraction:
            raise InputError(f"target_accuracy={self.target_accuracy!r} is measured on held-out points: set "
                             f"validation_fraction (e.g. 0.1), the share of X held out for it", self._source)
        sections: dict[str, dict] = {"domain": {}, "mesh": {}, "field": {}, "train": {}, "solver": {}}
        for name, (section, key) in PARAMETERS.items():
            value = seed if name == "random_state" else getattr(self, name)
            if section not in ("data", "input") and value is not None:  # None: the default (e.g. the mesh of Ω's dimension)
                sections[section][key] = value
        if self.domain == "box":  # the default box, in D dimensions
            sections["domain"].update(lower=[DomainConfig.lower[0]] * dim, upper=[DomainConfig.upper[0]] * dim)
        # The CSV route, all points for training (cross-validation is scikit-learn's job) but the
        # validation_fraction held out for target_accuracy (as MLPClassifier's early_stopping).
        sections["data"] = {"kind": "csv", "path": data, "points": n_samples, "test_fraction": self.validation_fraction, "seed": seed,
                            "margin": self.margin}
        if dim > n_features:
            sections["data"]["augment_dim"] = dim
        if n_features > dim:  # the learned input layer
            decay = self._default_input_decay if self.input_decay is None else self.input_decay
            sections["input"] = {"kind": "learned", "init": self.input_init, "decay": decay,
                                 "pretrain": self.input_pretrain, "restarts": self.input_restarts}
        sections["train"].setdefault("loss", self._default_loss)
        sections["train"].setdefault("tolerance", self._default_tolerance)
        sections["train"].setdefault("weight_decay", self._default_weight_decay)
        sections["output"] = self._outputs()
        return sections

    def _outputs(self) -> dict:
        """The ``[output]`` of a run directory fit writes (the defaults: all pictures)."""
        return {}

    def _config(self, n_samples: int, n_features: int, seed: int, data: str = DATA_FILE):
        return config_from_dict(self._problem_dict(n_samples, n_features, seed, data), source=self._source)

    # --- fit --------------------------------------------------------------------------------

    @one_outcome_method
    def fit(self, X, y, run_dir: str | Path | None = None, force: bool = False):
        """Learn the velocity field and the output layer for the points X and targets y (collective).

        Args:
            X: shape=(n, d); every rank passes the same.
            y: the labels, shape=(n,) (a classifier), or the targets, shape=(n,) or (n, K) (a
                regressor).
            run_dir: if given, write a run directory there as ``train`` does (config.toml,
                data.csv, theta.npz, history.csv, checkpoint.npz, metrics.json, the pictures),
                which ``load``, ``python -m solver compare RUN`` and ``export RUN`` read.
            force: replace an existing run directory (one the solver made).

        Raises:
            ValueError: a parameter out of its range (scikit-learn's ``InvalidParameterError``),
                or (``InputError``) a bad combination of them, bad data, fewer than 2 classes:
                each message names the estimator's parameters.

        Warns:
            FacetWarning: (at most once, rank 0) training points lie on mesh facets.
            UncertifiedWarning: the final check did not pass; the message says what to do.
        """
        comm = self._comm()
        with agreed(comm):  # every rank checks alone; one rank's error raises on all, before any collective
            self._validate_params()
            X, y = self._validate_targets(X, y)
            if len(X) < 2:
                raise InputError(f"{type(self).__name__} needs at least 2 samples, got 1 sample", self._source)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._fit(comm, X, y, run_dir, force)
        except InputError as error:
            raise InputError(_parameter_names(error.message), error.source) from None
        finally:
            _warn_once_per_fit(caught)
        return self

    def _fit(self, comm: MPI.Comm, X: np.ndarray, y: np.ndarray, run_dir: str | Path | None,
             force: bool) -> None:
        check_same(comm, self._source, X=X, y=y)  # else each rank would train on its own data
        seed = self._seed(comm)
        with agreed(comm):
            targets, names_out, fitted = self._encode(y)
            K = len(names_out)
            config = self._config(*X.shape, seed)
            dc = config.data
            names = tuple(f"x{j + 1}" for j in range(X.shape[1]))
            dataset = place_in_domain("csv", X, targets, K, names, names_out, seed=dc.seed,
                                      test_fraction=dc.test_fraction, augment_dim=dc.augment_dim,
                                      domain=config.domain_object(), margin=dc.margin, source=self._source,
                                      input_kind=config.input.kind, input_init=config.input.init,
                                      input_constant="ignore")  # as scikit-learn's estimators do
        guards.check_train(comm, config, K)
        out = None
        if run_dir is not None:
            from solver.rundir.files import prepare_run_directory

            out = prepare_run_directory(comm, run_dir, force=force, wording="estimator")
            config = self._config(*X.shape, seed, data=str(out.absolute() / DATA_FILE))
            if self._writes_data:
                on_rank0(comm, write_csv, out / DATA_FILE, X, targets)
            on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml())

        # dolfinx is loaded here, not on import: a fitted or loaded estimator predicts without it.
        from solver.learn.certify import advice
        from solver.learn.train import Problem, describe_check, train
        from solver.rundir.outputs import training_metrics, write_training_outputs

        with _logging(comm, self.verbose):
            problem = Problem.build(comm, config, dataset=dataset)
            try:
                outcome = train(comm, problem, out)
            except UnstableSolve as error:
                problem.destroy()
                raise InputError(f"unstable solve: {error.message}; lower cfl or scale", self._source) from None
            try:
                metrics = (write_training_outputs(comm, outcome, out) if out is not None
                           else training_metrics(comm, outcome))
            finally:
                outcome.problem.destroy()

        resolution = outcome.problem.resolution
        for name, value in fitted.items():
            setattr(self, name, value)
        self.config_ = config.to_dict()
        self.parameters_ = outcome.state.p.copy()
        self.scaling_ = dataset.scaling.to_dict()
        self.input_layer_ = None if dataset.input_layer is None else dataset.input_layer.to_dict()
        self.resolution_ = dict(cells=resolution.cells, degree=resolution.degree,
                                refinements=len(resolution.marks),
                                refined_cells=sum(len(level) for level in resolution.marks),
                                dofs=int(metrics["dofs"]))
        self.refinement_marks_ = resolution.to_dict().get("marks", [])
        self.metrics_ = {**metrics, **self._metrics_targets()}
        self.certified_ = bool(metrics["certified"])
        self.history_ = outcome.history
        self.n_iter_ = outcome.state.iteration
        self.run_dir_ = None if out is None else str(out.absolute())
        if out is not None:
            self._write(comm, out, metrics=False)
        if not self.certified_:
            tc = config.train
            warnings.warn(f"not certified: {describe_check(outcome.check)}; "
                          f"{advice(outcome.check, tc.adapt, tc.tolerance, int(metrics['dofs']))}. "
                          f"Predictions are the characteristics'; the PDE's numbers are in metrics_",
                          UncertifiedWarning, stacklevel=3)

    # --- predict ----------------------------------------------------------------------------

    def _model(self):
        """The resolved problem, Ω, the velocity model and (θ, A, b)."""
        config = config_from_dict(self.config_, source=self._source)
        domain = config.domain_object()
        model = velocity_model(config, domain)
        p = self.parameters_
        n_theta, K, D = model.n_params, self._num_outputs(), domain.dim
        A = p[n_theta:n_theta + K * D].reshape(K, D)
        return config, domain, model, (p[:n_theta], A, p[n_theta + K * D:n_theta + K * D + K])

    def _input_q(self) -> np.ndarray:
        """The learned input layer's q: the last entries of ``parameters_``."""
        return self.parameters_[len(self.parameters_) - InputLayer.from_dict(self.input_layer_).n_params:]

    def _to_omega(self, X: np.ndarray, dim: int) -> np.ndarray:
        """Data coordinates -> Ω: the learned input layer, or zero coordinates appended up to
        ``dim`` and the scaling."""
        if getattr(self, "input_layer_", None) is not None:
            return InputLayer.from_dict(self.input_layer_)(self._input_q(), X)
        if X.shape[1] < dim:
            X = augment(X, tuple(f"x{j + 1}" for j in range(X.shape[1])), dim)[0]
        return Scaling.from_dict(self.scaling_).apply(X)

    @one_outcome_method
    def _logits(self, X) -> np.ndarray:
        """u(0, x) at the points X by the characteristics, shape=(n, K) (collective)."""
        with agreed(self._comm()):  # one rank's bad X raises on all, before the collective solve
            check_is_fitted(self)
            X = validate_data(self, X, reset=False, dtype=np.float64)
            config, domain, model, (theta, A, b) = self._model()
            x = self._to_omega(X, domain.dim)
            if config.field.viscosity > 0:  # a viscous run's Monte Carlo: its work, before it starts
                guards.check_monte_carlo(self._comm(), config, "predict", len(X), config.train.paths,
                                         config.train.sde_steps, "the number of points (predict in batches), "
                                         "or train.paths or train.sde_steps in the run's config.toml")
        check_same(self._comm(), self._source, X=X)  # else the ranks' shares of the points mismatch
        logits = x @ A.T + b  # outside Ω the flow (χ·v continued by zero) leaves points in place
        inside = domain.contains(x)
        if not inside.all():
            warnings.warn(f"{int((~inside).sum())} of {len(x)} points lie outside Ω after the scaling "
                          f"fitted on the training data; they are classified by the output layer "
                          f"alone (the flow does not move them). Raise margin to leave more room",
                          OutsideDomainWarning, stacklevel=3)
        if config.field.viscosity > 0:  # a viscous run (load of a CLI run): the stochastic flow's
            # expectation, by the Monte Carlo its training was checked against (learn/certify.py)
            from solver.model import stochastic

            tc = config.train
            result = stochastic.solve(self._comm(), model.field(theta), domain, lambda q: q @ A.T + b, x[inside],
                                      config.field.viscosity, paths=tc.paths, steps=tc.sde_steps, seed=tc.seed,
                                      antithetic=True, heun=True)
        else:
            result = characteristics.solve(self._comm(), model.field(theta), lambda q: q @ A.T + b, x[inside])
        logits[inside] = result.u0
        return logits

    # --- the run directory --------------------------------------------------------------------

    def _write(self, comm: MPI.Comm, out: Path, metrics: bool = True) -> None:
        _, _, model, (theta, A, b) = self._model()
        # [data] names the training points: the data.csv of fit's run directory, else one beside
        # config.toml that save does not write (the estimator keeps no training points).
        values = {**self.config_, "data": {**self.config_["data"]}}
        if self.run_dir_ is None:
            values["data"]["path"] = str(Path(out).absolute() / DATA_FILE)
        config = config_from_dict(values, source=self._source)
        on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml())
        # The parameters as given (cells=None stays None), random_state as the seed it gave.
        given = {name: getattr(self, name) for name in PARAMETERS}
        given["random_state"] = config.train.seed
        estimator = dict(n_features_in=int(self.n_features_in_), params=given, **self._targets_record())
        if hasattr(self, "feature_names_in_"):
            estimator["feature_names_in"] = [str(n) for n in self.feature_names_in_]
        resolution = dict(cells=self.resolution_["cells"], degree=self.resolution_["degree"])
        if self.refinement_marks_:
            resolution["marks"] = self.refinement_marks_
        layer = {} if self.input_layer_ is None else dict(input_layer=self.input_layer_, q=self._input_q())
        on_rank0(comm, store.write_parameters, out / store.THETA, model, theta, A, b,
                 domain=config.to_dict()["domain"], scaling=self.scaling_, resolution=resolution,
                 classes=self._output_names(), estimator=estimator, **layer)
        if metrics:  # metrics.json names the classes as text, as training writes it
            on_rank0(comm, store.write_json, out / store.METRICS,
                     {**self.metrics_, "classes": self._output_names()})

    @one_outcome_method
    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the fitted estimator as a run directory: config.toml, theta.npz, metrics.json
        (no pickle); ``FlowClassifier.load(path)`` reads it back, ``python -m solver export
        PATH`` exports it (collective: rank 0 writes).

        The training points are not kept: ``compare RUN`` needs data.csv, which only
        ``fit(..., run_dir=...)`` writes.
        """
        from solver.rundir.files import prepare_run_directory

        comm = self._comm()
        with agreed(comm):
            check_is_fitted(self)
        out = prepare_run_directory(comm, path, force=force, wording="estimator")
        self._write(comm, out)
        return out

    @classmethod
    def load(cls, path: str | Path, comm: MPI.Comm | None = None):
        """The fitted estimator of a run directory: one ``save`` or ``fit(run_dir=...)`` wrote,
        or a ``python -m solver train`` run (rank-local reads; no dolfinx)."""
        path = Path(path)
        config = load_config(path / store.CONFIG)
        params = store.read_parameters(path / store.THETA)
        meta = params.meta or {}
        if params.theta is None or "scaling" not in meta or "classes" not in meta:
            raise InputError(f"holds p only; {cls.__name__}.load needs θ, A, b, the data scaling and "
                             f"the classes that training writes", str(path / store.THETA))
        values = config.to_dict()
        own = meta.get("estimator")
        if own is not None and "params" in own:
            kwargs = {k: v for k, v in own["params"].items() if k in PARAMETERS}
        else:  # a command-line run (or one saved before the parameters were kept)
            kwargs = {name: values.get(section, {}).get(key) for name, (section, key) in PARAMETERS.items()}
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
        estimator = cls(**kwargs, comm=comm)
        estimator._restore_targets(meta["classes"], own)
        layer = None
        if "input" in meta:
            try:
                layer = InputLayer.from_dict(meta["input"])
            except InputError as error:
                raise InputError(error.message, str(path / store.THETA)) from None
        if own is not None:
            estimator.n_features_in_ = int(own["n_features_in"])
            if "feature_names_in" in own:
                estimator.feature_names_in_ = np.array(own["feature_names_in"], dtype=object)
        elif layer is not None:  # a run of the command line with a learned input layer
            estimator.n_features_in_ = layer.num_features
        else:  # a run of the command line: its data say how many features were augmented
            estimator.n_features_in_ = config.dim if config.data.augment_dim is None else _data_dim(config)
        estimator.config_ = values
        estimator.parameters_ = params.p
        estimator.scaling_ = meta["scaling"]
        estimator.input_layer_ = None if layer is None else layer.to_dict()
        metrics = store.read_json(path / store.METRICS) if (path / store.METRICS).exists() else {}
        ended = meta.get("resolution") or dict(cells=config.mesh.cells, degree=config.mesh.degree)
        marks = ended.get("marks", [])
        estimator.resolution_ = dict(cells=int(ended["cells"]), degree=int(ended["degree"]), refinements=len(marks),
                                     refined_cells=sum(len(level) for level in marks))
        if "dofs" in metrics:
            estimator.resolution_["dofs"] = int(metrics["dofs"])
        estimator.refinement_marks_ = marks
        estimator.metrics_ = {**metrics, **estimator._metrics_targets()} if metrics else {}
        estimator.certified_ = bool(estimator.metrics_.get("certified", False))
        estimator.history_ = store.read_history(path / store.HISTORY) if (path / store.HISTORY).exists() else []
        estimator.n_iter_ = int(estimator.metrics_.get("iterations", 0))
        estimator.run_dir_ = str(path.absolute())
        return estimator

    @one_outcome_method
    def export_onnx(self, path: str | Path, depth: int, scheme: str = "euler", dtype: str = "float32",
                    output: str = "linear") -> Path:
        """The learned flow as an ONNX ResNet of ``depth`` blocks (``resnet.export``), input in
        data coordinates: its first step is the scaling into Ω. With augmented coordinates
        (fewer features than Ω's dimension) the net takes D inputs, the extra ones 0. The
        metadata carry ``classes_`` (as text) and the certification (``onnx_net.run_annotations``)
        (collective: rank 0 writes)."""
        from solver.resnet.export import net_of_parameters
        from solver.resnet.onnx_net import run_annotations, save_onnx

        with agreed(self._comm()):  # one rank's bad depth or scheme raises on all
            check_is_fitted(self)
            config, _, _, (theta, A, b) = self._model()
            if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
                raise InputError(f"depth must be an integer >= 1, got {depth!r}", self._source)
        # the net's memory and ONNX size, before it is built (export --depth's guard; collective)
        guards.check_export(self._comm(), self._source, depth, guards.export_block_bytes(config, scheme), True, api=True)
        with agreed(self._comm()):
            meta = {"scaling": self.scaling_}
            if self.input_layer_ is not None:
                meta["input"] = self.input_layer_
            params = store.Parameters(self.parameters_, theta, A, b, meta=meta,
                                      input=None if self.input_layer_ is None else self._input_q())
            net = net_of_parameters(config, params, depth, scheme, output, self._source)
            annotations = {**run_annotations(self._output_names(), self.metrics_), **self._targets_record()}
        return on_rank0(self._comm(), save_onnx, net, Path(path), dtype, annotations)


class FlowClassifier(ClassifierMixin, _FlowEstimator):
    """A classifier that learns the velocity v of ∂t u + v·∇u = 0 on Ω (Li & Shi's flow model):
    softmax cross-entropy of the logits u(0, x) = A q(T; x) + b. The parameters, their defaults
    and the fit are ``_FlowEstimator``'s.

    Attributes (after ``fit``, besides ``_FlowEstimator``'s):
        classes_: the labels, shape=(K,) (``metrics_["classes"]`` lists the same values).
    """

    def _validate_targets(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        return X, y

    def _encode(self, y):
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InputError(f"FlowClassifier needs samples of at least 2 classes, got 1 class "
                             f"({classes[0]!r})", self._source)
        return encoded.astype(np.int64), tuple(str(c) for c in classes), {"classes_": classes}

    def _num_outputs(self) -> int:
        return len(self.classes_)

    def _output_names(self) -> list[str]:
        return [str(c) for c in self.classes_]

    def _metrics_targets(self) -> dict:
        return {"classes": self.classes_.tolist()}  # the labels as classes_ holds them

    def _targets_record(self) -> dict:
        return {"label_dtype": self.classes_.dtype.str}

    def _restore_targets(self, names: list[str], own: dict | None) -> None:
        if own is not None:
            dtype = np.dtype(own["label_dtype"])
            self.classes_ = (np.array([n == "True" for n in names]) if dtype.kind == "b"
                             else np.array(names, dtype=object if dtype.kind == "O" else None).astype(dtype))
        else:  # a run of the command line
            self.classes_ = (np.array([int(n) for n in names]) if all(n.isdigit() for n in names)
                             else np.array(names))

    def decision_function(self, X) -> np.ndarray:
        """The logits u(0, x), shape=(n, K); for two classes u_1 − u_0, shape=(n,) (collective)."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        """softmax of the logits, shape=(n, K) (collective)."""
        return softmax(self._logits(X))

    def predict(self, X) -> np.ndarray:
        """The label of the largest logit, shape=(n,) (collective)."""
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]


class FlowRegressor(RegressorMixin, _FlowEstimator):
    """A regressor that learns the velocity v of ∂t u + v·∇u = 0 on Ω: the squared error of
    u(0, x) = A q(T; x) + b against the standardized targets (K outputs: f = A x + b has K
    components). The parameters, their defaults and the fit are ``_FlowEstimator``'s, with
    ``loss`` "squared_error" and ``tolerance`` 0.05: the certification check (the PDE against
    the characteristics) passes when their predictions differ by at most that many standard
    deviations of the targets at every checked point (there are no labels to agree on).

    Attributes (after ``fit``, besides ``_FlowEstimator``'s):
        n_outputs_: K, the number of outputs.
        y_mean_, y_scale_: the targets' mean and standard deviation (1 where constant),
            shape=(K,): the model learns (y − y_mean_) / y_scale_.
    """

    _default_loss = "squared_error"
    _default_tolerance = 0.05
    # Measured on diabetes (10 features; fold 0 of scripts/bench_input_layer.py's, 200
    # iterations): test R² −0.05 with δ = 0 (train R² 0.73: overfitted, and 7 mesh refinements,
    # 270 s), 0.09 with 1e-2, 0.30 with 0.1, 0.36 with 1 (19 s); ridge 0.33 on that fold.
    _default_input_decay = 1.0
    _default_weight_decay = TrainConfig.weight_decay
    _writes_data = False  # data.csv holds class labels; a regressor's run has none (no compare RUN)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # K outputs: f = A x + b has K components
        return tags

    def _validate_targets(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        if self.loss not in (None, "squared_error"):
            raise InputError(f'FlowRegressor fits the squared error: loss must be None or "squared_error", '
                             f'got {self.loss!r}', self._source)
        return X, y

    def _encode(self, y):
        y = np.asarray(y, dtype=np.float64)
        single = y.ndim == 1
        Y = y[:, None] if single else y
        mean, scale = Y.mean(axis=0), Y.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        names = tuple(f"y{k + 1}" for k in range(Y.shape[1]))
        fitted = {"n_outputs_": Y.shape[1], "y_mean_": mean, "y_scale_": scale, "_single_output": single}
        return (Y - mean) / scale, names, fitted

    def _num_outputs(self) -> int:
        return int(self.n_outputs_)

    def _output_names(self) -> list[str]:
        return [f"y{k + 1}" for k in range(self._num_outputs())]

    def _metrics_targets(self) -> dict:
        return {}

    def _targets_record(self) -> dict:
        return {"target_mean": self.y_mean_.tolist(), "target_scale": self.y_scale_.tolist(),
                "single_output": bool(self._single_output)}

    def _restore_targets(self, names: list[str], own: dict | None) -> None:
        if own is None or "target_mean" not in own:
            raise InputError("not a FlowRegressor's run: theta.npz records no target scaling")
        self.n_outputs_ = len(own["target_mean"])
        self.y_mean_ = np.asarray(own["target_mean"], dtype=np.float64)
        self.y_scale_ = np.asarray(own["target_scale"], dtype=np.float64)
        self._single_output = bool(own.get("single_output", True))

    def _outputs(self) -> dict:
        return {"png": False, "animation": False}  # the pictures are a classifier's

    def predict(self, X) -> np.ndarray:
        """The predictions y_mean_ + y_scale_ ⊙ u(0, x), shape=(n,) or (n, K) as y was (collective)."""
        Y = self._logits(X) * self.y_scale_ + self.y_mean_
        return Y[:, 0] if self._single_output else Y


def _parameter_names(text: str) -> str:
    """``text`` with the problem file's keys (``mesh.cells``) as the estimator's parameters (``cells``)."""
    return _KEY_PATTERN.sub(lambda match: _KEYS[match.group(1)], text)


def _warn_once_per_fit(caught: list[warnings.WarningMessage]) -> None:
    """The warnings a fit recorded, issued again for its caller (``warnings``' filters apply
    then), in the estimator's parameter names; a FacetWarning once (each mesh the run is
    rebuilt on would repeat it)."""
    facets = False
    for w in caught:
        if issubclass(w.category, FacetWarning):
            if facets:
                continue
            facets = True
        message = _parameter_names(str(w.message))
        # stacklevel 3: the frame that called fit (this function, fit, the caller)
        warnings.warn(message, w.category, stacklevel=3)


def _data_dim(config) -> int:
    """The number of features of a command-line run's data before augmentation."""
    dc = config.data
    dataset = make_dataset(dc.kind, dc.points, noise=dc.noise, seed=dc.seed, test_fraction=dc.test_fraction,
                           num_classes=dc.classes, augment_dim=dc.augment_dim, margin=dc.margin,
                           **dict(dc.params))
    return dataset.dim - dataset.augmented


@contextlib.contextmanager
def _logging(comm: MPI.Comm, verbose: bool):
    """Training's log lines on rank 0's stdout (``verbose``), else its warnings only; a
    "solver" logger the user configured is left alone."""
    if log.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stdout) if comm.rank == 0 else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
