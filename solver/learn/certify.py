"""Certified numbers: the PDE's prediction checked against the flow of the learned field.

The model a run learns is a velocity field; its prediction is the flow of that field, u(0, x) =
f(q(T; x)) (eq. 6), and the FE solution u_h(0, ·) on the mesh only approximates it. An optimizer
that sees u_h alone learns to use its discretization error: measured on peaks (13³, DG1), the
PDE reported 91% while the PDE and the characteristics disagreed on 7% of the labels, with
logit differences up to 5.4. So every ``train.check_every`` iterations, and at the end, the
training and test points are carried by the characteristics (``model/characteristics.py``,
DOP853 at 1e-10, independent of the FE code) and compared with u_h(0, X):

- ``max_logit_difference``: max_i |u_h(0, X_i) − f(q(T; X_i))|_∞,
- ``label_agreement``: the fraction of points where both give the same label,
- ``accuracy_pde`` and ``accuracy_characteristics``.

A check passes when max_logit_difference ≤ ``train.tolerance`` and label_agreement ≥
``train.agreement`` on both sets. During training the resolution is raised (``Resolution.raised``: DG2, then finer cells)
when the logits differ by more than ``train.refine_above`` (default: the tolerance), and
training continues with the same parameters;
label agreement alone does not trigger it there, because mid-training many points sit on the
decision boundary, where any error flips labels (circles 3D at iteration 10: 99.0% agreement
with a max logit difference of 0.17, at 95.5% accuracy). At the end both must hold, and the
resolution is raised until they do.

Each rank checks its own share of the points (the one the reduced functional already evaluates),
so no values are gathered: the sums and maxima are reduced over ranks, and the characteristics of
each point do not depend on the split (one step sequence per point).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from mpi4py import MPI

from solver.model import characteristics


@dataclass(frozen=True)
class Agreement:
    """The PDE against the characteristics on one set of points (global over ranks)."""

    points: int
    label_agreement: float
    max_logit_difference: float
    accuracy_pde: float
    accuracy_characteristics: float

    def close(self, tolerance: float) -> bool:
        return self.points == 0 or self.max_logit_difference <= tolerance

    def within(self, tolerance: float, agreement: float) -> bool:
        """Inside the tolerances (an empty set passes)."""
        if self.points == 0:
            return True
        return self.max_logit_difference <= tolerance and self.label_agreement >= agreement


@dataclass(frozen=True)
class Check:
    """One certification check: train and test points, and whether both pass."""

    train: Agreement
    test: Agreement
    passed: bool  # both sets within both tolerances
    close: bool  # both sets within the logit tolerance
    seconds: float

    @property
    def max_logit_difference(self) -> float:
        return max(self.train.max_logit_difference, self.test.max_logit_difference)

    @property
    def label_agreement(self) -> float:
        """The worse of the two sets' agreements."""
        values = [a.label_agreement for a in (self.train, self.test) if a.points]
        return min(values) if values else float("nan")

    def to_dict(self) -> dict:
        return dict(train=asdict(self.train), test=asdict(self.test), passed=self.passed,
                    close=self.close, seconds=self.seconds)


def agreement(comm: MPI.Comm, field, A: np.ndarray, b: np.ndarray, X: np.ndarray,
              y: np.ndarray, fe_logits: np.ndarray) -> Agreement:
    """Compare this rank's FE logits ``fe_logits`` (shape=(n, K)) at its points ``X``
    (shape=(n, d)) with the characteristics' f(q(T; X)) = q A^T + b. Collective.

    Every rank integrates its own points (serial ``characteristics.flow``); counts and maxima
    are reduced, so the result is global.
    """
    q = characteristics.flow(field, X, 0.0, field.T) if len(X) else np.zeros((0, A.shape[1]))
    ch_logits = q @ A.T + b
    fe_labels, ch_labels = fe_logits.argmax(axis=1), ch_logits.argmax(axis=1)
    local = np.array([len(X), np.sum(fe_labels == ch_labels), np.sum(fe_labels == y),
                      np.sum(ch_labels == y)], dtype=np.float64)
    n, agree, correct_pde, correct_ch = comm.allreduce(local, op=MPI.SUM)
    worst = float(np.max(np.abs(fe_logits - ch_logits), initial=0.0))
    worst = comm.allreduce(worst, op=MPI.MAX)
    ratio = (lambda k: float(k / n)) if n else (lambda k: float("nan"))
    return Agreement(points=int(n), label_agreement=ratio(agree), max_logit_difference=worst,
                     accuracy_pde=ratio(correct_pde), accuracy_characteristics=ratio(correct_ch))


