"""Distributed dolfinx meshes of the domains Ω of ``model/domain.py``: built-in boxes, gmsh disks/balls.

All meshes are affine simplices (triangles, tetrahedra) ghosted on shared facets: the DG upwind
form has interior-facet integrals, which in parallel need the cell on the other side of a facet
shared between ranks.

The disk and ball geometries are the gmsh files ``meshes/disk.geo`` and ``meshes/ball.geo`` of
the source tree, installed as the package data ``solver.meshes`` (pyproject.toml maps that package
to ``meshes/``, editable or not); their OpenCASCADE circle/sphere is parametrized exactly, so
boundary vertices lie on ∂Ω to rounding (the cutoff χ of ``model/domain.py`` vanishes there).
"""

from __future__ import annotations

import importlib.resources
import math
from importlib.resources.abc import Traversable

import numpy as np
from mpi4py import MPI

import dolfinx.mesh
from dolfinx.mesh import CellType, GhostMode

from solver.model.domain import DOMAIN_KINDS, Ball, Box, Domain
from solver.errors import InputError

MESH_PACKAGE = "solver.meshes"  # meshes/ of the source tree, as installed (pyproject.toml)
try:
    MESH_DIR: Traversable | None = importlib.resources.files(MESH_PACKAGE)
except ModuleNotFoundError:  # an install older than the package data: geo_file says so
    MESH_DIR = None
GEO_FILES = {2: "disk.geo", 3: "ball.geo"}


def create_mesh(comm: MPI.Comm, domain: Domain, cells: int) -> dolfinx.mesh.Mesh:
    """A simplex mesh of ``domain``, distributed over ``comm``. COLLECTIVE.

    Args:
        comm: the communicator the mesh lives on.
        domain: a :class:`Box` (2D/3D) or :class:`Ball` (disk in 2D, ball in 3D).
        cells: for a box, cells per direction (each square/cube split into simplices); for a
            disk/ball, cells across the diameter: gmsh target size h = diameter / cells.

    Returns:
        The mesh, ghost mode ``shared_facet``, geometric dimension ``domain.dim``.
    """
    if isinstance(cells, bool) or not isinstance(cells, int | np.integer) or cells < 1:
        raise InputError(f"mesh cells must be an integer >= 1, got {cells!r}")
    cells = int(cells)
    if isinstance(domain, Box):
        points = [np.asarray(domain.lower), np.asarray(domain.upper)]
        if domain.dim == 2:
            return dolfinx.mesh.create_rectangle(
                comm, points, [cells, cells], CellType.triangle, ghost_mode=GhostMode.shared_facet
            )
        return dolfinx.mesh.create_box(
            comm, points, [cells] * 3, CellType.tetrahedron, ghost_mode=GhostMode.shared_facet
        )
    if isinstance(domain, Ball):
        return _create_gmsh_ball(comm, domain, domain.diameter / cells)
    raise InputError(
        f"cannot mesh a domain of type {type(domain).__name__}: expected a solver.model.domain.Box or "
        f"Ball (domain kinds {list(DOMAIN_KINDS)})"
    )


def geo_file(dim: int) -> Traversable:
    """The gmsh geometry of the disk (dim 2) or ball (dim 3), checked to exist.

    A package resource: read it as a file within ``importlib.resources.as_file``.
    """
    if dim not in GEO_FILES:
        raise InputError(f"no gmsh geometry for a ball of dimension {dim}, expected 2 or 3")
    if MESH_DIR is None:
        raise InputError(
            f"the package data {MESH_PACKAGE} (the gmsh geometries of meshes/) is not installed; "
            "reinstall the package (pip install ., or scripts/bootstrap.sh for a checkout)"
        )
    path = MESH_DIR / GEO_FILES[dim]
    if not path.is_file():
        raise InputError(
            f"gmsh geometry {path} not found in the package data {MESH_PACKAGE} (meshes/ of the "
            "source tree); reinstall the package (pip install .)"
        )
    return path


