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
``train.agreement`` on both sets. During training the mesh is refined (``Resolution.refined``)
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
    """The discretization a run is on: mesh cells (per direction, or across a disk/ball) and
    the DG degree k (the velocity interpolant has the same degree)."""

    cells: int
    degree: int

    def to_dict(self) -> dict:
        return dict(cells=self.cells, degree=self.degree)

    def __str__(self) -> str:
        return f"DG{self.degree} on {self.cells} cells/direction"

    def refined(self) -> Resolution:
        """1.5× the cells, odd (so that data on a mid-plane, like the augmented x3 = 0, stay off
        the facets), the same degree: how training raises the resolution.

        h rather than p during training, where the cost multiplies every later iteration: a
        step costs about dofs × nonzeros per row × steps, so 1.5× the cells costs 1.5^d · 1.5
        (5.1× in 3D), DG1 → DG2 2.5 · 2.5 · 5/3 (10.4× in 3D). Measured on circles 3D (13³, 1
        rank, a busy machine): 3.4 s per iteration on DG1, 64 s on DG2.
        """
        cells = math.ceil(1.5 * self.cells)
        return Resolution(cells + (cells % 2 == 0), self.degree)

    def raised_at_the_end(self, max_degree: int = 2) -> Resolution:
        """One DG degree more up to ``max_degree``, then ``refined``: how the final check raises
        the resolution, where each raise costs one forward solve.

        For one solve the error per cost decides, and p wins: a DG1 peaks field (13³) agreed
        with its characteristics on 89% of the labels, on 25³ DG1 on 96.5%, on 13³ DG2 (8×
        fewer cells than 25³ for about the same dofs) on 99.5%.
        """
        if self.degree < max_degree:
            return Resolution(self.cells, self.degree + 1)
        return self.refined()

    def dofs_ratio(self, other: Resolution, dim: int) -> float:
        """The DG dofs of ``other`` over this one's: (cells ratio)^d · dim P_k ratio."""
        per_cell = lambda k: math.comb(k + dim, dim)  # noqa: E731
        return (other.cells / self.cells) ** dim * per_cell(other.degree) / per_cell(self.degree)
