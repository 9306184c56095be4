"""Which cell holds a point: vectorized location, and the same answer on any number of ranks.

dolfinx's ``determine_point_ownership`` / ``compute_colliding_cells`` decide "point in cell" by a
GJK distance per candidate cell, a C++ loop that took 1.33 s (CPU) for the 262,144 points of a 512²
grid on a 32² mesh, against 0.061 s for ``PointEvaluator`` here (``scripts/bench_prediction_map.py
runs/moons --grid 512 --dolfinx``; the bounding-box query alone took 0.03 s). Here the candidates come from

- arithmetic, on meshes whose vertices lie on a regular lattice with every cell inside one lattice
  square/cube (``create_rectangle``/``create_box``, detected from the geometry, not assumed): the
  cells of the point's square/cube, plus those of its neighbours for points within 1e-8 (of the
  lattice spacing) of a face of it;
- one vectorized query of dolfinx's bounding-box tree of the owned cells otherwise (gmsh disks
  and balls),

and the test is one numpy barycentric computation per candidate (affine simplices).

The rule for a point on a facet (where a DG function jumps): of all owned cells on all ranks that
contain it to ``TOLERANCE`` in barycentric coordinates, the one with the smallest *original* cell
index (``mesh.topology.original_cell_index``: the input order of the cells, which is the same on
any partition of the same mesh). ``fem/pointeval.py`` first steps each point a tiny fixed step off
itself (the cell on one fixed side of a facet); this rule decides only the points that stay on a
facet (on the mesh's boundary, where the step leaves the mesh).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

import dolfinx.geometry
import dolfinx.mesh

TOLERANCE = 1e-10  # a point is in a cell if every barycentric coordinate is >= -TOLERANCE
NEAR_FACE = 1e-8  # lattice: within this (in units of the spacing) of a face, test the neighbours
NONE = np.iinfo(np.int64).max  # the key of "no cell"
CHUNK = 1 << 16  # points per vectorized block (bounds the temporaries: 3D, 6 candidates)


@dataclass(frozen=True)
class Located:
    """The owned cells of this rank that hold some points.

    Attributes:
        cells: local cell index per point, -1 where no owned cell holds it, shape=(n,).
        keys: that cell's original index, ``NONE`` where none, shape=(n,).
        reference: the point's reference coordinates in that cell, shape=(n, tdim).
    """

    cells: np.ndarray
    keys: np.ndarray
    reference: np.ndarray


class Lattice:
    """Owned cells by the lattice square/cube they lie in and the corners they span (rank-local
    lookups).

    Every cell of such a mesh is the simplex on some corners of its square/cube: a *pattern*
    (create_rectangle: 2 triangles per square, create_box: 6 tetrahedra per cube, the same in
    every one). A point's barycentric coordinates in a pattern follow from its fractional
    position in the square/cube by a fixed affine map, so the test needs no per-cell data; the
    table gives the cell of each (square/cube, pattern).
    """

    def __init__(self, lower: np.ndarray, spacing: np.ndarray, counts: np.ndarray, cube: np.ndarray,
                 codes: np.ndarray, patterns: np.ndarray):
        self.lower, self.spacing, self.counts = lower, spacing, counts
        gdim = len(counts)
        # A dense table over the index box of this rank's squares/cubes × the patterns: the owned
        # cell there or -1 (memory: the rank's share of the lattice × patterns × 4 bytes).
        self.first = cube.min(axis=0) if len(cube) else np.zeros(gdim, dtype=np.int64)
        self.shape = cube.max(axis=0) - self.first + 1 if len(cube) else np.zeros(gdim, dtype=np.int64)
        self.whole = bool(np.all(self.first == 0) and np.all(self.shape == counts))
        self.per_cube = len(patterns)
        self.table = np.full((len(patterns), int(np.prod(self.shape))), -1, dtype=np.int32)
        self.table[np.searchsorted(patterns, codes), self._linear((cube - self.first).T)] = np.arange(len(cube))
        # λ_1..λ_d = M (f − v_0) for the pattern's corners v_0 < ... < v_d (as bits: axis a is bit a).
        self.maps = []
        for code in patterns:
            corners = [c for c in range(2**gdim) if code >> c & 1]
            v = np.array([[(c >> a) & 1 for a in range(gdim)] for c in corners], dtype=float)
            self.maps.append((np.linalg.inv((v[1:] - v[0]).T), v[0]))

    @classmethod
    def detect(cls, comm: MPI.Comm, vertices: np.ndarray) -> Lattice | None:
        """The lattice of a mesh whose owned cells have the vertex coordinates ``vertices``
        (shape=(num_cells, tdim + 1, gdim)), or None if it is not one (collective).

        Every vertex must lie on a regular lattice of Ω's bounding box (to 1e-8 of the spacing)
        and every cell within one lattice square/cube; the spacing is the smallest cell extent
        per axis over all ranks.
        """
        gdim = vertices.shape[2]
        flat = vertices.reshape(-1, gdim)
        lower, upper, small = np.full(gdim, np.inf), np.full(gdim, -np.inf), np.full(gdim, np.inf)
        if len(flat):
            lower, upper = flat.min(axis=0), flat.max(axis=0)
            small = (vertices.max(axis=1) - vertices.min(axis=1)).min(axis=0)
        for array, op in ((lower, MPI.MIN), (upper, MPI.MAX), (small, MPI.MIN)):
            comm.Allreduce(MPI.IN_PLACE, array, op=op)
        width = upper - lower
        ok = bool(np.all(np.isfinite(width)) and np.all(small > 0))
        counts = np.rint(width / small).astype(np.int64) if ok else np.ones(gdim, dtype=np.int64)
        ok = ok and bool(np.all(counts >= 1) and np.all(np.abs(counts * small - width) <= 1e-8 * width))
        cube = np.zeros((len(vertices), gdim), dtype=np.int64)
        codes = np.zeros(len(vertices), dtype=np.int64)
        spacing = width / counts
        if ok:
            s = (vertices - lower) / spacing
            index = np.rint(s).astype(np.int64)
            cube = index.min(axis=1) if len(vertices) else cube
            local = index - cube[:, None, :]
            ok = bool(np.all(np.abs(s - index) <= 1e-8) and np.all((local >= 0) & (local <= 1)))
            if ok:  # the set of corners a cell spans, one bit per corner
                codes = np.sum(np.left_shift(1, local @ (1 << np.arange(gdim))), axis=1)
                ok = bool(np.all(np.bitwise_count(codes.astype(np.uint64)) == gdim + 1))
        if not comm.allreduce(ok, op=MPI.LAND):
            return None
        patterns = np.array(sorted(set().union(*comm.allgather(set(np.unique(codes).tolist())))), dtype=np.int64)
        return cls(lower, spacing, counts, cube, codes, patterns)

    def _linear(self, local: np.ndarray) -> np.ndarray:
        """Row-major linear index of squares/cubes in this rank's index box (shape=(gdim, n))."""
        index = local[-1].copy()
        for a in range(len(self.shape) - 2, -1, -1):
            index *= self.shape[a]
            index += local[a]
        return index

    def _local(self, cube: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Table columns of squares/cubes (shape=(gdim, n)), and the mask of those in this rank's
        index box (None: all)."""
        if self.whole:
            return self._linear(cube), None
        local = cube - self.first[:, None]
        inside = np.logical_and.reduce((local >= 0) & (local < self.shape[:, None]))
        return self._linear(np.where(inside, local, 0)), inside

    def _cells_of(self, cube: np.ndarray) -> np.ndarray:
        """The owned cells in the squares/cubes ``cube`` (shape=(gdim, n)), -1-padded,
        shape=(n, per_cube)."""
        column, inside = self._local(cube)
        cells = self.table[:, column].T
        if inside is not None:
            cells[~inside] = -1
        return cells

    def find(self, points: np.ndarray, keys: np.ndarray,
             exhaustive: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For ``points`` (shape=(n, gdim)): the owned cell of its square/cube that holds each
        (smallest key first; -1 for none) and its key, shape=(n,) each; the points near a face of
        their square/cube (indices) and the cells of the neighbours across, shape=(len(near), m).
        ``exhaustive=False``: only the near points no cell of their own square/cube holds
        (``CellLocator.locate``)."""
        n, gdim = len(points), len(self.counts)
        s = ((points - self.lower) / self.spacing).T
        base = np.clip(np.floor(s), 0, (self.counts - 1)[:, None]).astype(np.int64)
        f = s - base
        column, inside = self._local(base)
        best_cell = np.full(n, -1, dtype=np.int32)
        best_key = np.full(n, NONE, dtype=np.int64)
        for pattern, (M, v0) in enumerate(self.maps):
            g = [f[a] - v0[a] if v0[a] else f[a] for a in range(gdim)]
            smallest = None
            rest = np.ones(n)
            for i in range(gdim):
                row = M[i, 0] * g[0]
                for j in range(1, gdim):
                    row += M[i, j] * g[j]
                rest -= row
                smallest = row if smallest is None else np.minimum(smallest, row, out=smallest)
            np.minimum(smallest, rest, out=smallest)
            cells = self.table[pattern].take(column)
            holds = (smallest >= -TOLERANCE) & (cells >= 0)
            if inside is not None:
                holds &= inside
            key = np.where(holds, keys.take(np.maximum(cells, 0)) if len(keys) else NONE, NONE)
            better = key < best_key
            best_cell = np.where(better, cells, best_cell)
            best_key = np.where(better, key, best_key)
        low = (f < NEAR_FACE) & (base > 0)
        high = (f > 1 - NEAR_FACE) & (base < (self.counts - 1)[:, None])
        near = np.flatnonzero(np.logical_or.reduce(low | high))
        if not exhaustive:
            near = near[best_cell[near] < 0]
        columns = [np.full((len(near), 0), -1, dtype=np.int32)]
        if len(near):
            low, high, base = low[:, near], high[:, near], base[:, near]
            for offset in np.array(np.meshgrid(*[[-1, 0, 1]] * gdim, indexing="ij")).reshape(gdim, -1).T:
                if not offset.any():
                    continue
                allowed = np.logical_and.reduce(((offset >= 0)[:, None] | low) & ((offset <= 0)[:, None] | high))
                cells = self._cells_of(np.clip(base + offset[:, None], 0, (self.counts - 1)[:, None]))
                columns.append(np.where(allowed[:, None], cells, -1))
        return best_cell, best_key, near, np.concatenate(columns, axis=1)


class CellLocator:
    """Finds which owned cell of this rank holds each point (built collectively, queried locally).

    Args:
        mesh: an affine simplex mesh with tdim = gdim.
    """

    def __init__(self, mesh: dolfinx.mesh.Mesh):
        comm = mesh.comm
        tdim, gdim = mesh.topology.dim, mesh.geometry.dim
        num_cells = mesh.topology.index_map(tdim).size_local
        # Affine simplices: the geometry dofs of a cell are its vertices.
        vertices = mesh.geometry.x[mesh.geometry.dofmaps[0][:num_cells]][:, :, :gdim]
        self.gdim = gdim
        self.num_cells = num_cells
        # λ_1..λ_d = J⁻¹ (x − x_0), the reference coordinates of x (basix's reference simplex).
        J = np.transpose(vertices[:, 1:, :] - vertices[:, :1, :], (0, 2, 1))
        inverse = np.linalg.inv(J) if num_cells else np.zeros((0, gdim, gdim))
        offset = -np.einsum("cij,cj->ci", inverse, vertices[:, 0, :])
        # Row i*(gdim+1)+j holds J⁻¹_ij, row i*(gdim+1)+gdim the offset (−J⁻¹x_0)_i, one column per
        # cell: a candidate's coefficients are one gather along the contiguous axis.
        self._affine = np.ascontiguousarray(
            np.concatenate([inverse, offset[:, :, None]], axis=2).reshape(num_cells, -1).T)
        self.keys = np.asarray(mesh.topology.original_cell_index[:num_cells], dtype=np.int64)
        self.lattice = Lattice.detect(comm, vertices)
        flat = vertices.reshape(-1, gdim)
        self.box = (flat.min(axis=0), flat.max(axis=0)) if num_cells else None
        lower, upper = np.full(gdim, np.inf), np.full(gdim, -np.inf)
        if num_cells:
            lower, upper = flat.min(axis=0), flat.max(axis=0)
        comm.Allreduce(MPI.IN_PLACE, lower, op=MPI.MIN)
        comm.Allreduce(MPI.IN_PLACE, upper, op=MPI.MAX)
        self.extent = float(np.max(upper - lower))
        self.padding = 1e-9 * self.extent
        # Points in no cell but close to one take the closest cell's polynomial, as dolfinx
        # does: the slivers between a disk's polygon and its circle, at most h²/(8R) wide for
        # edges of length h; ``reach`` = h_max²/diameter is twice that. A lattice mesh is its box.
        diameters = np.linalg.norm(vertices.max(axis=1) - vertices.min(axis=1), axis=1)
        h_max = comm.allreduce(float(diameters.max(initial=0.0)), op=MPI.MAX)
        self.reach = self.padding if self.lattice is not None else h_max**2 / float(np.linalg.norm(upper - lower))
        # A weak reference: the locator is cached per mesh (pointeval.cell_locator) and must not
        # keep its mesh alive.
        self._mesh_ref = weakref.ref(mesh)
        self._tree = self._midpoints = None
        if self.lattice is None:
            self._tree = self._bb_tree()

    @property
    def _mesh(self) -> dolfinx.mesh.Mesh:
        return self._mesh_ref()

    def _bb_tree(self):
        return dolfinx.geometry.bb_tree(self._mesh, self._mesh.topology.dim, padding=self.padding,
                                        entities=np.arange(self.num_cells, dtype=np.int32))

    def prepare_closest(self) -> None:
        """Build the trees :meth:`closest` needs (collective: every rank calls it alike)."""
        if self._tree is None:
            self._tree = self._bb_tree()
        if self._midpoints is None:
            self._midpoints = dolfinx.geometry.create_midpoint_tree(
                self._mesh, self._mesh.topology.dim, np.arange(self.num_cells, dtype=np.int32))

    def closest(self, points: np.ndarray) -> tuple[Located, np.ndarray]:
        """The closest owned cell to each of ``points`` (shape=(n, gdim)) and the distance to it,
        ``inf`` where this rank owns no cell (rank-local, after :meth:`prepare_closest`). For the
        few points no cell holds."""
        n, tdim = len(points), self._mesh.topology.dim
        cells = np.full(n, -1, dtype=np.int32)
        distance = np.full(n, np.inf)
        if n and self.num_cells:
            padded = np.zeros((n, 3))
            padded[:, : self.gdim] = points
            cells = np.asarray(dolfinx.geometry.compute_closest_entity(
                self._tree, self._midpoints, self._mesh, padded), dtype=np.int32)
            distance = np.sqrt(np.asarray(dolfinx.geometry.squared_distance(self._mesh, tdim, cells, padded)))
        reference = self.reference(points, cells)
        keys = np.where(cells >= 0, self.keys[np.maximum(cells, 0)] if self.num_cells else NONE, NONE)
        return Located(cells, keys, reference), distance

    def locate(self, points: np.ndarray, exhaustive: bool = True) -> Located:
        """The owned cells holding ``points`` (shape=(n, gdim)) by the smallest-original-index rule
        among this rank's cells (rank-local).

        ``exhaustive=False``: a point found in a cell of its own lattice square/cube keeps it,
        though a neighbour's cell with a smaller index may hold it too (on a shared face): for
        a continuous u_h, whose value there is the same in either. Departure points of the
        semi-Lagrangian scheme lie near the mesh's vertices, where every point is near a face
        and the exhaustive rule tests all 26 neighbouring cubes (measured: 3/4 of locating
        them on a 7³ box)."""
        n = len(points)
        cells = np.full(n, -1, dtype=np.int32)
        keys = np.full(n, NONE, dtype=np.int64)
        reference = np.zeros((n, self.gdim))
        for start in range(0, n, CHUNK):
            part = slice(start, min(start + CHUNK, n))
            p = points[part]
            if self.lattice is not None:
                cell, key, near, extra = self.lattice.find(p, self.keys, exhaustive)
                best = (cell, key, self.reference(p, cell))
                if len(near):
                    other = self._best(p[near], extra)
                    better = other[1] < best[1][near]
                    for a, b in zip(best, other):
                        a[near[better]] = b[better]
            else:
                best = self._best(p, self._tree_candidates(p))
            cells[part], keys[part], reference[part] = best
        return Located(cells, keys, reference)

    def reference(self, points: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Reference coordinates of ``points`` (shape=(n, gdim)) in ``cells`` (-1: zeros)."""
        d = self.gdim
        reference = np.zeros((len(points), d))
        if not self.num_cells:
            return reference
        coefficients = self._affine.take(np.maximum(cells, 0), axis=1)
        for i in range(d):
            row = coefficients[i * (d + 1) + d].copy()
            for j in range(d):
                row += coefficients[i * (d + 1) + j] * points[:, j]
            reference[:, i] = row
        return reference

    def inverse_jacobians(self, cells: np.ndarray) -> np.ndarray:
        """J⁻¹ of each of ``cells`` (shape=(n,), local owned cells), shape=(n, gdim, gdim)."""
        d = self.gdim
        coefficients = self._affine.take(cells, axis=1).reshape(d, d + 1, len(cells))
        return np.ascontiguousarray(coefficients[:, :d, :].transpose(2, 0, 1))

    def _tree_candidates(self, points: np.ndarray) -> np.ndarray:
        """The owned cells whose bounding boxes hold each point, -1-padded, shape=(n, m)."""
        padded = np.zeros((len(points), 3))
        padded[:, : self.gdim] = points
        collisions = dolfinx.geometry.compute_collisions_points(self._tree, padded)
        offsets, array = np.asarray(collisions.offsets), np.asarray(collisions.array)
        counts = np.diff(offsets)
        width = int(counts.max(initial=0))
        position = offsets[:-1, None] + np.arange(width)
        valid = np.arange(width) < counts[:, None]
        return np.where(valid, array[np.minimum(position, max(len(array) - 1, 0))] if len(array) else -1, -1)

    def _best(self, points: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of the candidate cells of each point (shape=(n, m), -1 for none), the one holding it
        with the smallest key: (cell, key, reference coordinates)."""
        n, d = len(points), self.gdim
        best_cell = np.full(n, -1, dtype=np.int32)
        best_key = np.full(n, NONE, dtype=np.int64)
        best_reference = np.zeros((n, d))
        # Component by component on contiguous vectors: numpy's reductions over a short axis of
        # (n, d) arrays cost more than the arithmetic (cProfile of the 512² grid).
        coordinates = np.ascontiguousarray(points.T)
        for column in candidates.T:
            everywhere = bool(np.all(column >= 0))
            rows = slice(None) if everywhere else np.flatnonzero(column >= 0)
            cells = column if everywhere else column[rows]
            x = coordinates if everywhere else coordinates[:, rows]
            coefficients = self._affine.take(cells, axis=1)
            reference = np.empty((d, len(cells)))
            for i in range(d):
                row = coefficients[i * (d + 1) + d].copy()
                for j in range(d):
                    row += coefficients[i * (d + 1) + j] * x[j]
                reference[i] = row
            smallest = 1.0 - reference.sum(axis=0)
            for i in range(d):
                np.minimum(smallest, reference[i], out=smallest)
            key = self.keys[cells]
            better = (smallest >= -TOLERANCE) & (key < best_key[rows])
            hit = np.flatnonzero(better) if everywhere else rows[better]
            best_cell[hit], best_key[hit] = cells[better], key[better]
            best_reference[hit] = reference[:, better].T
        return best_cell, best_key, best_reference


@dataclass(frozen=True)
class Ownership:
    """Which rank evaluates which point, by the smallest-original-index rule over all ranks.

    Owner side (the points this rank evaluates, grouped by the rank that asked, each in that
    rank's order): ``cells`` (local), ``reference`` (shape=(m, tdim)), ``send_counts`` per
    asking rank. Asking side: ``recv_counts`` (how many of my points each rank evaluates),
    ``recv_order`` (my points sorted by their owner, stable) and ``outside`` (my points no
    cell holds).
    """

    cells: np.ndarray
    reference: np.ndarray
    send_counts: np.ndarray
    recv_counts: np.ndarray
    recv_order: np.ndarray
    outside: np.ndarray


def _exchange(comm: MPI.Comm, send: np.ndarray, send_counts: np.ndarray, recv_counts: np.ndarray,
              row: int = 1) -> np.ndarray:
    """Alltoallv of ``send`` (rows of ``row`` values, grouped by destination)."""
    kind = {np.dtype(np.float64): MPI.DOUBLE, np.dtype(np.int64): MPI.INT64_T, np.dtype(np.int8): MPI.INT8_T}
    send = np.ascontiguousarray(send)
    received = np.empty(int(recv_counts.sum()) * row, dtype=send.dtype)
    comm.Alltoallv([send, send_counts * row, kind[send.dtype]], [received, recv_counts * row, kind[send.dtype]])
    return received.reshape(-1, row) if row > 1 else received


def _round(comm: MPI.Comm, locator: CellLocator, points: np.ndarray, pad: float, find):
    """One round of ownership: each point (shape=(n, gdim)) goes to the ranks whose owned cells'
    bounding box, padded by ``pad``, holds it; ``find(points) -> (Located, score)`` runs there
    (score: a float per point, lower is better, ``inf`` for none); the point goes to the rank
    with the lowest (score, key). Returns the owner per point (-1: none) and, owner side, the
    points kept, their count per asking rank, cells and reference coordinates (collective)."""
    gdim, size = locator.gdim, comm.size
    boxes = comm.allgather(locator.box)
    asked = np.zeros((len(points), size), dtype=bool)
    for r, box in enumerate(boxes):
        if box is not None:
            inside = (points >= box[0] - pad) & (points <= box[1] + pad)
            asked[:, r] = np.logical_and.reduce(inside.T) if len(points) else False
    targets = [np.flatnonzero(asked[:, r]) for r in range(size)]
    out_counts = np.array([len(t) for t in targets], dtype=np.int64)
    in_counts = np.empty(size, dtype=np.int64)
    comm.Alltoall(out_counts, in_counts)
    sent = np.concatenate(targets)
    theirs = _exchange(comm, points[sent].reshape(-1, gdim), out_counts, in_counts, gdim).reshape(-1, gdim)
    found, score = find(theirs)
    scores = _exchange(comm, np.asarray(score, dtype=np.float64), in_counts, out_counts)
    keys = _exchange(comm, found.keys, in_counts, out_counts)

    best_score = np.full(len(points), np.inf)
    best_key = np.full(len(points), NONE, dtype=np.int64)
    owner = np.full(len(points), -1, dtype=np.int64)
    for r, (start, stop) in enumerate(zip(np.cumsum(out_counts) - out_counts, np.cumsum(out_counts))):
        mine, score_r, key_r = targets[r], scores[start:stop], keys[start:stop]
        better = (key_r != NONE) & ((score_r < best_score[mine])
                                    | ((score_r == best_score[mine]) & (key_r < best_key[mine])))
        best_score[mine[better]], best_key[mine[better]], owner[mine[better]] = score_r[better], key_r[better], r
    chosen = (owner[sent] == np.repeat(np.arange(size), out_counts)).astype(np.int8)
    kept = _exchange(comm, chosen, out_counts, in_counts).astype(bool)
    source = np.repeat(np.arange(size), in_counts)
    return owner, found.cells[kept], found.reference[kept], np.bincount(source[kept], minlength=size)


def determine_ownership(comm: MPI.Comm, locator: CellLocator, points: np.ndarray, closest: bool = True,
                        first_at: np.ndarray | None = None, exhaustive: bool = True) -> Ownership:
    """Send each of this rank's points (shape=(n, gdim)) to the ranks whose owned cells' bounding
    box holds it, locate it there, and give it to the rank of the cell with the smallest original
    index (collective).

    Args:
        closest: a point no cell holds goes to the closest cell within ``locator.reach``.
        first_at: where to locate each point first (shape=(n, gdim), e.g. a step off it); only
            those not found there are located at the point itself.
        exhaustive: False for a continuous u_h: any holding cell will do (``CellLocator.locate``).
    """
    size = comm.size

    def contained(x):
        found = locator.locate(x, exhaustive)
        return found, np.where(found.cells >= 0, 0.0, np.inf)

    def nearest(x):
        near, distance = locator.closest(x)
        return near, np.where(distance <= locator.reach, distance, np.inf)

    attempts = [(first_at, contained)] if first_at is not None else []
    attempts += [(points, contained)] + ([(points, nearest)] if closest else [])
    n = len(points)
    owner = np.full(n, -1, dtype=np.int64)
    attempt_of = np.full(n, len(attempts), dtype=np.int64)
    pieces = []  # per attempt: cells, reference, count per asking rank (owner side)
    for a, (where, find) in enumerate(attempts):
        missing = np.flatnonzero(owner < 0)
        if a and not comm.allreduce(len(missing), op=MPI.SUM):
            break
        if find is nearest:
            locator.prepare_closest()
        if size == 1:  # nothing to send: this rank locates its points
            found, score = find(where[missing] if a else where)
            hit = np.isfinite(score)
            owner[missing[hit]] = 0
            everywhere = bool(hit.all())  # the usual case: no copies
            pieces.append((found.cells if everywhere else found.cells[hit],
                           found.reference if everywhere else found.reference[hit],
                           np.array([hit.sum()], dtype=np.int64)))
        else:
            pad = locator.padding + (locator.reach if find is nearest else 0.0)
            owner_a, cells_a, reference_a, counts_a = _round(comm, locator, where[missing], pad, find)
            owner[missing] = owner_a
            pieces.append((cells_a, reference_a, counts_a))
        attempt_of[missing[owner[missing] >= 0]] = a
    # Owner side: grouped by asking rank, within it by attempt, each in the asker's order.
    starts = [np.concatenate(([0], np.cumsum(counts))) for _, _, counts in pieces]
    parts = [(cells[start[r]:start[r + 1]], reference[start[r]:start[r + 1]])
             for r in range(size) for (cells, reference, _), start in zip(pieces, starts)]
    gdim = locator.gdim
    cells = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0, dtype=np.int32)
    reference = np.concatenate([x for _, x in parts]) if parts else np.zeros((0, gdim))
    send_counts = np.sum([counts for _, _, counts in pieces], axis=0).astype(np.int64)
    # Asking side: values come back grouped by owner, within it by attempt, in order.
    if size == 1 and len(pieces) == 1 and len(cells) == n:
        order, located = np.arange(n), slice(None)  # one rank, all found at once: in order
    else:
        order = np.lexsort((attempt_of, owner))
        located = owner[order] >= 0
    return Ownership(
        cells=cells, reference=reference, send_counts=send_counts,
        recv_counts=np.bincount(owner[owner >= 0], minlength=size).astype(np.int64),
        recv_order=order[located], outside=np.flatnonzero(owner < 0),
    )
