"""Labelled data sets (X_i, y_i) for the classification problems, placed inside Ω.

numpy + scikit-learn only. The flow model transports each X_i inside Ω and classifies it at the
end (eq. 13), so the data must lie in Ω and away from ∂Ω, where the cut-off velocity χ·v
vanishes and the flow cannot move them. :class:`Scaling` is that placement: an affine map fitted
on the training points only, applied unchanged to the test points.

Everything here is deterministic for a given ``seed``: every MPI rank calls
:func:`make_dataset` with the same arguments and gets the same arrays, so no communication (and
no ``comm`` argument) is needed. Errors about a parameter name it by its config key, ``data.<key>``
(``num_points`` is ``data.points``, ``num_classes`` is ``data.classes``), so that the message
reads the same from a problem file; errors about a CSV file carry the file as ``source``.

Kinds (:data:`DATASET_KINDS`), with their default ``noise`` (:data:`DEFAULT_NOISE`):

- ``moons``: sklearn's two interleaving half circles; Gaussian noise std 0.1. 2 classes.
- ``circles``: sklearn's concentric circles, radii 1 and ``factor`` (0.5); noise 0.05.
  2 classes. A 2D flow is a homeomorphism and cannot pull the inner circle out of the outer
  one, so a linear classifier at the end fails: use ``augment_dim=3`` (augmented neural ODEs).
- ``spirals``: ``num_classes`` (2) interleaved Archimedean arms r = s, θ = 2π·turns·s + 2πk/K,
  s ∈ [0.1, 1] with density ∝ s (uniform along the arm); ``turns`` (1.5); noise 0.03.
- ``xor``: the 2×2 checkerboard on [−1, 1]²; noise 0.
- ``checkerboard``: ``cells`` (4, even) cells per axis on [−1, 1]^dim, dim 2 or 3, label =
  parity of the cell index sum; noise 0 (noise jitters points after labelling).
- ``blobs``: sklearn's isotropic Gaussian blobs, ``num_classes`` (3) centres evenly spaced on
  the unit circle (dim 2) or a Fibonacci lattice of the unit sphere (dim 3); noise = cluster
  std, 0.25. Fixed centres, not sklearn's random ones, so that two blobs never coincide.
- ``peaks``: Haber & Ruthotto's 5-class problem ("Stable architectures for deep neural
  networks", 2017): points uniform on [−3, 3]², labelled by the band of MATLAB's peaks
  function (:func:`peaks`) they fall in; see :data:`PEAKS_LEVELS`. Noise 0.
- ``csv``: the user's file ``path`` (:func:`load_csv`); all rows, or a seeded random subset of
  ``num_points`` rows. Noise must be 0. All of them train unless ``test_fraction`` is given;
  ``test_path`` names a second file of held-out points instead (:func:`load_test_csv`).

Classes are exactly balanced (within one point) for moons, circles, spirals, xor, checkerboard
and blobs; peaks and csv keep their natural class frequencies. ``label_noise`` flips that share
of the training labels after the split (:func:`flip_labels`; any kind); test labels stay clean.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from solver import validate
from solver.errors import InputError, OutsideDomainWarning
from solver.model.domain import Ball, Box, Domain
from solver.model.input_layer import InputLayer

log = logging.getLogger("solver")

DATASET_KINDS = ("moons", "circles", "spirals", "xor", "checkerboard", "blobs", "peaks", "csv")

# The extra parameters each kind accepts (the ``**kw`` of make_dataset).
DATASET_PARAMS: dict[str, tuple[str, ...]] = {
    "moons": (),
    "circles": ("factor",),
    "spirals": ("turns",),
    "xor": (),
    "checkerboard": ("cells",),
    "blobs": (),
    "peaks": ("levels",),
    "csv": ("path", "test_path"),
}

DEFAULT_NOISE: dict[str, float] = {
    "moons": 0.1,
    "circles": 0.05,
    "spirals": 0.03,
    "xor": 0.0,
    "checkerboard": 0.0,
    "blobs": 0.25,
    "peaks": 0.0,
    "csv": 0.0,
}

# Thresholds of the peaks function between the 5 classes: class k is levels[k-1] < f <= levels[k].
# Under uniform sampling of [−3, 3]² the classes hold about 12.5%, 13.0%, 31.9%, 19.5%, 23.1%
# of the points (10⁶ samples). Meganet's setupPeaks cuts [min f, max f] into 5 equal bands
# instead; those hold 2.8%, 12%, 72%, 10%, 2.8% of the square, so it resamples every class to
# the same size, which makes the density jump between classes. Here the density is uniform.
PEAKS_LEVELS = (-1.0, -0.1, 0.1, 1.0)

# Default margin: the training data fill the central 80% of Ω (per half-axis, or of the radius).
DEFAULT_MARGIN = 0.2
# Default share of the points held out for testing, for the generated kinds; a CSV file is all
# training data unless data.test_fraction is set or data.test_path names a test file.
DEFAULT_TEST_FRACTION = 0.2

# The checks of the options of make_dataset that every kind takes; the config loader checks its
# keys with them too (``points`` and ``classes`` are ``num_points`` and ``num_classes`` here).
OPTION_CHECKS = {
    "num_points": partial(validate.integer, low=2),
    "noise": partial(validate.number, low=0.0),
    "seed": partial(validate.integer, low=0, high=2**32 - 1),  # scikit-learn's random_state
    "test_fraction": partial(validate.number, low=0.0, high=1.0, high_open=True),
    "num_classes": partial(validate.integer, low=2),
    # margin 0 would put training points on ∂Ω, where χ = 0 and the flow cannot move them
    "margin": partial(validate.number, low=0.0, high=1.0, low_open=True, high_open=True),
    # the share of training labels flipped (label noise); the test labels stay clean
    "label_noise": partial(validate.number, low=0.0, high=1.0),
}


def peaks(x: np.ndarray) -> np.ndarray:
    """MATLAB's peaks function at points ``x`` (shape=(n, 2)); returns shape=(n,).

    f(x, y) = 3(1−x)² e^{−x²−(y+1)²} − 10(x/5 − x³ − y⁵) e^{−x²−y²} − 1/3 e^{−(x+1)²−y²}.
    """
    u, v = x[:, 0], x[:, 1]
    return (
        3.0 * (1.0 - u) ** 2 * np.exp(-(u**2) - (v + 1.0) ** 2)
        - 10.0 * (u / 5.0 - u**3 - v**5) * np.exp(-(u**2) - v**2)
        - np.exp(-((u + 1.0) ** 2) - v**2) / 3.0
    )


# --------------------------------------------------------------------------- the placement in Ω


def min_cutoff(domain: Domain, margin: float = DEFAULT_MARGIN) -> float:
    """The lower bound on χ that :meth:`Scaling.fit` guarantees for every training point.

    With r = 1 − margin the training data lie in the central box of relative half-widths r
    (box Ω), where each factor of χ is ≥ 1 − r², or in the ball of radius r·R (disk/ball Ω).

    Returns:
        (1 − r²)^dim for a box (0.1296 in 2D, 0.0467 in 3D at margin 0.2), 1 − r² for a
        disk/ball (0.36 at margin 0.2).
    """
    bound = 1.0 - (1.0 - margin) ** 2
    return bound ** domain.dim if isinstance(domain, Box) else bound


@dataclass(frozen=True)
class Scaling:
    """The affine map x_Ω = scale ⊙ x + shift from data coordinates into Ω.

    Attributes:
        scale: per-axis factors, all > 0, len = dim.
        shift: per-axis offsets, len = dim.
    """

    scale: tuple[float, ...]
    shift: tuple[float, ...]

    def __post_init__(self):
        if len(self.scale) != len(self.shift) or not self.scale:
            raise InputError(
                f"scaling needs scale and shift of the same nonzero length, got "
                f"scale={self.scale}, shift={self.shift}"
            )
        if not all(np.isfinite(self.scale)) or any(s <= 0 for s in self.scale):
            raise InputError(f"scaling factors must be finite and > 0, got scale={self.scale}")
        if not all(np.isfinite(self.shift)):
            raise InputError(f"scaling shifts must be finite, got shift={self.shift}")

    @property
    def dim(self) -> int:
        return len(self.scale)

    @classmethod
    def identity(cls, dim: int) -> Scaling:
        return cls((1.0,) * dim, (0.0,) * dim)

    @classmethod
    def fit(cls, x: np.ndarray, domain: Domain, margin: float = DEFAULT_MARGIN) -> Scaling:
        """The map that places the points ``x`` (shape=(n, dim)) inside ``domain``.

        One factor for all axes, so that the geometry is not distorted. Box: the data's bounding
        box, centred, goes into the central box of half-widths (1 − margin)·(upper − lower)/2.
        Disk/ball: the ball around the bounding box's centre that holds all points goes into
        the ball of radius (1 − margin)·R. Every point of ``x`` then has χ ≥
        :func:`min_cutoff` (domain, margin). Axes along which all points agree (e.g. augmented
        zero coordinates) are sent to the centre of Ω.

        Args:
            x: the training points, shape=(n, dim) with dim = domain.dim.
            domain: Ω.
            margin: the fraction of Ω's half-width (or radius) left free, 0 < margin < 1.

        Raises:
            InputError: wrong shape, bad margin or coincident points.
        """
        x = np.asarray(x, dtype=np.float64)
        D = domain.dim
        if x.ndim == 2 and x.shape[0] > 0 and x.shape[1] < D:
            raise InputError(
                f"the data have {x.shape[1]} feature column(s) but Ω is {D}-dimensional: set "
                f"data.augment_dim = {D} to append zero coordinates, or give a {x.shape[1]}D domain"
                if x.shape[1] > 1 else
                f"the data have 1 feature column but Ω is {D}-dimensional (at least 2): set "
                f"data.augment_dim = {D} to append zero coordinates"
            )
        if x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > D:
            raise InputError(
                f"the data have {x.shape[1]} feature columns but Ω is {D}-dimensional: give a "
                f"{x.shape[1]}D domain (domain.lower and domain.upper of {x.shape[1]} values), "
                f"fewer feature columns, or input.kind = \"learned\" (a learned input layer into Ω)"
            )
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"cannot place points of shape {x.shape} in a {D}D domain: expected "
                             f"shape (n >= 1, {D})")
        r = 1.0 - OPTION_CHECKS["margin"]("data.margin", margin)
        lower, upper = x.min(axis=0), x.max(axis=0)
        with np.errstate(over="ignore"):  # a span beyond 1.8e308: inf
            mid, half_data = 0.5 * (lower + upper), 0.5 * (upper - lower)
        if not (np.all(np.isfinite(half_data)) and np.all(np.isfinite(mid))):
            raise InputError(f"the data's range {_extent(x)} is too wide to scale into Ω (a span "
                             f"beyond 1.8e308); remove or clip the outliers, or rescale the features")
        center = 0.5 * (np.asarray(domain.lower) + np.asarray(domain.upper))
        if isinstance(domain, Ball):
            extent = float(np.max(np.linalg.norm(x - mid, axis=1)))
            if extent == 0.0:
                raise InputError(_coincide(len(x)))
            factor = r * domain.radius / extent
        else:
            # Axes with (relatively) zero extent carry no information on the size of the data.
            spread = half_data > 1e-12 * max(float(half_data.max()), 1e-300)
            if not np.any(spread):
                raise InputError(_coincide(len(x)))
            half_omega = 0.5 * (np.asarray(domain.upper) - np.asarray(domain.lower))
            factor = float(np.min(r * half_omega[spread] / half_data[spread]))
        scale = np.full(domain.dim, factor)
        shift = center - scale * mid
        return cls(tuple(map(float, scale)), tuple(map(float, shift)))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Data coordinates ``x`` (shape=(n, dim)) -> Ω coordinates, shape=(n, dim)."""
        return np.asarray(x, dtype=np.float64) * np.asarray(self.scale) + np.asarray(self.shift)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Ω coordinates ``x`` (shape=(n, dim)) -> data coordinates, shape=(n, dim)."""
        return (np.asarray(x, dtype=np.float64) - np.asarray(self.shift)) / np.asarray(self.scale)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON/TOML-ready: ``{"scale": [...], "shift": [...]}``."""
        return {"scale": list(self.scale), "shift": list(self.shift)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaling:
        """The inverse of :meth:`to_dict`."""
        try:
            return cls(tuple(map(float, d["scale"])), tuple(map(float, d["shift"])))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f'scaling must be {{"scale": [...], "shift": [...]}}, got {d!r} ({e})'
            ) from None


