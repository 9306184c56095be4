"""Local refinement where the data's characteristics go (fem/refine.py): the indicator marks the
cells a bad path crosses, the marks rebuild the same mesh on any partition, and a locally
refined mesh keeps the Taylor rates and the convergence order."""

from mpi4py import MPI


import numpy as np
import pytest

import dolfinx.geometry
import dolfinx.mesh

from solver.check import compare_field as cmp
from solver.config import config_from_dict
from solver.fem import refine
from solver.fem.mesh import create_mesh
from solver.fem.transport import TransportSolver
from solver.learn.reduced import ReducedFunctional
from solver.learn.taylor import taylor_remainders
from solver.errors import InputError
from solver.model.domain import Ball, Box
from solver.model.velocity import VelocityModel

BOX2 = Box((-1.0, -1.0), (1.0, 1.0))


def midpoints(mesh):
    """This rank's owned cells' midpoints, shape=(n, gdim)."""
    owned = mesh.topology.index_map(mesh.topology.dim).size_local
    return dolfinx.mesh.compute_midpoints(mesh, mesh.topology.dim, np.arange(owned, dtype=np.int32))[:, :mesh.geometry.dim]


def all_midpoints(mesh):
    everyone = np.concatenate(mesh.comm.allgather(midpoints(mesh)))
    return everyone[np.lexsort(everyone.T[::-1])]


def left_half(domain, cells):
    """Marks for refining the cells of the base mesh in x < 0 (the same on every rank)."""
    mesh = create_mesh(MPI.COMM_SELF, domain, cells)
    return refine.marked_midpoints(mesh, (midpoints(mesh)[:, 0] < 0).astype(float), 0.5)


def test_the_indicator_marks_the_cells_a_bad_path_crosses(comm):
    """Paths along y = y0 (x from a to b) on the 10 × 10 box: one with a logit error of 1, the
    rest exact. The cells crossed are known by arithmetic: both triangles of every square of
    the path's row between its end columns."""
    cells, h = 10, 0.2
    mesh = create_mesh(comm, BOX2, cells)
    rows = [(-0.53, -0.75, 0.31), (0.27, -0.95, 0.95), (0.71, 0.05, 0.45)]  # (y0, a, b)
    errors = np.array([0.0, 1.0, 0.0])
    t = np.linspace(0.0, 1.0, 41)  # samples 0.05 apart: a quarter cell
    paths = np.stack([np.stack([a + (b - a) * t, np.full_like(t, y0)], axis=1) for y0, a, b in rows], axis=1)
    indicator = refine.tube_indicator(mesh, paths, errors)
    marked = refine.marked_midpoints(mesh, indicator, 0.5)

    y0, a, b = rows[1]
    row = np.floor((y0 + 1) / h)
    first, last = np.floor((a + 1) / h), np.floor((b + 1) / h)
    every = all_midpoints(mesh)
    col, row_of = np.floor((every[:, 0] + 1) / h), np.floor((every[:, 1] + 1) / h)
    expected = every[(row_of == row) & (col >= first) & (col <= last)]
    assert len(expected) == 2 * (last - first + 1)
    np.testing.assert_allclose(marked, expected.round(refine.DIGITS), atol=1e-12)
    # a cell only exact paths cross has indicator 0; every crossed cell has a positive one
    crossed = comm.allreduce(int(np.sum(indicator > 0)))
    assert crossed == len(expected)


def gjk_indicator(mesh, paths, errors):
    """The indicator by dolfinx's collision test of every sample (tube_indicator before the fast
    locator took the samples clear of the cell boundaries)."""
    tdim, owned = mesh.topology.dim, mesh.topology.index_map(mesh.topology.dim).size_local
    indicator = np.zeros(owned)
    tree = dolfinx.geometry.bb_tree(mesh, tdim, entities=np.arange(owned, dtype=np.int32))
    n, d = paths.shape[1], paths.shape[2]
    padded = np.zeros((paths.shape[0] * n, 3))
    padded[:, :d] = paths.reshape(-1, d)
    hits = dolfinx.geometry.compute_colliding_cells(mesh, dolfinx.geometry.compute_collisions_points(tree, padded), padded)
    np.maximum.at(indicator, hits.array, errors[np.repeat(np.arange(len(padded)) % n, np.diff(hits.offsets))])
    return indicator


