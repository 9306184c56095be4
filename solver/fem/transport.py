"""The terminal-value transport problem (eq. 1) on a mesh: DG upwind in space, SSP-RK3 in time.

    ∂t u + v·∇u = 0 in (0, T) × Ω,   u(T, ·) = f,

solved backward from t = T to t = 0. With τ = T − t this is the forward problem
∂τ u + w·∇u = 0 with w = −v. Ω is invariant (v·n = 0 on ∂Ω, see ``model/domain.py``), so there are
no boundary terms and no inflow data.

Space: discontinuous Galerkin of degree k in the *advective* upwind form (the paper's equation
is ∂t u + v·∇u = 0, not the conservative ∂t u + ∇·(v u) = 0, and the two differ: the velocity
of eq. 2 is not divergence-free)::

    a(w; u, φ) = Σ_K ∫_K (w·∇u) φ dx − Σ_F ∫_F [u] ((w·n)⁺ φ⁻ + (w·n)⁻ φ⁺) ds,

with [u] = u⁺ − u⁻ and n = n⁺: on each interior facet the jump is penalized on the downwind
side. The velocity enters as v_h, its Lagrange interpolant of degree k, which is continuous, so
w·n is single-valued on facets. (w·n)^± = (w·n ± |w·n|_δ)/2 with |s|_δ = sqrt(s² + δ²), a smoothed
upwind switch that keeps the objective differentiable (see ``UPWIND_DELTA``).

The DG basis is basix's orthonormal (Legendre) variant, so on affine simplices the mass matrix is
diagonal and the semi-discrete operator L = −M⁻¹A is a row scaling of A: assembled once per
piece of time on which v does not depend on t (a slab of piecewise-constant θ), never per stage.

Time: SSP-RK3 (Shu–Osher), three products with L per step; the step count on each piece follows
from the CFL bound dt ≤ cfl · h_min / ((2k + 1) max|v_h|). The velocity must be constant in time
on each piece (``Field.pieces()``, θ constant on slabs).

The K components are the columns of one dense PETSc matrix (``Block``), so a stage is one
MatMatMult (AIJ × dense) for all K instead of K MatMults: on peaks' 13³ box with K = 5 a whole
step costs 2.2 (DG1) and 1.6 (DG2) times K single MatMults, where three products each would be
3 plus the vector updates (1 rank; ``python -m scripts.bench_forward --components 5 --cases
peaks-dg1,peaks-dg2``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field as dataclass_field

import basix
import basix.ufl
import numpy as np
import ufl
from mpi4py import MPI
from petsc4py import PETSc

import dolfinx.fem.petsc
from dolfinx import fem
from dolfinx import mesh as dmesh

from solver import validate
from solver.config import SolverConfig
from solver.errors import InputError, UnstableSolve
from solver.guards import available_memory
from solver.fem.mesh import min_cell_size
from solver.owned import Owned

log = logging.getLogger("solver")

# |w·n| is smoothed to sqrt((w·n)² + δ²): exact upwinding where |w·n| ≫ δ, a little more
# dissipation (still consistent: it multiplies the jump [u] = O(h^{k+1})) where w·n ≈ 0. Without
# it J(θ) has kinks wherever w·n changes sign at a facet quadrature point, and Taylor tests saw
# rates of 1.45–2.7 instead of 2 (measured; with δ = 0.05 they are 2.00).
UPWIND_DELTA = 0.05

# solver.stage_memory = "auto": the share of the memory available to each rank (guards'
# available_memory: MemAvailable, the cgroup's limit, split among the node's ranks) that a
# gradient may keep, measured at the first solve that keeps a trajectory. Kept stage states save
# recomputing them (one forward solve's worth when none fit); half leaves the rest of the run
# (data, point evaluation, a second solver of a raised resolution, which takes half of what is
# left) room.
AUTO_STAGE_SHARE = 0.5


def dg_space(mesh: dmesh.Mesh, degree: int) -> fem.FunctionSpace:
    """Discontinuous P_k with basix's orthonormal (Legendre) basis: a diagonal mass matrix."""
    element = basix.ufl.element(
        "DG",
        mesh.basix_cell(),
        degree,
        lagrange_variant=basix.LagrangeVariant.legendre,
    )
    return fem.functionspace(mesh, element)


def velocity_space(mesh: dmesh.Mesh, degree: int) -> fem.FunctionSpace:
    """Continuous vector P_k, for the interpolant v_h of the velocity."""
    d = mesh.geometry.dim
    return fem.functionspace(mesh, ("Lagrange", degree, (d,)))