def _coincide(n: int) -> str:
    return (f"all {n} training points coincide (duplicates of one point): nothing to scale into Ω "
            f"or to classify; the data need at least two distinct points")


def outside_domain(domain: Domain, x: np.ndarray, index: np.ndarray, what: str = "test",
                   source: str | None = None) -> np.ndarray:
    """Which of the scaled points ``x`` (shape=(n, dim)) lie inside Ω, shape=(n,) bool; warns
    (:class:`~solver.errors.OutsideDomainWarning`) naming those outside. Outliers of a held-out
    set are the user's data, not an error: the run goes on without them and metrics.json counts
    them (``test_outside``), as ``FlowClassifier`` warns and goes on.

    Args:
        domain: Ω.
        x: points in Ω coordinates, shape=(n, dim).
        index: their 0-based positions in the generated (or file) order, shape=(n,), for the
            message.
        what: what the points are, for the message.
        source: the file they came from, for the message.
    """
    inside = np.asarray(domain.contains(x), dtype=bool)
    outside = np.flatnonzero(~inside)
    if outside.size:
        warnings.warn(
            f"{source + ': ' if source else ''}{outside.size} of {len(x)} {what} points fall outside Ω "
            f"after the scaling fitted on the training points, e.g. points {index[outside[:5]].tolist()} "
            f"(0-based, in generation/file order); they are left out of the test accuracy (metrics.json: "
            f"test_outside). Raise data.margin to leave them room", OutsideDomainWarning, stacklevel=2)
    return inside