def _create_gmsh_ball(comm: MPI.Comm, ball: Ball, size: float) -> dolfinx.mesh.Mesh:
    """Mesh the disk/ball with gmsh on rank 0 and distribute it. COLLECTIVE."""
    import gmsh  # lazily: only disk/ball meshes need it

    from dolfinx.io.gmsh import model_to_mesh

    geo = geo_file(ball.dim)
    # Rank 0 builds; every rank must learn of a failure before model_to_mesh, or the others
    # would wait forever in its broadcasts.
    error = None
    owns_gmsh = added_model = False
    if comm.rank == 0:
        owns_gmsh = not gmsh.isInitialized()
        if owns_gmsh:
            gmsh.initialize(interruptible=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            # Set before loading: the .geo file's DefineConstant keeps values that already exist.
            values = dict(zip(("cx", "cy", "cz"), ball.center), R=ball.radius, h=size)
            for name, value in values.items():
                gmsh.parser.setNumber(name, [value])
            gmsh.model.add(GEO_FILES[ball.dim].removesuffix(".geo"))
            added_model = True
            with importlib.resources.as_file(geo) as path:  # a real file even from a zip
                gmsh.merge(str(path))
            gmsh.model.mesh.generate(ball.dim)
        except Exception as e:  # gmsh raises bare Exceptions
            error = f"gmsh failed to mesh {geo} (R={ball.radius}, h={size}): {e}"
    error = comm.bcast(error, root=0)
    try:
        if error is not None:
            raise RuntimeError(error)
        partitioner = dolfinx.mesh.create_cell_partitioner(GhostMode.shared_facet, 2)
        data = model_to_mesh(
            gmsh.model if comm.rank == 0 else None,
            comm,
            rank=0,
            gdim=ball.dim,
            partitioner=partitioner,
        )
    finally:
        if owns_gmsh:
            gmsh.finalize()
        elif added_model:  # leave a caller's gmsh session as it was
            gmsh.model.remove()
            for name in values:
                gmsh.parser.clear(name)
    return data.mesh


def cell_sizes(mesh: dolfinx.mesh.Mesh) -> np.ndarray:
    """2 × inradius of each owned cell (the diameter of its inscribed circle/sphere).

    This is the size that limits the time step of an explicit DG scheme: unlike the longest
    edge it goes to zero for flat (sliver) cells. Local, not collective.

    Returns:
        shape=(num_owned_cells,).
    """
    tdim = mesh.topology.dim
    num_cells = mesh.topology.index_map(tdim).size_local
    # Affine simplices: the geometry dofs of a cell are its vertices.
    x = mesh.geometry.x[mesh.geometry.dofmaps[0][:num_cells]][:, :, : mesh.geometry.dim]
    edges = x[:, 1:, :] - x[:, :1, :]  # shape=(num_cells, tdim, gdim)
    volume = _simplex_measure(edges)
    boundary = np.zeros(num_cells)
    for i in range(tdim + 1):
        face = np.delete(x, i, axis=1)
        boundary += _simplex_measure(face[:, 1:, :] - face[:, :1, :])
    # inradius = d |K| / |∂K| for a d-simplex.
    return 2.0 * tdim * volume / boundary


def _simplex_measure(edges: np.ndarray) -> np.ndarray:
    """Measure of simplices spanned by ``edges`` (shape=(n, k, gdim)): sqrt(det Gram) / k!."""
    gram = np.einsum("cij,ckj->cik", edges, edges)
    return np.sqrt(np.abs(np.linalg.det(gram))) / math.factorial(edges.shape[1])


def min_cell_size(mesh: dolfinx.mesh.Mesh) -> float:
    """Global minimum over cells of 2 × inradius (see :func:`cell_sizes`). COLLECTIVE."""
    sizes = cell_sizes(mesh)
    local = float(sizes.min()) if sizes.size else math.inf
    return mesh.comm.allreduce(local, op=MPI.MIN)


def mesh_summary(mesh: dolfinx.mesh.Mesh) -> dict[str, float | int]:
    """Global size facts of ``mesh``. COLLECTIVE.

    Returns:
        ``num_cells``, ``num_vertices`` (global counts), ``h_min``, ``h_max`` (min/max of
        2 × inradius, :func:`cell_sizes`) and ``diameter_max`` (longest cell edge, the usual h of
        a convergence table).
    """
    tdim = mesh.topology.dim
    sizes = cell_sizes(mesh)
    num_owned = mesh.topology.index_map(tdim).size_local
    diameters = mesh.h(tdim, np.arange(num_owned, dtype=np.int32))
    empty = sizes.size == 0
    comm = mesh.comm
    return {
        "num_cells": mesh.topology.index_map(tdim).size_global,
        "num_vertices": mesh.topology.index_map(0).size_global,
        "h_min": comm.allreduce(math.inf if empty else float(sizes.min()), op=MPI.MIN),
        "h_max": comm.allreduce(0.0 if empty else float(sizes.max()), op=MPI.MAX),
        "diameter_max": comm.allreduce(0.0 if empty else float(diameters.max()), op=MPI.MAX),
    }