def operator_integrand(
    velocity, u, phi, dx: ufl.Measure, dS: ufl.Measure, delta: float = UPWIND_DELTA
) -> ufl.Form:
    """−a(w; u, φ) with w = −v: the form whose matrix A gives L = M⁻¹A (see the module doc).

    ``u`` and ``phi`` may be trial/test functions or coefficients (the adjoint uses the latter
    to differentiate ξᵀ L η with respect to v).
    """
    w = -velocity  # backward in t is forward in τ = T − t with velocity −v
    n = ufl.FacetNormal(velocity.function_space.mesh)
    wn = ufl.dot(w("+"), n("+"))
    abs_wn = ufl.sqrt(wn * wn + delta**2)
    wn_plus, wn_minus = 0.5 * (wn + abs_wn), 0.5 * (wn - abs_wn)
    a = ufl.dot(w, ufl.grad(u)) * phi * dx - ufl.jump(u) * (
        wn_plus * phi("-") + wn_minus * phi("+")
    ) * dS
    return -a


# SIPG penalty σ_F = SIPG_PENALTY · (k + 1)(k + d)/d · max(|F|/|K⁺|, |F|/|K⁻|): the constant of
# the inverse trace inequality on simplices (Warburton–Hesthaven), so that skinny cells get
# their share (a cell-diameter penalty left S indefinite on a 1 × 2 × 3 box of 3 cells, DG2,
# measured). S was positive semi-definite from a factor 0.5 (0.25: not) on 2D/3D boxes of aspect
# 1 and 3, disks; 1.0 leaves a margin of 2 (tests/test_viscous.py checks it).
SIPG_PENALTY = 1.0
# SSP-RK3's stability interval on the negative real axis is [−2.51, 0]; the diffusion step uses
# 2.0 of it against ‖εM⁻¹S‖∞ (Gershgorin: ≥ the spectral radius), see ``TransportSolver.max_dt``.
RK3_REAL_STABILITY = 2.0


def diffusion_integrand(u, phi, dx: ufl.Measure, dS: ufl.Measure, degree: int) -> ufl.Form:
    """The SIPG form s(u, φ) of −Δ with the natural (Neumann) condition on ∂Ω::

        s(u, φ) = Σ_K ∫_K ∇u·∇φ dx − Σ_F ∫_F ({∇u}·[φ n] + {∇φ}·[u n] − σ_F [u n]·[φ n]) ds.

    Symmetric and independent of v: εΔu enters L as −ε M⁻¹S, assembled once per mesh.
    """
    mesh = dx.ufl_domain()
    d = mesh.geometric_dimension
    n = ufl.FacetNormal(mesh)
    ratio = ufl.FacetArea(mesh) / ufl.CellVolume(mesh)
    sigma = SIPG_PENALTY * (degree + 1) * (degree + d) / d * ufl.max_value(ratio("+"), ratio("-"))
    return (
        ufl.inner(ufl.grad(u), ufl.grad(phi)) * dx
        - ufl.inner(ufl.avg(ufl.grad(u)), ufl.jump(phi, n)) * dS
        - ufl.inner(ufl.jump(u, n), ufl.avg(ufl.grad(phi))) * dS
        + sigma * ufl.inner(ufl.jump(u, n), ufl.jump(phi, n)) * dS
    )


class Block(Owned):
    """K owned DG vectors as the columns of one dense PETSc matrix (n_owned × K, column-major).

    ``rows`` is a (K, n_owned) view of the matrix's own storage: ``rows[k]`` is component k.
    """

    def __init__(self, comm: MPI.Comm, num_owned: int, num_global: int, K: int):
        self.mat = PETSc.Mat().createDense(((num_owned, num_global), (None, K)), comm=comm)
        self.mat.setUp()
        self.mat.assemble()
        self.rows = self.mat.getDenseArray().T
        self._products: dict[int, tuple[PETSc.Mat, Block]] = {}
        if not (self.rows.shape == (K, num_owned) and (self.rows.flags.c_contiguous or num_owned == 0)):
            raise RuntimeError(f"dense block storage is not column-major (shape {self.rows.shape})")

    @property
    def K(self) -> int:
        return self.rows.shape[0]

    def product(self, A: PETSc.Mat) -> np.ndarray:
        """A · self as (K, n_owned) rows, one MatMatMult (collective).

        The result block is kept per A and reused (MAT_REUSE_MATRIX): each (A, self) pair keeps
        its own PETSc product data.
        """
        entry = self._products.get(id(A))
        if entry is None:
            # Drop the results of matrices destroyed since (e.g. an earlier adjoint's Lᵀ).
            for key in [k for k, (B, _) in self._products.items() if not B.handle]:
                self._products.pop(key)[1].destroy()
            m, n = self.mat.getSizes()[0]
            entry = self._products[id(A)] = (A, Block(self.mat.comm, m, n, self.K))
        A.matMult(self.mat, entry[1].mat)
        return entry[1].rows

    def destroy(self) -> None:
        for _, out in self._products.values():
            out.destroy()
        self._products.clear()
        self.mat.destroy()


