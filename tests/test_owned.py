"""Objects owning PETSc objects release them at the end of a ``with`` block (``solver.owned``)."""

from mpi4py import MPI

import pytest

from solver.owned import Owned


def test_a_with_block_destroys_once_also_on_an_exception():
    class Counted(Owned):
        destroyed = 0

        def destroy(self):
            self.destroyed += 1

    with Counted() as a:
        assert a.destroyed == 0
    assert a.destroyed == 1
    with pytest.raises(RuntimeError, match="inside"):
        with Counted() as b:
            raise RuntimeError("inside")
    assert b.destroyed == 1


def test_the_owners_of_petsc_objects_are_context_managers(comm):
    from solver.check.compare_field import MeshComparison
    from solver.fem.adjoint import Adjoint, AssembledSlab, VelocityGradient
    from solver.fem.mesh import create_mesh
    from solver.fem.slab_derivative import SlabGradient
    from solver.fem.transport import Block, TransportSolver
    from solver.learn.reduced import ReducedFunctional
    from solver.learn.train import Problem
    from solver.model.domain import Box

    owners = (MeshComparison, Adjoint, AssembledSlab, VelocityGradient, SlabGradient, Block, TransportSolver,
              ReducedFunctional, Problem)
    assert all(issubclass(cls, Owned) for cls in owners)
    with TransportSolver(create_mesh(comm, Box((-1.0, -1.0), (1.0, 1.0)), 4)) as solver:
        assert solver.L.handle != 0
    assert solver.L.handle == 0 and solver.inverse_mass.handle == 0  # the PETSc objects are freed
