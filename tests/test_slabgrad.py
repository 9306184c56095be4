"""The slab-contracted velocity derivative against dolfinx's assembly of ufl.derivative of the
operator form (the reference), on 1 and 2 ranks, 2D and 3D, DG1 and DG2."""

from mpi4py import MPI

import numpy as np
import pytest

from solver.fem.adjoint import VelocityGradient
from solver.model.domain import Ball, Box
from solver.fem.transport import TransportSolver
from solver.fem.mesh import create_mesh
from solver.fem.slab_derivative import SlabGradient
from solver.model.velocity import VelocityModel

CASES = [
    ("box2d-DG1", Box((-1.0, -1.0), (1.0, 1.0)), 6, 1),
    ("box2d-DG2", Box((-1.0, -1.0), (1.0, 1.0)), 4, 2),
    ("disk-DG1", Ball((0.0, 0.0), 1.0), 6, 1),
    ("box3d-DG1", Box((-1.0,) * 3, (1.0,) * 3), 3, 1),
    ("box3d-DG2", Box((-1.0,) * 3, (1.0,) * 3), 2, 2),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, domain, cells, degree", CASES, ids=[c[0] for c in CASES])
def test_slab_contraction_equals_assembled_derivative(comm, name, domain, cells, degree):
    mesh = create_mesh(comm, domain, cells)
    with TransportSolver(mesh, degree=degree) as solver:
        model = VelocityModel(dim=domain.dim, width=4, slabs=1, T=1.0, activation="tanh", domain=domain)
        # A field of speed ~1 with both signs of w·n across many facets (the upwind switch matters).
        solver.set_velocity(model.field(model.init(3, 2.0)), 0.5)
        rng = np.random.default_rng(comm.rank)
        P = 5
        n = solver.num_owned
        etas, psis = rng.standard_normal((n, P)), rng.standard_normal((n, P))

        with VelocityGradient(solver, P) as reference:
            expected = reference.assemble(list(etas.T), list(psis.T))

        with SlabGradient(solver, max_pairs=4) as slab:
            slab.add(etas[:, :3], psis[:, :3])  # in two parts: the products add up
            slab.add(etas[:, 3:], psis[:, 3:])
            got = slab.contract()
            slab.reset()
            assert np.all(slab.S == 0.0)
        scale = comm.allreduce(np.abs(expected).max(initial=0.0), op=MPI.MAX)
        error = comm.allreduce(np.abs(got - expected).max(initial=0.0), op=MPI.MAX)
        assert scale > 1e-3
        assert error < 1e-12 * scale, f"{name}: max difference {error:.3e} (scale {scale:.3e})"