@dataclass
class Trajectory:
    """The states a later adjoint needs, with bounded memory.

    The time grid is a list of pieces, each with its own number of RK3 steps. The state at the
    start of every ``checkpoint_every``-th step is kept (owned dofs, shape=(K, n_owned)); the
    others are recomputed from the nearest earlier checkpoint.
    """

    # t at the start of each step and at the end, shape=(num_steps + 1,): decreasing from T to 0
    # (the solve runs backward in t, forward in τ = T − t).
    times: np.ndarray
    piece_of_step: np.ndarray  # shape=(num_steps,): index of the time piece of each step
    checkpoint_every: int
    states: dict[int, np.ndarray] = dataclass_field(default_factory=dict)
    # The stage states (u, u₁, u₂) of steps, shape=(3, K, n_owned), kept while they fit in the
    # solver's stage_memory: the adjoint then needs no recomputation for those steps. The
    # arrays belong to the solver and are overwritten by its next solve that keeps them.
    stages: dict[int, np.ndarray] = dataclass_field(default_factory=dict)
    # Lᵀ of pieces (piece j → PETSc matrix) whose stages are all kept, within the same
    # stage_memory: the adjoint then neither re-assembles L nor transposes it for those pieces.
    # The solver's, like the stages.
    operators: dict[int, PETSc.Mat] = dataclass_field(default_factory=dict)
    operator_bytes: int = 0  # their memory (values, column and row indices)
    # The semi-Lagrangian scheme's record per step, by its first slab j0: (the departure points'
    # evaluator (None for the step from T), the RK4 stage points by slab, the next step's u_h
    # with ghosts (None from T), the departure points, the terminal), what its adjoint reads
    # (``fem/semilagrangian.py``).
    departures: dict[int, tuple] = dataclass_field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.piece_of_step)

    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.states.values()) + sum(
            s.nbytes for s in self.stages.values()
        ) + self.operator_bytes


@dataclass
class ForwardResult:
    """u_h(0, ·) as K DG functions, and how it was reached."""

    u0: list[fem.Function]
    trajectory: Trajectory
    steps_per_piece: list[int]
    dt_per_piece: list[float]
    max_speed: list[float]
    # Set by ``affine.solve_affine``: the functions the solver transported (u0 itself unless the
    # coordinates were), and (A, b, coefficients of I(1)) when the coordinates were.
    transported: list[fem.Function] | None = None
    output: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def logit_rows(self, rows: np.ndarray) -> np.ndarray:
        """Transported states (shape=(m, n), the first n dofs) as the K logit rows."""
        if self.output is None:
            return rows
        A, b, ones = self.output
        return A @ rows + b[:, None] * ones[: rows.shape[1]]


