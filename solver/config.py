"""Problem files: TOML -> frozen dataclasses, validated with messages that point at the line.

No dolfinx here: the command line reads a config before it builds anything, and a typo must
fail in a second, not after a mesh is built. Every key has a default, so an empty file is a
working problem (an MLP field on [-1, 1]², a Gaussian terminal); without [domain], Ω is [-1, 1]³
when the data are 3D (``data.augment_dim = 3``, or a CSV file of 3 features), and without [mesh]
the mesh is ``DEFAULT_MESH`` of Ω's dimension; see ``problems/*.toml``.

An error names the key path (``field.width``), the bad value and what was expected; its source
is the file and, where found, the line (``problems/x.toml:7``).
"""

from __future__ import annotations

import csv
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dataclass_field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from solver import validate
from solver.errors import InputError
from solver.learn.optimize import DEFAULT_LEARNING_RATE, DEFAULT_MAX_STEP, DEFAULT_MEMORY, OPTIMIZERS
from solver.model import velocity
from solver.model.data import DATASET_KINDS, DATASET_PARAMS, DEFAULT_MARGIN, DEFAULT_TEST_FRACTION
from solver.model.data import OPTION_CHECKS as DATA_CHECKS
from solver.model.domain import DOMAIN_KINDS, Domain, make_domain
from solver.model.input_layer import INPUT_INITS, INPUT_KINDS
from solver.model.losses import LOSSES
from solver.model.terminal import (
    TERMINAL_KINDS,
    TERMINAL_PARAMS,
    Terminal,
    make_terminal,
    terminal_defaults,
)

# The names the velocity model accepts, from the model itself so the two cannot drift apart.
ACTIVATIONS = tuple(velocity.ACTIVATIONS)
FIELD_KINDS = velocity.FIELD_KINDS

DOMAIN_KEYS = {
    "box": ("kind", "lower", "upper"),
    "disk": ("kind", "center", "radius"),
    "ball": ("kind", "center", "radius"),
}
FIELD_KEYS = {
    "mlp": ("kind", "T", "width", "activation", "slabs", "seed", "scale", "viscosity"),
    "mlp1": ("kind", "T", "activation", "slabs", "seed", "scale", "viscosity"),  # width = d: W is d×d
    "rotation": ("kind", "T", "omega", "viscosity"),
}
# The transport schemes (``fem/schemes.py``): DG + SSP-RK3, semi-Lagrangian on continuous P_k.
SCHEMES = ("rk3", "sl")

SECTIONS = ("domain", "mesh", "field", "terminal", "solver", "compare", "output", "data", "input", "train")
# The sections each command reads, and so writes into its run directory's config.toml: training
# learns the output layer (no [terminal]); `compare CONFIG` carries a configured terminal (no
# [data], [train]). `compare RUN` reads a training run's [compare].
TRAIN_SECTIONS = tuple(s for s in SECTIONS if s != "terminal")
COMPARE_SECTIONS = tuple(s for s in SECTIONS if s not in ("data", "input", "train"))
# Ω's extent: sides (diameters) and coordinates a mesh and a CFL step resolve in double precision.
MIN_SIDE, MAX_SIDE, MAX_COORDINATE = 1e-6, 1e6, 1e6
# A problem file is text of a few kB: a larger one (or a device, /dev/zero) is not read.
MAX_CONFIG_BYTES = 2**20
# Each component of u is a column of every solve; a terminal with more is not built.
MAX_COMPONENTS = 10_000

# Values that run directories written by earlier versions hold in their config.toml (read again
# by --resume and `compare RUN`) for what is now an absent key: read as absent.
LEGACY_VALUES = {
    ("field", "time"): "constant",  # θ is constant on slabs; there is no other mode to choose
    ("solver", "dt"): 0.0,  # 0 stood for "from the CFL bound"
    ("solver", "checkpoint_every"): 0,  # 0 stood for "none", which training replaced by 4
    ("compare", "cells"): 0,  # 0 stood for "the training mesh"
    ("compare", "degree"): 0,
}


@dataclass(frozen=True)
class DomainConfig:
    """Ω: a box [lower, upper] or a disk/ball |x − center| ≤ radius."""

    kind: str = "box"  # box, disk (2D) or ball (3D)
    lower: tuple[float, ...] | None = (-1.0, -1.0)  # box only
    upper: tuple[float, ...] | None = (1.0, 1.0)  # box only
    center: tuple[float, ...] | None = None  # disk/ball only
    radius: float | None = None  # disk/ball only

    @property
    def dim(self) -> int:
        return len(self.lower if self.kind == "box" else self.center)


@dataclass(frozen=True)
class MeshConfig:
    """Cells per direction (box) or across the diameter (disk/ball), and the degree (DG for
    "rk3", continuous P_k for "sl"). These defaults fill a [mesh] section that names one of the
    keys; a problem without [mesh] keys starts on ``DEFAULT_MESH`` of its scheme and dimension."""

    cells: int = 32  # per direction (box), or across the diameter (disk/ball)
    degree: int = 1  # k = 1, 2, 3