# --------------------------------------------------------------------------------- generators


def _fail(key: str, message: str) -> InputError:
    return validate.fail(f"data.{key}", message)


def _class_sizes(n: int, k: int) -> np.ndarray:
    """n points split into k classes as evenly as possible, shape=(k,)."""
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    return sizes


def _moons(n, noise, seed, dim, k, kw):
    from sklearn.datasets import make_moons  # scikit-learn takes a second to import: only if used

    return make_moons(n_samples=n, noise=noise, random_state=seed)


def _circles(n, noise, seed, dim, k, kw):
    factor = float(kw.get("factor", 0.5))
    if not 0.0 < factor < 1.0:
        raise _fail("factor", f"inner/outer radius ratio must be in (0, 1), got {kw['factor']!r}")
    from sklearn.datasets import make_circles

    return make_circles(n_samples=n, noise=noise, factor=factor, random_state=seed)


def _spirals(n, noise, seed, dim, k, kw):
    turns = float(kw.get("turns", 1.5))
    if not turns > 0:
        raise _fail("turns", f"expected a number > 0, got {kw['turns']!r}")
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), _class_sizes(n, k))
    # Density ∝ s on [s0, 1] makes points uniform along the arm (arc length grows like s²);
    # s0 > 0 keeps them off the centre, where all arms meet.
    s0 = 0.1
    s = np.sqrt(s0**2 + (1.0 - s0**2) * rng.uniform(size=n))
    theta = 2.0 * np.pi * (turns * s + y / k)
    x = s[:, None] * np.c_[np.cos(theta), np.sin(theta)]
    return x + noise * rng.standard_normal(x.shape), y


def _checkerboard(n, noise, seed, dim, k, kw, cells=None):
    cells = kw.get("cells", 4) if cells is None else cells
    if isinstance(cells, bool) or not isinstance(cells, int | np.integer) or cells < 2 or cells % 2:
        raise _fail("cells", f"expected an even integer >= 2 (equal class areas), got {cells!r}")
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(2), _class_sizes(n, 2))
    # A cell of the right colour, uniformly: free indices on all axes but the last, whose index
    # then has the parity that makes the sum ≡ y (mod 2); `cells` even gives cells/2 choices.
    idx = rng.integers(0, cells, size=(n, dim))
    idx[:, -1] = 2 * rng.integers(0, cells // 2, size=n) + (y - idx[:, :-1].sum(axis=1)) % 2
    x = 2.0 * (idx + rng.uniform(size=(n, dim))) / cells - 1.0
    return x + noise * rng.standard_normal(x.shape), y


def _xor(n, noise, seed, dim, k, kw):
    return _checkerboard(n, noise, seed, dim, k, kw, cells=2)


def _blob_centers(k: int, dim: int) -> np.ndarray:
    """k unit vectors spread evenly: a regular polygon (dim 2), a Fibonacci lattice (dim 3)."""
    if dim == 2:
        a = 2.0 * np.pi * np.arange(k) / k
        return np.c_[np.cos(a), np.sin(a)]
    z = 1.0 - (2.0 * np.arange(k) + 1.0) / k
    a = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(k)
    rho = np.sqrt(1.0 - z**2)
    return np.c_[rho * np.cos(a), rho * np.sin(a), z]


def _blobs(n, noise, seed, dim, k, kw):
    if noise == 0.0:
        raise _fail("noise", "blobs need a cluster standard deviation > 0, got 0")
    from sklearn.datasets import make_blobs

    return make_blobs(
        n_samples=n, centers=_blob_centers(k, dim), cluster_std=noise, random_state=seed
    )


def _peaks(n, noise, seed, dim, k, kw):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(n, 2))
    y = np.digitize(peaks(x), _peaks_levels(kw), right=True)
    return x + noise * rng.standard_normal(x.shape), y