@pytest.mark.parametrize("dim, refined", [(2, False), (2, True), (3, False), (3, True)],
                         ids=["2d-lattice", "2d-refined", "3d-lattice", "3d-refined"])
def test_the_indicator_is_that_of_every_colliding_cell(comm, dim, refined):
    """η_K equals that of dolfinx's collision test of every sample, with samples on vertices,
    edges and facets (where several cells collide), just off them, and anywhere."""
    box = Box((-1.0,) * dim, (1.0,) * dim)
    cells = 6 if dim == 2 else 3
    mesh = refine.mesh_with_marks(comm, box, cells, (left_half(box, cells),) if refined else ())
    rng = np.random.default_rng(7)
    grid = np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, 2 * cells + 1)] * dim, indexing="ij"), axis=-1).reshape(-1, dim)
    points = np.concatenate([grid, grid + 3e-6, grid - 2e-5, rng.uniform(-1.0, 1.0, (len(grid), dim))])
    points = np.clip(points, -1.0, 1.0)
    S = 4
    paths = points[: (len(points) // S) * S].reshape(S, -1, dim)
    errors = rng.uniform(0.0, 1.0, paths.shape[1])
    np.testing.assert_array_equal(refine.tube_indicator(mesh, paths, errors), gjk_indicator(mesh, paths, errors))


def test_marks_rebuild_the_same_mesh_on_any_partition(comm):
    """Two levels of local refinement rebuilt on all ranks and on one: the same cells."""
    box = Box((-1.0,) * 3, (1.0,) * 3)
    first = left_half(box, 4)
    one = refine.mesh_with_marks(MPI.COMM_SELF, box, 4, (first,))
    mids = midpoints(one)
    second = refine.marked_midpoints(one, (np.linalg.norm(mids + 0.5, axis=1) < 0.6).astype(float), 0.5)
    together = refine.mesh_with_marks(comm, box, 4, (first, second))
    alone = refine.mesh_with_marks(MPI.COMM_SELF, box, 4, (first, second))
    assert together.topology.index_map(3).size_global == alone.topology.index_map(3).size_global
    assert alone.topology.index_map(3).size_global > one.topology.index_map(3).size_global > 6 * 4**3
    np.testing.assert_array_equal(all_midpoints(together), all_midpoints(alone))


@pytest.mark.parametrize("domain", [BOX2, Ball((0.1, -0.2), 1.0)], ids=["lattice", "disk"])
def test_refined_at_finds_the_cell_of_each_mark(domain):
    """The marked cells are found by fem.locate (the lattice path on a box, the tree on a disk):
    the same mesh as refining the cells a brute-force barycentric test finds, and a mark
    outside Ω is an InputError naming the level."""
    mesh = create_mesh(MPI.COMM_SELF, domain, 6)
    mids = midpoints(mesh)
    marks = mids[[0, 5, len(mids) - 1]] + 1e-3  # off the midpoints, still inside their cells
    vertices = mesh.geometry.x[mesh.geometry.dofmaps[0]][:, :, :2]  # (cells, 3, 2)
    edges_of = np.linalg.inv(np.transpose(vertices[:, 1:] - vertices[:, :1], (0, 2, 1)))
    lam = np.einsum("cij,pcj->pci", edges_of, marks[:, None, :] - vertices[None, :, 0])
    inside = (lam.min(axis=2) >= 0) & (lam.sum(axis=2) <= 1)
    assert np.all(inside.sum(axis=1) == 1)
    cells = np.argmax(inside, axis=1).astype(np.int32)
    mesh.topology.create_entities(1)
    by_hand = dolfinx.mesh.refine(mesh, dolfinx.mesh.compute_incident_entities(mesh.topology, cells, 2, 1))[0]
    np.testing.assert_array_equal(all_midpoints(refine.refined_at(mesh, marks)), all_midpoints(by_hand))
    with pytest.raises(InputError, match="mesh refinement 3: 1 of 2 marked cell midpoints lie in no cell"):
        refine.refined_at(mesh, np.array([mids[0], [5.0, 5.0]]), level=3)


@pytest.mark.parametrize("domain, cells, degree", [
    (BOX2, 8, 1),
    (Box((-1.0,) * 3, (1.0,) * 3), 3, 2),
], ids=["box2d-DG1", "box3d-DG2"])
def test_taylor_on_a_locally_refined_mesh(comm, domain, cells, degree):
    mesh = refine.mesh_with_marks(comm, domain, cells, (left_half(domain, cells),))
    with TransportSolver(mesh, degree=degree, num_components=2) as solver:
        model = VelocityModel(dim=domain.dim, width=4, slabs=2, T=1.0, activation="tanh", domain=domain)
        rng = np.random.default_rng(0)
        X = rng.uniform(-0.6, 0.6, (40, domain.dim))
        y = (X[:, 0] * X[:, 1] > 0).astype(int)
        mine = slice(comm.rank, None, comm.size)
        with ReducedFunctional(solver, model, X[mine], y[mine], 2, kinetic=0.1) as J:
            p = J.initial(seed=1, scale=1.5)
            J0 = J(p)
            J.freeze_steps(J.evaluate(p).steps)
            _, gradient = J.value_and_gradient(p)
            direction = np.random.default_rng(3).standard_normal(J.n_params)
            remainders, rates = taylor_remainders(J, p, gradient, direction, J0=J0, epsilon=0.02, num=4)
            print(f"\nlocally refined ({mesh.topology.index_map(domain.dim).size_global} cells): rates {rates}")
            assert min(rates) >= 1.9, f"remainders {remainders}, rates {rates}"


@pytest.mark.slow  # a refinement study
def test_a_locally_refined_mesh_keeps_the_convergence_order(comm):
    """DG1 on 8, 16, 32 cells, each with its left half refined once: L2 order against the
    characteristics ≥ 1.8 (as on uniform meshes), and below the uniform meshes' errors."""
    config = config_from_dict(dict(
        domain=dict(kind="box", lower=[-1, -1], upper=[1, 1]),
        field=dict(kind="mlp", width=8, activation="tanh", slabs=2, seed=3, scale=1.0),
        terminal=dict(kind="gaussian", center=[0.2, -0.1], sigma=0.3),
        mesh=dict(cells=8, degree=1), solver=dict(cfl=1.0), output=dict(vtx=False, png=False)))
    domain, terminal = config.domain_object(), config.terminal_object()
    field = cmp.build_field(config, domain)
    errors = {}
    for local in (False, True):
        for cells in (8, 16, 32):
            marks = (left_half(domain, cells),) if local else ()
            with TransportSolver(refine.mesh_with_marks(comm, domain, cells, marks), degree=1,
                                     num_components=1, cfl=1.0) as solver:
                result = solver.solve(field, terminal, keep=False)
                errors[local, cells] = cmp.l2_differences(solver, field, terminal, result)[0]
    orders = [np.log2(errors[True, c] / errors[True, 2 * c]) for c in (8, 16)]
    print(f"\nL2 errors, uniform: {[errors[False, c] for c in (8, 16, 32)]}, "
          f"left half refined: {[errors[True, c] for c in (8, 16, 32)]}; orders {orders}")
    assert orders[-1] >= 1.8
    assert all(errors[True, c] < errors[False, c] for c in (8, 16, 32))
