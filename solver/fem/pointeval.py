"""Point evaluation u_h(X_i) in parallel, as a sparse matrix P and its transpose.

Each rank hands in its own points (any distribution; a rank may have none). The rank whose
owned cell contains a point evaluates it (``fem/locate.py``; on a facet, the cell on the side of a
fixed direction, so the same on any number of ranks): there P is a local sparse matrix (points it owns ×
local dofs), built once from the pulled-back points and the basix tabulation, so applying it
costs one sparse product. The values travel back to the rank that asked, in its order.

Pᵀ r (for an adjoint) is the reverse: residuals go to the owners, the sparse transpose product
adds them into local dofs. For DG spaces on owned cells every touched dof is owned, so no ghost
accumulation is needed.
"""

from __future__ import annotations

import functools
import logging
import warnings
import weakref

import basix
import numpy as np
import scipy.sparse
from mpi4py import MPI

from dolfinx import fem

from solver.errors import FacetWarning, InputError
from solver.fem.locate import CellLocator, determine_ownership
from solver.parallel import gather_rows, rank_share

log = logging.getLogger("solver")

# A point closer than this to a facet is "on" it: DOLFINx's own point location takes a point to
# collide with a cell closer than this (compute_colliding_cells: squared GJK distance < 1e-12).
FACET_TOLERANCE = 1e-6