@dataclass(frozen=True)
class FieldConfig:
    """The velocity v(t, x) on [0, T], θ constant on each slab; keys of the other kind are None."""

    kind: str = "mlp"  # mlp (eq. 2), mlp1 (width d: W is d×d) or rotation (disk/ball only)
    T: float = 1.0  # final time
    width: int | None = 8  # mlp: hidden width of eq. 2 ("mlp1" has width d)
    activation: str | None = "tanh"  # mlp: relu, tanh, softplus, sigmoid
    slabs: int | None = 4  # mlp: time slabs, θ constant on each (one ResNet block each)
    seed: int | None = 0  # mlp: the random θ of `compare CONFIG`
    scale: float | None = 1.0  # mlp: the size of that random θ
    omega: float | None = None  # rotation only: angular speed, rad per unit time
    # ε of ∂t u + v·∇u + εΔu = 0 (Neumann walls): the Kolmogorov equation of dX = v dt + √(2ε) dW
    # reflected at ∂Ω; 0 is the inviscid transport equation.
    viscosity: float = 0.0


@dataclass(frozen=True)
class TerminalConfig:
    """The terminal function f = u(T): a kind of ``problems.TERMINAL_KINDS`` and its resolved
    parameters (lists as tuples; an absent key means "not given", e.g. random weights).

    ``params`` is read-only; the dataclass compares by value but is not hashable.
    """

    kind: str = "gaussian"
    params: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class SolverConfig:
    """Time stepping: Courant number, an optional forced step, checkpoint spacing, stage memory.

    These are also the defaults of ``fem.transport.TransportSolver``.
    """

    cfl: float = 1.0  # Courant number; RK3 blew up at 2.5 (DG1, DG2) and 2.0 (DG3), measured
    dt: float | None = None  # a forced maximal time step; none: from the CFL bound
    checkpoint_every: int = 4  # keep the state at every n-th step start, for the gradient
    # MiB per rank for what a gradient reads back (RK stage states, slabs' Lᵀ), or "auto": half
    # the memory available to each rank when the first gradient's forward solve starts
    stage_memory: int | str = "auto"
    max_steps: int = 10_000  # time steps of one solve; more is refused (training: backs off)
    # "sl": semi-Lagrangian steps on continuous P_k (fem/semilagrangian.py), which
    # reached every certified target measured sooner (docs/benchmarks/schemes.md); "rk3": DG
    # upwind + SSP-RK3 under the CFL bound (fem/transport.py), the scheme of viscous runs (a file
    # with field.viscosity > 0 or a solver.dt and no scheme gets it) and of runs made before
    # schemes existed
    scheme: str = "sl"
    # "sl": RK4 substeps of the departure points, each turning the flow by at most this much
    substep_rotation: float = 1.0
    # "sl": the slabs one step spans, or "all": one step from T to 0, the nodes traced through
    # every slab and f taken at their departure points (no interpolation between slabs; measured
    # against one step per slab in docs/benchmarks/schemes.md)
    slabs_per_step: int | str = "all"


@dataclass(frozen=True)
class CompareConfig:
    """FE vs characteristics: random points in Ω, a grid for the error map, refinements."""

    points: int = 500  # random points in Ω to compare at
    grid: int = 65  # points per direction of the grid of the error map
    seed: int = 1  # of the random points
    refine: tuple[int, ...] = ()  # cell counts of a refinement study (`--refine` overrides)
    # A CSV file of points (one per row, d columns) to compare at instead of random ones;
    # a relative path is relative to the config file.
    points_file: str | None = None
    # `compare RUN` of a trained run: the mesh cells and DG degree of its PDE prediction, if
    # finer than training's (None: the training mesh's, which is always reported too).
    cells: int | None = None
    degree: int | None = None  # `compare RUN`: the DG degree of that prediction (none: the training degree)
    # `compare CONFIG` with field.viscosity > 0: the PDE against a Monte Carlo of the reflected
    # SDE dX = v dt + √(2ε) dW (model/stochastic.py) at the first `mc_points` points, `paths`
    # paths each, `sde_steps` Euler–Maruyama steps (its bias measured with half as many).
    mc_points: int = 64
    paths: int = 2000  # Monte Carlo paths per point
    sde_steps: int = 32  # Euler–Maruyama steps of a path


