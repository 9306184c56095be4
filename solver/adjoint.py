"""The exact discrete adjoint of the transport solve: transposed RK3 steps in reverse order.

The forward solve (``forward.py``) takes steps n = 0 … N−1 in τ = T − t from u⁰ = I f to
u^N = u_h(0). With M = I + dt L, one SSP-RK3 step is

    u₁ = M u,   u₂ = ¾ u + ¼ M u₁,   u' = ⅓ u + ⅔ M u₂,

so given λ' = ∂J/∂u', its transpose is (hIPPYlib's way: the transposed discrete step)

    λ₂ = ⅔ Mᵀλ',   λ₁ = ¼ Mᵀλ₂,   λ = ⅓ λ' + ¾ λ₂ + Mᵀλ₁,

and the step contributes dt·(⅔ λ'ᵀ dL u₂ + ¼ λ₂ᵀ dL u₁ + λ₁ᵀ dL u) to dJ. With L = M_mass⁻¹ A(v_h)
and A linear in v_h (up to the upwind switch, whose derivative the form differentiates exactly at
its quadrature points), ξᵀ dL η = ∂_v a_op(v_h; η, M_mass⁻¹ξ)[dv]: one assembled vector per step
for all its 3K stage pairs together (a blocked DG space with 3K components), added up over the
steps of a slab and chained through v_h = I_h v(θ) by the velocity model's VJP once per slab.

The stage states are recomputed from the forward's checkpoints: a block of steps between two
checkpoints is recomputed (its step starts kept), then walked backward.
"""

from __future__ import annotations

import basix
import basix.ufl
import numpy as np
import ufl
from mpi4py import MPI
from petsc4py import PETSc

import dolfinx.fem.petsc
from dolfinx import fem

from solver.errors import InputError
from solver.forward import ForwardResult, TransportSolver, operator_integrand


class VelocityGradient:
    """∂/∂v_h Σ_c a_op(v_h; η_c, ψ_c) for P pairs (η_c, ψ_c) of DG functions, as one vector.

    Args:
        solver: the transport solver whose operator form is differentiated (same quadrature).
        num_pairs: P, the number of pairs assembled together.
    """

    def __init__(self, solver: TransportSolver, num_pairs: int):
        mesh = solver.mesh
        element = basix.ufl.element(
            "DG",
            mesh.basix_cell(),
            solver.degree,
            lagrange_variant=basix.LagrangeVariant.legendre,
            shape=(num_pairs,),
        )
        self.W = fem.functionspace(mesh, element)
        self.eta = fem.Function(self.W)
        self.psi = fem.Function(self.W)
        self.num_pairs = num_pairs
        integrand = sum(
            operator_integrand(solver.velocity, self.eta[c], self.psi[c], solver.dx, solver.dS)
            for c in range(num_pairs)
        )
        self.form = fem.form(
            ufl.derivative(integrand, solver.velocity, ufl.TestFunction(solver.Vv))
        )
        self.vector = dolfinx.fem.petsc.create_vector(solver.Vv)
        # Node i of the scalar DG space is node node_map[i] of the blocked one (same cells, same
        # element: read it off the two dofmaps rather than assume the numbering agrees).
        node_map = np.empty(solver.V.dofmap.index_map.size_local + solver.V.dofmap.index_map.num_ghosts, dtype=np.int64)
        node_map[solver.V.dofmap.list.ravel()] = self.W.dofmap.list.ravel()
        self.node_map = node_map[: solver.num_owned]
        self.dim = solver.dim

    def assemble(self, etas: list[np.ndarray], psis: list[np.ndarray]) -> np.ndarray:
        """The gradient w.r.t. the owned velocity nodes, shape=(num_owned_nodes, d) (collective).

        Args:
            etas, psis: P owned coefficient arrays each (shape=(num_owned,)).
        """
        P = self.num_pairs
        eta = self.eta.x.array.reshape(-1, P)
        psi = self.psi.x.array.reshape(-1, P)
        for c in range(P):
            eta[self.node_map, c] = etas[c]
            psi[self.node_map, c] = psis[c]
        self.eta.x.scatter_forward()
        self.psi.x.scatter_forward()
        with self.vector.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self.vector, self.form)
        # Interior facets of ghost cells add into nodes other ranks own: send them home.
        self.vector.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        return self.vector.array.reshape(-1, self.dim).copy()

    def destroy(self) -> None:
        self.vector.destroy()


