from mpi4py import MPI

import math

import numpy as np
import pytest
import ufl

import dolfinx.fem
import dolfinx.mesh

from solver.convergence import fitted_order
import solver.fem.mesh
from solver.model.domain import Ball, Box
from solver.errors import InputError
from solver.fem.mesh import create_mesh, min_cell_size, mesh_summary


def volume(comm: MPI.Comm, mesh: dolfinx.mesh.Mesh) -> float:
    one = dolfinx.fem.Constant(mesh, dolfinx.default_scalar_type(1.0))
    local = dolfinx.fem.assemble_scalar(dolfinx.fem.form(one * ufl.dx(domain=mesh)))
    return comm.allreduce(local, op=MPI.SUM)


def boundary_points(mesh: dolfinx.mesh.Mesh) -> np.ndarray:
    """Coordinates of the vertices on exterior facets, shape=(n, gdim)."""
    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim - 1, tdim)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    nodes = dolfinx.mesh.entities_to_geometry(mesh, tdim - 1, facets)
    return mesh.geometry.x[np.unique(nodes)][:, : mesh.geometry.dim]


@pytest.mark.parametrize(
    "domain, cells, num_cells",
    [
        (Box((-1.0, 0.0), (2.0, 0.5)), 6, 2 * 6**2),
        (Box((0.0, 0.0, -1.0), (1.0, 2.0, 1.0)), 4, 6 * 4**3),
    ],
)
def test_box_volume_and_counts(comm, domain, cells, num_cells):
    mesh = create_mesh(comm, domain, cells)
    assert mesh.geometry.dim == domain.dim
    exact = np.prod(np.subtract(domain.upper, domain.lower))
    assert volume(comm, mesh) == pytest.approx(exact, rel=1e-13)
    summary = mesh_summary(mesh)
    assert summary["num_cells"] == num_cells
    assert summary["num_vertices"] == (cells + 1) ** domain.dim
    assert summary["h_min"] == min_cell_size(mesh) > 0


def test_box_cell_size_is_twice_the_inradius(comm):
    # Right isosceles triangles with legs a: inradius a (2 − √2) / 2.
    mesh = create_mesh(comm, Box((0.0, 0.0), (1.0, 1.0)), 8)
    a = 1.0 / 8
    assert min_cell_size(mesh) == pytest.approx(a * (2.0 - math.sqrt(2.0)), rel=1e-12)
    assert mesh_summary(mesh)["diameter_max"] == pytest.approx(a * math.sqrt(2.0), rel=1e-12)


def test_disk_volume_converges(comm):
    # Inscribed polygon, N ~ π·cells sides: area error ~ (2π³/3) R² / N², rate 2 in 1/cells.
    disk = Ball((0.3, -0.2), 1.5)
    cells = np.array([8, 16, 32])
    exact = math.pi * 1.5**2
    errors = np.array([abs(volume(comm, create_mesh(comm, disk, n)) - exact) for n in cells])
    rate = fitted_order(1.0 / cells, errors)
    assert np.all(np.diff(errors) < 0), f"disk area errors {errors} do not decrease"
    print(f"disk area errors {errors}, observed rate {rate:.2f}")
    assert rate > 1.8, f"disk area error rate {rate:.2f}, expected about 2 (errors {errors})"
    assert errors[-1] < 5e-3


def test_ball_volume(comm):
    ball = Ball((0.0, 0.5, 0.0), 1.0)
    v = volume(comm, create_mesh(comm, ball, 8))
    exact = 4.0 / 3.0 * math.pi
    assert v < exact  # the polyhedron is inscribed
    assert abs(v - exact) / exact < 0.03


@pytest.mark.parametrize("ball", [Ball((0.3, -0.2), 1.5), Ball((0.0, 0.5, 0.0), 1.0)])
def test_boundary_vertices_on_sphere(comm, ball):
    mesh = create_mesh(comm, ball, 8)
    x = boundary_points(mesh)
    r = np.linalg.norm(x - np.asarray(ball.center), axis=1)
    local = float(np.max(np.abs(r - ball.radius), initial=0.0))
    deviation = comm.allreduce(local, op=MPI.MAX)
    assert deviation < 1e-12
    assert comm.allreduce(len(x), op=MPI.SUM) > 0


@pytest.mark.parametrize(
    "domain, cells",
    [(Box((0.0, 0.0), (1.0, 1.0)), 8), (Ball((0.0, 0.0), 1.0), 16), (Ball((0.0,) * 3, 1.0), 6)],
)
def test_same_mesh_on_any_number_of_ranks(comm, domain, cells):
    mesh = create_mesh(comm, domain, cells)
    serial = create_mesh(MPI.COMM_SELF, domain, cells)
    summary, serial_summary = mesh_summary(mesh), mesh_summary(serial)
    assert summary["num_cells"] == serial_summary["num_cells"]
    assert summary["num_vertices"] == serial_summary["num_vertices"]
    assert summary["h_min"] == pytest.approx(serial_summary["h_min"], rel=1e-12)
    assert volume(comm, mesh) == pytest.approx(volume(MPI.COMM_SELF, serial), rel=1e-12)
    if comm.size > 1:
        # Ghosted on shared facets: interior-facet integrals see the cell across a rank border.
        ghosts = mesh.topology.index_map(mesh.topology.dim).num_ghosts
        assert comm.allreduce(ghosts, op=MPI.MIN) > 0


def test_bad_input(comm, tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"expected a solver\.model\.domain\.Box or Ball.*'box', 'disk'"):
        create_mesh(comm, "disk", 8)
    with pytest.raises(InputError, match=r"mesh cells must be an integer >= 1, got 0"):
        create_mesh(comm, Box((0.0, 0.0), (1.0, 1.0)), 0)
    # A missing geometry file fails on every rank before any collective call: no hang.
    monkeypatch.setattr(solver.fem.mesh, "MESH_DIR", tmp_path)
    with pytest.raises(InputError, match=r"disk\.geo not found"):
        create_mesh(comm, Ball((0.0, 0.0), 1.0), 8)