class PointEvaluator:
    """P for a scalar finite-element space and a fixed set of points (collective over the
    mesh's communicator).

    Args:
        V: a scalar, affine-simplex function space (e.g. the DG space of the transport solver).
        points: this rank's points, shape=(n, gdim).
        source: where the points came from, for error messages.
        outside: "raise" (an InputError for points outside the mesh) or "nan" (their values are
            NaN: a grid over a disk's bounding box).
        report: warn (rank 0, a ``FacetWarning``) about points on interior facets; False for internal points (a
            plot grid), which :func:`grid_evaluator` moves off the facets instead.
        gradient: also build the matrices of ∇u_h at the points (``gradient``), in the cell
            that holds each point (the semi-Lagrangian adjoint's ∇u at departure points).
        continuous: V is continuous, so a point on a facet has one value whichever cell holds
            it: no step off the facet (one search instead of two) and no facet count. None:
            whether V's element is continuous.

    Raises:
        InputError: on every rank, if any rank has a non-finite point, or (outside="raise") one
            outside the mesh.
    """

    def __init__(self, V: fem.FunctionSpace, points: np.ndarray, source: str = "points",
                 report: bool = True, outside: str = "raise", gradient: bool = False,
                 continuous: bool | None = None):
        mesh = V.mesh
        comm = mesh.comm
        if continuous is None:
            continuous = not V.element.basix_element.discontinuous
        gdim = mesh.geometry.dim
        points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, gdim)
        self.comm = comm
        self.num_points = len(points)
        n_bad = 0 if np.isfinite(points).all() else int(np.sum(~np.all(np.isfinite(points), axis=1)))
        if comm.allreduce(n_bad, op=MPI.SUM):
            raise InputError(f"{comm.allreduce(n_bad):d} non-finite point(s)", source)

        # A point on a facet lies in two cells, and u_h jumps there; which cell (and rank) a
        # point search finds depends on the partition (measured: J differed by 3e-5 between 1
        # and 2 ranks). So each point is located a tiny step δ·g off itself, along one fixed
        # generic direction g, and evaluated (at itself) in the cell found: the cell on g's side
        # of the facet, whatever the partition. A point whose step leaves the mesh (on the
        # boundary) is located where it is. Only owned cells may own a point, so that every dof
        # P touches is an owned DG dof.
        locator = cell_locator(mesh)
        step = NUDGE * locator.extent * _direction(gdim)
        ownership = determine_ownership(comm, locator, points, first_at=None if continuous else points + step,
                                        exhaustive=not continuous)
        self.outside = ownership.outside
        total_outside = comm.allreduce(len(ownership.outside), op=MPI.SUM)
        if total_outside and outside == "raise":
            examples = comm.allgather(points[ownership.outside[:3]].tolist())
            shown = [p for chunk in examples for p in chunk][:5]
            raise InputError(f"{total_outside} point(s) lie outside the mesh, e.g. {shown}", source)
        # Points come back to their rank in the order that rank listed them (grouped by owner).
        self._send_counts = ownership.send_counts
        self._recv_counts = ownership.recv_counts
        self._recv_order = ownership.recv_order

        if continuous:
            # Located at the points themselves: the owners already hold their reference
            # coordinates, and J⁻¹ of each cell is the locator's (the semi-Lagrangian scheme
            # builds an evaluator per slab and evaluation: this halved the build).
            X = ownership.reference
            J_inverse = locator.inverse_jacobians(ownership.cells) if gradient else None
            which = np.arange(len(X))
            self._owned_on_facets = np.zeros(len(X), dtype=bool)
            self.num_on_facets = self.num_outside = 0
        else:
            # The points themselves (not the stepped ones) to their owners, as transpose sends.
            if comm.size == 1:
                dest_points = points if len(self._recv_order) == len(points) and np.all(
                    self._recv_order[:-1] < self._recv_order[1:]) else points[self._recv_order]
            else:
                send = np.ascontiguousarray(points[self._recv_order])
                dest_points = np.empty((len(ownership.cells), gdim))
                comm.Alltoallv([send, self._recv_counts * gdim, MPI.DOUBLE],
                               [dest_points, self._send_counts * gdim, MPI.DOUBLE])
            X, J_inverse, which = _pull_back(mesh, ownership.cells, dest_points)
            self._count_on_facets(_nearest_facet(X, J_inverse, which), len(points), source, report)
        basis = V.element.basix_element.tabulate(0, np.clip(X, 0.0, 1.0))[0, :, :, 0]
        dofs = V.dofmap.list[ownership.cells]
        n_local = V.dofmap.index_map.size_local + V.dofmap.index_map.num_ghosts
        # Each row holds one cell's dofs: CSR directly (no COO sort).
        width = dofs.shape[1]
        indptr = np.arange(0, len(dofs) * width + 1, width)
        self.P = scipy.sparse.csr_matrix((basis.ravel(), dofs.ravel(), indptr), shape=(len(dofs), n_local))
        self.G = None
        if gradient:
            # ∂φ/∂x_i = Σ_a (J⁻¹)_ai ∂φ/∂X_a: the reference derivatives mapped by each cell's J⁻¹.
            tabulated = _reference_derivatives(V.element.basix_element, np.clip(X, 0.0, 1.0))
            # (n, dofs, a) @ (n, a, i): one batched product (an einsum took 5× as long).
            physical = np.matmul(tabulated.transpose(1, 2, 0), J_inverse if continuous else J_inverse[which])
            self.G = [
                scipy.sparse.csr_matrix((physical[:, :, i].ravel(), dofs.ravel(), indptr), shape=(len(dofs), n_local))
                for i in range(gdim)
            ]

    def _count_on_facets(self, nearest: np.ndarray, num_points: int, source: str, report: bool) -> None:
        """``num_on_facets``: the points (signed distances to the nearest facet of the cells
        that located them, of those this rank owns) on a facet, summed over ranks; rank 0 warns
        (``FacetWarning``) if there are any and ``report`` (collective).

        A point closer than ``FACET_TOLERANCE`` to a facet (inside or outside its cell) may be
        located in either cell (here, located a step off itself, in the cell on one fixed
        side: see ``NUDGE``), and takes that cell's value, though u_h jumps there (measured on
        peaks, data at x3 = 0 of a 12³ box, which lies on facets: PDE/characteristics agreement
        94% from the cells below, 97% from those above). Barycentric coordinates below 1e-9, as
        counted before, missed the points DOLFINx locates in the neighbouring cell 3e-8 away (2
        of the moons plot grid on 2 ranks) and counted as "on facets" the points of a disk that
        lie in the thin gap between the circle and its polygonal mesh (500 random points of
        problems/rotation_disk.toml: 3, 2 and 1 at 16, 32 and 64 cells, up to 2e-3 from their
        cell). Those are outside the mesh; they take the value at the nearest point of their
        cell (``np.clip`` below); ``num_outside`` counts them, logged at debug level.
        """
        comm = self.comm
        self._owned_on_facets = np.abs(nearest) < FACET_TOLERANCE
        self.num_on_facets = comm.allreduce(int(np.sum(self._owned_on_facets)), op=MPI.SUM)
        self.num_outside = comm.allreduce(int(np.sum(nearest <= -FACET_TOLERANCE)), op=MPI.SUM)
        total = comm.allreduce(num_points, op=MPI.SUM)
        if comm.rank == 0 and self.num_outside:
            log.debug("%s: %d of %d points lie just outside the polygonal mesh of a curved domain; "
                      "each takes the value at the nearest point of its cell", source, self.num_outside, total)
        if self.num_on_facets and report and comm.rank == 0:
            # A warning, not a log line: a user filters it by its class (``solver.FacetWarning``),
            # and the estimator shows it once per fit (docs/warnings.md: when, and what to do).
            warnings.warn(FacetWarning(
                f"{source}: {self.num_on_facets} of {total} points lie on mesh facets, where u_h "
                f"jumps, and take the value of the cell on one fixed side; an odd mesh.cells or "
                f"another data.margin moves them off"), stacklevel=2)

    def on_facets(self) -> np.ndarray:
        """Which of this rank's points (in its order) lie on a facet, shape=(n,) bool (collective)."""
        return self._to_askers(self._owned_on_facets.astype(np.float64)) > 0.5

    def _to_askers(self, owned_values: np.ndarray) -> np.ndarray:
        """Values of the points this rank owns (shape=(m,) or (m, k): k per point) sent back to
        the ranks that asked, in their order: shape=(n,) or (n, k). One message for all k."""
        owned_values = np.ascontiguousarray(owned_values, dtype=np.float64)
        k = int(np.prod(owned_values.shape[1:]))
        received = np.empty((int(self._recv_counts.sum()),) + owned_values.shape[1:])
        self.comm.Alltoallv(
            [owned_values, self._send_counts * k, MPI.DOUBLE],
            [received, self._recv_counts * k, MPI.DOUBLE],
        )
        # NaN for points outside the mesh (outside="nan").
        result = np.full((self.num_points,) + owned_values.shape[1:], np.nan)
        result[self._recv_order] = received
        return result

    def __call__(self, u: fem.Function | np.ndarray) -> np.ndarray:
        """u_h at this rank's points, in its order (collective). ``u``: a function, or local
        coefficients of shape=(n_local,) or (n_local, k) (k functions at once, one message).
        Returns shape=(n,) or (n, k)."""
        values = u.x.array if isinstance(u, fem.Function) else u
        return self._to_askers(self.P @ values)

    def gradient(self, values: np.ndarray) -> np.ndarray:
        """∇u_h at this rank's points of the local coefficients ``values`` (ghosts current;
        built with ``gradient=True``; collective): shape=(n, gdim) for values of shape=(n_local,),
        (n, gdim, k) for shape=(n_local, k) (one message)."""
        return self._to_askers(np.stack([G @ values for G in self.G], axis=1))

    def transpose(self, r: np.ndarray) -> np.ndarray:
        """Pᵀ r: adds the weights ``r`` (shape=(n,) or (n, k): k sets at once, this rank's
        points) into local dofs, shape=(n_local,) or (n_local, k) (collective)."""
        r = np.asarray(r, dtype=np.float64)
        k = int(np.prod(r.shape[1:]))
        send = np.ascontiguousarray(r[self._recv_order])
        owned = np.empty((int(self._send_counts.sum()),) + r.shape[1:])
        self.comm.Alltoallv([send, self._recv_counts * k, MPI.DOUBLE], [owned, self._send_counts * k, MPI.DOUBLE])
        return self.P.T @ owned


