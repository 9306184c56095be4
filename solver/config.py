"""Problem files: TOML -> frozen dataclasses, validated with messages that point at the line.

No dolfinx here: the command line reads a config before it builds anything, and a typo must
fail in a second, not after a mesh is built. Every key has a default, so an empty file is a
working problem (an MLP field on [-1, 1]², a Gaussian terminal); see ``problems/*.toml``.

An error names the key path (``field.width``), the bad value and what was expected; its source
is the file and, where found, the line (``problems/x.toml:7``).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dataclass_field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from solver.model import velocity
from solver.model.data import DATASET_KINDS, DATASET_PARAMS
from solver.learn.optimize import OPTIMIZERS
from solver.model.losses import LOSSES
from solver.model.domain import DOMAIN_KINDS, Domain, make_domain
from solver.errors import InputError
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
TIME_MODES = velocity.TIME_MODES  # θ constant or linear in t on each slab

DOMAIN_KEYS = {
    "box": ("kind", "lower", "upper"),
    "disk": ("kind", "center", "radius"),
    "ball": ("kind", "center", "radius"),
}
FIELD_KEYS = {
    "mlp": ("kind", "T", "width", "activation", "slabs", "time", "seed", "scale"),
    "rotation": ("kind", "T", "omega"),
}
SECTION_KEYS = {
    "train": (
        "loss", "weight_decay", "smoothness", "kinetic", "roughness", "optimizer", "iterations", "learning_rate",
        "memory", "max_step", "save_every", "seed", "init",
        "check_every", "check_points", "tolerance", "agreement", "adapt", "max_dofs",
    ),
    "mesh": ("cells", "degree"),
    "solver": ("cfl", "dt", "checkpoint_every", "stage_memory"),
    "compare": ("points", "points_file", "grid", "seed", "refine", "cells", "degree"),
    "output": ("vtx", "png"),
}
SECTIONS = ("domain", "mesh", "field", "terminal", "solver", "compare", "output", "data", "train")
DATA_KEYS = ("kind", "points", "noise", "seed", "test_fraction", "classes", "augment_dim", "margin")


@dataclass(frozen=True)
class DomainConfig:
    """Ω: a box [lower, upper] or a disk/ball |x − center| ≤ radius."""

    kind: str = "box"
    lower: tuple[float, ...] | None = (-1.0, -1.0)  # box only
    upper: tuple[float, ...] | None = (1.0, 1.0)  # box only
    center: tuple[float, ...] | None = None  # disk/ball only
    radius: float | None = None  # disk/ball only

    @property
    def dim(self) -> int:
        return len(self.lower if self.kind == "box" else self.center)


@dataclass(frozen=True)
class MeshConfig:
    """Cells per direction (box) or across the diameter (disk/ball), and the DG degree."""

    cells: int = 32
    degree: int = 1


@dataclass(frozen=True)
class FieldConfig:
    """The velocity v(t, x) on [0, T]; keys of the other kind are None."""

    kind: str = "mlp"
    T: float = 1.0
    width: int | None = 8
    activation: str | None = "tanh"
    slabs: int | None = 4
    time: str | None = "constant"
    seed: int | None = 0
    scale: float | None = 1.0
    omega: float | None = None  # rotation only: angular speed, rad per unit time


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
    """Time stepping: Courant number, an optional forced step, checkpoint spacing, stage memory."""

    cfl: float = 1.0  # Courant number; RK3 blew up at 2.5 (DG1, DG2) and 2.0 (DG3), measured
    dt: float = 0.0  # 0: from the CFL bound
    checkpoint_every: int = 0  # keep every n-th step start for an adjoint; 0: none
    stage_memory: int = 256  # MiB per rank for the RK stage states a gradient reads back


@dataclass(frozen=True)
class CompareConfig:
    """FE vs characteristics: random points in Ω, a grid for the error map, refinements."""

    points: int = 500
    grid: int = 65
    seed: int = 1
    refine: tuple[int, ...] = ()
    # A CSV file of points (one per row, d columns) to compare at instead of random ones;
    # a relative path is relative to the config file.
    points_file: str | None = None
    # `compare RUN` of a trained run: the mesh cells and DG degree of its PDE prediction, if
    # finer than training's (0: the training mesh, which is always reported too).
    cells: int = 0
    degree: int = 0


@dataclass(frozen=True)
class DataConfig:
    """The learning problem's data (``solver.model.data``): generated or read from CSV, scaled into Ω."""

    kind: str = "moons"
    points: int | None = 400  # None: all rows of a CSV file
    noise: float | None = None  # None: the kind's default
    seed: int = 0
    test_fraction: float = 0.25
    classes: int | None = None  # blobs: number of classes
    augment_dim: int | None = None  # append zero coordinates up to this dimension
    margin: float = 0.2
    params: Mapping[str, Any] = dataclass_field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class TrainConfig:
    """Learning the velocity: objective, optimizer, checkpoints."""

    loss: str = "cross_entropy"
    weight_decay: float = 1e-4
    smoothness: float = 1e-2
    kinetic: float = 0.0  # weight of ∫∫|v|² (bounds the field, and so the CFL step count)
    roughness: float = 0.0  # weight of ∫∫|∇v|² (keeps the field resolvable on the mesh)
    optimizer: str = "lbfgs"
    iterations: int = 100
    learning_rate: float = 0.02  # Adam
    memory: int = 10  # L-BFGS curvature pairs
    max_step: float = 1.0  # L-BFGS: the longest first trial step |Δp|
    save_every: int = 10  # checkpoint every n iterations
    seed: int = 0  # initial θ and output layer
    init: str | None = None  # start from the parameters of this run (directory or theta.npz)
    # Certification (learn/certify.py): every check_every iterations and at the end the PDE is
    # checked against the characteristics on the training and test points (at most check_points
    # of each); outside the tolerances the resolution is raised (adapt) up to max_dofs.
    check_every: int = 10
    check_points: int = 2000
    tolerance: float = 0.5  # max |u_h(0, X) − f(q(T; X))| over the logits
    agreement: float = 0.995  # the least fraction of equal labels
    adapt: bool = True
    max_dofs: int = 400_000  # DG dofs per component


