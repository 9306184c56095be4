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

import logging
import weakref

import numpy as np
import scipy.sparse
from mpi4py import MPI

from dolfinx import fem

from solver.errors import InputError
from solver.fem.locate import CellLocator, determine_ownership
from solver.parallel import gather_rows, rank_share

log = logging.getLogger("solver")


class PointEvaluator:
    """P for a scalar finite-element space and a fixed set of points (collective over the
    mesh's communicator).

    Args:
        V: a scalar, affine-simplex function space (e.g. the DG space of the transport solver).
        points: this rank's points, shape=(n, gdim).
        source: where the points came from, for error messages.
        outside: "raise" (an InputError for points outside the mesh) or "nan" (their values are
            NaN: a grid over a disk's bounding box).
        warn_on_facets: warn on rank 0 if points lie on facets (``num_on_facets`` is counted
            only then).

    Raises:
        InputError: on every rank, if any rank has a non-finite point, or (outside="raise") one
            outside the mesh.
    """

    def __init__(self, V: fem.FunctionSpace, points: np.ndarray, source: str = "points",
                 warn_on_facets: bool = True, outside: str = "raise"):
        mesh = V.mesh
        comm = mesh.comm
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
        ownership = determine_ownership(comm, locator, points, first_at=points + step)
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

        # The points themselves (not the stepped ones) to their owners, as transpose sends.
        if comm.size == 1:
            dest_points = points if len(self._recv_order) == len(points) and np.all(
                self._recv_order[:-1] < self._recv_order[1:]) else points[self._recv_order]
        else:
            send = np.ascontiguousarray(points[self._recv_order])
            dest_points = np.empty((len(ownership.cells), gdim))
            comm.Alltoallv([send, self._recv_counts * gdim, MPI.DOUBLE],
                           [dest_points, self._send_counts * gdim, MPI.DOUBLE])
        X = locator.reference(dest_points, ownership.cells)
        self.num_on_facets = None
        if warn_on_facets:
            self._count_on_facets(X, len(points), source)
        basis = V.element.basix_element.tabulate(0, np.clip(X, 0.0, 1.0))[0, :, :, 0]
        dofs = V.dofmap.list[ownership.cells]
        n_local = V.dofmap.index_map.size_local + V.dofmap.index_map.num_ghosts
        # Each row holds one cell's dofs: CSR directly (no COO sort).
        width = dofs.shape[1]
        self.P = scipy.sparse.csr_matrix(
            (basis.ravel(), dofs.ravel(), np.arange(0, len(dofs) * width + 1, width)),
            shape=(len(dofs), n_local),
        )

    def _count_on_facets(self, X: np.ndarray, num_points: int, source: str) -> None:
        """``num_on_facets``: the points (reference coordinates X of those this rank owns) on a
        facet, summed over ranks; rank 0 warns if there are any (collective).

        A point on a facet (a barycentric coordinate ~0) takes the value of the cell on the side
        of the fixed direction g, though u_h jumps there (measured on peaks, data at x3 = 0 of a 12³ box,
        which lies on facets: PDE/characteristics agreement 94% from the cells below, 97% from
        those above).
        """
        comm = self.comm
        barycentric = np.concatenate([1.0 - X.sum(axis=1, keepdims=True), X], axis=1)
        on_facets = int(np.sum(barycentric.min(axis=1, initial=1.0) < 1e-9))
        self.num_on_facets = comm.allreduce(on_facets, op=MPI.SUM)
        total = comm.allreduce(num_points, op=MPI.SUM)
        if self.num_on_facets and comm.rank == 0:
            log.warning(
                "%s: %d of %d points lie on mesh facets, where u_h jumps; each takes the value of "
                "the cell on one fixed side. Move them off the facets (e.g. an odd cell count "
                "for data augmented at x3 = 0).", source, self.num_on_facets, total)

    def __call__(self, u: fem.Function | np.ndarray) -> np.ndarray:
        """u_h at this rank's points, in its order (collective). Returns shape=(n,)."""
        values = u.x.array if isinstance(u, fem.Function) else u
        owned_values = self.P @ values
        received = np.empty(int(self._recv_counts.sum()))
        self.comm.Alltoallv(
            [owned_values, self._send_counts, MPI.DOUBLE],
            [received, self._recv_counts, MPI.DOUBLE],
        )
        result = np.full(self.num_points, np.nan)
        result[self._recv_order] = received
        return result

    def transpose(self, r: np.ndarray) -> np.ndarray:
        """Pᵀ r: adds the weights ``r`` (shape=(n,), this rank's points) into local dofs (collective)."""
        send = np.ascontiguousarray(np.asarray(r, dtype=np.float64)[self._recv_order])
        owned = np.empty(int(self._send_counts.sum()))
        self.comm.Alltoallv([send, self._recv_counts, MPI.DOUBLE], [owned, self._send_counts, MPI.DOUBLE])
        return self.P.T @ owned


# The step δ·g off each point that picks the cell of a point on a facet: δ = NUDGE × the mesh's
# extent (10× the locator's padding), g a unit vector with irrational ratios, so no facet of a box
# mesh or of its bisections contains it.
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


def evaluate_everywhere(
    V: fem.FunctionSpace, functions, points: np.ndarray, source: str = "points"
) -> np.ndarray:
    """Values of several functions of ``V`` at the same points, returned in full on every rank
    (collective over the mesh's communicator).

    ``points`` (shape=(n, gdim)) must be the same on every rank; each rank locates its
    :func:`~solver.parallel.rank_share`. Returns shape=(n, len(functions)).
    """
    mine = points[rank_share(V.mesh.comm, len(points))]
    evaluator = PointEvaluator(V, mine, source)
    local = np.stack([evaluator(u) for u in functions], axis=1) if functions else np.zeros((len(mine), 0))
    return gather_rows(V.mesh.comm, local)