def subset(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """A fixed boolean mask over n points: all of them up to ``max_points``, else a seeded
    random subset of that size (the same on every rank and at every check)."""
    mask = np.ones(n, dtype=bool)
    if n > max_points:
        mask[:] = False
        mask[np.random.default_rng(seed).choice(n, size=max_points, replace=False)] = True
    return mask


@dataclass(frozen=True)
class Resolution:
    """The discretization a run is on: the base mesh's cells (per direction, or across a
    disk/ball), the DG degree k (the velocity interpolant has the same degree), and the local
    refinements of that mesh: for each, the midpoints of the cells it refined
    (``fem/refine.py``), as tuples so that resolutions compare and hash."""

    cells: int
    degree: int
    marks: tuple = ()

    def to_dict(self) -> dict:
        """JSON: ``cells``, ``degree``, and ``marks`` (lists) if the mesh was refined locally."""
        data = dict(cells=self.cells, degree=self.degree)
        if self.marks:
            data["marks"] = [[list(point) for point in level] for level in self.marks]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Resolution:
        marks = tuple(_frozen_level(level) for level in data.get("marks", ()))
        return cls(int(data["cells"]), int(data["degree"]), marks)

    def with_marks(self, midpoints: np.ndarray) -> Resolution:
        """One more local refinement: the cells with these midpoints (shape=(m, d))."""
        return Resolution(self.cells, self.degree, (*self.marks, _frozen_level(midpoints)))

    def __str__(self) -> str:
        local = f" + {len(self.marks)} local refinement(s) of {sum(map(len, self.marks))} cells" if self.marks else ""
        return f"DG{self.degree} on {self.cells} cells/direction{local}"

    def raised(self, max_degree: int = 2) -> Resolution:
        """One DG degree more up to ``max_degree``, then 1.5× the cells (odd, so that data on a
        mid-plane, like the augmented x3 = 0, stay off the facets; local refinements dropped)
        at that degree. Training takes the degree step first and then, in place of the uniform
        one, refines where the data's characteristics go (``learn/train.py``).

        p before h, because it gives the smaller logit error for the same cost of an iteration.
        Measured (``scripts/bench_resolution.py RUN``, one trained field each, 2 ranks): on
        peaks after 60 iterations on 9³ DG1, max |Δ| = 1.82 on 9³ DG1, 0.24 on 9³ DG2, 0.70
        on 15³ DG1 (a value + gradient on 9³ DG2 costs about as much as on 15³ DG1); on
        circles 3D, 1.13 on 9³ DG1, 0.18 on 9³ DG2, 0.42 on 15³ DG1 (again about the same
        cost).
        """
        if self.degree < max_degree:
            return Resolution(self.cells, self.degree + 1, self.marks)
        cells = math.ceil(1.5 * self.cells)
        return Resolution(cells + (cells % 2 == 0), self.degree)

    def dofs_ratio(self, other: Resolution, dim: int) -> float:
        """The DG dofs of ``other`` over this one's: (cells ratio)^d · dim P_k ratio."""
        per_cell = lambda k: math.comb(k + dim, dim)  # noqa: E731
        return (other.cells / self.cells) ** dim * per_cell(other.degree) / per_cell(self.degree)


def _frozen_level(midpoints) -> tuple:
    return tuple(tuple(float(v) for v in point) for point in np.asarray(midpoints, dtype=np.float64).tolist())