@dataclass(frozen=True)
class OutputConfig:
    """What a run writes besides numbers: VTX fields for ParaView, PNG plots."""

    vtx: bool = True
    png: bool = True


@dataclass(frozen=True)
class Config:
    """A validated problem; ``source`` is the file it came from (not part of ``to_dict``)."""

    domain: DomainConfig = DomainConfig()
    mesh: MeshConfig = MeshConfig()
    field: FieldConfig = FieldConfig()
    terminal: TerminalConfig = TerminalConfig(
        "gaussian", MappingProxyType({"center": (0.0, 0.0), "sigma": 0.25})
    )
    solver: SolverConfig = SolverConfig()
    compare: CompareConfig = CompareConfig()
    output: OutputConfig = OutputConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    source: str = dataclass_field(default="<dict>", compare=False)

    @property
    def dim(self) -> int:
        return self.domain.dim

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (lists, no None): ``config_from_dict`` of it gives this config."""
        out = {}
        for f in fields(self):
            if f.name == "source":
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

    def to_toml(self) -> str:
        """The resolved config as TOML text, e.g. for a run directory."""
        blocks = []
        for section, values in self.to_dict().items():
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
        d: ``{section: {key: value}}``; missing sections and keys take their defaults.
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

    domain = _domain(r, sections["domain"])
    mesh = _mesh(r, sections["mesh"], domain)
    field = _field(r, sections["field"], domain)
    terminal = _terminal(r, sections["terminal"], domain)
    s = sections["solver"]
    r.check_keys("solver", s, SECTION_KEYS["solver"])
    solver = SolverConfig(
        cfl=r.number("solver", s, "cfl", 1.0, low=0.0, low_open=True, high=2.0),
        dt=r.number("solver", s, "dt", 0.0, low=0.0),
        checkpoint_every=r.integer("solver", s, "checkpoint_every", 0, low=0),
        stage_memory=r.integer("solver", s, "stage_memory", 256, low=0),
    )
    c = sections["compare"]
    r.check_keys("compare", c, SECTION_KEYS["compare"])
    refine = r.integer_list("compare", c, "refine", [], low=_min_cells(domain.kind))
    if any(b <= a for a, b in zip(refine, refine[1:])):
        raise r.error("compare", "refine", f"expected increasing cell counts, got {refine}")
    compare = CompareConfig(
        points=r.integer("compare", c, "points", 500, low=1),
        grid=r.integer("compare", c, "grid", 65, low=2),
        seed=r.integer("compare", c, "seed", 1, low=0),
        refine=tuple(refine),
        points_file=r.path("compare", c, "points_file", source),
        cells=r.integer("compare", c, "cells", 0, low=0),
        degree=r.integer("compare", c, "degree", 0, low=0, high=3),
    )
    if 0 < compare.cells < _min_cells(domain.kind):
        raise r.error("compare", "cells", f"expected 0 (the training mesh) or >= {_min_cells(domain.kind)}, got {compare.cells}")
    o = sections["output"]
    r.check_keys("output", o, SECTION_KEYS["output"])
    output = OutputConfig(
        vtx=r.boolean("output", o, "vtx", True), png=r.boolean("output", o, "png", True)
    )
    data = _data(r, sections["data"], source)
    t = sections["train"]
    r.check_keys("train", t, SECTION_KEYS["train"])
    train = TrainConfig(
        loss=r.choice("train", t, "loss", "cross_entropy", LOSSES),
        weight_decay=r.number("train", t, "weight_decay", 1e-4, low=0.0),
        smoothness=r.number("train", t, "smoothness", 1e-2, low=0.0),
        kinetic=r.number("train", t, "kinetic", 0.0, low=0.0),
        roughness=r.number("train", t, "roughness", 0.0, low=0.0),
        optimizer=r.choice("train", t, "optimizer", "lbfgs", OPTIMIZERS),
        iterations=r.integer("train", t, "iterations", 100, low=0),
        learning_rate=r.number("train", t, "learning_rate", 0.02, low=0.0, low_open=True),
        memory=r.integer("train", t, "memory", 10, low=1),
        max_step=r.number("train", t, "max_step", 1.0, low=0.0, low_open=True),
        save_every=r.integer("train", t, "save_every", 10, low=1),
        seed=r.integer("train", t, "seed", 0, low=0),
        init=r.path("train", t, "init", source),
        check_every=r.integer("train", t, "check_every", 10, low=1),
        check_points=r.integer("train", t, "check_points", 2000, low=1),
        tolerance=r.number("train", t, "tolerance", 0.5, low=0.0, low_open=True),
        agreement=r.number("train", t, "agreement", 0.995, low=0.0, low_open=True, high=1.0),
        adapt=r.boolean("train", t, "adapt", True),
        max_dofs=r.integer("train", t, "max_dofs", 400_000, low=1),
    )
    return Config(domain, mesh, field, terminal, solver, compare, output, data, train, source=source)


def _data(r: _Reader, s: dict[str, Any], source: str) -> DataConfig:
    kind = r.choice("data", s, "kind", "moons", DATASET_KINDS)
    r.check_keys("data", s, DATA_KEYS + DATASET_PARAMS[kind], f'for kind "{kind}"')
    params = {k: v for k, v in s.items() if k in DATASET_PARAMS[kind]}
    if kind == "csv":
        if "path" not in params:
            raise r.error("data", "path", 'kind "csv" needs path = "file.csv"')
        params["path"] = r.path("data", s, "path", source)
    optional = lambda key, read: None if s.get(key) is None else read()  # noqa: E731
    return DataConfig(
        kind=kind,
        points=optional("points", lambda: r.integer("data", s, "points", 400, low=2))
        if kind == "csv" else r.integer("data", s, "points", 400, low=2),
        noise=optional("noise", lambda: r.number("data", s, "noise", 0.0, low=0.0)),
        seed=r.integer("data", s, "seed", 0, low=0),
        test_fraction=r.number("data", s, "test_fraction", 0.25, low=0.0, high=0.9),
        classes=optional("classes", lambda: r.integer("data", s, "classes", 3, low=2)),
        augment_dim=optional("augment_dim", lambda: r.integer("data", s, "augment_dim", 3, low=2, high=3)),
        margin=r.number("data", s, "margin", 0.2, low=0.0, high=0.9),
        params=MappingProxyType({k: _frozen(v) for k, v in params.items()}),
    )


def _min_cells(domain_kind: str) -> int:
    # gmsh needs a few cells across a disk/ball to resolve the curved boundary at all.
    return 1 if domain_kind == "box" else 2


def _domain(r: _Reader, s: dict[str, Any]) -> DomainConfig:
    kind = r.choice("domain", s, "kind", "box", DOMAIN_KINDS)
    r.check_keys("domain", s, DOMAIN_KEYS[kind], f'for kind "{kind}"')
    if kind == "box":
        lower = r.vector("domain", s, "lower", None, lengths=(2, 3))
        default_dim = len(lower) if lower is not None else 2
        upper = r.vector("domain", s, "upper", [1.0] * default_dim, lengths=(2, 3))
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
        return DomainConfig(kind, tuple(lower), tuple(upper), None, None)
    dim = 2 if kind == "disk" else 3
    center = r.vector("domain", s, "center", [0.0] * dim, lengths=(dim,))
    radius = r.number("domain", s, "radius", 1.0, low=0.0, low_open=True)
    return DomainConfig(kind, None, None, tuple(center), radius)


def _mesh(r: _Reader, s: dict[str, Any], domain: DomainConfig) -> MeshConfig:
    r.check_keys("mesh", s, SECTION_KEYS["mesh"])
    return MeshConfig(
        cells=r.integer("mesh", s, "cells", 32, low=_min_cells(domain.kind)),
        degree=r.integer("mesh", s, "degree", 1, low=1, high=3),
    )


def _field(r: _Reader, s: dict[str, Any], domain: DomainConfig) -> FieldConfig:
    kind = r.choice("field", s, "kind", "mlp", FIELD_KINDS)
    r.check_keys("field", s, FIELD_KEYS[kind], f'for kind "{kind}"')
    T = r.number("field", s, "T", 1.0, low=0.0, low_open=True)
    if kind == "rotation":
        if domain.kind == "box":
            raise r.error(
                "field",
                "kind",
                'a "rotation" field is only valid on a disk or ball domain (a rigid rotation '
                'does not leave a box invariant), got domain.kind = "box"',
            )
        omega = r.number("field", s, "omega", 2.0 * math.pi)
        return FieldConfig(kind, T, None, None, None, None, None, None, omega)
    return FieldConfig(
        kind,
        T,
        width=r.integer("field", s, "width", 8, low=1),
        activation=r.choice("field", s, "activation", "tanh", ACTIVATIONS),
        slabs=r.integer("field", s, "slabs", 4, low=1),
        time=r.choice("field", s, "time", "constant", TIME_MODES),
        seed=r.integer("field", s, "seed", 0, low=0),
        scale=r.number("field", s, "scale", 1.0, low=0.0),
        omega=None,
    )


def _terminal(r: _Reader, s: dict[str, Any], domain: DomainConfig) -> TerminalConfig:
    kind = r.choice("terminal", s, "kind", "gaussian", TERMINAL_KINDS)
    r.check_keys("terminal", s, ("kind", *TERMINAL_PARAMS[kind]), f'for kind "{kind}"')
    params = terminal_defaults(kind, domain.dim)
    if kind == "gaussian":
        # The natural default bump sits in the middle of Ω.
        mid = domain.center or [(a + b) / 2 for a, b in zip(domain.lower, domain.upper)]
        params["center"] = list(mid)
    params.update({k: v for k, v in s.items() if k != "kind"})
    try:
        make_terminal(kind, domain.dim, **params)  # validates values and shapes against d
    except InputError as e:
        match = re.match(r"terminal\.(\w+)", str(e))
        key = match.group(1) if match else None
        raise InputError(str(e), source=r.where("terminal", key)) from None
    return TerminalConfig(kind, MappingProxyType({k: _frozen(v) for k, v in params.items()}))


class _Reader:
    """Typed access to the keys of a section, with errors that name key, value and line."""

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

    def _bad(self, section: str, key: str, value: Any, expected: str) -> InputError:
        return self.error(section, key, f"expected {expected}, got {value!r}")

    def integer(
        self,
        section: str,
        s: dict,
        key: str,
        default: int,
        low: int | None = None,
        high: int | None = None,
    ) -> int:
        value = s.get(key, default)
        expected = "an integer" + _range(low, high)
        # bool is a subclass of int: `cells = true` must not pass as 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(section, key, value, expected)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._bad(section, key, value, expected)
        return value

    def number(
        self,
        section: str,
        s: dict,
        key: str,
        default: float,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
    ) -> float:
        value = s.get(key, default)
        expected = "a number" + _range(low, high, low_open)
        if not _is_number(value):
            raise self._bad(section, key, value, expected)
        if low is not None and (value < low or (low_open and value == low)):
            raise self._bad(section, key, value, expected)
        if high is not None and value > high:
            raise self._bad(section, key, value, expected)
        return float(value)

    def boolean(self, section: str, s: dict, key: str, default: bool) -> bool:
        value = s.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(section, key, value, "true or false")
        return value

    def choice(
        self, section: str, s: dict, key: str, default: str, choices: tuple[str, ...]
    ) -> str:
        value = s.get(key, default)
        if not isinstance(value, str) or value not in choices:
            raise self._bad(section, key, value, f"one of {list(choices)}")
        return value

    def vector(
        self, section: str, s: dict, key: str, default: list[float] | None, lengths: tuple[int, ...]
    ) -> list[float] | None:
        value = s.get(key, default)
        if value is None:
            return None
        expected = f"a list of {' or '.join(map(str, lengths))} numbers"
        if not isinstance(value, list | tuple) or len(value) not in lengths:
            raise self._bad(section, key, value, expected)
        if not all(_is_number(v) for v in value):
            raise self._bad(section, key, value, expected)
        return [float(v) for v in value]

    def path(self, section: str, s: dict, key: str, source: str) -> str | None:
        """An optional file path; relative paths are taken relative to the config file.

        Returned absolute, so that the resolved config (written into a run directory, read
        again by --resume) names the same file.
        """
        value = s.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self._bad(section, key, value, "a file path (string)")
        path = Path(value)
        if not path.is_absolute() and not source.startswith("<"):
            path = Path(source).parent / path
        return os.path.normpath(path.absolute())  # "problems/../runs/x" -> "runs/x"

    def integer_list(
        self, section: str, s: dict, key: str, default: list[int], low: int
    ) -> list[int]:
        value = s.get(key, default)
        expected = f"a list of integers >= {low}"
        if not isinstance(value, list | tuple) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < low for v in value
        ):
            raise self._bad(section, key, value, expected)
        return list(value)


def _is_number(value: Any) -> bool:
    # bool is a subclass of int: `radius = true` must not pass as 1.
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _range(low: float | None, high: float | None, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    return f" <= {high}" if high is not None else ""
