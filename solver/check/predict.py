"""``predict RUN``: the learned flow's prediction u(0, x) = f(q(T; x)) (eq. 6) at new points.

The model's prediction is the characteristics' (:func:`default_method`), as ``FlowClassifier``
and the exported ONNX file compute it; the PDE is the certified check of it (a viscous run's
prediction is the PDE's: its expectation over the stochastic flow).

Three ways (``METHODS``): ``pde``, one forward solve on the mesh the run ended on (theta.npz's
``resolution``, with its local refinements, where training certified it; as ``compare RUN``) and
point evaluation;
``characteristics``, DOP853 per point (``model/characteristics.py``); ``resnet``, the exported
explicit ResNet (``resnet/net.py``, numpy). Points come in data coordinates, as the training
data did; the run's input scaling (theta.npz ``meta.scaling``, ``model.data.Scaling``) takes them
into Ω, after zero coordinates for the axes ``data.augment_dim`` added.

Reading is rank-local and alike on every rank (an ``InputError`` is raised on all); predicting
is collective (each rank its :func:`~solver.parallel.rank_share` of the points).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.config import Config, load_config
from solver.errors import InputError
from solver.learn.certify import Resolution
from solver.model.activations import softmax
from solver.model.data import Scaling
from solver.model.domain import Box
from solver.model.input_layer import InputLayer
from solver.parallel import gather_rows, rank_share
from solver.rundir import store

log = logging.getLogger("solver")

METHODS = ("pde", "characteristics", "resnet")


@dataclass(frozen=True)
class Run:
    """A trained run directory, opened: ``solver.Run.open("runs/moons")`` (what ``predict``,
    ``export`` and ``FlowClassifier.load`` read of it).

    Attributes:
        path: the run directory.
        config: its config.toml.
        parameters: its theta.npz (θ, A, b and meta).
        scaling: data coordinates -> Ω.
        resolution: the mesh the run ended on.
        classes: the label of each class k.
        augmented: how many zero coordinates follow the data's own (``data.augment_dim``).
        input_layer: the learned input layer (then ``scaling`` is Ω's identity), or None.
    """

    path: Path
    config: Config
    parameters: store.Parameters
    scaling: Scaling
    resolution: Resolution
    classes: tuple[str, ...]
    augmented: int
    input_layer: InputLayer | None = None

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The trained run in the directory ``path`` (``read_run``; rank-local, no dolfinx)."""
        return read_run(Path(path))

    @property
    def input_dim(self) -> int:
        """The number of features a point has in data coordinates."""
        if self.input_layer is not None:
            return self.input_layer.num_features
        return self.config.dim - self.augmented


def read_run(run: Path) -> Run:
    """The trained run in ``run`` (rank-local: every rank reads it alike).

    Raises:
        InputError: naming the file: no config.toml or theta.npz, unreadable ones, a theta.npz
            without the parameters' parts and meta (scaling) that training writes, or one that
            does not fit the config.
    """
    from solver import guards

    run = Path(run)
    config = load_config(run / store.CONFIG)
    path = run / store.THETA
    parameters = store.read_parameters(path)
    if parameters.theta is None or parameters.A is None or parameters.b is None or parameters.meta is None:
        raise InputError("holds p only; predict needs θ, A, b and the data scaling (meta) that training "
                         "writes", str(path))
    if parameters.theta.size != guards.n_theta(config) or parameters.A.shape != (len(parameters.b), config.dim):
        raise InputError(f"θ has {parameters.theta.size} values and A the shape {parameters.A.shape}; the "
                         f"run's config.toml needs {guards.n_theta(config)} and (K, {config.dim})", str(path))
    meta = parameters.meta
    try:
        scaling = Scaling.from_dict(meta["scaling"])
    except (KeyError, InputError):
        raise InputError('meta has no data scaling {"scale": [...], "shift": [...]}', str(path)) from None
    if scaling.dim != config.dim:
        raise InputError(f"the data scaling is {scaling.dim}-dimensional, Ω {config.dim}-dimensional", str(path))
    ended = meta.get("resolution") or dict(cells=config.mesh.cells, degree=config.mesh.degree)
    try:
        store.check_resolution(ended.get("cells"), ended.get("degree"), str(path))
        resolution = Resolution.from_dict(ended)
    except InputError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"a damaged 'resolution' in its meta ({type(error).__name__}: {error})", str(path)) from None
    classes = tuple(meta.get("classes") or map(str, range(len(parameters.b))))
    layer = None
    if "input" in meta:
        try:
            layer = InputLayer.from_dict(meta["input"])
        except InputError as error:
            raise InputError(error.message, str(path)) from None
        if layer.dim != config.dim or parameters.input is None or parameters.input.shape != (layer.n_params,):
            raise InputError(f"the input layer maps {layer.num_features} features into {layer.dim}D with "
                             f"{layer.n_params} parameters; theta.npz holds "
                             f"{0 if parameters.input is None else parameters.input.size} and Ω is "
                             f"{config.dim}-dimensional", str(path))
    return Run(run, config, parameters, scaling, resolution, classes, augmented_axes(config, meta), layer)


