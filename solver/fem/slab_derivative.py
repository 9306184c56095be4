"""∂/∂v_h of Σ_p ψ_pᵀ A(v_h) η_p over all stage pairs of a slab, contracted once per slab.

The adjoint (``fem/adjoint.py``) needs, for every RK stage of every step, the derivative of
ψᵀ A(v_h) η with respect to the velocity nodes, where A is the operator form of ``fem/transport.py``
(the form is −a):

    ∂_v[dv] = Σ_K ∫_K (dv·∇η) ψ dx − Σ_F ∫_F (dv·n) [η] (s⁺ ψ⁻ + s⁻ ψ⁺) ds,
    s^± = (1 ± w·n / |w·n|_δ) / 2,   w = −v_h,   n = n⁺.

On a slab v_h is fixed, so s^± are fixed and the derivative is linear in the products η ⊗ ψ:
it only needs, per cell, S_K = Σ_p η_p|_K ⊗ ψ_p|_K (which also gives the same-side facet
products η⁺ψ⁺ and η⁻ψ⁻) and, per interior facet, the cross products Σ_p η_p|_{K⁺} ⊗ ψ_p|_{K⁻}
and Σ_p η_p|_{K⁻} ⊗ ψ_p|_{K⁺}. Those sums cost about one sparse product with A per pair (they
are ψ ηᵀ sampled on A's sparsity pattern) and are contracted with the velocity basis at the
quadrature points once per slab.

Why not the library's way: assembling ``ufl.derivative`` of the operator form (kept in
``adjoint.VelocityGradient`` as the reference this module is tested against) evaluates the
derivative kernel once per step, with coefficient packing of all pairs; measured, that made a
gradient cost ~8 forward solves. dolfinx has no trilinear assembly to do the sum over pairs
inside the kernel, and the cross-facet products cannot be written as cell functions. The
quadrature here is the form's: same degree, basix's default rule (what FFCx uses), points
matched across the facet by mapping the '+' side's points into the '−' cell.

Supports affine triangles/tetrahedra, DG degree 1–3 and Lagrange velocity degree ≤ 2 (no dof
transformations); ``SlabGradient.supported`` says whether a solver qualifies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import basix
import numpy as np

import dolfinx.la
from dolfinx import fem

from solver.fem.gradient_kernels import add_pair_rows, add_pairs, facet_terms, pairs_into_columns
from solver.fem.transport import UPWIND_DELTA, TransportSolver
from solver.owned import Owned


def _tabulate(function_space: fem.FunctionSpace, nderivs: int, points: np.ndarray) -> np.ndarray:
    """Basis values (and derivatives) of the scalar element of a space at reference points.

    Returns shape=(number of derivative tables, points, dofs per cell).
    """
    element = function_space.ufl_element()
    if element.block_size > 1:
        element = element.sub_elements[0]
    return np.asarray(element.tabulate(nderivs, points))


def _scatter_add(out: np.ndarray, nodes: np.ndarray, values: np.ndarray) -> None:
    """out[nodes[c, m], i] += values[c, m, i] (repeated nodes add up)."""
    flat = nodes.ravel()
    for i in range(out.shape[1]):
        out[:, i] += np.bincount(flat, values[..., i].ravel(), minlength=out.shape[0])


class SlabAccumulator(Owned, ABC):
    """What the adjoint needs of a velocity derivative: the stage pairs (η_p, ψ_p) of a slab
    added up, then contracted into ∂/∂v_h Σ_p ψ_pᵀ A(v_h) η_p for the current v_h."""

    @abstractmethod
    def reset(self) -> None:
        """Start a new slab."""

    @abstractmethod
    def add(self, etas: np.ndarray, psis: np.ndarray) -> None:
        """Add P pairs: owned coefficients, shape=(num_owned, P) each (collective)."""

    def add_rows(self, etas: list[np.ndarray], psis: list[np.ndarray]) -> None:
        """``add`` of P pairs given as rows: etas[p], psis[p] owned coefficients, shape=(num_owned,)
        each (collective)."""
        if etas:
            self.add(np.stack(etas, axis=1), np.stack(psis, axis=1))

    @abstractmethod
    def contract(self) -> np.ndarray:
        """∂/∂v_h at the owned velocity nodes, shape=(nodes, d) (collective)."""

    def destroy(self) -> None:
        """Free the PETSc objects held (none unless a subclass holds some)."""


class SlabGradient(SlabAccumulator):
    """Accumulates stage pairs (η_p, ψ_p) of a slab and contracts them into ∂/∂v_h.

    Args:
        solver: the transport solver (mesh, spaces, quadrature degree, current v_h).
        max_pairs: the most pairs passed to one ``add``.
    """

    @staticmethod
    def supported(solver: TransportSolver) -> bool:
        return not solver.Vv.element.needs_dof_transformations and not (
            solver.V.element.needs_dof_transformations
        )

    def __init__(self, solver: TransportSolver, max_pairs: int):
        if not self.supported(solver):
            raise ValueError("the velocity or DG element needs dof transformations")
        self.solver = solver
        self.dim = solver.dim
        cells, facets = _integration_domains(solver.operator_form)
        geometry = _AffineGeometry(solver.mesh)
        self.dg_dofs = np.ascontiguousarray(solver.V.dofmap.list, dtype=np.int64)  # (local cells, nd)
        self.v_nodes = solver.Vv.dofmap.list.astype(np.int64)  # (local cells, nv), blocked by d
        index_map = solver.Vv.dofmap.index_map
        self.num_v_nodes = index_map.size_local + index_map.num_ghosts
        self.num_owned_v = index_map.size_local
        self._cell_rule(solver, cells, geometry)
        self._facet_rule(solver, facets, geometry)
        self._neighbours(facets, geometry.num_facets)
        self._buffers(solver, max_pairs)
        self.reset()

    def _cell_rule(self, solver: TransportSolver, cells: np.ndarray, geometry) -> None:
        """Cells: ∫_K ω_m ∂_i η ψ = Σ_q W_q ω_m(ξ_q) Σ_ab S_ab (J⁻ᵀ ∇̂φ_a)_i φ_b."""
        d = self.dim
        points, weights = basix.make_quadrature(geometry.cell_type, solver.quadrature_degree)
        dg = _tabulate(solver.V, 1, points)
        self.cells = cells
        self.cell_phi = dg[0]  # (nq, nd)
        self.cell_grad = dg[1 : 1 + d]  # (d, nq, nd) reference gradients
        self.cell_Jinv = geometry.Jinv[cells]
        self.cell_omega = _tabulate(solver.Vv, 0, points)[0]  # (nq, nv)
        self.cell_weights = geometry.detJ[cells, None] * weights[None, :]
        # ∂̂_j φ_a φ_b at the points as one (nd², d · nq) table; cells 0 … n − 1 need no gather.
        nq, nd = self.cell_phi.shape
        table = self.cell_grad[:, :, :, None] * self.cell_phi[None, :, None, :]  # (d, nq, a, b)
        self._cell_table = np.ascontiguousarray(table.transpose(2, 3, 0, 1).reshape(nd * nd, d * nq))
        self._all_cells = np.array_equal(cells, np.arange(len(cells)))

    def _facet_rule(self, solver: TransportSolver, facets: np.ndarray, geometry) -> None:
        """Interior facets: the '+' side's quadrature points, mapped into the '−' cell."""
        d = self.dim
        V, Vv, g = solver.V, solver.Vv, geometry
        facet_type = basix.cell.sub_entity_type(g.cell_type, d - 1, 0)
        ref_vertices = basix.geometry(g.cell_type)
        ref_facets = basix.topology(g.cell_type)[d - 1]
        fpoints, fweights = basix.make_quadrature(facet_type, solver.quadrature_degree)

        def on_facet(local):
            v = ref_vertices[ref_facets[local]]
            return v[0] + fpoints @ (v[1:] - v[0])  # (nqf, d) reference points of the cell

        ref_points = np.stack([on_facet(f) for f in range(len(ref_facets))])  # (facets, nqf, d)
        c0, l0, c1 = facets[:, 0], facets[:, 1], facets[:, 2]
        xi0 = ref_points[l0]  # (nf, nqf, d)
        x = g.X0[c0, None, :] + np.einsum("fij,fqj->fqi", g.J[c0], xi0)
        xi1 = np.einsum("fij,fqj->fqi", g.Jinv[c1], x - g.X0[c1, None, :])
        nf, nqf = xi0.shape[:2]
        nd = self.dg_dofs.shape[1]
        self.facets = facets
        self.phi_plus = _tabulate(V, 0, xi0.reshape(-1, d))[0].reshape(nf, nqf, nd)
        self.phi_minus = _tabulate(V, 0, xi1.reshape(-1, d))[0].reshape(nf, nqf, nd)
        self.facet_omega = _tabulate(Vv, 0, xi0.reshape(-1, d))[0].reshape(nf, nqf, -1)
        normals = np.asarray(basix.cell.facet_outward_normals(g.cell_type))[l0]  # reference
        n = np.einsum("fji,fj->fi", g.Jinv[c0], normals)  # J⁻ᵀ n̂
        self.normal = n / np.linalg.norm(n, axis=1, keepdims=True)
        # |F| / |F̂| from the physical facet vertices (the rule's weights sum to |F̂|).
        fv = g.X[c0[:, None], np.asarray(ref_facets)[l0]]  # (nf, d, d): the facet's vertices
        edges = fv[:, 1:, :] - fv[:, :1, :]
        if d == 2:
            measure = np.linalg.norm(edges[:, 0, :], axis=1)
        else:
            measure = 0.5 * np.linalg.norm(np.cross(edges[:, 0, :], edges[:, 1, :]), axis=1)
        self.facet_weights = (measure / fweights.sum())[:, None] * fweights[None, :]
        self.phi_plus, self.phi_minus = np.ascontiguousarray(self.phi_plus), np.ascontiguousarray(self.phi_minus)
        self.facet_weights = np.ascontiguousarray(self.facet_weights)
        self._c0, self._c1 = np.ascontiguousarray(c0), np.ascontiguousarray(c1)  # for gradient_kernels.facet_terms

    def _neighbours(self, facets: np.ndarray, num_slots: int) -> None:
        """Cross products per cell and local facet: η_K ⊗ ψ_{K'} with K' the neighbour across
        it, for the (K, local facet) slots of this rank's integrated facets; the other slots
        point at a zero row (index = number of local cells)."""
        num_cells = len(self.dg_dofs)
        self.neighbour = np.full((num_cells, num_slots), num_cells, dtype=np.int64)
        self.neighbour[facets[:, 0], facets[:, 1]] = facets[:, 2]
        self.neighbour[facets[:, 2], facets[:, 3]] = facets[:, 0]
        self._slot_plus = facets[:, 0] * num_slots + facets[:, 1]  # flat (cell, local facet)
        self._slot_minus = facets[:, 2] * num_slots + facets[:, 3]

    def _buffers(self, solver: TransportSolver, max_pairs: int) -> None:
        """Ghost exchange vectors for ``add``."""
        # Ghost values of η, ψ (cells on this rank's facets may be ghosts): one scatter per add.
        imap = solver.V.dofmap.index_map
        self.num_owned = imap.size_local
        self.max_pairs = max_pairs
        self._parallel = solver.mesh.comm.size > 1
        if self._parallel:
            self._eta = dolfinx.la.vector(imap, bs=max_pairs)
            self._psi = dolfinx.la.vector(imap, bs=max_pairs)
            self._eta_rows = self._eta.array.reshape(-1, max_pairs)
            self._psi_rows = self._psi.array.reshape(-1, max_pairs)
        else:  # the pairs of a dof made contiguous, for the products (if they are not)
            self._eta = self._psi = None
            self._eta_rows = np.empty((self.num_owned, max_pairs))
            self._psi_rows = np.empty((self.num_owned, max_pairs))
        self._reverse = fem.Function(solver.Vv)

    def reset(self) -> None:
        """Start a new slab."""
        nd = self.dg_dofs.shape[1]
        self.S = np.zeros((len(self.dg_dofs), nd, nd))
        self.cross = np.zeros(self.neighbour.shape + (nd, nd))

    def _local(self, owned: np.ndarray, rows: np.ndarray, vector) -> np.ndarray:
        """(owned dofs, P) → (local dofs incl. ghosts, P), a dof's P pairs contiguous (the
        ghosts' from their owners)."""
        P = owned.shape[1]
        if (owned.strides[1] == 8 or P == 1) and not self._parallel:
            return owned
        rows[: self.num_owned, :P] = owned
        if vector is not None:
            vector.scatter_forward()
        return rows[:, :P]

    def add(self, etas: np.ndarray, psis: np.ndarray) -> None:
        """Add P pairs: owned coefficients, shape=(num_owned, P) each, a dof's pairs contiguous
        (collective)."""
        P = etas.shape[1]
        if P > self.max_pairs:
            raise ValueError(f"{P} pairs, at most {self.max_pairs}")
        add_pairs(self._local(etas, self._eta_rows, self._eta), self._local(psis, self._psi_rows, self._psi),
                  self.dg_dofs, self.neighbour, self.S, self.cross)

    def add_rows(self, etas: list[np.ndarray], psis: list[np.ndarray]) -> None:
        """``add`` of P pairs given as rows, shape=(num_owned,) each (collective). On one rank the
        products read the rows (``add_pair_rows``); in parallel the pairs are first written as
        the columns of the ghosted buffers, whose ghost values one scatter brings."""
        P = len(etas)
        if P > self.max_pairs:
            raise ValueError(f"{P} pairs, at most {self.max_pairs}")
        if not self._parallel:
            add_pair_rows(etas, psis, self.dg_dofs, self.neighbour, self.S, self.cross)
            return
        if P == 0:
            return
        for rows, buffer, vector in ((etas, self._eta_rows, self._eta), (psis, self._psi_rows, self._psi)):
            pairs_into_columns(rows, [None] * P, buffer[: self.num_owned, :P])
            vector.scatter_forward()
        add_pairs(self._eta_rows[:, :P], self._psi_rows[:, :P], self.dg_dofs, self.neighbour, self.S, self.cross)

    def contract(self) -> np.ndarray:
        """∂/∂v_h at the owned velocity nodes for the current v_h, shape=(nodes, d) (collective).

        Written as a few large matrix products (one GEMM over all cells with the tabulated
        ∇̂φ_a φ_b, one batched product per facet): measured 3–4× faster than the einsum
        contractions it replaced (48² DG1 and 13³ DG1 boxes). The facet blocks' gathers and
        products are now one compiled pass (``gradient_kernels.facet_terms``): the whole
        contraction 0.116 → 0.061 s over the 16 slabs of ``python -m cProfile -s tottime
        scripts/bench_gradient.py --cases box48 --repeats 3`` (one rank, loaded machine).
        """
        d = self.dim
        nd = self.dg_dofs.shape[1]
        g = np.zeros((self.num_v_nodes, d))
        # Cells: H[k, j, q] = Σ_ab S_ab ∂̂_j φ_a(ξ_q) φ_b(ξ_q), one GEMM; then the weights, the
        # velocity basis and J⁻ᵀ: gc[k, m, i] = Σ_jq J⁻¹[k, j, i] W[k, q] H[k, j, q] ω_m(ξ_q).
        S = self.S[: len(self.cells)] if self._all_cells else self.S[self.cells]
        H = (S.reshape(len(S), nd * nd) @ self._cell_table).reshape(len(S), d, -1)
        H *= self.cell_weights[:, None, :]
        R = (H.reshape(-1, H.shape[2]) @ self.cell_omega).reshape(len(S), d, -1)  # (cells, d, nv): one GEMM
        # gc[k, m, i] = Σ_j R[k, j, m] J⁻¹[k, j, i]: d broadcast products (a batched matmul of
        # the d × d blocks was slower, one BLAS call per cell)
        gc = R[:, 0, :, None] * self.cell_Jinv[:, None, 0, :]
        for j in range(1, d):
            gc += R[:, j, :, None] * self.cell_Jinv[:, None, j, :]
        _scatter_add(g, self.v_nodes[self.cells], gc)

        # Facets: −∫ (dv·n) [η] (s⁺ψ⁻ + s⁻ψ⁺) with [η]ψ^s = Y^{+s} − Y^{−s}, Y(l, X, r) =
        # Σ_ab l_a X_ab r_b at the quadrature points: s⁺ (Y(φ⁺, X⁺⁻, φ⁻) − Y(φ⁻, S⁻, φ⁻)) +
        # s⁻ (Y(φ⁺, S⁺, φ⁺) − Y(φ⁻, X⁻⁺, φ⁺)), per facet and point in one compiled pass.
        c0, c1 = self._c0, self._c1  # the '+' and '−' cell of each facet
        v = self.solver.velocity.x.array.reshape(-1, d)
        vq = self.facet_omega @ v[self.v_nodes[c0]]  # (facets, nqf, d)
        wn = -np.einsum("fqi,fi->fq", vq, self.normal)  # einsum: a stacked matmul of 1-column blocks was 1.7× slower
        ratio = wn / np.sqrt(wn * wn + UPWIND_DELTA**2)
        s_plus, s_minus = 0.5 * (1.0 + ratio), 0.5 * (1.0 - ratio)
        h = facet_terms(self.phi_plus, self.phi_minus, self.S, self.cross.reshape(-1, nd, nd), c0, c1,
                        self._slot_plus, self._slot_minus, s_plus, s_minus, self.facet_weights)
        gm = np.einsum("fq,fqm->fm", h, self.facet_omega)  # (facets, nv); 2× faster than a stacked matmul
        gf = -gm[:, :, None] * self.normal[:, None, :]
        _scatter_add(g, self.v_nodes[c0], gf)

        # Facets and cells of ghosts add into nodes other ranks own: send them home.
        self._reverse.x.array[:] = g.ravel()
        self._reverse.x.scatter_reverse(dolfinx.la.InsertMode.add)
        return self._reverse.x.array.reshape(-1, d)[: self.num_owned_v].copy()