@dataclass(frozen=True)
class DataConfig:
    """The learning problem's data (``solver.model.data``): generated or read from CSV, scaled into Ω."""

    kind: str = "moons"  # moons, circles, spirals, xor, checkerboard, blobs, peaks, csv (`path`)
    points: int | None = 400  # train + test; csv: all rows of the file unless given
    noise: float | None = None  # none: the kind's default
    seed: int = 0  # of the data and the train/test split
    test_fraction: float = DEFAULT_TEST_FRACTION  # held out for testing, stratified; csv: 0 (the whole file trains) unless given
    classes: int | None = None  # blobs: number of classes
    augment_dim: int | None = None  # append zero coordinates up to this dimension
    margin: float = DEFAULT_MARGIN  # fraction of Ω's half-width left free by the scaling into Ω
    label_noise: float = 0.0  # share of the training labels flipped to another class (test labels stay clean)
    params: Mapping[str, Any] = dataclass_field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class InputConfig:
    """The map of the data's features into Ω (``model/data.py``, ``model/input_layer.py``)."""

    # "scaling": one affine map, fitted on the training data and fixed (the data have Ω's
    # dimension); "learned": z = c + s⊙tanh(E x̂ + e) trained with the flow (any number of
    # features). None: "learned" when the data have more features than Ω has dimensions.
    kind: str | None = None
    # Ω's dimension when [domain] is absent (the default box [-1, 1]^dim); none: the data's
    # dimension, or 3 for data of more than 3 features
    dim: int | None = None
    init: str = "pca"  # the learned layer's start: "pca" (principal directions) or "lda" (classes)
    decay: float = 0.0  # the learned layer's weight decay: weight of |E|² in J (e is not penalized)
    # InputLayer.pretrain; θ then starts at a tenth of field.scale (learn/train.py)
    pretrain: int = 0  # L-BFGS iterations fitting the learned layer and the output layer without the flow before training; 0: none
    # the pretraining's restarts, each from its own seeded A, the lowest objective kept (local
    # minima: InputLayer.pretrain); dealt out over the ranks
    restarts: int = 1  # pretraining restarts (A drawn anew for each); the one of lowest objective is kept


@dataclass(frozen=True)
class TrainConfig:
    """Learning the velocity: objective, optimizer, checkpoints.

    The objective's weights are also the defaults of ``learn.reduced.ReducedFunctional``.
    """

    loss: str = "cross_entropy"  # cross_entropy or squared_error
    weight_decay: float = 1e-4  # weight of |p|²
    smoothness: float = 1e-2  # weight of |θ_{j+1} − θ_j|² (adjacent slabs)
    kinetic: float = 0.0  # weight of ∫∫|v|² (bounds the field, and so the CFL step count)
    roughness: float = 0.0  # weight of ∫∫|∇v|² (keeps the field resolvable on the mesh)
    optimizer: str = "lbfgs"  # lbfgs or adam
    iterations: int = 100  # optimizer iterations
    learning_rate: float = DEFAULT_LEARNING_RATE  # Adam
    memory: int = DEFAULT_MEMORY  # L-BFGS curvature pairs
    max_step: float = DEFAULT_MAX_STEP  # L-BFGS: the longest first trial step |Δp|
    save_every: int = 10  # checkpoint every n iterations
    seed: int = 0  # initial θ and output layer
    init: str | None = None  # start from the parameters of this run (directory or theta.npz)
    # Certification (learn/certify.py): every check_every iterations and at the end the PDE is
    # checked against the characteristics on the training and test points (at most check_points
    # of each); where the logits differ by more than tolerance the resolution is raised (adapt:
    # DG2, then 1.5× the cells), up to max_dofs DG dofs per component.
    check_every: int = 10  # iterations between checks against the characteristics
    check_points: int = 2000  # at most this many training and test points are checked
    tolerance: float = 0.5  # max |u_h(0, X) − f(q(T; X))| over the logits
    refine_above: float | None = None  # during training, raise the resolution past this (none: tolerance)
    agreement: float = 0.995  # the least fraction of equal labels for a certified run
    adapt: bool = True  # raise the resolution where the check fails (else report only)
    max_dofs: int = 400_000  # DG dofs per component the resolution may grow to
    # Stop once a check certifies this test accuracy (the characteristics' accuracy on the test
    # points, the check passed); a check also runs where the PDE's test accuracy first reaches it,
    # and none at the start (it would certify nothing the run ends with)
    target_accuracy: float | None = None  # end training once a check certifies this test accuracy (none: all iterations)
    # With a target and more training points than this, train first on a random subset of this
    # many (all the test points) until a check certifies the target, then on all of them from
    # there for the iterations left (learn/train.py, first_stage)
    subsample: int = 100_000  # the first stage's training points (with train.target_accuracy); 0: all points from the start
    # With field.viscosity > 0 the reference of the checks is the Monte Carlo of the reflected SDE
    # (model/stochastic.py, antithetic pairs, Heun steps) with its error bound, not the characteristics.
    paths: int = 512  # viscous runs: Monte Carlo paths per checked point (even: antithetic pairs)
    sde_steps: int = 16  # viscous runs: Heun steps of a path (its bias measured with half as many)

    @property
    def refine_threshold(self) -> float:
        """The logit difference above which training raises the resolution."""
        return self.tolerance if self.refine_above is None else self.refine_above


@dataclass(frozen=True)
class OutputConfig:
    """What a run writes besides numbers: VTX fields for ParaView, PNG plots, an animation."""

    vtx: bool = True  # u0.bp, u_t.bp (ParaView)
    png: bool = True  # the PNG pictures
    animation: bool = True  # flow.gif of training and `compare RUN`: the points along the flow over u_h(t)
    frames: int = 40  # frames of flow.gif (fewer if the solve has fewer time steps)