# The step δ·g off each point that picks the cell of a point on a facet: δ = NUDGE × the mesh's
# extent, 10× the containment padding of fem/locate.py (1e-9 × the extent), so the step decides
# the cell (with DOLFINx's own search, whose point-in-cell tolerance is ~1e-6, a step of 2e-8 did
# not: measured); g a unit vector with irrational ratios, so no facet of a box mesh or of its
# bisections contains it.
NUDGE = 1e-8


def _direction(gdim: int) -> np.ndarray:
    g = np.sqrt(np.array([1.0, 2.0, 3.0])[:gdim])
    return g / np.linalg.norm(g)


# One locator per mesh (its inverse maps and lattice or tree), built on the first evaluator.
_LOCATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cell_locator(mesh) -> CellLocator:
    """The mesh's :class:`~solver.fem.locate.CellLocator`, built once (collective the first time)."""
    locator = _LOCATORS.get(mesh)
    if locator is None:
        locator = _LOCATORS[mesh] = CellLocator(mesh)
    return locator


def _reference_derivatives(element, X: np.ndarray) -> np.ndarray:
    """∂φ/∂X_a of the basis of a Lagrange (P_k) ``element`` (basix) at reference points ``X``
    (shape=(n, tdim)): shape=(tdim, n, dofs), what ``element.tabulate(1, X)[1:, ..., 0]`` gives.

    Why not that call: basix's derivative tabulation cost 14× its value tabulation on a P2
    tetrahedron (2.1 ms against 0.15 ms at 2,197 points; the semi-Lagrangian adjoint needs it at
    every node of every slab). The derivatives are polynomials of degree k − 1, so they equal
    their P_{k−1} interpolant: the P_{k−1} basis at X (basix, one value tabulation) times the
    derivatives at P_{k−1}'s points (tabulated once per element): exact, to rounding (tested
    against ``tabulate(1, X)``). Other elements take basix's derivatives."""
    if element.family != basix.ElementFamily.P:
        return element.tabulate(1, X)[1:, :, :, 0]
    lower = _lower_element(element.cell_type, element.degree)
    return np.matmul(lower.tabulate(0, X)[0, :, :, 0], element.tabulate(1, lower.points)[1:, :, :, 0])


