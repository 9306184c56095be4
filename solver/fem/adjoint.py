"""The exact discrete adjoint of the transport solve: transposed RK3 steps in reverse order.

The forward solve (``fem/transport.py``) takes steps n = 0 … N−1 in τ = T − t from u⁰ = I f to
u^N = u_h(0). With M = I + dt L, one SSP-RK3 step is

    u₁ = M u,   u₂ = ¾ u + ¼ M u₁,   u' = ⅓ u + ⅔ M u₂,

so given λ' = ∂J/∂u', its transpose is (hIPPYlib's way: the transposed discrete step)

    λ₂ = ⅔ Mᵀλ',   λ₁ = ¼ Mᵀλ₂,   λ = ⅓ λ' + ¾ λ₂ + Mᵀλ₁,

and the step contributes dt·(⅔ λ'ᵀ dL u₂ + ¼ λ₂ᵀ dL u₁ + λ₁ᵀ dL u) to dJ. With L = M_mass⁻¹ A(v_h)
and A linear in v_h (up to the upwind switch, whose derivative the form differentiates exactly at
its quadrature points), ξᵀ dL η = ∂_v a_op(v_h; η, M_mass⁻¹ξ)[dv]. On a slab v_h is fixed, so
these derivatives are linear in the products η ⊗ ψ: ``slab_derivative.SlabGradient`` sums the products
of all 3K stage pairs of all steps of a slab and contracts them once per slab; the result is
chained through v_h = I_h v(θ) by the velocity model's VJP once per slab. ``VelocityGradient``
(dolfinx's assembly of ``ufl.derivative`` of the same form, one assembly per call) is the
reference it is tested against and the fallback where it does not apply.

The stage states come from the forward solve where it kept them (``stage_memory``); a block of
steps between two checkpoints whose stages were not kept is recomputed from its checkpoint, its
stage states recorded, then walked backward.
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
from solver.fem.transport import ForwardResult, TransportSolver, operator_integrand
from solver.fem.gradient_kernels import combine
from solver.fem.slab_derivative import SlabAccumulator, SlabGradient
from solver.owned import Owned

# Stage pairs handed to the slab gradient together (whole steps, at least one), at the memory
# of PAIRS_PER_ADD DG vectors (the ψ's; 2· in parallel). The column-wise products ran faster on
# more pairs (0.072 ms per pair at 24 pairs, 0.035 at 48, 0.033 at 96 on a 2304-cell mesh); the
# row-wise ones (one rank) ran at about the same time per pair at 24, 48 and 96 (48² box,
# SlabGradient.add_rows of random rows timed alone; left at 48).
PAIRS_PER_ADD = 48


class VelocityGradient(Owned):
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


class AssembledSlab(SlabAccumulator):
    """:class:`SlabAccumulator` by ``VelocityGradient``: one assembly per ``add``.

    The fallback for elements the slab contraction does not cover (velocity degree 3), and
    the reference it is tested against.
    """

    def __init__(self, solver: TransportSolver, max_pairs: int):
        self.gradient = VelocityGradient(solver, max_pairs)
        self.reset()

    def reset(self) -> None:
        self.total = None

    def add(self, etas: np.ndarray, psis: np.ndarray) -> None:
        pad = self.gradient.num_pairs - etas.shape[1]
        zero = [np.zeros(etas.shape[0])] * pad
        g = self.gradient.assemble(list(etas.T) + zero, list(psis.T) + zero)
        self.total = g if self.total is None else self.total + g

    def contract(self) -> np.ndarray:
        return self.total

    def destroy(self) -> None:
        self.gradient.destroy()


class Adjoint(Owned):
    """The backward sweep for a ``TransportSolver`` with a piecewise-steady field.

    Args:
        solver: the solver of the forward run (its operator is re-assembled per piece).
        num_components: K.
    """

    # The θ-gradient is the model's VJP of the velocity-node cotangents ``backward`` returns
    # (the semi-Lagrangian adjoint sets its own: its cotangents live at traced points).
    theta_gradient = None

    def __init__(self, solver: TransportSolver, num_components: int):
        self.solver = solver
        self.K = num_components
        self.max_pairs = 3 * num_components * max(1, PAIRS_PER_ADD // (3 * num_components))
        kind = SlabGradient if SlabGradient.supported(solver) else AssembledSlab
        self.gradient: SlabAccumulator = kind(solver, self.max_pairs)
        self._Lt = None  # Lᵀ of the current piece, explicit (see _set_piece)
        self._recomputed: list[np.ndarray] = []  # stage buffers of a recomputed block, reused
        n = solver.num_owned
        # The queued pairs as rows (the gradient's products read them so on one rank; writing
        # them as the columns of a (dofs, P) buffer per step cost more than the products): the
        # η's are the stage states themselves (kept until the flush: see _stages), the ψ's
        # scaled copies of the λ's, here.
        self._psi_rows = np.empty((self.max_pairs, n))
        self._eta_refs: list[np.ndarray] = []
        self._pending = 0  # pairs queued, not yet added to the gradient
        self._weights: tuple[float, np.ndarray] | None = None  # (dt, its stage weights · M⁻¹)

    def backward(self, field, result: ForwardResult, lam_final: list[np.ndarray]):
        """λ⁰ = ∂J/∂u⁰ and ∂J/∂v_h per piece, from λ^N = ∂J/∂u_h(0) (collective).

        Args:
            field: the field of the forward run (piecewise steady: θ constant on slabs).
            result: the forward run; its trajectory must hold checkpoints.
            lam_final: K owned arrays, ∂J/∂(coefficients of u_h(0)).

        Returns:
            (λ⁰, shape=(K, n_owned), {piece j: ∂J/∂v_h at the owned velocity nodes, shape=(n, d)}).
        """
        traj = result.trajectory
        if field.pieces() is None:
            raise InputError("the adjoint supports fields constant in time on slabs")
        if not traj.states:
            raise InputError("the forward run kept no checkpoints (solve(..., keep=False))")
        pieces = np.asarray(field.pieces(), dtype=np.float64)
        dts = -np.diff(traj.times)  # τ-steps
        checkpoints = sorted(traj.states)
        ends = checkpoints[1:] + [traj.num_steps]
        lam = self.solver.block("adj", self.K)
        lam.rows[:] = lam_final
        grads: dict[int, np.ndarray] = {}
        piece = None
        for start, end in reversed(list(zip(checkpoints, ends))):
            j = int(traj.piece_of_step[start])
            if j != piece:
                # The pairs so far belong to the previous piece's v_h: contract before it changes.
                if piece is not None:
                    grads[piece] = self._contract()
                self._set_piece(field, pieces, j, traj.operators.get(j))
                piece = j
            stages = self._stages(traj, start, end, dts)
            for n in reversed(range(start, end)):
                self._step_back(lam, dts[n], stages[n])
        grads[piece] = self._contract()
        return lam.rows.copy(), grads

    def _set_piece(self, field, pieces: np.ndarray, j: int, kept: PETSc.Mat | None) -> None:
        """v_h, L and Lᵀ of piece j (Lᵀ as the forward run kept it, if it did); the gradient
        starts a new slab (collective)."""
        solver = self.solver
        self.gradient.reset()
        solver.set_velocity(field, 0.5 * (pieces[j] + pieces[j + 1]))
        if kept is not None:
            # Into the one Lᵀ the λ blocks multiply with (their product data is per matrix);
            # the pattern is the same, so this is a copy of the values. L itself is only needed
            # to recompute stages: assemble it then (see _stages).
            self._Lt = kept.copy(self._Lt, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN) if (
                self._Lt is not None) else kept.copy()
            return
        if not solver.operator_is_current():  # the forward's last piece is the first one here
            solver.assemble_operator()
        # petsc4py's transpose(None) transposes L in place: pass an empty Mat the first time
        # (MAT_INITIAL_MATRIX), then the same one (MAT_REUSE_MATRIX).
        self._Lt = solver.L.transpose(self._Lt if self._Lt is not None else PETSc.Mat())

    def _stages(self, traj, start: int, end: int, dts: np.ndarray) -> dict[int, np.ndarray]:
        """The stage states of the steps start … end − 1 (between two checkpoints): those the
        forward run kept, or else recomputed from the checkpoint at ``start`` (collective)."""
        if all(n in traj.stages for n in range(start, end)):
            return traj.stages
        solver = self.solver
        self._flush()  # the queued η's may be rows of the buffers recomputed into below
        if not solver.operator_is_current():  # this piece's Lᵀ was kept, L not assembled
            solver.assemble_operator()
        state = solver.block("recompute", self.K)
        state.rows[:] = traj.states[start]
        shape = (3, self.K, solver.num_owned)
        self._recomputed += [np.empty(shape) for _ in range(end - start - len(self._recomputed))]
        kept = {n: self._recomputed[n - start] for n in range(start, end)}
        for n in range(start, end):
            solver.rk3_step(state, dts[n], record=kept[n])
        return kept

    def _step_back(self, lam, dt: float, stages: np.ndarray) -> None:
        """λ ← the transposed RK3 step of λ (in place), its three stage pairs queued for the
        gradient.

        Each transposed stage is one MatMatMult with the explicit Lᵀ: PETSc's
        MatTransposeMatMult (AIJ × dense) ran no faster than K MultTransposes (measured).
        """
        K, Lt = self.K, self._Lt
        lam1, lam2 = self.solver.block("adj1", K), self.solver.block("adj2", K)
        Lam, Lam1, Lam2 = lam.rows, lam1.rows, lam2.rows
        if self._pending + 3 * K > self.max_pairs:
            self._flush()
        # Each update one pass (gradient_kernels.combine), where numpy needs one per operation.
        combine(Lam2, [(2.0 / 3.0, Lam), (dt * 2.0 / 3.0, lam.product(Lt))])  # λ₂ = ⅔ Mᵀλ'
        combine(Lam1, [(0.25, Lam2), (dt * 0.25, lam2.product(Lt))])  # λ₁ = ¼ Mᵀλ₂
        Y = lam1.product(Lt)
        # Pairs (η, ψ = M_mass⁻¹ ξ) with ξ the stage weights: (u₂, ⅔dt λ'), (u₁, ¼dt λ₂),
        # (u, dt λ₁) for all K components.
        weights = self._stage_weights(dt)
        self._eta_refs += [stages[2 - i][k] for i in range(3) for k in range(K)]
        for i, xi in enumerate((Lam, Lam2, Lam1)):
            start = self._pending + i * K
            np.multiply(xi, weights[i], out=self._psi_rows[start : start + K])
        self._pending += 3 * K
        combine(Lam, [(1.0 / 3.0, Lam), (0.75, Lam2), (1.0, Lam1), (dt, Y)])  # λ = ⅓λ' + ¾λ₂ + Mᵀλ₁

    def _stage_weights(self, dt: float) -> np.ndarray:
        """(⅔dt, ¼dt, dt) · M_mass⁻¹, shape=(3, n_owned): kept while dt stays (a slab)."""
        if self._weights is None or self._weights[0] != dt:
            inv_mass = self.solver.inverse_mass.array
            self._weights = (dt, np.stack([w * dt * inv_mass for w in (2.0 / 3.0, 0.25, 1.0)]))
        return self._weights[1]

    def _flush(self) -> None:
        """Hand the queued pairs to the gradient (collective)."""
        P = self._pending
        if P:
            self.gradient.add_rows(self._eta_refs, list(self._psi_rows[:P]))
            self._pending = 0
            self._eta_refs = []

    def _contract(self) -> np.ndarray:
        """∂J/∂v_h of the current piece (collective)."""
        self._flush()
        return self.gradient.contract()

    def destroy(self) -> None:
        self.gradient.destroy()
        if self._Lt is not None:
            self._Lt.destroy()
