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

**Viscous runs** (``field.viscosity`` = ε > 0). The PDE is then ∂t u + v·∇u + εΔu = 0, whose
solution is u(0, x) = E[f(X_T) | X_0 = x] for the reflected SDE dX = v dt + √(2ε) dW, not
f(q(T; x)): the characteristics would fail a well-resolved viscous run (measured: moons, 12²,
ε = 0.01, 5 iterations: 96.8% label agreement, max logit difference 0.38). The reference is
then the Monte Carlo of that SDE (``model/stochastic.py``; ``train.paths`` antithetic paths,
``train.sde_steps`` stochastic Heun steps), whose mean m_ik at point i, logit k, comes with its
own error bound e_ik = 3 SE + bias (``MonteCarloResult.bound``). What the Monte Carlo cannot
resolve is not held against the PDE:

- ``excess`` = max_ik (|u_h(0, X_i)_k − m_ik| − e_ik)_+ must be ≤ ``train.tolerance`` (it
  takes the place of the max logit difference in every decision: the check, the resolution);
- ``resolved_agreement``: the fraction of points whose PDE label k_h is the Monte Carlo's
  label k_m, or where the Monte Carlo cannot tell them apart (m_ik_m − m_ik_h ≤ e_ik_m + e_ik_h);
  it must be ≥ ``train.agreement``.

Both are reported beside the raw ``max_logit_difference`` and ``label_agreement`` (PDE against
the Monte Carlo mean) and ``monte_carlo_bound`` = max_ik e_ik, so a user sees what was certified;
``accuracy_characteristics`` is then the Monte Carlo mean's accuracy. The paths of a point do not
depend on the ranks: the Monte Carlo runs over all checked points (training, then test) in
chunks seeded by their index (``stochastic.solve``), and each rank takes its own rows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np
from mpi4py import MPI

from solver.model import characteristics, stochastic

CHARACTERISTICS = "characteristics"
MONTE_CARLO = "Monte Carlo"


@dataclass(frozen=True)
class Agreement:
    """The PDE against the reference (the characteristics, or for ε > 0 the Monte Carlo) on one
    set of points (global over ranks). The last three are the Monte Carlo's only (None else)."""

    points: int
    label_agreement: float
    max_logit_difference: float
    accuracy_pde: float
    accuracy_characteristics: float  # the reference's accuracy
    monte_carlo_bound: float | None = None  # max_ik e_ik
    excess: float | None = None  # max_ik (|u_h − m|_ik − e_ik)_+
    resolved_agreement: float | None = None  # labels equal or not resolved by the Monte Carlo

    @property
    def certified_difference(self) -> float:
        """The logit difference held against the tolerance (the module's docstring)."""
        return self.max_logit_difference if self.excess is None else self.excess

    @property
    def certified_agreement(self) -> float:
        return self.label_agreement if self.resolved_agreement is None else self.resolved_agreement

    def close(self, tolerance: float) -> bool:
        return self.points == 0 or self.certified_difference <= tolerance

    def within(self, tolerance: float, agreement: float) -> bool:
        """Inside the tolerances (an empty set passes)."""
        if self.points == 0:
            return True
        return self.certified_difference <= tolerance and self.certified_agreement >= agreement

    def to_dict(self) -> dict:
        """JSON: the fields, the Monte Carlo's only if set (so ε = 0 files are as before)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Check:
    """One certification check: train and test points, and whether both pass."""

    train: Agreement
    test: Agreement
    passed: bool  # both sets within both tolerances
    close: bool  # both sets within the logit tolerance
    seconds: float
    reference: str = CHARACTERISTICS  # or MONTE_CARLO (ε > 0)

    @property
    def max_logit_difference(self) -> float:
        return max(self.train.max_logit_difference, self.test.max_logit_difference)

    @property
    def certified_difference(self) -> float:
        """What the resolution control compares with its thresholds: the max logit difference,
        beyond the Monte Carlo's bound for ε > 0."""
        return max(self.train.certified_difference, self.test.certified_difference)

    @property
    def monte_carlo_bound(self) -> float:
        """The largest Monte Carlo error bound of both sets (NaN for the characteristics)."""
        values = [a.monte_carlo_bound for a in (self.train, self.test) if a.monte_carlo_bound is not None]
        return max(values) if values else float("nan")

    @property
    def label_agreement(self) -> float:
        """The worse of the two sets' agreements."""
        values = [a.label_agreement for a in (self.train, self.test) if a.points]
        return min(values) if values else float("nan")

    def to_dict(self) -> dict:
        return dict(train=self.train.to_dict(), test=self.test.to_dict(), passed=self.passed,
                    close=self.close, seconds=self.seconds, reference=self.reference)