@functools.lru_cache(maxsize=None)
def _lower_element(cell_type, degree: int):
    """P_{k−1} on the cell (equispaced points; P0 for k = 1)."""
    variant = basix.LagrangeVariant.equispaced if degree > 1 else basix.LagrangeVariant.unset
    return basix.create_element(basix.ElementFamily.P, cell_type, degree - 1, variant, discontinuous=True)


def _pull_back(mesh, cells: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference coordinates X = J⁻¹ (x − x₀) of ``points`` (shape=(n, gdim)) in their affine
    simplex ``cells`` (shape=(n,)), shape=(n, gdim); with J⁻¹ of each distinct cell (shape=(m,
    gdim, gdim)) and which of those each point's is (shape=(n,))."""
    gdim = mesh.geometry.dim
    if not len(cells):
        return np.zeros((0, gdim)), np.zeros((0, gdim, gdim)), np.zeros(0, dtype=np.int64)
    # One inverse per distinct cell, not per point (10⁶ points in 2048 cells: 0.25 s of CPU instead of 0.64 s).
    distinct, which = np.unique(cells, return_inverse=True)
    geometry = mesh.geometry.x[mesh.geometry.dofmaps[0][distinct]][:, :, :gdim]
    J = np.transpose(geometry[:, 1:, :] - geometry[:, :1, :], (0, 2, 1))
    J_inverse = np.linalg.inv(J)
    offset = points - geometry[which, 0, :]
    # X_i = Σ_j (J⁻¹)_ij offset_j, a column at a time: gdim² products of n values, without an
    # (n, gdim, gdim) gather of J⁻¹.
    X = np.zeros_like(offset)
    for i in range(gdim):
        for j in range(gdim):
            X[:, i] += J_inverse[which, i, j] * offset[:, j]
    return X, J_inverse, which


def _nearest_facet(X: np.ndarray, J_inverse: np.ndarray, which: np.ndarray) -> np.ndarray:
    """The signed distance (negative outside) of points with reference coordinates X (shape=(n,
    d)) to the nearest of the d + 1 facets of their simplex, shape=(n,): min_i λ_i / |∇λ_i| with
    the barycentric coordinates λ (λ_0 = 1 − ΣX, λ_i = X_i, so ∇λ_i is row i of J⁻¹ and ∇λ_0
    minus their sum; J⁻¹ of the distinct cells, ``which`` of them each point's, as
    ``_pull_back`` gives them). Column by column: numpy's reductions over a short last axis
    were a third of locating a 512² grid."""
    gradients = np.concatenate([-J_inverse.sum(axis=1, keepdims=True), J_inverse], axis=1)
    norms = np.linalg.norm(gradients, axis=2)  # (cells, d + 1)
    first = 1.0 - sum(X[:, i] for i in range(X.shape[1]))
    nearest = first / norms[which, 0]
    for i in range(X.shape[1]):
        np.minimum(nearest, X[:, i] / norms[which, i + 1], out=nearest)
    return nearest


def evaluate_everywhere(
    V: fem.FunctionSpace, functions, points: np.ndarray, source: str = "points", internal: bool = False
) -> np.ndarray:
    """Values of several functions of ``V`` at the same points, returned in full on every rank
    (collective over the mesh's communicator).

    ``points`` (shape=(n, gdim)) must be the same on every rank; each rank locates its
    :func:`~solver.parallel.rank_share`. ``internal``: the points are the solver's own (a plot
    grid), not the user's: evaluated where :func:`grid_evaluator` moves them, without a warning.
    Returns shape=(n, len(functions)).
    """
    evaluator = grid_evaluator(V, points, source) if internal else PointEvaluator(
        V, points[rank_share(V.mesh.comm, len(points))], source)
    local = np.stack([evaluator(u) for u in functions], axis=1) if functions else np.zeros((evaluator.num_points, 0))
    return gather_rows(V.mesh.comm, local)


def grid_evaluator(V: fem.FunctionSpace, points: np.ndarray, source: str = "grid", rounds: int = 6) -> PointEvaluator:
    """The evaluator of this rank's share of internal ``points`` (a grid; shape=(n, gdim), the
    same on every rank) after moving them off the mesh's facets, the same on every rank
    (collective); its ``points`` are the moved points (all of them).

    A grid aligned with the mesh has points on facets, where u_h jumps and which cell's value is
    seen depends on the partition. ``compare_field.off_facets`` shifts a grid by a generic
    offset first, but some points still land on (diagonal) facets by chance (the moons plot grid:
    2 of 6561). Those are found here and nudged towards the middle of the mesh's bounding box,
    by a generic vector that grows each round (1e-5, 1e-4, … of their distance from there and
    of the mesh's extent; a plot or an error map cannot see it). The nudge depends on the point
    alone, so the result does not depend on the partition; the user is not warned (the grid is
    not theirs).
    """
    comm = V.mesh.comm
    x = V.mesh.geometry.x[:, : points.shape[1]]
    lower, upper = np.empty(points.shape[1]), np.empty(points.shape[1])
    comm.Allreduce(np.ascontiguousarray(x.min(axis=0, initial=np.inf)), lower, op=MPI.MIN)
    comm.Allreduce(np.ascontiguousarray(x.max(axis=0, initial=-np.inf)), upper, op=MPI.MAX)
    center, extent = 0.5 * (lower + upper), float(np.linalg.norm(upper - lower))
    generic = np.array([0.6180, 0.4142, 0.7320])[: points.shape[1]]
    points = np.array(points, dtype=np.float64)
    mine = rank_share(comm, len(points))
    for r in range(rounds):
        evaluator = PointEvaluator(V, points[mine], source, report=False)
        flagged = gather_rows(comm, evaluator.on_facets()).astype(bool)
        if not flagged.any():
            evaluator.points = points
            return evaluator
        moved = points[flagged]
        # Inwards (keeps points near ∂Ω in the mesh), plus a generic offset, small beside the
        # inward part near ∂Ω, that moves the middle too.
        points[flagged] = moved + 10.0**r * 1e-5 * ((center - moved) * (1.0 + generic) + 0.01 * extent * generic)
    raise RuntimeError(f"{source}: points still on mesh facets after {rounds} nudges")