class TransportSolver(Owned):
    """Solves ∂t u + v·∇u = 0, u(T) = f backward in time for K components sharing one operator.

    The defaults are those of the config's ``[solver]`` section (``config.SolverConfig``).
    Cell and facet integrals use a fixed quadrature degree 3k (the upwind switch makes facet
    integrands non-polynomial; a fixed rule keeps the discrete operator, and so an exact
    discrete adjoint, well defined).

    Args:
        mesh: an affine simplex mesh of an invariant domain Ω, ghosted on shared facets; the
            solver is collective over ``mesh.comm``.
        degree: the DG degree k (1, 2, 3).
        num_components: K, the number of components of u (one per class).
        cfl: Courant number: dt ≤ cfl · h_min / ((2k + 1) max|v_h|).
        dt: if given, a forced maximal time step; it must respect the CFL bound.
        checkpoint_every: keep the state at the start of every n-th step (n >= 1) for an
            adjoint, in a solve with ``keep``.
        stage_memory: bytes per rank for keeping what the adjoint reads back: the RK stage
            states of steps (else it recomputes them from the checkpoints), and Lᵀ of the time
            pieces whose stages all fit besides (else it re-assembles L and transposes it).
            None: ``AUTO_STAGE_SHARE`` of the memory available to each rank, measured when
            the first solve that keeps a trajectory starts (what is kept is then reused).
        viscosity: ε ≥ 0 of ∂t u + v·∇u + εΔu = 0 (SIPG, Neumann walls; see
            ``diffusion_integrand``). The constant −ε M⁻¹S is added to L at every assembly, so
            the step, the adjoint (Lᵀ) and the velocity derivative (S does not depend on v)
            are those of the inviscid solver; the step also obeys the explicit diffusion
            bound (``max_dt``). 0 leaves the solver exactly as without it.
    """

    # The most time steps of one solve (None: no limit), set from solver.max_steps: a solve
    # that needs more raises UnstableSolve before it steps (training backs off from the trial).
    max_steps: int | None = None

    def __init__(
        self,
        mesh: dmesh.Mesh,
        *,
        degree: int = 1,
        num_components: int = 1,
        cfl: float = SolverConfig.cfl,
        dt: float | None = SolverConfig.dt,
        checkpoint_every: int = SolverConfig.checkpoint_every,
        stage_memory: int | None = None,
        viscosity: float = 0.0,
    ):
        viscosity = validate.number("field.viscosity", viscosity, low=0.0)
        if degree not in (1, 2, 3):
            raise InputError(f"DG degree must be 1, 2 or 3, got {degree}")
        if not cfl > 0:
            raise InputError(f"cfl must be > 0, got {cfl}")
        if dt is not None and not dt > 0:
            raise InputError(f"forced time step dt must be > 0, got {dt}")
        if mesh.geometry.cmaps[0].degree != 1 or mesh.topology.cell_type not in (
            dmesh.CellType.triangle,
            dmesh.CellType.tetrahedron,
        ):
            raise InputError("the transport solver needs an affine triangle or tetrahedron mesh")
        self.comm = mesh.comm
        self.mesh = mesh
        self.degree = degree
        self.num_components = num_components
        self.cfl = cfl
        self.dt = dt
        self.checkpoint_every = validate.integer("checkpoint_every", checkpoint_every, low=1)
        self.stage_memory = stage_memory
        self.dim = mesh.geometry.dim

        self.V = dg_space(mesh, degree)
        self.Vv = velocity_space(mesh, degree)
        self.velocity = fem.Function(self.Vv, name="velocity")
        # Velocity dofs are point values at these coordinates (Lagrange): v_h = I_h v exactly,
        # and the chain rule through θ (the adjoint) is a VJP at the same points.
        self.velocity_points = self.Vv.tabulate_dof_coordinates()[:, : self.dim].copy()

        tdim = mesh.topology.dim
        mesh.topology.create_entities(tdim - 1)
        mesh.topology.create_connectivity(tdim - 1, tdim)
        self.h_min = min_cell_size(mesh)

        self.quadrature_degree = 3 * degree
        metadata = {"quadrature_degree": self.quadrature_degree}
        self.dx = ufl.Measure("dx", domain=mesh, metadata=metadata)
        self.dS = ufl.Measure("dS", domain=mesh, metadata=metadata)
        u, phi = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        # L = −M⁻¹A: assemble −A, then scale rows by the inverse of the diagonal mass.
        self.operator_form = fem.form(operator_integrand(self.velocity, u, phi, self.dx, self.dS))
        self.L = dolfinx.fem.petsc.create_matrix(self.operator_form)
        # PETSc's inode MatMult (chosen for the identical rows of a DG cell) was 2–3× slower than
        # the plain one here (peaks' 13³ box, SeqAIJ, medians of 50: DG1 1.4–1.8 ms against
        # 0.58 ms, DG2 12.3 against 6.3–6.9 ms). The solver's steps use MatMatMult, which has no
        # inode variant; this keeps L.mult (tests, benchmarks' reference product) fast too.
        self.L.setOption(PETSc.Mat.Option.USE_INODES, False)
        self.inverse_mass = _inverse_diagonal_mass(u * phi * self.dx)
        self.viscosity = viscosity
        # −ε M⁻¹S, constant: added to L after each assembly (same sparsity: cells and their
        # facet neighbours). Its ∞-norm bounds its spectral radius, the explicit step's limit.
        self.diffusion, self.diffusion_rate = None, 0.0
        if viscosity > 0:
            self.diffusion = dolfinx.fem.petsc.assemble_matrix(
                fem.form(diffusion_integrand(u, phi, self.dx, self.dS, degree))
            )
            self.diffusion.assemble()
            self.diffusion.scale(-viscosity)
            self.diffusion.diagonalScale(L=self.inverse_mass)
            self.diffusion_rate = self.diffusion.norm(PETSc.NormType.INFINITY)

        self._blocks: dict[str, Block] = {}  # state, stage and product blocks, made on first use
        self._velocity_at = self._operator_at = None  # (field, t) of v_h and of L
        self._stage_pool: list[np.ndarray] = []  # Trajectory.stages of the last solve
        self._operator_pool: list[PETSc.Mat] = []  # Trajectory.operators of the last solve
        self._operator_bytes: int | None = None  # of one Lᵀ, the largest rank's (made on first use)
        self._kept_bytes = 0  # of this solve's kept operators
        self.num_owned = self.V.dofmap.index_map.size_local
        self.num_dofs_global = self.V.dofmap.index_map.size_global
        # Whether a step's stages are kept must be decided alike on every rank (the adjoint
        # recomputes the others collectively): budget by the largest rank's share.
        self._max_owned = self.comm.allreduce(self.num_owned, op=MPI.MAX)

    # --- velocity and operator -------------------------------------------------------------

    def set_velocity(self, field, t: float) -> float:
        """Interpolate v(t, ·) into v_h and return the global max |v_h| at its nodes (collective)."""
        values = np.asarray(field(t, self.velocity_points), dtype=np.float64)
        self.velocity.x.array[:] = values.ravel()
        self._velocity_at = (field, t)
        speed = np.linalg.norm(values, axis=1).max() if len(values) else 0.0
        return self.comm.allreduce(speed, op=MPI.MAX)

    def assemble_operator(self) -> None:
        """L = −M⁻¹A(v_h) for the current v_h (collective)."""
        self._operator_at = self._velocity_at
        self.L.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(self.L, self.operator_form)
        self.L.assemble()
        self.L.diagonalScale(L=self.inverse_mass)
        if self.diffusion is not None:
            self.L.axpy(1.0, self.diffusion, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)

    def operator_is_current(self) -> bool:
        """Whether L was assembled for the v_h set last (the same field object and time)."""
        a, b = self._operator_at, self._velocity_at
        return a is not None and b is not None and a[0] is b[0] and a[1] == b[1]

    def max_dt(self, speed: float) -> float:
        """The largest step the CFL bound allows at max |v_h| = ``speed``.

        With viscosity, the rates add: dt ≤ cfl / ((2k + 1) max|v_h| / h_min + ‖εM⁻¹S‖∞ / 2),
        the second the explicit diffusion limit (dt ≲ h²/ε; ``RK3_REAL_STABILITY``).
        """
        if self.diffusion_rate == 0.0:  # inviscid: the formula as it always was, to the bit
            if speed == 0.0:
                return np.inf
            return self.cfl * self.h_min / ((2 * self.degree + 1) * speed)
        rate = (2 * self.degree + 1) * speed / self.h_min + self.diffusion_rate / RK3_REAL_STABILITY
        return self.cfl / rate

    def _check_dt(self, dt: float, speed: float, slack: float = 1.0) -> None:
        bound = self.max_dt(speed)
        if dt > slack * bound * (1 + 1e-12):
            raise UnstableSolve(
                f"forced time step dt={dt:g} breaks the CFL bound dt <= {bound:.4g} "
                f"(cfl={self.cfl:g}, h_min={self.h_min:.4g}, degree={self.degree}, "
                f"max|v|={speed:.4g}, viscosity={self.viscosity:g})"
            )

    def _steps_for(self, length: float, speed: float) -> int:
        bound = self.max_dt(speed)
        if self.dt is not None:
            self._check_dt(self.dt, speed)
            return max(1, math.ceil(length / self.dt - 1e-9))
        if not np.isfinite(bound):
            return 1
        return max(1, math.ceil(length / bound - 1e-9))

    def _check_steps(self, steps: int, speed: float) -> None:
        """UnstableSolve if a solve would take more than ``max_steps`` time steps."""
        if self.max_steps is not None and steps > self.max_steps:
            raise UnstableSolve(
                f"the solve needs more than solver.max_steps = {self.max_steps} time steps "
                f"({steps} so far, max|v| = {speed:.4g})"
            )

    # --- time stepping ---------------------------------------------------------------------

    def block(self, name: str, K: int) -> Block:
        """The solver's work block ``name`` with K columns (made on first use, kept)."""
        b = self._blocks.get(name)
        if b is None or b.K != K:
            if b is not None:
                b.destroy()
            b = self._blocks[name] = Block(self.comm, self.num_owned, self.num_dofs_global, K)
        return b

    def rk3_step(self, u: Block, dt: float, record: np.ndarray | None = None) -> None:
        """One SSP-RK3 step u ← u + dt L u of all K columns of ``u`` (in place).

        Three products L·U, each one MatMatMult for all K components.

        Args:
            u: the K components (a block of this solver, see ``block``).
            dt: the step in τ.
            record: if given, shape=(3, K, n_owned), filled with the stage states (u, u₁, u₂).
        """
        K = u.K
        u1, u2 = self.block("u1", K), self.block("u2", K)
        U, U1, U2 = u.rows, u1.rows, u2.rows
        np.multiply(u.product(self.L), dt, out=U1)
        U1 += U  # u1 = u + dt L u
        if record is not None:
            record[0] = U
            record[1] = U1
        Y = u1.product(self.L)
        Y *= dt
        Y += U1
        Y *= 0.25
        np.multiply(U, 0.75, out=U2)
        U2 += Y  # u2 = 3/4 u + 1/4 (u1 + dt L u1)
        if record is not None:
            record[2] = U2
        Y = u2.product(self.L)
        Y *= dt
        Y += U2
        Y *= 2.0 / 3.0
        U *= 1.0 / 3.0
        U += Y  # u = 1/3 u + 2/3 (u2 + dt L u2)

    def terminal_values(self, terminal) -> np.ndarray:
        """Interpolate f into the DG space: owned coefficients, shape=(K, n_owned) (collective)."""
        d = self.dim
        K = self.num_components
        fh = fem.Function(self.V)
        cache: dict[str, np.ndarray] = {}

        def component(c):
            def evaluate(x):
                key = x.tobytes()
                if cache.get("key") != key:
                    values = np.asarray(terminal(x[:d].T), dtype=np.float64).reshape(x.shape[1], -1)
                    if values.shape[1] != K:
                        raise InputError(
                            f"terminal function has {values.shape[1]} components, the solver "
                            f"expects {K}"
                        )
                    cache["key"], cache["values"] = key, values
                return cache["values"][:, c]

            return evaluate

        values = np.empty((K, self.num_owned))
        for c in range(K):
            fh.interpolate(component(c))
            values[c] = fh.x.array[: self.num_owned]
        if self.comm.allreduce(int(not np.all(np.isfinite(values))), op=MPI.SUM):
            raise InputError("terminal function f returned non-finite values on the mesh")
        return values

    @staticmethod
    def time_pieces(field) -> np.ndarray:
        """Times 0 = t_0 < … < t_L = T of the pieces on which v does not depend on t.

        Raises:
            InputError: for a field that varies continuously in t (``pieces()`` is None).
        """
        pieces = field.pieces()
        if pieces is None:
            raise InputError(
                "the transport solver needs a velocity constant in time on pieces (θ constant "
                "on slabs); this field varies continuously in t"
            )
        return np.asarray(pieces, dtype=np.float64)

    def solve(
        self, field, terminal, frozen_steps: list[int] | None = None, keep: bool = True
    ) -> ForwardResult:
        """u_h(0, ·) from u(T) = f (collective).

        Args:
            field: the velocity, a ``velocity.Field`` constant in time on its pieces (called at
                the velocity nodes).
            terminal: f, a vectorized callable x (shape=(n, d)) -> (n, K).
            frozen_steps: if given, the number of steps on each time piece (in increasing
                t) instead of the CFL choice: frozen, e.g. inside a Taylor test, where a step
                count that jumps with θ would make J non-smooth. Still checked against the
                CFL bound.
            keep: keep the checkpoints and stage states an adjoint needs (False: a value only).

        Returns:
            The K components of u_h(0, ·), and the trajectory a later adjoint needs.

        Raises:
            UnstableSolve: a step beyond the CFL bound, or a solution that blew up.
        """
        if field.dim != self.dim:
            raise InputError(f"velocity field has dimension {field.dim}, the mesh {self.dim}")
        pieces = self.time_pieces(field)
        f = self.terminal_values(terminal)
        state = self.block("u", len(f))
        state.rows[:] = f
        if keep and self.stage_memory is None:
            self.stage_memory = int(AUTO_STAGE_SHARE * available_memory(self.comm))
            log.debug("stage memory: %.0f MiB per rank", self.stage_memory / 2**20)
        trajectory = Trajectory(
            times=None, piece_of_step=[], checkpoint_every=self.checkpoint_every if keep else 0
        )
        taus = [0.0]  # τ = T − t at the step starts
        self._kept_bytes = 0
        steps_per_piece, dt_per_piece, speeds = [], [], []
        for j in reversed(range(len(pieces) - 1)):  # backward in t: the last piece first
            frozen = None if frozen_steps is None else int(frozen_steps[j])
            n_steps, dt, speed = self._prepare_piece(field, pieces[j], pieces[j + 1], frozen)
            self._check_steps(len(trajectory.piece_of_step) + n_steps, speed)
            if keep:
                self._keep_operator(trajectory, j, n_steps)
            self._march(state, j, n_steps, dt, trajectory, taus, keep)
            steps_per_piece.append(n_steps)
            dt_per_piece.append(dt)
            speeds.append(speed)
        trajectory.times = pieces[-1] - np.asarray(taus)
        trajectory.piece_of_step = np.asarray(trajectory.piece_of_step)
        u0 = self._functions(state)
        self._check_growth(u0, f)
        log.debug(
            "forward: %d steps on %d pieces, dofs %d x %d components",
            trajectory.num_steps, len(pieces) - 1, self.num_dofs_global, self.num_components,
        )
        return ForwardResult(u0, trajectory, steps_per_piece[::-1], dt_per_piece[::-1], speeds[::-1])

    def _prepare_piece(
        self, field, t_start: float, t_end: float, frozen: int | None
    ) -> tuple[int, float, float]:
        """Set v_h and L for the piece [t_start, t_end]; its step count, step and max |v_h|."""
        speed = self.set_velocity(field, 0.5 * (t_start + t_end))
        self.assemble_operator()
        if frozen is None:
            n_steps = self._steps_for(t_end - t_start, speed)
        else:
            n_steps = frozen
            # A frozen count chosen at nearby θ may miss the bound by a little; RK3 stayed
            # stable to twice the default Courant number (measured), so allow 1.5×.
            self._check_dt((t_end - t_start) / n_steps, speed, slack=1.5)
        return n_steps, (t_end - t_start) / n_steps, speed

    def _march(
        self, state: Block, piece: int, n_steps: int, dt: float, trajectory: Trajectory,
        taus: list[float], keep: bool,
    ) -> None:
        """``n_steps`` steps of ``dt`` on one piece: their pieces and τ appended to
        ``trajectory`` and ``taus``, their checkpoints and stage states kept if ``keep``."""
        for i in range(n_steps):
            step = len(trajectory.piece_of_step)
            record = None
            if keep:
                # Every piece starts with a checkpoint, so that recomputation from one never
                # crosses into a piece with another operator.
                if step % self.checkpoint_every == 0 or i == 0:
                    trajectory.states[step] = state.rows.copy()
                record = self._stage_buffer(trajectory.stages, state.K)
                if record is not None:
                    trajectory.stages[step] = record
            self.rk3_step(state, dt, record)
            taus.append(taus[-1] + dt)
            trajectory.piece_of_step.append(piece)

    def _stage_buffer(self, kept: dict[int, np.ndarray], K: int) -> np.ndarray | None:
        """A (3, K, n_owned) buffer for the stage states of the next step while ``stage_memory``
        holds one more besides those ``kept``, else None.

        Buffers are reused from solve to solve (measured: fresh arrays for every step cost a
        third of a forward solve in page faults and frees).
        """
        if (len(kept) + 1) * 3 * K * self._max_owned * 8 + self._kept_bytes > self.stage_memory:
            return None
        i = len(kept)
        if i == len(self._stage_pool) or self._stage_pool[i].shape[1] != K:
            self._stage_pool[i:] = [np.empty((3, K, self.num_owned))]
        return self._stage_pool[i]

    def operator_bytes(self) -> int:
        """The memory of one kept Lᵀ on the rank with the most (collective on first call)."""
        if self._operator_bytes is None:
            info = self.L.getInfo(PETSc.Mat.InfoType.LOCAL)
            local = int(info["nz_allocated"]) * 12 + (self.num_owned + 1) * 4  # values, columns, rows
            self._operator_bytes = self.comm.allreduce(local, op=MPI.MAX)
        return self._operator_bytes

    def _keep_operator(self, trajectory: Trajectory, piece: int, n_steps: int) -> None:
        """Keep Lᵀ of the current piece for the adjoint if ``stage_memory`` holds it and the
        stage states of all the piece's ``n_steps`` steps besides what is kept already; decided
        alike on every rank (collective).

        Only then does it save the adjoint the assembly of L (a piece whose stages are
        recomputed needs L again): measured, keeping Lᵀ at the expense of stage states made a
        DG2 gradient slower (peaks 13³: 3.90 forward solves against 3.46).
        """
        step_bytes = 3 * self.num_components * self._max_owned * 8
        kept_stages = len(trajectory.stages) * step_bytes
        if kept_stages + self._kept_bytes + self.operator_bytes() + n_steps * step_bytes > self.stage_memory:
            return
        i = len(trajectory.operators)
        # MAT_REUSE_MATRIX from the second solve on: the pattern of L never changes.
        reuse = self._operator_pool[i] if i < len(self._operator_pool) else PETSc.Mat()
        transpose = self.L.transpose(reuse)
        self._operator_pool[i:i + 1] = [transpose]
        trajectory.operators[piece] = transpose
        trajectory.operator_bytes += self._operator_bytes
        self._kept_bytes += self._operator_bytes

    def accumulate_ghosts(self, local: np.ndarray) -> np.ndarray:
        """The owned part of local values (shape=(n_local,)) such as Pᵀr, shape=(n_owned,): a point
        evaluator touches owned DG dofs only (``PointEvaluator``), so the ghosts hold nothing to add
        (the semi-Lagrangian solver's continuous space needs the addition)."""
        return local[: self.num_owned]

    def _functions(self, state: Block) -> list[fem.Function]:
        """The K columns of ``state`` as DG functions, ghosts updated."""
        functions = []
        for c in range(state.K):
            uh = fem.Function(self.V, name=f"u{c}")
            uh.x.array[: self.num_owned] = state.rows[c]
            uh.x.scatter_forward()
            functions.append(uh)
        return functions

    def _check_growth(self, u0: list[fem.Function], f: np.ndarray) -> None:
        """Raise UnstableSolve if max|u_h(0)| is far beyond max|f| (collective).

        The exact solution obeys a maximum principle, max|u(0)| <= max|f|, and the
        coefficients of the orthonormal basis are of the size of the values: DG overshoots a
        little, an unstable step by orders of magnitude (measured: RK3 blew up at cfl = 2.5
        for k = 1, 2 and at 2.0 for k = 3 in this normalization, and was stable at 2.0, 1.6).
        """
        terminal_max = self.comm.allreduce(float(np.max(np.abs(f), initial=0.0)), op=MPI.MAX)
        growth = self.comm.allreduce(
            max(float(np.max(np.abs(u.x.array), initial=0.0)) for u in u0), op=MPI.MAX
        )
        if not np.isfinite(growth) or growth > 10.0 * terminal_max + 1e-12:
            raise UnstableSolve(
                f"the transport solve is unstable (max|u(0)| = {growth:.3g} against "
                f"max|f| = {terminal_max:.3g}); reduce cfl={self.cfl:g} or the forced dt"
            )

    def destroy(self) -> None:
        """Free the PETSc objects this solver owns."""
        self.L.destroy()
        self.inverse_mass.destroy()
        if self.diffusion is not None:
            self.diffusion.destroy()
        for b in self._blocks.values():
            b.destroy()
        self._blocks.clear()
        for m in self._operator_pool:
            m.destroy()
        self._operator_pool.clear()


def _inverse_diagonal_mass(mass: ufl.Form) -> PETSc.Vec:
    """The inverse of the diagonal of the assembled ``mass`` form, checked to be diagonal.

    The Legendre basis is orthonormal on the reference cell, so the DG mass matrix is diagonal
    on affine cells; check rather than assume.
    """
    M = dolfinx.fem.petsc.assemble_matrix(fem.form(mass))
    M.assemble()
    inverse = M.createVecLeft()
    M.getDiagonal(inverse)
    off = M.copy()
    off.setDiagonal(inverse * 0.0)
    off_norm, diag_min = off.norm(PETSc.NormType.INFINITY), inverse.min()[1]
    off.destroy()
    M.destroy()
    if off_norm > 1e-10 * inverse.max()[1]:
        raise RuntimeError(f"DG mass matrix is not diagonal (off-diagonal norm {off_norm:.3e})")
    assert diag_min > 0
    inverse.reciprocal()
    return inverse