@dataclass(frozen=True)
class Config:
    """A validated problem; ``source`` is the file it came from (not part of ``to_dict``)."""

    domain: DomainConfig = DomainConfig()
    mesh: MeshConfig = MeshConfig(16, 2)  # DEFAULT_MESH of the default scheme in 2D
    field: FieldConfig = FieldConfig()
    terminal: TerminalConfig = TerminalConfig(
        "gaussian", MappingProxyType({"center": (0.0, 0.0), "sigma": 0.25})
    )
    solver: SolverConfig = SolverConfig()
    compare: CompareConfig = CompareConfig()
    output: OutputConfig = OutputConfig()
    data: DataConfig = DataConfig()
    input: InputConfig = InputConfig()
    train: TrainConfig = TrainConfig()
    source: str = dataclass_field(default="<dict>", compare=False)

    @property
    def dim(self) -> int:
        return self.domain.dim

    def to_dict(self, sections: tuple[str, ...] = SECTIONS) -> dict[str, dict[str, Any]]:
        """Plain nested dict (lists, no None) of ``sections``: ``config_from_dict`` of it gives
        this config, up to the defaults of the sections left out."""
        out = {}
        for f in fields(self):
            if f.name == "source" or f.name not in sections:
                continue
            section = getattr(self, f.name)
            if f.name == "terminal":
                values = {"kind": section.kind, **section.params}
            elif f.name == "data":
                values = {f.name: getattr(section, f.name) for f in fields(section) if f.name != "params"}
                values.update(section.params)
            else:
                values = asdict(section)
            out[f.name] = {k: _plain(v) for k, v in values.items() if v is not None}
        return out

    def to_toml(self, sections: tuple[str, ...] = SECTIONS) -> str:
        """The resolved config's ``sections`` as TOML text, e.g. for a run directory (a command's
        own: ``TRAIN_SECTIONS``, ``COMPARE_SECTIONS``)."""
        blocks = []
        for section, values in self.to_dict(sections).items():
            lines = [f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    def domain_object(self) -> Domain:
        """Ω as a :class:`solver.model.domain.Box` or :class:`solver.model.domain.Ball`."""
        d = self.domain
        if d.kind == "box":
            return make_domain("box", lower=d.lower, upper=d.upper)
        return make_domain(d.kind, center=d.center, radius=d.radius)

    def terminal_object(self) -> Terminal:
        """The terminal function f, shape (n, d) -> (n, K)."""
        return make_terminal(self.terminal.kind, self.dim, **_plain(dict(self.terminal.params)))


def _keys(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "params")


# The keys of each section are the fields of its dataclass.
SECTION_KEYS = {
    "mesh": _keys(MeshConfig),
    "solver": _keys(SolverConfig),
    "compare": _keys(CompareConfig),
    "output": _keys(OutputConfig),
    "train": _keys(TrainConfig),
    "input": _keys(InputConfig),
}
DATA_KEYS = _keys(DataConfig)


def _plain(value: Any) -> Any:
    """Tuples (and mapping proxies) to lists (and dicts), recursively."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _frozen(value: Any) -> Any:
    """Lists to tuples, recursively, so configs are immutable."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))  # validated finite; repr round-trips floats exactly
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


# --------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML problem file.

    Raises:
        InputError: the file is missing or unreadable, is not valid TOML (with the line), or
            has an unknown/ill-typed/out-of-range key.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise InputError("not a regular file: expected a TOML problem file", source=str(path))
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"{path.stat().st_size} bytes: not a problem file (at most "
                             f"{MAX_CONFIG_BYTES} bytes)", source=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file not found (cwd: {Path.cwd()})", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read config file: {e}", source=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"line (\d+)", str(e))
        where = f"{path}:{match.group(1)}" if match else str(path)
        raise InputError(f"invalid TOML: {e}", source=where) from None
    return config_from_dict(data, source=str(path), text=text)