def advice(check: Check, adapt: bool, tolerance: float, dofs: int) -> str:
    """The one action that applies to a run whose final check did not pass (a clause naming the
    problem file's keys; ``solver.estimator`` names its parameters instead). ``dofs``: the DG
    dofs per component the run ended on.

    When every logit is within the tolerance (``check.close``) the labels that differ cannot be
    resolved by a mesh: at such a point the characteristics' two largest logits differ by at
    most twice the largest logit difference (the PDE ranks them the other way), so the point
    lies on the decision boundary.
    """
    if check.close:
        sets = [a for a in (check.train, check.test) if a.points]
        differ = sum(round((1.0 - a.label_agreement) * a.points) for a in sets)
        return (f"the {differ} of {sum(a.points for a in sets)} checked points whose labels differ have "
                f"their two largest logits within {2 * check.max_logit_difference:.2f} of each other "
                f"(twice the largest logit difference, which is within train.tolerance = {tolerance:g}): "
                f"they lie on the decision boundary, where no mesh settles a label; nothing needs doing, "
                f"or lower train.agreement to accept them")
    if check.reference == MONTE_CARLO and check.monte_carlo_bound > tolerance / 2:
        return "raise train.paths: the Monte Carlo's error bound is too loose to certify against"
    if not adapt:
        return ("turn on train.adapt, so that the final check raises the resolution where the logits "
                "differ (or start on a finer mesh.cells or mesh.degree)")
    return (f"raise train.max_dofs: the final check stopped raising the resolution at {dofs} dofs per "
            f"component, below the next one")


def agreement(comm: MPI.Comm, field, A: np.ndarray, b: np.ndarray, X: np.ndarray,
              y: np.ndarray, fe_logits: np.ndarray) -> Agreement:
    """Compare this rank's FE logits ``fe_logits`` (shape=(n, K)) at its points ``X``
    (shape=(n, d)) with the characteristics' f(q(T; X)) = q A^T + b. Collective.

    Every rank integrates its own points (serial ``characteristics.flow``); counts and maxima
    are reduced, so the result is global.
    """
    q = characteristics.flow(field, X, 0.0, field.T) if len(X) else np.zeros((0, A.shape[1]))
    return compare_logits(comm, fe_logits, q @ A.T + b, y)


def compare_logits(comm: MPI.Comm, fe_logits: np.ndarray, reference: np.ndarray, y: np.ndarray,
                   bound: np.ndarray | None = None) -> Agreement:
    """This rank's FE logits against the reference logits at the same points (each
    shape=(n, K)), labels ``y`` (shape=(n,)); ``bound`` (shape=(n, K)): the reference's error
    bound e_ik (Monte Carlo), or None (the characteristics: exact to 1e-10). Collective.
    """
    fe_labels, ch_labels = fe_logits.argmax(axis=1), reference.argmax(axis=1)
    if not is_labels(y):
        # Regression targets: no labels to agree on (agreement 1, accuracies NaN); the outputs'
        # difference is the check (max_logit_difference against train.tolerance).
        fe_labels = ch_labels
        correct_pde = correct_ch = np.nan
    else:
        correct_pde, correct_ch = np.sum(fe_labels == y), np.sum(ch_labels == y)
    local = np.array([len(y), np.sum(fe_labels == ch_labels), correct_pde, correct_ch], dtype=np.float64)
    n, agree, correct_pde, correct_ch = comm.allreduce(local, op=MPI.SUM)
    difference = np.abs(fe_logits - reference)
    worst = float(np.max(difference, initial=0.0))
    worst = comm.allreduce(worst, op=MPI.MAX)
    ratio = (lambda k: float(k / n)) if n else (lambda k: float("nan"))
    result = Agreement(points=int(n), label_agreement=ratio(agree), max_logit_difference=worst,
                       accuracy_pde=ratio(correct_pde), accuracy_characteristics=ratio(correct_ch))
    if bound is None:
        return result
    # The PDE's label stands unless the Monte Carlo puts its own label above it beyond both
    # bounds (equal labels stand: the difference is 0).
    rows = np.arange(len(y))
    stands = (reference[rows, ch_labels] - reference[rows, fe_labels]
              <= bound[rows, ch_labels] + bound[rows, fe_labels])
    largest_bound = comm.allreduce(float(np.max(bound, initial=0.0)), op=MPI.MAX)
    largest_excess = comm.allreduce(float(np.max(excess(fe_logits, reference, bound), initial=0.0)), op=MPI.MAX)
    standing = comm.allreduce(int(np.sum(stands)), op=MPI.SUM)
    return dataclasses.replace(result, monte_carlo_bound=float(largest_bound), excess=float(largest_excess),
                               resolved_agreement=ratio(standing))


