"""The transport schemes by name (``solver.scheme``): one place that builds a solver and its
adjoint from the config, so that training, prediction and comparison use the same one."""

from __future__ import annotations

from solver.config import SCHEMES, SolverConfig, stage_memory_bytes
from solver.errors import InputError
from solver.fem.adjoint import Adjoint
from solver.fem.semilagrangian import SemiLagrangianAdjoint, SemiLagrangianSolver
from solver.fem.transport import TransportSolver


def make_solver(mesh, solver: SolverConfig, *, degree: int, num_components: int, viscosity: float = 0.0):
    """The transport solver ``solver.scheme`` names, with the config's options (collective)."""
    if solver.scheme == "rk3":
        made = TransportSolver(mesh, degree=degree, num_components=num_components, cfl=solver.cfl,
                               dt=solver.dt, checkpoint_every=solver.checkpoint_every,
                               stage_memory=stage_memory_bytes(solver), viscosity=viscosity)
    elif solver.scheme == "sl":
        made = SemiLagrangianSolver(mesh, degree=degree, num_components=num_components,
                                    substep_rotation=solver.substep_rotation, viscosity=viscosity,
                                    slabs_per_step=None if solver.slabs_per_step == "all" else solver.slabs_per_step)
    else:
        raise InputError(f'Invalid scheme "{solver.scheme}". Must be one of {list(SCHEMES)}')
    made.max_steps = solver.max_steps
    return made


def make_adjoint(solver, num_components: int):
    """The adjoint of ``solver``'s scheme."""
    if isinstance(solver, SemiLagrangianSolver):
        return SemiLagrangianAdjoint(solver, num_components)
    return Adjoint(solver, num_components)
