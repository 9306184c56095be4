"""The fast point locator (fem/locate.py) against dolfinx's generic one and a brute-force rule.

Each case builds the mesh twice: distributed over COMM_WORLD (what the evaluator locates on) and
whole on COMM_SELF (the reference: dolfinx's ``compute_colliding_cells`` and a brute-force test
of every cell). The original cell indices are the same on both (the input order of the cells).
"""

from mpi4py import MPI


import numpy as np
import pytest

import dolfinx.geometry
from dolfinx import fem

from solver.errors import InputError
from solver.fem.locate import TOLERANCE
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import PointEvaluator, cell_locator
from solver.model.domain import Ball, Box

DOMAINS = [
    ("box2d", Box((-1.0, -1.0), (1.0, 1.0)), 6, True),
    ("box3d", Box((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), 3, True),
    ("disk", Ball((0.0, 0.0), 1.0), 5, False),
    ("ball", Ball((0.0, 0.0, 0.0), 1.0), 3, False),
]


def cell_vertices(mesh) -> np.ndarray:
    """Vertex coordinates of every local cell, shape=(num_cells, tdim + 1, gdim)."""
    gdim = mesh.geometry.dim
    return mesh.geometry.x[mesh.geometry.dofmaps[0]][:, :, :gdim]


def sample_points(serial_mesh, rng) -> np.ndarray:
    """Random points in the mesh, and every vertex, edge midpoint and facet centroid of it."""
    x = cell_vertices(serial_mesh)
    d = x.shape[2]
    vertices = x.reshape(-1, d)
    edges = [(x[:, i] + x[:, j]) / 2 for i in range(d + 1) for j in range(i)]
    facets = [np.delete(x, i, axis=1).mean(axis=1) for i in range(d + 1)]
    weights = rng.dirichlet(np.ones(d + 1), size=len(x))
    inside = np.einsum("ck,ckd->cd", weights, x)
    special = np.unique(np.round(np.concatenate([vertices, *edges, *facets]), 14), axis=0)
    return inside, special


def expected_cell(serial_mesh, points) -> np.ndarray:
    """The rule, by brute force: the cell holding the point stepped by pointeval's δ·g (the one
    with the smallest original index if several), else the smallest holding the point itself."""
    from solver.fem.pointeval import NUDGE, _direction

    x = serial_mesh.geometry.x[:, : points.shape[1]]
    step = NUDGE * float(np.max(x.max(axis=0) - x.min(axis=0))) * _direction(points.shape[1])
    stepped = smallest_containing(serial_mesh, points + step)
    return np.where(np.isfinite(stepped), stepped, smallest_containing(serial_mesh, points))


def smallest_containing(serial_mesh, points) -> np.ndarray:
    """Brute force: the smallest original index of the cells holding each point (to TOLERANCE)."""
    x = cell_vertices(serial_mesh)
    J = np.transpose(x[:, 1:] - x[:, :1], (0, 2, 1))
    reference = np.einsum("cij,pcj->pci", np.linalg.inv(J), points[:, None, :] - x[None, :, 0])
    barycentric = np.concatenate([1 - reference.sum(axis=2, keepdims=True), reference], axis=2)
    holds = barycentric.min(axis=2) >= -TOLERANCE
    keys = np.asarray(serial_mesh.topology.original_cell_index, dtype=float)
    return np.where(holds, keys[None, :], np.inf).min(axis=1)


def original_index_function(mesh) -> fem.Function:
    """The DG0 function whose value on a cell is its original index."""
    V = fem.functionspace(mesh, ("DG", 0))
    u = fem.Function(V)
    num = len(mesh.topology.original_cell_index)
    u.x.array[V.dofmap.list[:num, 0]] = mesh.topology.original_cell_index
    return u


@pytest.mark.parametrize("name, domain, cells, lattice", DOMAINS, ids=[d[0] for d in DOMAINS])
def test_locator_agrees_with_dolfinx_and_the_facet_rule(comm, name, domain, cells, lattice):
    """Inside cells: the same cell as dolfinx's compute_colliding_cells. Everywhere (vertices,
    edge midpoints and facet centroids too): a linear function exactly, and, for a discontinuous
    one, the cell of the rule (the side of the fixed step, then the smallest original index), on
    any number of ranks."""
    mesh = create_mesh(comm, domain, cells)
    serial = create_mesh(MPI.COMM_SELF, domain, cells)
    assert (cell_locator(mesh).lattice is not None) == lattice
    inside, special = sample_points(serial, np.random.default_rng(0))

    # dolfinx's generic location (serial, every point here): the cell it reports for points inside.
    tree = dolfinx.geometry.bb_tree(serial, serial.topology.dim)
    padded = np.zeros((len(inside), 3))
    padded[:, : domain.dim] = inside
    colliding = dolfinx.geometry.compute_colliding_cells(
        serial, dolfinx.geometry.compute_collisions_points(tree, padded), padded)
    first = np.array([colliding.links(i)[0] for i in range(len(inside))])
    dolfinx_keys = np.asarray(serial.topology.original_cell_index)[first]

    u = original_index_function(mesh)
    assert np.array_equal(PointEvaluator(u.function_space, inside, report=False)(u), dolfinx_keys)
    rule = PointEvaluator(u.function_space, special, report=False)(u)
    assert np.array_equal(rule, expected_cell(serial, special))

    V1 = fem.functionspace(mesh, ("DG", 1))
    linear = fem.Function(V1)
    coefficients = np.arange(1, domain.dim + 1)
    linear.interpolate(lambda x: coefficients @ x[: domain.dim])
    for points in (inside, special):
        values = PointEvaluator(V1, points, report=False)(linear)
        assert np.max(np.abs(values - points @ coefficients)) < 1e-12


def test_crossed_rectangle_falls_back_to_the_tree(comm):
    """A box split with a crossed diagonal (a vertex in each square's centre) is no lattice of
    the kind the arithmetic needs: the bounding-box tree locates, with the same rule."""
    mesh = dolfinx.mesh.create_rectangle(comm, [np.array([0.0, 0.0]), np.array([1.0, 1.0])], [4, 4],
                                         dolfinx.mesh.CellType.triangle,
                                         diagonal=dolfinx.mesh.DiagonalType.crossed)
    serial = dolfinx.mesh.create_rectangle(MPI.COMM_SELF, [np.array([0.0, 0.0]), np.array([1.0, 1.0])], [4, 4],
                                           dolfinx.mesh.CellType.triangle,
                                           diagonal=dolfinx.mesh.DiagonalType.crossed)
    assert cell_locator(mesh).lattice is None
    _, special = sample_points(serial, np.random.default_rng(1))
    u = original_index_function(mesh)
    assert np.array_equal(PointEvaluator(u.function_space, special, report=False)(u),
                          expected_cell(serial, special))


@pytest.mark.parametrize("domain, beyond", [(Box((-1.0, -1.0), (1.0, 1.0)), 1e-6), (Ball((0.0, 0.0), 1.0), 0.2)],
                         ids=["box", "disk"])
def test_points_outside_the_mesh_are_refused_or_skipped(comm, domain, beyond):
    """Outside the mesh: an InputError naming the source on every rank, or NaN where allowed. (A
    disk's mesh misses slivers of Ω by its circle: points there, within h²/diameter of the mesh,
    take the closest cell's value, as test_forward's disk cases need.)"""
    mesh = create_mesh(comm, domain, 4)
    V = fem.functionspace(mesh, ("DG", 1))
    u = fem.Function(V)
    u.x.array[:] = 1.0
    points = np.array([[0.1, 0.2], [1.5, 0.0], [0.0, -0.3], [-1.0 - beyond, 0.0]])
    with pytest.raises(InputError, match=f"{2 * comm.size} point.*outside the mesh") as error:
        PointEvaluator(V, points, "points.csv")
    assert error.value.source == "points.csv"
    values = PointEvaluator(V, points, outside="nan")(u)
    assert np.array_equal(np.isnan(values), [False, True, False, True])


@pytest.mark.parametrize("name, domain, cells, lattice", DOMAINS, ids=[d[0] for d in DOMAINS])
@pytest.mark.parametrize("family", ["Lagrange", "DG"])
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_values_and_gradients_at_points_are_exact_for_the_space_polynomials(comm, name, domain, cells, lattice,
                                                                           family, degree):
    """u = a polynomial of degree k lies in P_k: PointEvaluator's values and gradients (the
    continuous and the discontinuous paths, which compute reference coordinates and derivatives
    differently) equal the polynomial's and its gradient's at random points, on any ranks."""
    mesh = create_mesh(comm, domain, cells)
    d = domain.dim
    V = fem.functionspace(mesh, (family, degree))
    coefficients = np.random.default_rng(7).standard_normal((d, degree + 1))

    def poly(x):  # Σ_i Σ_p c_ip x_i^p (+ a mixed term of degree 2 for k >= 2)
        value = sum(coefficients[i, p] * x[i] ** p for i in range(d) for p in range(degree + 1))
        return value + (x[0] * x[1] if degree >= 2 else 0.0)

    def grad(x):  # shape=(n, d)
        g = np.stack([sum(p * coefficients[i, p] * x[:, i] ** (p - 1) for p in range(1, degree + 1))
                      for i in range(d)], axis=1)
        if degree >= 2:
            g[:, 0] += x[:, 1]
            g[:, 1] += x[:, 0]
        return g

    u = fem.Function(V)
    u.interpolate(poly)
    rng = np.random.default_rng(comm.rank)
    points = rng.uniform(-0.6, 0.6, size=(50, d)) / np.sqrt(d)  # inside the box and the ball
    evaluator = PointEvaluator(V, points, report=False, gradient=True, continuous=family == "Lagrange")
    np.testing.assert_allclose(evaluator(u), poly(points.T), atol=1e-11)
    np.testing.assert_allclose(evaluator.gradient(u.x.array), grad(points), atol=1e-10)