def augmented_axes(config: Config, meta: dict) -> int:
    """How many zero coordinates ``data.augment_dim`` appended: theta.npz's ``meta.augmented``,
    else (older runs) the generated kinds' 2 data dimensions (a CSV file's features may be any
    number: there the points must come with the zero coordinates)."""
    if "augmented" in meta:
        return int(meta["augmented"])
    if config.data.augment_dim is None or config.data.kind == "csv":
        return 0
    return config.dim - 2


def read_points(path: Path, run: Run) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The points of a CSV file in data coordinates (rank-local): ``model.data.read_points``
    with ``run.input_dim`` features.

    Returns:
        The points, shape=(n, run.input_dim); the feature names; the line of each point.
    """
    from solver.model.data import read_points as read

    taken = f"(its data are {run.input_dim}-dimensional{', then augmented' if run.augmented else ''})"
    return read(path, run.input_dim, taken)


def to_omega(run: Run, X: np.ndarray, source: str, lines: np.ndarray | None = None,
             outside: str = "refuse") -> np.ndarray:
    """Data coordinates (shape=(n, run.input_dim)) -> Ω (shape=(n, dim)): zero coordinates for
    the augmented axes, then the run's scaling.

    A learned input layer maps any point into Ω. Points outside Ω: ``outside="refuse"`` (the
    PDE's u_h lives on Ω's mesh only) raises; ``"warn"`` (the characteristics and the ResNet,
    where the flow χ·v is continued by zero, so such points do not move) logs one warning naming
    them and keeps them (:func:`logits` gives them the output layer's logits, as
    ``FlowClassifier.predict`` does).

    Raises:
        InputError: naming ``source`` and the first lines, if points fall outside Ω and
            ``outside`` is "refuse".
    """
    if run.input_layer is not None:
        return run.input_layer(run.parameters.input, X)
    X = np.hstack([X, np.zeros((len(X), run.augmented))])
    x = run.scaling.apply(X)
    domain = run.config.domain_object()
    beyond = np.flatnonzero(~domain.contains(x))
    if beyond.size:
        where = lines[beyond[:5]].tolist() if lines is not None else beyond[:5].tolist()
        region = ""
        if isinstance(domain, Box):
            low = run.scaling.inverse(np.asarray(domain.lower)[None])[0][: run.input_dim]
            high = run.scaling.inverse(np.asarray(domain.upper)[None])[0][: run.input_dim]
            region = f"; Ω holds the data coordinates {np.round(low, 4).tolist()} to {np.round(high, 4).tolist()}"
        said = (f"{beyond.size} of {len(x)} points lie outside Ω after the run's input scaling, "
                f"e.g. {'lines' if lines is not None else 'points'} {where}{region}")
        if outside == "refuse":
            raise InputError(f"{said}; the PDE's solution lives on Ω's mesh only (--method characteristics "
                             f"or resnet predicts them by the output layer)", source)
        log.warning("warning: %s: %s; the flow does not move them (χ·v is continued by zero outside Ω), so "
                    "they get the output layer's logits A x + b (a larger data.margin in training leaves "
                    "more room)", source, said)
    return x


def grid_points(run: Run, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-per-direction grid of Ω's bounding box (shape=(n**dim, dim), Ω coordinates) and
    the mask of those in Ω."""
    domain = run.config.domain_object()
    points = Box(domain.lower, domain.upper).grid(n)
    return points, domain.contains(points)


def default_method(run: Run) -> str:
    """The model's own prediction: the characteristics, as ``FlowClassifier`` and ONNX predict
    (no mesh, the same on any number of ranks); for a viscous run (ε > 0) the PDE, the only
    method that computes its expectation over the stochastic flow (:func:`check_method`)."""
    return "pde" if run.config.field.viscosity > 0 else "characteristics"