class Adjoint:
    """The backward sweep for a ``TransportSolver`` with a piecewise-steady field.

    Args:
        solver: the solver of the forward run (its operator is re-assembled per piece).
        num_components: K.
    """

    def __init__(self, solver: TransportSolver, num_components: int, steps_per_assembly: int = 1):
        self.solver = solver
        self.K = num_components
        # Several steps may share one assembly (fewer calls, a larger kernel). Measured on a 48²
        # DG1 moons-like problem, the gradient cost per forward solve was 5.9× with 1 step per
        # assembly, 6.6× with 2, 8.0× with 4: the kernel's cost grows faster than the pairs.
        self.steps_per_assembly = steps_per_assembly
        self.gradient = VelocityGradient(solver, 3 * num_components * steps_per_assembly)
        L = solver.L
        self._y = L.createVecLeft()
        self._lam = [[L.createVecLeft() for _ in range(3)] for _ in range(num_components)]
        self._stage = [[L.createVecLeft() for _ in range(3)] for _ in range(num_components)]

    def _stage_states(self, starts: np.ndarray, dt: float):
        """(u, u₁, u₂) of one step from its start (shape=(K, n_owned)), as PETSc vectors."""
        L, y = self.solver.L, self._y
        for k in range(self.K):
            u, u1, u2 = self._stage[k]
            u.array[:] = starts[k]
            L.mult(u, y)
            u.copy(u1)
            u1.axpy(dt, y)  # u₁ = M u
            L.mult(u1, y)
            u2.array[:] = 0.75 * u.array + 0.25 * (u1.array + dt * y.array)
        return self._stage

    def _step_forward(self, state: list[PETSc.Vec], dt: float) -> None:
        self.solver.rk3_step(state, dt)

    def backward(self, field, result: ForwardResult, lam_final: list[np.ndarray]):
        """λ⁰ = ∂J/∂u⁰ and ∂J/∂v_h per piece, from λ^N = ∂J/∂u_h(0) (collective).

        Args:
            field: the field of the forward run (piecewise steady: θ constant on slabs).
            result: the forward run; its trajectory must hold checkpoints.
            lam_final: K owned arrays, ∂J/∂(coefficients of u_h(0)).

        Returns:
            (λ⁰ as K owned arrays, {piece j: ∂J/∂v_h at the owned velocity nodes, shape=(n, d)}).
        """
        solver = self.solver
        traj = result.trajectory
        if field.pieces() is None:
            raise InputError("the adjoint supports fields constant in time on slabs (time = 'constant')")
        if not traj.states:
            raise InputError("the forward run kept no checkpoints (checkpoint_every = 0)")
        pieces = np.asarray(field.pieces(), dtype=np.float64)
        dts = -np.diff(traj.times)  # τ-steps
        N = traj.num_steps
        checkpoints = sorted(traj.states)
        lam = [solver.L.createVecLeft() for _ in range(self.K)]
        for k in range(self.K):
            lam[k].array[:] = lam_final[k]
        grads: dict[int, np.ndarray] = {}
        assembled_piece = None
        y = self._y
        ends = checkpoints[1:] + [N]
        etas: list[np.ndarray] = []
        psis: list[np.ndarray] = []

        def flush(piece):
            """Assemble the pending stage pairs (padded with zero pairs) into piece's gradient."""
            if etas:
                zero = np.zeros_like(etas[0])
                pad = self.gradient.num_pairs - len(etas)
                g = self.gradient.assemble(etas + [zero] * pad, psis + [zero] * pad)
                grads[piece] = grads.get(piece, 0.0) + g
                etas.clear()
                psis.clear()

        for start, end in reversed(list(zip(checkpoints, ends))):
            j = int(traj.piece_of_step[start])
            if j != assembled_piece:
                # The pending pairs belong to the previous piece's v_h: assemble before it changes.
                flush(assembled_piece)
                solver.set_velocity(field, 0.5 * (pieces[j] + pieces[j + 1]))
                solver.assemble_operator()
                assembled_piece = j
            # Recompute the step starts of this block from its checkpoint.
            state = [solver.L.createVecLeft() for _ in range(self.K)]
            for k in range(self.K):
                state[k].array[:] = traj.states[start][k]
            starts = [np.stack([s.array.copy() for s in state])]
            for n in range(start, end - 1):
                self._step_forward(state, dts[n])
                starts.append(np.stack([s.array.copy() for s in state]))
            for s in state:
                s.destroy()
            for n in reversed(range(start, end)):
                dt = dts[n]
                stages = self._stage_states(starts[n - start], dt)
                inv_mass = solver.inverse_mass.array
                for k in range(self.K):
                    lam1, lam2, _ = self._lam[k]
                    u, u1, u2 = stages[k]
                    lp = lam[k]
                    solver.L.multTranspose(lp, y)
                    lam2.array[:] = (2.0 / 3.0) * (lp.array + dt * y.array)
                    solver.L.multTranspose(lam2, y)
                    lam1.array[:] = 0.25 * (lam2.array + dt * y.array)
                    solver.L.multTranspose(lam1, y)
                    # Pairs (η, ψ = M_mass⁻¹ ξ) with ξ the stage weights, in the step's order.
                    etas.extend([u2.array.copy(), u1.array.copy(), u.array.copy()])
                    psis.extend([
                        inv_mass * dt * (2.0 / 3.0) * lp.array,
                        inv_mass * dt * 0.25 * lam2.array,
                        inv_mass * dt * lam1.array,
                    ])
                    lp.array[:] = (1.0 / 3.0) * lp.array + 0.75 * lam2.array + lam1.array + dt * y.array
                if len(etas) == self.gradient.num_pairs:
                    flush(j)
        flush(assembled_piece)
        lam0 = [l.array.copy() for l in lam]
        for l in lam:
            l.destroy()
        return lam0, grads

    def destroy(self) -> None:
        self.gradient.destroy()
        self._y.destroy()
        for group in self._lam + self._stage:
            for v in group:
                v.destroy()