def config_from_dict(
    d: Mapping[str, Any], source: str = "<dict>", text: str | None = None
) -> Config:
    """Validate a parsed TOML document (nested dicts) into a :class:`Config`.

    Args:
        d: ``{section: {key: value}}``; missing sections and keys take their defaults (those
            of the section's dataclass).
        source: where ``d`` came from, for messages.
        text: the TOML text of ``d``, if any, to point messages at the line of a key.
    """
    r = _Reader(source, text)
    if not isinstance(d, Mapping):
        raise InputError(f"expected a table of sections, got {d!r}", source=source)
    for name in d:
        if name not in SECTIONS:
            raise r.error(name, None, f"unknown section [{name}]. Valid sections: {list(SECTIONS)}")
    sections = {name: r.section(name, d.get(name, {})) for name in SECTIONS}
    for (name, key), old in LEGACY_VALUES.items():
        value = sections[name].get(key)
        if value == old and not isinstance(value, bool):
            del sections[name][key]

    inputs = _input(r, sections["input"])
    if not sections["domain"]:
        dim = inputs.dim or _data_dimension(sections["data"], source)
        sections["domain"] = {"lower": [-1.0] * dim, "upper": [1.0] * dim}  # the default box
    domain = _domain(r, sections["domain"])
    if inputs.dim is not None and inputs.dim != domain.dim:
        raise r.error("input", "dim", f"expected Ω's dimension {domain.dim} (of [domain]) or no input.dim, "
                      f"got {inputs.dim}")
    if inputs.kind == "learned" and sections["data"].get("augment_dim") is not None:
        raise r.error("input", "kind", '"learned" maps the features into Ω itself: drop data.augment_dim')
    min_cells = _min_cells(domain.kind)
    field = _field(r, sections["field"], domain)
    solver_keys = set(sections["solver"])
    if "scheme" not in solver_keys and (field.viscosity > 0 or "dt" in solver_keys or RUN_SOLVER_KEYS <= solver_keys):
        sections["solver"]["scheme"] = "rk3"  # viscous, a forced RK3 step, or a run from before schemes
    if RUN_SOLVER_KEYS | {"scheme", "substep_rotation"} <= solver_keys and "slabs_per_step" not in solver_keys:
        sections["solver"]["slabs_per_step"] = 1  # a run from before steps spanned slabs: one per slab
    r.check_keys("mesh", sections["mesh"], SECTION_KEYS["mesh"])
    # No [mesh] keys: the starting mesh of the scheme and Ω's dimension (DEFAULT_MESH); else
    # MeshConfig's defaults.
    scheme = sections["solver"].get("scheme", SolverConfig.scheme)
    cells, degree = DEFAULT_MESH.get((scheme, domain.dim), (MeshConfig.cells, MeshConfig.degree)) if (
        not sections["mesh"]) else (MeshConfig.cells, MeshConfig.degree)
    mesh = MeshConfig(
        cells=r.value("mesh", sections["mesh"], "cells", cells, partial(validate.integer, low=min_cells)),
        degree=r.value("mesh", sections["mesh"], "degree", degree, partial(validate.integer, low=1, high=3)),
    )
    terminal = _terminal(r, sections["terminal"], domain)
    solver = SolverConfig(**r.fields("solver", sections["solver"], SolverConfig,
        cfl=partial(validate.number, low=0.0, high=2.0, low_open=True),
        dt=partial(validate.optional(validate.number), low=0.0, low_open=True),
        checkpoint_every=partial(validate.integer, low=1),
        stage_memory=_stage_memory,
        max_steps=partial(validate.integer, low=1),
        scheme=partial(validate.choice, choices=SCHEMES),
        substep_rotation=partial(validate.number, low=0.0, high=4.0, low_open=True),
        slabs_per_step=_slabs_per_step,
    ))
    if solver.scheme == "sl" and field.viscosity > 0:
        raise r.error("solver", "scheme", f'"sl" transports without viscosity (field.viscosity = '
                      f'{field.viscosity:g}); use "rk3"')
    if solver.scheme == "sl" and solver.dt is not None:
        raise r.error("solver", "dt", f'a forced time step ({solver.dt:g}) is RK3\'s: "sl" takes one step '
                      f'per slab; set solver.scheme = "rk3" or drop solver.dt')
    compare = _compare(r, sections["compare"], min_cells, source)
    output = OutputConfig(**r.fields("output", sections["output"], OutputConfig,
        vtx=validate.boolean, png=validate.boolean, animation=validate.boolean,
        frames=partial(validate.integer, low=2, high=1000),
    ))
    data = _data(r, sections["data"], source)
    train = _train(r, sections["train"], source)
    if inputs.kind == "learned" and solver.scheme != "sl":
        raise r.error("input", "kind", f'a learned input layer needs solver.scheme = "sl" (a continuous '
                      f'u_h(0, ·)): with "{solver.scheme}" J jumps where data points cross facets')
    return Config(domain, mesh, field, terminal, solver, compare, output, data, inputs, train, source=source)


def _input(r: _Reader, s: dict[str, Any]) -> InputConfig:
    return InputConfig(**r.fields("input", s, InputConfig,
        kind=validate.optional(partial(validate.choice, choices=INPUT_KINDS)),
        dim=partial(validate.optional(validate.integer), low=2, high=3),
        init=partial(validate.choice, choices=INPUT_INITS),
        decay=partial(validate.number, low=0.0),
        pretrain=partial(validate.integer, low=0),
        restarts=partial(validate.integer, low=1),
    ))


def _integer_or(word: str, low: int, unit: str = ""):
    """The validator of a key that takes an integer >= ``low`` or the string ``word``."""
    def check(name: str, value: Any) -> int | str:
        if value == word:
            return value
        if isinstance(value, str):
            raise validate.expected(name, f'an integer >= {low}{unit} or "{word}"', value)
        return validate.integer(name, value, low=low)
    return check


_stage_memory = _integer_or("auto", 0, " (MiB per rank)")  # solver.stage_memory
_slabs_per_step = _integer_or("all", 1)  # solver.slabs_per_step


def stage_memory_bytes(solver: SolverConfig) -> int | None:
    """``solver.stage_memory`` as ``TransportSolver`` takes it: bytes, None for "auto"."""
    return None if solver.stage_memory == "auto" else solver.stage_memory * 2**20