def check_method(run: Run, method: str) -> None:
    """InputError unless ``method`` predicts what the run learned: a viscous run (ε > 0) learned
    the expectation over the stochastic flow, which the PDE with its diffusion computes; the
    characteristics and the ResNet follow the inviscid flow and would drop ε silently."""
    if method not in METHODS:
        raise InputError(f'Invalid method "{method}". Must be one of {list(METHODS)}')
    eps = run.config.field.viscosity
    if eps > 0 and method != "pde":
        raise InputError(f"--method {method} follows the inviscid flow, but this run is viscous "
                         f"(field.viscosity = {eps:g}): its prediction is the expectation over the "
                         f"stochastic flow, which --method pde computes (or export --noise, the "
                         f"stochastic ResNet)", str(run.path / store.CONFIG))


def logits(comm: MPI.Comm, run: Run, x: np.ndarray, method: str = "characteristics", *, depth: int | None = None,
           scheme: str = "midpoint", source: str = "points") -> tuple[np.ndarray, dict]:
    """The run's logits A q(T; x) + b at ``x`` (Ω coordinates, shape=(n, dim), the same on every
    rank), shape=(n, K) on every rank, and the seconds of each part (collective).

    Args:
        method: one of ``METHODS``.
        depth: ResNet blocks (``resnet``; default 16 per slab).
        scheme: the ResNet's block scheme (euler, midpoint, rk4).
    """
    check_method(run, method)
    from solver.model.from_config import velocity_model

    config, parameters = run.config, run.parameters
    model = velocity_model(config, config.domain_object())
    A, b = parameters.A, parameters.b
    seconds = {}
    started = time.perf_counter()
    if method == "pde":
        return _pde_logits(comm, run, model, x, source)
    # Outside Ω (to_omega warned) the flow, χ·v continued by zero, leaves a point where it is: the
    # output layer's logits, as FlowClassifier gives them.
    out = x @ A.T + b
    inside = config.domain_object().contains(x)
    if method == "characteristics":
        from solver.model import characteristics

        out[inside] = characteristics.solve(comm, model.field(parameters.theta), lambda y: y @ A.T + b,
                                            x[inside]).u0
        seconds["characteristics"] = time.perf_counter() - started
        return out, seconds
    from solver.resnet.net import OutputLayer, forward, resnet_from_velocity

    depth = depth or 16 * model.slabs
    net = resnet_from_velocity(model, parameters.theta, depth, scheme, output=OutputLayer("linear", A, b))
    mine = x[inside]
    out[inside] = gather_rows(comm, forward(net, mine[rank_share(comm, len(mine))]))
    seconds["resnet"] = time.perf_counter() - started
    return out, seconds


def _pde_logits(comm: MPI.Comm, run: Run, model, x: np.ndarray, source: str) -> tuple[np.ndarray, dict]:
    """One forward solve on the run's final resolution, then u_h(0, x) (collective)."""
    from solver.fem.pointeval import PointEvaluator
    from solver.fem.refine import mesh_with_marks
    from solver.fem.affine import solve_affine, transported_components
    from solver.fem.schemes import make_solver

    config, parameters = run.config, run.parameters
    A, b = parameters.A, parameters.b
    seconds = {}
    started = time.perf_counter()
    # The mesh the run ended on, as training and ``compare RUN`` build it (``learn.train.Problem``).
    mesh = mesh_with_marks(comm, config.domain_object(), run.resolution.cells, run.resolution.marks,
                           str(run.path / store.THETA))
    with make_solver(mesh, config.solver, degree=run.resolution.degree,
                     num_components=transported_components(*A.shape), viscosity=config.field.viscosity) as solver:
        seconds["mesh"] = time.perf_counter() - started
        started = time.perf_counter()
        u0 = solve_affine(solver, model.field(parameters.theta), A, b, keep=False).u0
        seconds["solve"] = time.perf_counter() - started
        started = time.perf_counter()
        mine = x[rank_share(comm, len(x))]
        evaluator = PointEvaluator(solver.V, mine, source, report=False)
        seconds["locate"] = time.perf_counter() - started
        started = time.perf_counter()
        local = np.stack([evaluator(u) for u in u0], axis=1)
        seconds["evaluate"] = time.perf_counter() - started
        out = gather_rows(comm, local)
    return out, seconds


def probabilities(logits: np.ndarray) -> np.ndarray:
    """softmax over the classes, shape=(n, K) (the prediction of a cross-entropy run)."""
    return softmax(logits)