def _peaks_levels(kw: dict[str, Any]) -> np.ndarray:
    levels = kw.get("levels", PEAKS_LEVELS)
    try:
        a = np.asarray(levels, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.empty(0)
    if a.ndim != 1 or a.size < 1 or not np.all(np.isfinite(a)) or np.any(np.diff(a) <= 0):
        raise _fail("levels", f"expected increasing finite thresholds of f, got {levels!r}")
    return a


_Generator = Callable[..., tuple[np.ndarray, np.ndarray]]

# kind -> (generator, allowed dims, default number of classes, whether num_classes is free)
_GENERATORS: dict[str, tuple[_Generator, tuple[int, ...], int, bool]] = {
    "moons": (_moons, (2,), 2, False),
    "circles": (_circles, (2,), 2, False),
    "spirals": (_spirals, (2,), 2, True),
    "xor": (_xor, (2,), 2, False),
    "checkerboard": (_checkerboard, (2, 3), 2, False),
    "blobs": (_blobs, (2, 3), 3, True),
    "peaks": (_peaks, (2,), 5, False),
}


# ----------------------------------------------------------------------------------- CSV files


class LabelledPoints(NamedTuple):
    """Points and labels as read from a file.

    Attributes:
        X: features, shape=(n, d), float64.
        y: labels, shape=(n,), int64 in 0..K−1.
        feature_names: the d feature column names, in file order.
        class_names: the K original labels; class k is ``class_names[k]``.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]


def load_csv(path: str | Path) -> LabelledPoints:
    """Labelled points from a CSV file with a header line.

    One column is named ``label`` (any position, any case); every other column is a feature,
    named by its header (e.g. ``x1,x2,label``). Blank lines are skipped. Labels that are all
    numbers must be the integers 0..K−1 (each occurring; ``1`` and ``1.0`` are the same);
    otherwise the labels are names and class k is the k-th of them in sorted (string) order,
    e.g. ``cat, dog`` -> 0, 1 (the run records the names: ``Dataset.class_names``).
    Deterministic: every rank reading the same file gets the same arrays.

    Raises:
        InputError: (source = the file) missing or unreadable file, no header or no ``label``
            column, a row with the wrong number of fields, a non-numeric feature (line and
            column named), non-finite features (count and first lines), integer labels not
            0..K−1, or fewer than 2 classes.
    """
    src = str(path)
    rows = _read_rows(path)
    line, header = rows[0]
    header = [h.strip() for h in header]
    # The file's text is not quoted in messages: data.path may name any file.
    numbers = sum(_number(h) is not None for h in header)
    if numbers:
        raise InputError(
            f"line {line} is not a header: {numbers} of its {len(header)} fields are numbers; the "
            f"file needs a header line of column names such as x1,x2,label", source=src,
        )
    label_cols = [j for j, h in enumerate(header) if h.lower() == "label"]
    if len(label_cols) != 1:
        found = "no" if not label_cols else f"{len(label_cols)}"
        raise InputError(
            f'{found} column named "label" in the header (line {line}, {len(header)} columns); '
            f"expected one, e.g. x1,x2,label", source=src,
        )
    lab = label_cols[0]
    feat = [j for j in range(len(header)) if j != lab]
    if not feat:
        raise InputError(f"no feature columns in the header (line {line}), only label; expected x1,x2,label", src)
    if len(rows) == 1:
        raise InputError("no data rows after the header", source=src)
    X, labels, lines = _parse_rows(rows[1:], header, feat, lab, src)
    y, class_names = _label_indices(labels, lines, src)
    return LabelledPoints(X, y, tuple(header[j] for j in feat), class_names)


def load_test_csv(path: str | Path, feature_names: tuple[str, ...], class_names: tuple[str, ...]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The held-out points of ``data.test_path``: a CSV file of the training file's format, with
    the same feature columns (names, in any order) and labels among the training file's.

    Returns:
        X (shape=(n, d), columns in ``feature_names`` order) and y (shape=(n,), int64: the index
        of each label in ``class_names``).

    Raises:
        InputError: (source = the file) what :func:`load_csv` raises for a bad file, other
            feature columns than the training file's, or a label the training file lacks.
    """
    src = str(path)
    rows = _read_rows(path)
    line, header = rows[0]
    header = [h.strip() for h in header]
    label_cols = [j for j, h in enumerate(header) if h.lower() == "label"]
    features = [h for j, h in enumerate(header) if j not in label_cols]
    if len(label_cols) != 1 or sorted(features) != sorted(feature_names):
        raise InputError(f"the header (line {line}) has the columns {header}; a test file needs those of "
                         f"the training file: {[*feature_names, 'label']} (any order)", src)
    if len(rows) == 1:
        raise InputError("no data rows after the header", source=src)
    lab = label_cols[0]
    order = [header.index(name) for name in feature_names]
    X, labels, lines = _parse_rows(rows[1:], header, order, lab, src)
    lookup = {name: k for k, name in enumerate(class_names)}
    y = np.empty(len(labels), dtype=np.int64)
    for i, text in enumerate(labels):
        v = _number(text)
        name = str(int(v)) if v is not None and np.isfinite(v) and v == int(v) else text
        if name not in lookup:
            raise InputError(f"line {lines[i]}: a label the training file does not have; its classes "
                             f"are {list(class_names)}", src)
        y[i] = lookup[name]
    return X, y


def _read_rows(path: str | Path, what: str = "data", expected: str = "a header such as x1,x2,label"
               ) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file with their line numbers; at least one (the header).
    ``what``: "data" (labelled points) or "points"; ``expected``: what an empty file lacks."""
    kind = "labelled points" if what == "data" else "points"
    if Path(path).exists() and not Path(path).is_file():
        raise InputError(f"not a regular file: expected a CSV file of {kind}", source=str(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if any(v.strip() for v in row)]
    except FileNotFoundError:
        raise InputError(f"{what} file not found", source=str(path)) from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read the {what} file as CSV: not UTF-8 text", source=str(path)) from None
    except (OSError, csv.Error) as e:  # csv.Error's text names no file contents
        raise InputError(f"cannot read the {what} file as CSV: {getattr(e, 'strerror', None) or e}",
                         source=str(path)) from None
    if not rows:
        raise InputError(f"no {kind}: the file is empty (expected {expected})", source=str(path))
    return rows


def _parse_rows(
    rows: list[tuple[int, list[str]]], header: list[str], feat: list[int], lab: int, src: str
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Features (shape=(n, len(feat)), finite), the label strings and the line numbers of the
    data rows."""
    lines = np.array([n for n, _ in rows])
    X = np.empty((len(rows), len(feat)))
    labels: list[str] = []
    for i, (n, row) in enumerate(rows):
        if len(row) != len(header):
            raise InputError(
                f"line {n} has {len(row)} fields, expected {len(header)} (as the header)", src
            )
        for c, j in enumerate(feat):
            try:
                X[i, c] = float(row[j])
            except ValueError:
                raise InputError(
                    f"line {n}, column {j + 1} (a feature): not a number", src
                ) from None
        labels.append(row[lab].strip())
        if not labels[-1]:
            raise InputError(f"line {n}: empty label", src)
    bad = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
    if bad.size:
        raise InputError(
            f"{bad.size} row(s) have non-finite features (nan/inf), e.g. lines "
            f"{lines[bad[:5]].tolist()}",
            src,
        )
    return X, labels, lines


def _label_indices(
    labels: list[str], lines: np.ndarray, src: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer labels checked to be 0..K−1 (``1`` and ``1.0`` are one label), or names mapped to
    sorted indices."""
    numbers = [_number(s) for s in labels]
    if all(v is not None for v in numbers):
        fractional = [i for i, v in enumerate(numbers) if not (np.isfinite(v) and v == int(v))]
        if fractional:
            i = fractional[0]
            raise InputError(
                f"line {lines[i]}: the label is not an integer; numeric labels must be "
                f"the integers 0..K-1 ({len(fractional)} row(s) are not)", src
            )
        y = np.array([int(v) for v in numbers], dtype=np.int64)
        if y.min() < 0:
            i = int(np.argmin(y))
            raise InputError(
                f"line {lines[i]}: a negative label; integer labels must be 0..K-1", src
            )
        missing = sorted(set(range(int(y.max()) + 1)) - set(y.tolist()))
        if missing:
            raise InputError(
                f"integer labels must be 0..K-1 with every class present; labels run 0..{y.max()} "
                f"but {missing[:10]} never occur",
                src,
            )
        class_names = tuple(str(c) for c in range(int(y.max()) + 1))
    else:
        # Names; a name that is an integral number is written one way ("1.0" is "1").
        names = [str(int(v)) if v is not None and np.isfinite(v) and v == int(v) else s
                 for s, v in zip(labels, numbers)]
        class_names = tuple(sorted(set(names)))
        lookup = {name: c for c, name in enumerate(class_names)}
        y = np.array([lookup[s] for s in names], dtype=np.int64)
    if len(class_names) < 2:
        raise InputError(
            f"found 1 class (one label) in {len(labels)} rows; expected at least 2",
            src,
        )
    return y, class_names


def _number(text: str) -> float | None:
    """The number ``text`` spells (``1``, ``1.0``, ``1e3``), or None for a name."""
    try:
        return float(text)
    except ValueError:
        return None


def read_points(path: str | Path, dim: int, why: str = "") -> tuple[np.ndarray, list[str], np.ndarray]:
    """Unlabelled points from a CSV file (``predict``'s points, ``compare.points_file``), rank-local.

    A header line is optional: a first row none of whose fields is a number is one (a row of
    numbers and names is neither, and refused: a typo such as ``0.1,O.2`` is not taken for a
    header). A column named ``label`` is ignored; every other column is a feature, ``dim`` of
    them (``why`` says why, for the message). Messages name lines and columns and never quote
    the file's text.

    Returns:
        The points, shape=(n, dim), finite; the feature names; the line of each point.

    Raises:
        InputError: naming the file (and line): missing, not a regular file, unreadable or
            empty, a row with another number of values, a value that is not a finite number.
    """
    src = str(path)
    rows = _read_rows(path, "points", f"{dim} numbers per line")
    header = None
    first, numbers = rows[0], sum(_number(v) is not None for v in rows[0][1])
    if numbers == 0:
        header, rows = [v.strip() for v in first[1]], rows[1:]
    elif numbers < len(first[1]):
        raise InputError(f"line {first[0]} is neither a header (it holds {numbers} number(s)) nor a "
                         f"row of numbers ({len(first[1]) - numbers} field(s) are not numbers)", src)
    width = len(header) if header is not None else len(rows[0][1])
    label = [j for j, name in enumerate(header or []) if name.lower() == "label"]
    features = [j for j in range(width) if j not in label]
    names = [header[j] for j in features] if header else [f"x{j + 1}" for j in range(len(features))]
    if len(features) != dim:
        what = f"the header (line {first[0]})" if header else f"line {rows[0][0]}"
        raise InputError(f"{what} has {len(features)} feature column(s), expected {dim}"
                         f"{' ' + why if why else ''}", src)
    if not rows:
        raise InputError("no points after the header", src)
    lines = np.array([n for n, _ in rows])
    X = np.empty((len(rows), len(features)))
    for i, (n, row) in enumerate(rows):
        if len(row) != width:
            raise InputError(f"line {n} has {len(row)} values, expected {width}"
                             f"{' (as the header)' if header else ''}", src)
        for c, j in enumerate(features):
            value = _number(row[j])
            if value is None:
                raise InputError(f"line {n}, column {j + 1}: not a number", src)
            if not np.isfinite(value):
                raise InputError(f"line {n}, column {j + 1}: not a finite number", src)
            X[i, c] = value
    return X, names, lines


def write_csv(path: str | Path, X: np.ndarray, y: np.ndarray, feature_names=None) -> None:
    """Write points ``X`` (shape=(n, d)) and integer labels ``y`` (shape=(n,)) as
    ``x1,…,xd,label`` (or the given feature names), readable by :func:`load_csv`."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    names = list(feature_names or [f"x{j + 1}" for j in range(X.shape[1])])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, "label"])
        w.writerows([*map(repr, map(float, row)), int(label)] for row, label in zip(X, y))


# ---------------------------------------------------------------------------------- data sets


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split, in Ω coordinates (compare arrays, not datasets: eq=False).

    Attributes:
        kind: one of :data:`DATASET_KINDS`.
        X_train: training points in Ω, shape=(n_train, dim).
        y_train: their classes, shape=(n_train,), int64 in 0..num_classes−1.
        X_test: test points in Ω, shape=(n_test, dim) (n_test may be 0).
        y_test: their classes, shape=(n_test,).
        num_classes: K.
        feature_names: the dim coordinate names (augmented ones included).
        class_names: the K class names (the file's labels for csv, else "0".."K−1").
        scaling: the map from data coordinates to Ω (identity if no domain was given).
        augmented: how many zero coordinates were appended to the data (augment_dim − d).
        train_index: positions of the training points in generation/file order, shape=(n_train,).
        test_index: the same for the test points, shape=(n_test,) (in ``data.test_path``'s
            order when the test points come from that file).
        test_outside: held-out points left out because they fell outside Ω
            (:func:`outside_domain`); metrics.json's ``test_outside``.
        input_layer: the learned input layer (``model/input_layer.py``), or None: the points
            are placed by ``scaling``. With a layer, X_train and X_test are its images of
            ``features_train`` and ``features_test`` (the raw features, shape=(n, F)) at its
            parameters ``input_q`` (the start, then those of the latest evaluation:
            :meth:`placed`), and ``scaling`` is the identity of Ω.
    """

    kind: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    scaling: Scaling
    augmented: int = 0
    train_index: np.ndarray | None = field(default=None, repr=False)
    test_index: np.ndarray | None = field(default=None, repr=False)
    test_outside: int = 0
    input_layer: InputLayer | None = None
    input_q: np.ndarray | None = field(default=None, repr=False)
    features_train: np.ndarray | None = field(default=None, repr=False)
    features_test: np.ndarray | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return self.X_train.shape[1]

    def placed(self, q: np.ndarray) -> Dataset:
        """This data set with its points in Ω at the input layer's parameters ``q`` (a learned
        layer only): X_train and X_test are layer(q, features)."""
        layer = self.input_layer
        return replace(self, X_train=layer(q, self.features_train), X_test=layer(q, self.features_test),
                       input_q=np.array(q, dtype=np.float64))


def _generate(
    kind: str, num_points: int | None, noise: float, seed: int, num_classes: int | None,
    dim: int | None, kw: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, int, tuple[str, ...], tuple[str, ...]]:
    """Raw points (n, d), labels (n,), K, feature names, class names of a kind."""
    if kind == "csv":
        if "path" not in kw:
            raise _fail("path", 'kind "csv" needs the CSV file: data.path = "points.csv"')
        if noise != 0.0:
            raise _fail("noise", f"csv data are used as they are; expected 0, got {noise!r}")
        X, y, names, class_names = load_csv(kw["path"])
        if dim is not None and dim != X.shape[1]:
            raise InputError(
                f"data.dim = {dim}, but the file has {X.shape[1]} feature columns", kw["path"]
            )
        if num_classes is not None and num_classes != len(class_names):
            raise InputError(
                f"data.classes = {num_classes}, but the file has {len(class_names)} classes",
                kw["path"],
            )
        if num_points is not None:
            if num_points > len(X):
                raise _fail("points", f"the file has {len(X)} rows, cannot take {num_points}")
            keep = np.sort(np.random.default_rng(seed).choice(len(X), num_points, replace=False))
            X, y = X[keep], y[keep]
        return X, y, len(class_names), names, class_names

    generator, dims, default_k, free_k = _GENERATORS[kind]
    dim = dims[0] if dim is None else dim
    if dim not in dims:
        hint = " (use data.augment_dim to embed it in 3D)" if dims == (2,) else ""
        raise _fail("dim", f'kind "{kind}" is defined in dim {list(dims)}, got {dim!r}{hint}')
    if kind == "peaks":
        default_k = len(_peaks_levels(kw)) + 1
    k = default_k if num_classes is None else OPTION_CHECKS["num_classes"]("data.classes", num_classes)
    if k != default_k and not free_k:
        raise _fail("classes", f'kind "{kind}" has {default_k} classes, got {num_classes!r}')
    if num_points is None:
        raise _fail("points", f'kind "{kind}" needs the number of points, got None')
    X, y = generator(num_points, noise, seed, dim, k, kw)
    names = tuple(f"x{j + 1}" for j in range(dim))
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)
    return X, y, k, names, tuple(map(str, range(k)))


def make_dataset(
    kind: str,
    num_points: int | None,
    *,
    noise: float | None = None,
    seed: int = 0,
    test_fraction: float | None = None,
    num_classes: int | None = None,
    dim: int | None = None,
    augment_dim: int | None = None,
    domain: Domain | None = None,
    margin: float = DEFAULT_MARGIN,
    label_noise: float = 0.0,
    input_kind: str | None = None,
    input_init: str = "pca",
    **kw: Any,
) -> Dataset:
    """A labelled data set by name, split into train and test and placed inside Ω.

    Deterministic for a given ``seed``: the same on every MPI rank without communication.

    Args:
        kind: one of :data:`DATASET_KINDS` (see the module docstring).
        num_points: total number of points, train + test (csv: None takes every row).
        noise: the kind's noise level (std of Gaussian jitter, or blob std); None takes
            :data:`DEFAULT_NOISE`.
        seed: seeds the generator and the split.
        test_fraction: the share of points held out for testing, 0 <= f < 1; the split is
            stratified, so each class keeps its proportion. None: :data:`DEFAULT_TEST_FRACTION`
            for the generated kinds, 0 for csv (the whole file trains).
        num_classes: K; None takes the kind's (2, or 3 for blobs, 5 for peaks, the file's).
            Free for spirals and blobs only.
        dim: the data dimension; None takes the kind's (2, the file's for csv); checkerboard and
            blobs also have 3.
        augment_dim: if given (> dim), append augment_dim − dim zero coordinates, so that e.g.
            2D data sit on the plane x3 = 0 (mapped to the centre plane of Ω) of a 3D mesh.
        domain: Ω; None leaves the data unscaled (identity :class:`Scaling`).
        margin: see :meth:`Scaling.fit`; every training point has χ >= :func:`min_cutoff`.
        label_noise: the share of the *training* labels flipped, 0 <= r < (K-1)/K
            (:func:`flip_labels`); the test labels stay clean, so that test accuracy measures
            how well a model ignores the noise.
        **kw: the kind's extra parameters (:data:`DATASET_PARAMS`); csv: ``path`` and
            ``test_path``, a CSV file of held-out points in the same format
            (:func:`load_test_csv`; then test_fraction must be 0 or None).
        input_kind, input_init: the map into Ω (:func:`place_in_domain`; ``[input]``).

    Returns:
        The :class:`Dataset`, points in Ω coordinates. Test points that land outside Ω are left
        out, counted in :attr:`Dataset.test_outside`, with an ``OutsideDomainWarning``.

    Raises:
        InputError: unknown kind or key, a bad parameter (named ``data.<key>``), a bad CSV file,
            a split with too few points per class, or both test_fraction > 0 and test_path.
    """
    _check_kind_and_keys(kind, kw)
    check = OPTION_CHECKS
    if num_points is not None:
        num_points = check["num_points"]("data.points", num_points)
    noise = DEFAULT_NOISE[kind] if noise is None else check["noise"]("data.noise", noise)
    seed = check["seed"]("data.seed", seed)
    if test_fraction is None:
        test_fraction = 0.0 if kind == "csv" else DEFAULT_TEST_FRACTION
    test_fraction = check["test_fraction"]("data.test_fraction", test_fraction)
    if kw.get("test_path") is not None and test_fraction > 0:
        raise _fail("test_fraction", f"data.test_path names the test points, so nothing of data.path is held "
                                     f"out; expected 0 or no test_fraction, got {test_fraction!r}")
    margin = check["margin"]("data.margin", margin)
    label_noise = check["label_noise"]("data.label_noise", label_noise)
    if dim is not None:
        dim = validate.integer("data.dim", dim, low=1)

    X, y, k, names, class_names = _generate(kind, num_points, noise, seed, num_classes, dim, kw)
    if label_noise >= (k - 1) / k:
        raise _fail("label_noise", f"expected a share below (K-1)/K = {(k - 1) / k:.4g} for {k} classes "
                                   f"(at (K-1)/K the flipped labels carry no information, above it they "
                                   f"invert), got {label_noise!r}")
    source = kw.get("path") if kind == "csv" else None
    test = None
    if kind == "csv" and kw.get("test_path") is not None:
        test = load_test_csv(kw["test_path"], names, class_names)
    dataset = place_in_domain(kind, X, y, k, names, class_names, seed=seed, test_fraction=test_fraction,
                              augment_dim=augment_dim, domain=domain, margin=margin, source=source,
                              test=test, test_source=kw.get("test_path"), input_kind=input_kind,
                              input_init=input_init)
    if label_noise == 0.0:
        return dataset
    return replace(dataset, y_train=flip_labels(dataset.y_train, k, label_noise, seed))


def configured_dataset(config) -> Dataset:
    """The data set of a problem file's ``[data]`` and ``[input]``, placed in its Ω (the same on
    every rank; no dolfinx). ``config``: a ``solver.config.Config``; errors carry its file."""
    dc = config.data
    try:
        return make_dataset(
            dc.kind, dc.points, noise=dc.noise, seed=dc.seed, test_fraction=dc.test_fraction,
            num_classes=dc.classes, augment_dim=dc.augment_dim, domain=config.domain_object(), margin=dc.margin,
            label_noise=dc.label_noise, input_kind=config.input.kind, input_init=config.input.init,
            **dict(dc.params),
        )
    except InputError as error:
        raise InputError(error.message, error.source or config.source) from None


def flip_labels(y: np.ndarray, num_classes: int, fraction: float, seed: int) -> np.ndarray:
    """``y`` (shape=(n,)) with round(fraction · n) labels, chosen at random, each changed to
    another class drawn uniformly (for 2 classes: flipped). A new array; deterministic in
    ``seed`` (its own stream, so the points do not change with the fraction)."""
    rng = np.random.default_rng([int(seed), 0x1ABE1])
    flipped = np.array(y, copy=True)
    chosen = rng.choice(len(y), int(round(fraction * len(y))), replace=False)
    shift = rng.integers(1, num_classes, size=len(chosen))  # 1..K−1: never the same class
    flipped[chosen] = (flipped[chosen] + shift) % num_classes
    return flipped


def place_in_domain(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    feature_names: tuple[str, ...],
    class_names: tuple[str, ...],
    *,
    seed: int,
    test_fraction: float,
    augment_dim: int | None,
    domain: Domain | None,
    margin: float,
    source: str | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    test_source: str | None = None,
    input_kind: str | None = None,
    input_init: str = "pca",
    input_constant: str = "raise",
) -> Dataset:
    """Labelled points split into train and test and placed inside Ω: the second half of
    :func:`make_dataset`, shared with points given as arrays (``solver.estimator``), so that
    both are scaled into Ω alike.

    Args:
        kind: what the points are, for :attr:`Dataset.kind`.
        X: raw points in data coordinates, shape=(n, d), float64 and finite.
        y: their classes, shape=(n,), int64 in 0..num_classes−1.
        feature_names, class_names: d and num_classes names.
        seed, test_fraction, augment_dim, domain, margin: as for :func:`make_dataset`.
        source: the file the points came from, for messages.
        test: held-out points (X shape=(m, d), y shape=(m,)) from elsewhere (``data.test_path``),
            or None: held out of X by ``test_fraction``.
        test_source: the file ``test`` came from, for messages.
        input_kind: "scaling" (the fixed map :class:`Scaling`) or "learned" (an
            :class:`~solver.model.input_layer.InputLayer` started by ``input_init``, "pca" or
            "lda"); None: "learned" when the data have more features than Ω has dimensions.
        input_constant: what the learned layer does with a constant feature
            (``InputLayer.fit``: "raise" or "ignore").

    Test points outside Ω are left out with a warning (:func:`outside_domain`) and counted in
    :attr:`Dataset.test_outside`.
    """
    k, names = num_classes, feature_names
    if input_kind is None and domain is not None and augment_dim is None:
        input_kind = "learned" if X.shape[1] > domain.dim else "scaling"
    if input_kind == "learned":
        if domain is None:
            raise InputError("a learned input layer maps the data into Ω: it needs a domain", source)
        if augment_dim is not None:
            raise _fail("augment_dim", "the learned input layer maps the features into Ω itself; drop "
                                       "data.augment_dim or set input.kind = \"scaling\"")
        return _learned(kind, X, y, k, names, class_names, seed=seed, test_fraction=test_fraction,
                        domain=domain, margin=margin, source=source, test=test, init=input_init,
                        constant=input_constant)
    X_all, names, augmented = augment(X, names, augment_dim)
    train, held = _split(y, k, test_fraction, seed)
    if test is None:
        X_held, y_held, where = X_all[held], y[held], source
    else:
        X_held, y_held, where = augment(test[0], feature_names, augment_dim)[0], test[1], test_source
        held = np.arange(len(y_held))
    if domain is None:
        scaling = Scaling.identity(X_all.shape[1])
    else:
        try:
            scaling = Scaling.fit(X_all[train], domain, margin)
        except InputError as error:
            raise InputError(error.message, error.source or source) from None
    X_train, X_test = scaling.apply(X_all[train]), scaling.apply(X_held)
    outside = 0
    if domain is not None:
        check_resolved(X_all[train], X_train, domain, source)
        warn_outliers(X_all[train], train, source)
        inside = outside_domain(domain, X_test, held, source=where)
        outside = int(np.sum(~inside))
        X_test, y_held, held = X_test[inside], y_held[inside], held[inside]
    return Dataset(kind, X_train, y[train], X_test, y_held, k, names, class_names, scaling,
                   augmented, train, held, outside)


def _learned(kind: str, X: np.ndarray, y: np.ndarray, k: int, names: tuple[str, ...],
             class_names: tuple[str, ...], *, seed: int, test_fraction: float, domain: Domain,
             margin: float, source: str | None, test: tuple[np.ndarray, np.ndarray] | None,
             init: str, constant: str) -> Dataset:
    """:func:`place_in_domain` through a learned input layer, fitted on the training points and
    started by ``init``; every point lands inside Ω, whatever its features."""
    train, held = _split(y, k, test_fraction, seed)
    F_train = X[train]
    F_test, y_test = (X[held], y[held]) if test is None else test
    if test is not None:
        held = np.arange(len(y_test))
    try:
        layer = InputLayer.fit(F_train, domain, margin, names, source, constant)
    except InputError as error:
        raise InputError(error.message, error.source or source) from None
    warn_outliers(F_train, train, source)
    q = layer.initial(F_train, y[train] if np.issubdtype(y.dtype, np.integer) else None, init)
    dataset = Dataset(kind, layer(q, F_train), y[train], layer(q, F_test), y_test, k,
                      tuple(f"z{j + 1}" for j in range(domain.dim)), class_names,
                      Scaling.identity(domain.dim), 0, train, held, 0, layer, q, F_train, F_test)
    return dataset


def check_resolved(x: np.ndarray, x_omega: np.ndarray, domain: Domain, source: str | None = None) -> None:
    """Raise if training points that differ in the data coincide after the scaling into Ω (to
    1e-9 of Ω's size): a few points far out squeeze the others together, and the flow cannot
    tell them apart.

    Args:
        x: the training points in data coordinates, shape=(n, dim).
        x_omega: the same points scaled into Ω, shape=(n, dim).
        source: the data file, for the message.
    """
    resolution = 1e-9 * float(np.max(np.asarray(domain.upper) - np.asarray(domain.lower)))
    cells = np.round(x_omega / resolution)
    # Points that share a rounded cell are neighbours in its lexicographic order: one sort finds
    # whether any of them differ in the data (10⁶ points: 0.85 s of CPU, against 1.9 s for
    # np.unique(·, axis=0) of both; the message's counts are computed only when it is raised).
    order = np.lexsort(cells.T[::-1])
    same_cell = np.all(cells[order[1:]] == cells[order[:-1]], axis=1)
    if np.any(np.any(x[order[1:]][same_cell] != x[order[:-1]][same_cell], axis=1)):
        distinct, kept = len(np.unique(x, axis=0)), len(np.unique(cells, axis=0))
        raise InputError(
            f"of {distinct} distinct training points only {kept} stay apart after the scaling into "
            f"Ω (to 1e-9 of its size): the data span {_extent(x)}, so a few points "
            f"far out squeeze the others together; remove or clip the outliers, or rescale the "
            f"features",
            source,
        )


# A training point is an outlier if it lies farther than OUTLIER_SPREAD times the interquartile
# range from the median along an axis, and the warning is given when the outliers make the data's
# span SQUEEZE times the span of the others (the scaling into Ω shrinks the rest by that factor).
OUTLIER_SPREAD = 20.0
SQUEEZE = 5.0


def outliers(x: np.ndarray) -> tuple[np.ndarray, float]:
    """The positions (into ``x``, shape=(n, d)) of points far from the bulk of the others, and by
    how much they widen the span the scaling into Ω fits (1: not at all)."""
    if len(x) < 8:
        return np.zeros(0, dtype=np.int64), 1.0
    q1, median, q3 = np.percentile(x, [25, 50, 75], axis=0)
    iqr = q3 - q1
    with np.errstate(all="ignore"):
        far = np.any((iqr > 0) & (np.abs(x - median) > OUTLIER_SPREAD * iqr), axis=1)
    if not np.any(far) or np.all(far):
        return np.zeros(0, dtype=np.int64), 1.0
    with np.errstate(all="ignore"):
        span = float(np.max(np.ptp(x, axis=0)))
        bulk = float(np.max(np.ptp(x[~far], axis=0)))
    widened = span / bulk if bulk > 0 else float("inf")
    return np.flatnonzero(far), widened


def warn_outliers(x: np.ndarray, index: np.ndarray, source: str | None = None) -> None:
    """Log a warning naming the training points (``index``: their 0-based positions in file or
    generation order) that squeeze the others into a small part of Ω (see ``outliers``)."""
    far, widened = outliers(x)
    if far.size and widened >= SQUEEZE:
        shown = index[far[:5]].tolist()
        log.warning(
            "warning: %s%d training point(s) lie far from the others (rows %s%s, 0-based, in %s order) "
            "and widen the data's span %.3g times: the scaling into Ω squeezes the other points into "
            "1/%.3g of it, where the flow hardly tells them apart; remove or clip the outliers, or "
            "rescale the features", f"{source}: " if source else "", far.size, shown,
            ", ..." if far.size > 5 else "", "file" if source else "generation", widened, widened)


def _extent(x: np.ndarray) -> str:
    with np.errstate(all="ignore"):
        return f"[{float(np.min(x)):.3g}, {float(np.max(x)):.3g}]" if x.size else "[]"


def _check_kind_and_keys(kind: str, kw: dict[str, Any]) -> None:
    if kind not in DATASET_KINDS:
        raise InputError(f'Invalid data kind "{kind}". Must be one of {list(DATASET_KINDS)}')
    unknown = sorted(set(kw) - set(DATASET_PARAMS[kind]))
    if unknown:
        valid = ["kind", "points", "noise", "seed", "test_fraction", "classes", "dim",
                 "augment_dim", "margin", "label_noise", *DATASET_PARAMS[kind]]
        raise _fail(unknown[0], f'unknown key for data kind "{kind}". Valid keys: {valid}')


def augment(
    X: np.ndarray, names: tuple[str, ...], augment_dim: int | None
) -> tuple[np.ndarray, tuple[str, ...], int]:
    """X (shape=(n, d)) with zero coordinates appended up to ``augment_dim`` (None: none), their
    names, and how many were appended."""
    if augment_dim is None:
        return X, names, 0
    augment_dim = validate.integer("data.augment_dim", augment_dim, low=1)
    if augment_dim <= X.shape[1]:
        raise _fail("augment_dim", f"must exceed the data dimension {X.shape[1]}, got {augment_dim}")
    augmented = augment_dim - X.shape[1]
    extra = [f"x{j + 1}" for j in range(len(names), augment_dim)]
    names = names + tuple(f"augmented_{e}" if e in names else e for e in extra)
    return np.hstack([X, np.zeros((len(X), augmented))]), names, augmented


def _split(
    y: np.ndarray, k: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of the training and the test points: a stratified split."""
    index = np.arange(len(y))
    if test_fraction == 0.0:
        return index, index[:0]
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(
            index, test_size=test_fraction, random_state=seed, stratify=y
        )
    except ValueError as e:
        counts = np.bincount(y, minlength=k).tolist()
        raise _fail(
            "test_fraction",
            f"cannot split {len(y)} points with class counts {counts} at test_fraction="
            f"{test_fraction}: {e}",
        ) from None
    return np.sort(train), np.sort(test)


def describe(dataset: Dataset) -> str:
    """One line for the log: kind, sizes, dimension, classes and scaling."""
    d = dataset
    dims = f"{d.dim}D"
    if d.augmented:
        dims += f" ({d.dim - d.augmented}D data + {d.augmented} zero coordinate(s))"
    targets = (f"{d.num_classes} classes (train counts {np.bincount(d.y_train, minlength=d.num_classes).tolist()})"
               if np.issubdtype(d.y_train.dtype, np.integer) else f"{d.num_classes} output(s)")
    outside = f" ({d.test_outside} outside Ω left out)" if d.test_outside else ""
    if d.input_layer is not None:
        dims = f"{d.input_layer.num_features} features"
        placed = f"a learned input layer into {d.dim}D Ω, z = c + s⊙tanh(E x̂ + e)"
    else:
        scale = ", ".join(f"{s:.4g}" for s in d.scaling.scale)
        shift = ", ".join(f"{s:.4g}" for s in d.scaling.shift)
        placed = f"x_Ω = [{scale}]⊙x + [{shift}]"
    return (f"data {d.kind}: {len(d.X_train)} train + {len(d.X_test)} test points{outside} in {dims}, "
            f"{targets}, {placed}")