def _compare(r: _Reader, s: dict[str, Any], min_cells: int, source: str) -> CompareConfig:
    return CompareConfig(**r.fields("compare", s, CompareConfig,
        points=partial(validate.integer, low=1),
        grid=partial(validate.integer, low=2),
        seed=partial(validate.integer, low=0),
        refine=partial(_increasing, low=min_cells),
        points_file=r.path_check(source),
        cells=partial(validate.optional(validate.integer), low=min_cells),
        degree=partial(validate.optional(validate.integer), low=1, high=3),
        mc_points=partial(validate.integer, low=1),
        paths=partial(validate.integer, low=2, high=10**6),
        sde_steps=partial(validate.integer, low=2, high=10**6),
    ))


def _train(r: _Reader, s: dict[str, Any], source: str) -> TrainConfig:
    return TrainConfig(**r.fields("train", s, TrainConfig,
        loss=partial(validate.choice, choices=LOSSES),
        weight_decay=partial(validate.number, low=0.0),
        smoothness=partial(validate.number, low=0.0),
        kinetic=partial(validate.number, low=0.0),
        roughness=partial(validate.number, low=0.0),
        optimizer=partial(validate.choice, choices=OPTIMIZERS),
        iterations=partial(validate.integer, low=0),
        learning_rate=partial(validate.number, low=0.0, low_open=True),
        memory=partial(validate.integer, low=1),
        max_step=partial(validate.number, low=0.0, low_open=True),
        save_every=partial(validate.integer, low=1),
        seed=partial(validate.integer, low=0),
        init=r.path_check(source),
        check_every=partial(validate.integer, low=1),
        check_points=partial(validate.integer, low=1),
        tolerance=partial(validate.number, low=0.0, low_open=True),
        refine_above=partial(validate.optional(validate.number), low=0.0, low_open=True),
        agreement=partial(validate.number, low=0.0, low_open=True, high=1.0),
        adapt=validate.boolean,
        max_dofs=partial(validate.integer, low=1),
        target_accuracy=partial(validate.optional(validate.number), low=0.0, low_open=True, high=1.0),
        subsample=partial(validate.integer, low=0),
        paths=_antithetic_paths,
        sde_steps=partial(validate.integer, low=2, high=10**6),
    ))


def _antithetic_paths(name: str, value: Any) -> int:
    """An even number of paths >= 4: pairs W, −W, at least two pairs for a standard error."""
    if not validate.is_integer(value) or value < 4 or value > 10**6 or value % 2:
        raise validate.expected(name, "an even integer in [4, 1000000]", value)
    return int(value)


def _increasing(name: str, value: Any, low: int) -> tuple[int, ...]:
    """Increasing cell counts >= low."""
    cells = validate.integer_list(name, value, low)
    if any(b <= a for a, b in zip(cells, cells[1:])):
        raise validate.expected(name, "increasing cell counts", value)
    return tuple(cells)


def _data(r: _Reader, s: dict[str, Any], source: str) -> DataConfig:
    kind = r.value("data", s, "kind", DataConfig.kind, partial(validate.choice, choices=DATASET_KINDS))
    r.check_keys("data", s, DATA_KEYS + DATASET_PARAMS[kind], f'for kind "{kind}"')
    params = {k: v for k, v in s.items() if k in DATASET_PARAMS[kind]}
    if kind == "csv":
        if "path" not in params:
            raise r.error("data", "path", 'kind "csv" needs path = "file.csv"')
        params["path"] = r.value("data", s, "path", None, r.path_check(source))
        if "test_path" in params:  # the held-out points, a CSV file of the same format
            params["test_path"] = r.value("data", s, "test_path", None, r.path_check(source))
    # The checks of make_dataset itself, under the config's names (points, classes).
    values = r.fields("data", s, DataConfig,
        # csv: no points means all rows of the file
        points=validate.optional(DATA_CHECKS["num_points"]) if kind == "csv" else DATA_CHECKS["num_points"],
        noise=validate.optional(DATA_CHECKS["noise"]),
        seed=DATA_CHECKS["seed"],
        test_fraction=DATA_CHECKS["test_fraction"],
        classes=validate.optional(DATA_CHECKS["num_classes"]),
        # the mesh is 2D or 3D
        augment_dim=partial(validate.optional(validate.integer), low=2, high=3),
        margin=DATA_CHECKS["margin"],
        label_noise=DATA_CHECKS["label_noise"],
    )
    if kind == "csv" and "points" not in s:
        values["points"] = None  # all rows (the default 400 is for the generated kinds)
    if kind == "csv" and "test_fraction" not in s:
        values["test_fraction"] = 0.0  # the user's file trains whole; data.test_path holds test points
    if "test_path" in params and values["test_fraction"] > 0:
        raise r.error("data", "test_fraction", f"expected 0 (or no test_fraction) with data.test_path, which "
                      f"holds the test points, got {values['test_fraction']!r}")
    if values["classes"] is not None and values["points"] is not None and values["classes"] > values["points"]:
        raise r.error("data", "classes", f"expected at most data.points = {values['points']} "
                      f"classes, got {values['classes']}")
    return DataConfig(
        kind=kind, **values, params=MappingProxyType({k: _frozen(v) for k, v in params.items()})
    )