def is_labels(y: np.ndarray) -> bool:
    """Whether the targets ``y`` are class labels (integers, shape=(n,)), not regression targets."""
    y = np.asarray(y)
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def excess(fe_logits: np.ndarray, reference: np.ndarray, bound: np.ndarray | None) -> np.ndarray:
    """Per point, the logit difference beyond the reference's bound: max_k (|Δ_ik| − e_ik)_+
    (shape=(n,)); with no bound, max_k |Δ_ik|."""
    difference = np.abs(fe_logits - reference)
    if bound is not None:
        difference = np.maximum(difference - bound, 0.0)
    return np.max(difference, axis=1, initial=0.0)


def monte_carlo(comm: MPI.Comm, field, domain, A: np.ndarray, b: np.ndarray, points: list[np.ndarray],
                epsilon: float, paths: int, steps: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Monte Carlo reference at the sets of ``points`` (each shape=(n_j, d), the same on
    every rank): per set the mean logits E[A X_T + b] and their bound 3 SE + bias (each
    shape=(n_j, K)), the same on every rank. One ``stochastic.solve`` over the sets
    concatenated, antithetic, Heun steps (collective).

    Measured (``scripts/bench_mc_check.py RUN``, moons 32², ε = 0.01, 30 iterations, 500 points,
    16 steps): the largest bound was 0.86 with 256 Euler–Maruyama paths (bias 0.71), 0.33 with
    256 Heun paths (bias 0.09, 3 SE 0.30), 0.20 with 512 Heun paths (the default ``train.paths``),
    0.17 with 1024, at 0.8, 1.7, 3.4 and 7.2 s of CPU on one rank (load average ~13).
    """
    sizes = np.cumsum([0] + [len(x) for x in points])
    mc = stochastic.solve(comm, field, domain, lambda x: x @ A.T + b, np.concatenate(points), epsilon,
                          paths=paths, steps=steps, seed=seed, antithetic=True, heun=True)
    bound = mc.bound
    return [(mc.u0[s:e], bound[s:e]) for s, e in zip(sizes[:-1], sizes[1:])]


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
    # What the degree is of, for messages only ("DG" or "P": ``learn.train.Problem`` sets it
    # from the scheme): not compared, not stored.
    space: str = dataclasses.field(default="DG", compare=False)

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
        return Resolution(self.cells, self.degree, (*self.marks, _frozen_level(midpoints)), self.space)

    def __str__(self) -> str:
        local = f" + {len(self.marks)} local refinement(s) of {sum(map(len, self.marks))} cells" if self.marks else ""
        return f"{self.space}{self.degree} on {self.cells} cells/direction{local}"

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
            return Resolution(self.cells, self.degree + 1, self.marks, self.space)
        cells = math.ceil(1.5 * self.cells)
        return Resolution(cells + (cells % 2 == 0), self.degree, space=self.space)

    def dofs_ratio(self, other: Resolution, dim: int) -> float:
        """The DG dofs of ``other`` over this one's: (cells ratio)^d · dim P_k ratio."""
        per_cell = lambda k: math.comb(k + dim, dim)  # noqa: E731
        return (other.cells / self.cells) ** dim * per_cell(other.degree) / per_cell(self.degree)


def _frozen_level(midpoints) -> tuple:
    return tuple(tuple(float(v) for v in point) for point in np.asarray(midpoints, dtype=np.float64).tolist())