def _integration_domains(form: fem.Form) -> tuple[np.ndarray, np.ndarray]:
    """The local cells of the form's one cell integral, and its interior facets as rows
    (cell⁺, local facet⁺, cell⁻, local facet⁻)."""
    form = form._cpp_object
    if form.num_integrals(fem.IntegralType.cell, 0) != 1 or form.num_integrals(
        fem.IntegralType.interior_facet, 0
    ) != 1:
        raise ValueError("expected one cell and one interior-facet integral")
    cells = np.asarray(form.domains(fem.IntegralType.cell, 0), dtype=np.int64)
    facets = np.asarray(form.domains(fem.IntegralType.interior_facet, 0), dtype=np.int64)
    return cells, facets.reshape(-1, 4)


class _AffineGeometry:
    """The affine map x = X0 + J ξ of every local cell of an affine simplex mesh."""

    def __init__(self, mesh):
        d = mesh.geometry.dim
        self.cell_type = getattr(basix.CellType, mesh.topology.cell_type.name)
        self.num_facets = len(basix.topology(self.cell_type)[d - 1])
        self.X = mesh.geometry.x[:, :d][mesh.geometry.dofmaps[0]]  # (cells, d + 1, d)
        self.X0 = self.X[:, 0, :]
        # J[c, i, j] = ∂x_i/∂ξ_j
        self.J = np.transpose(self.X[:, 1:, :] - self.X0[:, None, :], (0, 2, 1))
        self.Jinv = np.linalg.inv(self.J)
        self.detJ = np.abs(np.linalg.det(self.J))