# The starting mesh (cells, degree) by Ω's dimension when [mesh] gives neither key. In 3D the
# coarse DG2 start of problems/circles3d.toml (5³ DG2: 7 500 dofs per component, where 32³ DG1
# would be 7.9e5, over train.max_dofs); training raises the resolution where the check asks.
# The semi-Lagrangian scheme: P2 on half the 2D cells (the nodes of DG1's 32², several times
# closer to the characteristics: scripts/bench_substeps.py RUN --cells 16,32).
DEFAULT_MESH = {("rk3", 2): (MeshConfig.cells, MeshConfig.degree), ("rk3", 3): (5, 2),
                ("sl", 2): (16, 2), ("sl", 3): (5, 2)}
# The [solver] keys a run's config.toml held before solver.scheme existed (Config.to_toml writes
# every key): such a run was trained with "rk3" and is read so.
RUN_SOLVER_KEYS = {"cfl", "checkpoint_every", "stage_memory", "max_steps"}


def _data_dimension(data: Mapping[str, Any], source: str) -> int:
    """Ω's dimension that a problem file without [domain] implies: ``data.augment_dim`` if
    given, else for a CSV file 3 when its header names 3 or more feature columns, else 2. Anything unreadable gives 2: the data's own checks report it later."""
    augment = data.get("augment_dim")
    if augment in (2, 3) and not isinstance(augment, bool):
        return augment
    path = data.get("path")
    if data.get("kind") != "csv" or not isinstance(path, str) or not path:
        return 2
    if not Path(path).is_absolute() and not source.startswith("<"):
        path = Path(source).parent / path
    try:  # the header only, from at most the first 64 kB of a regular file (not /dev/zero, a FIFO)
        if not Path(path).is_file():
            return 2
        with open(path, "rb") as f:
            head = f.read(2**16).decode("utf-8-sig", errors="replace")
        header = next((row for row in csv.reader(head.splitlines()) if any(v.strip() for v in row)), [])
    except (OSError, csv.Error):
        return 2
    features = sum(1 for name in header if name.strip().lower() != "label")
    if len(header) != features + 1:
        return 2
    return 3 if features >= 3 else 2  # more than 3: a learned input layer into the 3D box


def _min_cells(domain_kind: str) -> int:
    # gmsh needs a few cells across a disk/ball to resolve the curved boundary at all.
    return 1 if domain_kind == "box" else 2


def _domain(r: _Reader, s: dict[str, Any]) -> DomainConfig:
    kind = r.value("domain", s, "kind", DomainConfig.kind, partial(validate.choice, choices=DOMAIN_KINDS))
    r.check_keys("domain", s, DOMAIN_KEYS[kind], f'for kind "{kind}"')
    if kind == "box":
        vector = validate.optional(partial(validate.vector, lengths=(2, 3)))
        lower = r.value("domain", s, "lower", None, vector)
        upper = r.value("domain", s, "upper", [1.0] * (len(lower) if lower else 2), vector)
        if lower is None:
            lower = [-1.0] * len(upper)
        if len(lower) != len(upper):
            raise r.error(
                "domain", "upper", f"expected as many entries as domain.lower {lower}, got {upper}"
            )
        if any(b <= a for a, b in zip(lower, upper)):
            raise r.error(
                "domain", "upper", f"expected upper > lower entrywise, got {upper} (lower {lower})"
            )
        sides = [b - a for a, b in zip(lower, upper)]
        if max(map(abs, lower + upper)) > MAX_COORDINATE or not all(MIN_SIDE <= h <= MAX_SIDE for h in sides):
            raise r.error("domain", "upper", f"expected sides upper - lower from {MIN_SIDE:g} to "
                          f"{MAX_SIDE:g} and coordinates within ±{MAX_COORDINATE:g} (the mesh and "
                          f"the time step are computed in double precision), got lower {lower}, upper {upper}")
        return DomainConfig(kind, tuple(lower), tuple(upper), None, None)
    dim = 2 if kind == "disk" else 3
    coordinate = partial(validate.number, low=-MAX_COORDINATE, high=MAX_COORDINATE)
    center = r.value("domain", s, "center", [0.0] * dim, partial(validate.vector, lengths=(dim,)))
    r.value("domain", s, "center", [0.0] * dim, lambda name, v: [coordinate(name, x) for x in v])
    radius = r.value("domain", s, "radius", 1.0,
                     partial(validate.number, low=MIN_SIDE / 2, high=MAX_SIDE / 2))
    return DomainConfig(kind, None, None, tuple(center), radius)


