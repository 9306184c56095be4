"""h-refinement where the data's characteristics go: the indicator, the marks, the refined mesh.

The error of u_h(0, X_i) is made along the characteristic q(·; X_i): a transport solution
carries its local errors along characteristics, and the point value at X_i is the dual
functional whose solution lives on that path. So the indicator of a cell K is

    η_K = max { e_i : q(t; X_i) ∈ K for some t ∈ [0, T] },

with e_i = |u_h(0, X_i) − f(q(T; X_i))|_∞ the logit error the certification measures at the
point. Cells with η_K above a threshold are refined once (``dolfinx.mesh.refine`` on their
edges: Plaza's conforming bisection). Measured against the alternatives with
``scripts/bench_resolution.py`` (see ``learn/certify.py``, ``Resolution.raised``).

A refinement is recorded by the midpoints of the cells it marked: a midpoint lies inside its
cell, so the marks name the same cells whatever the partition, and a run (resumed, checked by
``compare RUN``, or on another number of ranks) rebuilds the same mesh from its base mesh and its
marks. The rebuild runs on rank 0 alone and distributes the result, because Plaza breaks ties
between equally long edges by global vertex numbers, which depend on the partition.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

import basix.ufl
import dolfinx.geometry
import dolfinx.mesh
import ufl

from solver.errors import InputError
from solver.fem.locate import CellLocator
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import _nearest_facet, _pull_back, cell_locator
from solver.model.domain import Domain

# Midpoints are rounded to this many digits before they are stored (JSON keeps them exactly; the
# rounding only makes the arrays independent of the summation order of each rank).
DIGITS = 12
# tube_indicator: a sample farther than this from its cell's boundary lies in that cell only.
CLEAR = 1e-5


def mesh_with_marks(comm: MPI.Comm, domain: Domain, cells: int, marks: tuple = (),
                    source: str | None = None) -> dolfinx.mesh.Mesh:
    """The base mesh of ``domain`` (``fem.mesh.create_mesh``), refined once per entry of ``marks``
    (each an array-like of the marked cells' midpoints, shape=(m, d)); ``source`` (the file the
    marks came from) names bad marks in the error. COLLECTIVE."""
    if not marks:
        return create_mesh(comm, domain, cells)
    dim = domain.dim
    topology, x, error = np.zeros((0, dim + 1), dtype=np.int64), np.zeros((0, dim)), None
    if comm.rank == 0:
        try:
            mesh = create_mesh(MPI.COMM_SELF, domain, cells)
            for level, midpoints in enumerate(marks):
                mesh = refined_at(mesh, np.asarray(midpoints, dtype=np.float64).reshape(-1, dim), level)
            topology = mesh.geometry.dofmaps[0].astype(np.int64)
            x = mesh.geometry.x[:, :dim].copy()
        except InputError as e:
            error = str(e)
    error = comm.bcast(error, root=0)
    if error is not None:
        raise InputError(error, source)
    cell = "triangle" if dim == 2 else "tetrahedron"
    element = ufl.Mesh(basix.ufl.element("Lagrange", cell, 1, shape=(dim,)))
    partitioner = dolfinx.mesh.create_cell_partitioner(dolfinx.mesh.GhostMode.shared_facet, 2)
    return dolfinx.mesh.create_mesh(comm, topology, element, x, partitioner)


def refined_at(mesh: dolfinx.mesh.Mesh, midpoints: np.ndarray, level: int = 0) -> dolfinx.mesh.Mesh:
    """``mesh`` (on one process) with the cells that contain ``midpoints`` refined once."""
    tdim = mesh.topology.dim
    cells = CellLocator(mesh).locate(midpoints).cells  # a midpoint lies inside one cell only
    if np.any(cells < 0):
        raise InputError(f"mesh refinement {level}: {int(np.sum(cells < 0))} of {len(cells)} marked "
                         "cell midpoints lie in no cell of the mesh it refines (a damaged run?)")
    mesh.topology.create_entities(1)
    edges = dolfinx.mesh.compute_incident_entities(mesh.topology, np.unique(cells).astype(np.int32), tdim, 1)
    fine, _, _ = dolfinx.mesh.refine(mesh, edges)
    return fine


def tube_indicator(mesh: dolfinx.mesh.Mesh, paths: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """η_K on this rank's owned cells (the module's docstring). Collective the first time a
    mesh's cell locator is built (``pointeval.cell_locator``), else local.

    Args:
        paths: the characteristics of all points (of every rank) sampled in time, shape=(S, n, d),
            densely enough that consecutive samples are less than a cell apart.
        errors: e_i of those points, shape=(n,).

    Returns:
        shape=(num_owned_cells,); 0 for cells no path crosses.

    Every cell a sample touches counts (all of them for a sample on a facet), which is
    dolfinx's collision query, not ``fem.locate``'s one cell per point.
    """
    tdim = mesh.topology.dim
    owned = mesh.topology.index_map(tdim).size_local
    indicator = np.zeros(owned)
    if owned == 0 or paths.size == 0:
        return indicator
    n, d = paths.shape[1], paths.shape[2]
    samples = paths.reshape(-1, d)
    # A sample farther than CLEAR from the boundary of the owned cell that holds it collides with
    # that cell only (cells do not overlap; dolfinx's collision test takes a distance below 1e-6):
    # those take the fast locator (fem/locate.py), the rest dolfinx's GJK test, as before. The
    # same cells either way; the GJK test of every sample was 0.94 s of a 5.5 s FlowClassifier fit
    # on breast cancer (cProfile).
    found = cell_locator(mesh).locate(samples, exhaustive=False)
    inside = np.flatnonzero(found.cells >= 0)
    X, J_inverse, which = _pull_back(mesh, found.cells[inside], samples[inside])
    clear = inside[_nearest_facet(X, J_inverse, which) > CLEAR]
    np.maximum.at(indicator, found.cells[clear], errors[clear % n])
    rest = np.setdiff1d(np.arange(len(samples)), clear, assume_unique=True)
    tree = dolfinx.geometry.bb_tree(mesh, tdim, entities=np.arange(owned, dtype=np.int32))
    padded = np.zeros((len(rest), 3))
    padded[:, :d] = samples[rest]
    hits = dolfinx.geometry.compute_colliding_cells(
        mesh, dolfinx.geometry.compute_collisions_points(tree, padded), padded)
    point_of_link = np.repeat(rest % n, np.diff(hits.offsets))
    np.maximum.at(indicator, hits.array, errors[point_of_link])
    return indicator


def marked_midpoints(mesh: dolfinx.mesh.Mesh, indicator: np.ndarray, threshold: float) -> np.ndarray:
    """The midpoints of all ranks' owned cells with η_K > ``threshold``, rounded and sorted: the
    same array on every rank and for every partition. COLLECTIVE."""
    tdim, dim = mesh.topology.dim, mesh.geometry.dim
    cells = np.flatnonzero(indicator > threshold).astype(np.int32)
    mine = dolfinx.mesh.compute_midpoints(mesh, tdim, cells)[:, :dim].round(DIGITS)
    everyone = np.concatenate(mesh.comm.allgather(mine)).reshape(-1, dim)
    return everyone[np.lexsort(everyone.T[::-1])]