def _field(r: _Reader, s: dict[str, Any], domain: DomainConfig) -> FieldConfig:
    kind = r.value("field", s, "kind", FieldConfig.kind, partial(validate.choice, choices=FIELD_KINDS))
    r.check_keys("field", s, FIELD_KEYS[kind], f'for kind "{kind}"')
    T = partial(validate.number, low=0.0, low_open=True)
    viscosity = partial(validate.number, low=0.0)
    if kind == "rotation":
        if domain.kind == "box":
            raise r.error(
                "field",
                "kind",
                'a "rotation" field is only valid on a disk or ball domain (a rigid rotation '
                'does not leave a box invariant), got domain.kind = "box"',
            )
        return FieldConfig(
            kind, **r.fields("field", s, FieldConfig, T=T, viscosity=viscosity), width=None, activation=None,
            slabs=None, seed=None, scale=None,
            omega=r.value("field", s, "omega", 2.0 * math.pi, validate.number),
        )
    if kind == "mlp1":
        return FieldConfig(kind, **r.fields("field", s, FieldConfig,
            T=T,
            activation=partial(validate.choice, choices=ACTIVATIONS),
            slabs=partial(validate.integer, low=1),
            seed=partial(validate.integer, low=0),
            scale=partial(validate.number, low=0.0),
        ), width=None)
    return FieldConfig(kind, **r.fields("field", s, FieldConfig,
        T=T,
        width=partial(validate.integer, low=1),
        activation=partial(validate.choice, choices=ACTIVATIONS),
        slabs=partial(validate.integer, low=1),
        seed=partial(validate.integer, low=0),
        scale=partial(validate.number, low=0.0),
        viscosity=viscosity,
    ))


def _terminal(r: _Reader, s: dict[str, Any], domain: DomainConfig) -> TerminalConfig:
    kind = r.value("terminal", s, "kind", "gaussian", partial(validate.choice, choices=TERMINAL_KINDS))
    r.check_keys("terminal", s, ("kind", *TERMINAL_PARAMS[kind]), f'for kind "{kind}"')
    params = terminal_defaults(kind, domain.dim)
    if kind == "gaussian":
        # The natural default bump sits in the middle of Ω.
        mid = domain.center or [(a + b) / 2 for a, b in zip(domain.lower, domain.upper)]
        params["center"] = list(mid)
    params.update({k: v for k, v in s.items() if k != "kind"})
    if "num_components" in s:
        r.value("terminal", s, "num_components", None,
                partial(validate.integer, low=1, high=MAX_COMPONENTS))
    try:
        make_terminal(kind, domain.dim, **params)  # validates values and shapes against d
    except InputError as e:
        match = re.match(r"terminal\.(\w+)", str(e))
        key = match.group(1) if match else None
        raise InputError(str(e), source=r.where("terminal", key)) from None
    return TerminalConfig(kind, MappingProxyType({k: _frozen(v) for k, v in params.items()}))


class _Reader:
    """Checked access to the keys of a section, with errors that name key, value and line."""

    def __init__(self, source: str, text: str | None):
        self.source = source
        self.lines = text.splitlines() if text is not None else None

    def where(self, section: str, key: str | None) -> str:
        """``source:line`` of ``key`` in ``[section]`` (or of the section header), if found."""
        if self.lines is None:
            return self.source
        current = None
        header = None
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            m = re.match(r"\[\s*([A-Za-z0-9_-]+)\s*\]", stripped)
            if m:
                current = m.group(1)
                if current == section and header is None:
                    header = number
                continue
            if key is not None and current == section and re.match(
                rf'["\']?{re.escape(key)}["\']?\s*=', stripped
            ):
                return f"{self.source}:{number}"
            # A top-level "section = {...}" or "section.key = ..." line.
            if current is None and re.match(rf"{re.escape(section)}\s*[=.]", stripped):
                return f"{self.source}:{number}"
        return f"{self.source}:{header}" if header else self.source

    def error(self, section: str, key: str | None, message: str) -> InputError:
        path = f"{section}.{key}" if key else section
        return InputError(f"{path}: {message}", source=self.where(section, key))

    def section(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(name, None, f"expected a table [{name}], got {value!r}")
        return dict(value)

    def check_keys(
        self, section: str, s: dict[str, Any], valid: tuple[str, ...], what: str = ""
    ) -> None:
        for key in s:
            if key not in valid:
                what = f" {what}" if what else ""
                raise self.error(section, key, f"unknown key{what}. Valid keys: {list(valid)}")

    def value(self, section: str, s: dict, key: str, default: Any, check: Callable) -> Any:
        """``check("section.key", value)`` of the key's value (or ``default``), its error
        pointed at the key's line."""
        try:
            return check(f"{section}.{key}", s.get(key, default))
        except InputError as e:
            raise InputError(str(e), source=self.where(section, key)) from None

    def fields(self, section: str, s: dict, cls: type, **checks: Callable) -> dict[str, Any]:
        """The keys of ``checks`` read from ``s`` with :meth:`value`, an absent key taking the
        default of the dataclass ``cls``; any other key of ``s`` is refused."""
        if section in SECTION_KEYS:
            self.check_keys(section, s, SECTION_KEYS[section])
        defaults = {f.name: f.default for f in fields(cls)}
        return {key: self.value(section, s, key, defaults[key], check) for key, check in checks.items()}

    def path_check(self, source: str) -> Callable[[str, Any], str | None]:
        """The check of an optional file path; a relative path is taken relative to the config
        file and returned absolute, so that the resolved config (written into a run directory,
        read again by --resume) names the same file."""

        def check(name: str, value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise validate.expected(name, "a file path (string)", value)
            path = Path(value)
            if not path.is_absolute() and not source.startswith("<"):
                path = Path(source).parent / path
            return os.path.normpath(path.absolute())  # "problems/../runs/x" -> "runs/x"

        return check
