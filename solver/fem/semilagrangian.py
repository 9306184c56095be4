"""The terminal-value transport problem (eq. 1) by semi-Lagrangian steps, with its exact discrete
adjoint.

On a slab [t_j, t_{j+1}] θ is constant, so v does not depend on t and the solution is carried
along the slab's flow map Φ_j (x' = v(x) from t_j to t_{j+1}):

    u(t_j, x) = u(t_{j+1}, Φ_j(x)).

The scheme: u_h lives in continuous P_k (Lagrange). A step spans slabs j0 … j1 − 1: the nodes x_n
are traced through their flow maps by classical RK4 substeps, slab after slab (the departure
points X_n = Φ_{j1−1,h} ∘ … ∘ Φ_{j0,h}(x_n)), and u_h(t_{j0}) takes the values there of

- f itself, for the step that ends at T: u_h(t_{j0}, x_n) = f(X_n), no interpolation;
- the previous step's u_h otherwise, located across ranks (``fem/pointeval.py``) and
  interpolated: u_{j0} = S u_{j1}, S[n, :] = the basis functions at X_n.

The step is not bound by the CFL condition, and a local refinement costs only its own nodes.

Choices, measured:

- **One step from T to 0** (``slabs_per_step`` None, ``solver.slabs_per_step = "all"``, the
  default). The same error against the characteristics as a step per slab, at a fraction of
  the cost: the nodes' paths are traced either way, but the one step locates no departure
  point and sends no message but one ghost update (``python -m scripts.bench_substeps RUN
  --cells 8,16,32 --rotations 1 --slabs-per-step all,1,2`` on a trained moons run: the max
  logit difference to the characteristics and the seconds of a forward solve per row). u_h(0)
  is then the interpolant of f ∘ Φ_h, and the states between T and 0 are not computed; the
  pictures of a run (``rundir/outputs.py``) solve with a step per slab for them.
- **Continuous P_k, nodal interpolation.** u_h is continuous, so J depends continuously on θ
  even where a departure point or a data point crosses a facet: with a discontinuous u_h it
  would jump there. ∇u_h jumps across facets, so J is piecewise smooth (a kink where a point
  crosses a facet): the Taylor remainder still falls at order 2 for small steps, as for a ReLU
  network, since the share of points that cross a facet within a step ε is O(ε).
- **Substeps.** RK4 on each slab with n = ⌈|slab| · Lip(v) / ``SUBSTEP_ROTATION``⌉ substeps,
  Lip(v) the largest Jacobian norm of v at the nodes (central differences): a substep turns the
  flow by at most ``SUBSTEP_ROTATION``. It does not depend on the mesh.
- **The adjoint.** With λ = ∂J/∂u_{j0} at the nodes: the departure points receive the cotangent
  Σ_c λ_c[n] ∇u_{j1,c}(X_n) (∇f = A for the step from T, f = A x + b: ``fem/affine.Affine``),
  carried back through the RK4 substeps of each slab (reverse mode; ``VelocityModel.slab_vjp``
  gives the θ- and point-cotangents of each stage); λ moves on as Sᵀ λ (the transpose sends
  values back to the ranks that own the cells, then adds ghost entries to their owners). The
  step from T hands back (X, λ): ∂J/∂A = λ X, ∂J/∂b = Σ_n λ_n.
- **Parallel.** Each rank traces its owned nodes; a departure point may lie in another rank's
  cell: the point evaluator sends it there and the value back (one Alltoallv per product).
"""

from __future__ import annotations

import math

import numpy as np
from dolfinx import fem
from dolfinx import la
from dolfinx import mesh as dmesh
from mpi4py import MPI

from solver.errors import InputError, UnstableSolve
from solver.owned import Owned
from solver.fem.mesh import min_cell_size
from solver.fem.pointeval import PointEvaluator
from solver.fem.transport import ForwardResult, TransportSolver, Trajectory, velocity_space

# The most a substep may turn the flow: h · max‖∇v‖ ≤ SUBSTEP_ROTATION (see the module doc).
# The tracing error is far below the interpolation's (``scripts/bench_substeps.py RUN``: on
# trained moons and peaks fields the max logit difference to the characteristics was the same to
# 3 digits at 1.0 and at 0.1, with 5× the substeps).
SUBSTEP_ROTATION = 1.0

# The most memory (bytes per rank) a solve keeps of the velocity's hidden layer at the RK4 stages
# for its adjoint, which then skips z = W1 Y + b1, a(z) and χ(Y) there (the most of a stage's
# vector-Jacobian product, measured: python -m scripts.bench_gradient --cases ... --scheme sl);
# stages beyond it are recomputed.
HIDDEN_MEMORY = 256 * 2**20

# RK4's stage offsets and weights.
_RK4_NODES = (0.0, 0.5, 0.5, 1.0)
_RK4_WEIGHTS = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)


class SemiLagrangianSolver(Owned):
    """Solves ∂t u + v·∇u = 0, u(T) = f backward in time by semi-Lagrangian steps of
    ``slabs_per_step`` slabs (collective over ``mesh.comm``), for K components sharing the
    departure points.

    The interface is ``TransportSolver``'s (``solve`` → ``ForwardResult``), so the learning
    problem, the certification and the outputs run on either.

    Args:
        mesh: an affine simplex mesh of an invariant domain Ω.
        degree: k of the continuous P_k space (1, 2, 3).
        num_components: K.
        substep_rotation: the substep rule's bound on h · max‖∇v‖.
        viscosity: must be 0 (the stochastic characteristics of a viscous run need ``rk3``).
        slabs_per_step: the slabs one step spans (the departure points are traced through all
            of them before one interpolation); None: all, one step from T to 0.
    """

    scheme = "sl"
    max_steps: int | None = None  # the most substeps of one slab (solver.max_steps)
    # The state at the start of every slab's step is kept (``TransportSolver``'s attribute: the
    # outputs set it to thin a long trajectory; here there is one state per slab).
    checkpoint_every = 1

    def __init__(self, mesh: dmesh.Mesh, *, degree: int = 1, num_components: int = 1,
                 substep_rotation: float = SUBSTEP_ROTATION, viscosity: float = 0.0,
                 slabs_per_step: int | None = None):
        if degree not in (1, 2, 3):
            raise InputError(f"the semi-Lagrangian degree must be 1, 2 or 3, got {degree}")
        if viscosity:
            raise InputError(f'solver.scheme = "sl" transports without viscosity (field.viscosity = '
                             f'{viscosity:g}); use solver.scheme = "rk3"')
        if not substep_rotation > 0:
            raise InputError(f"substep_rotation must be > 0, got {substep_rotation}")
        self.comm = mesh.comm
        self.mesh = mesh
        self.degree = degree
        self.num_components = num_components
        if slabs_per_step is not None and not (isinstance(slabs_per_step, (int, np.integer)) and slabs_per_step >= 1):
            raise InputError(f"slabs_per_step must be a positive integer or None (all), got {slabs_per_step!r}")
        self.substep_rotation = substep_rotation
        self.slabs_per_step = slabs_per_step
        self.viscosity = 0.0
        self.dim = mesh.geometry.dim
        self.V = fem.functionspace(mesh, ("Lagrange", degree))
        self.Vv = velocity_space(mesh, degree)  # for the kinetic and roughness energies
        self.velocity_points = self.Vv.tabulate_dof_coordinates()[:, : self.dim].copy()
        index_map = self.V.dofmap.index_map
        self.num_owned = index_map.size_local
        self.num_local = index_map.size_local + index_map.num_ghosts
        self.num_dofs_global = index_map.size_global
        self.nodes = self.V.tabulate_dof_coordinates()[:, : self.dim].copy()  # owned, then ghosts
        tdim = mesh.topology.dim
        mesh.topology.create_entities(tdim - 1)
        mesh.topology.create_connectivity(tdim - 1, tdim)
        self.h_min = min_cell_size(mesh)
        self._works = {}  # k → a vector of block size k: owned values → ghosts, ghosts → owners

    # --- the substep rule --------------------------------------------------------------------

    def lipschitz(self, field, t: float) -> float:
        """max over the owned nodes of ‖∇v(t, x_n)‖_F: the field's ``jacobian`` if it has one,
        else central differences (collective)."""
        x = self.nodes[: self.num_owned]
        if hasattr(field, "jacobian"):
            total = np.sum(field.jacobian(t, x) ** 2, axis=(1, 2))
        else:
            delta = 1e-6 * max(self.h_min, 1e-12)
            total = np.zeros(len(x))
            for i in range(self.dim):
                step = np.zeros(self.dim)
                step[i] = delta
                column = (field(t, x + step) - field(t, x - step)) / (2 * delta)
                total += np.sum(column * column, axis=1)
        local = float(np.sqrt(total.max())) if len(x) else 0.0
        return self.comm.allreduce(local, op=MPI.MAX)

    def substeps_for(self, field, t_start: float, t_end: float) -> int:
        """RK4 substeps on the slab [t_start, t_end] (collective)."""
        rate = self.lipschitz(field, 0.5 * (t_start + t_end))
        return max(1, math.ceil((t_end - t_start) * rate / self.substep_rotation - 1e-9))

    # --- tracing -----------------------------------------------------------------------------

    @staticmethod
    def trace(field, t: float, x: np.ndarray, length: float, substeps: int,
              stages: list | None = None, hidden: bool = False) -> np.ndarray:
        """Φ(x): RK4 with ``substeps`` steps of x' = v(t, x) over ``length`` (v steady at t).

        ``stages``: if a list, (Y, H) of every stage of every substep are appended, 4 per
        substep, for the adjoint: the stage points Y (shape=(n, d)) and, if ``hidden`` and the
        field has ``evaluate_keeping``, its hidden layer there (else None), which the adjoint
        then does not recompute.
        """
        h = length / substeps
        y = x.copy()
        keeping = hidden and stages is not None and hasattr(field, "evaluate_keeping")
        for _ in range(substeps):
            k_prev = None
            increment = np.zeros_like(y)
            for c, w in zip(_RK4_NODES, _RK4_WEIGHTS):
                point = y if k_prev is None else y + (c * h) * k_prev
                if keeping:
                    k_prev, layer = field.evaluate_keeping(t, point)
                else:
                    k_prev, layer = field(t, point), None
                if stages is not None:
                    stages.append((point, layer))
                increment += w * k_prev
            y = y + h * increment
        return y

    @staticmethod
    def trace_back(slab_vjp, stages: list, length: float, substeps: int, g: np.ndarray):
        """Reverse mode through ``trace``: the point cotangent at x and the θ-cotangent, from
        ``g`` = ∂J/∂Φ(x) (shape=(n, d)). ``slab_vjp(Y, k̄, H)`` → (θ-grad, point-grad) of
        Σ k̄·v(Y), H the hidden layer at Y that ``trace`` kept (or None)."""
        h = length / substeps
        theta = 0.0
        for s in reversed(range(substeps)):
            Y = stages[4 * s : 4 * s + 4]
            kbar = [w * h * g for w in _RK4_WEIGHTS]  # y_{s+1} = y_s + h Σ w_c k_c
            ybar = g.copy()
            for c in (3, 2, 1, 0):
                gt, gy = slab_vjp(*Y[c], kbar[c])  # k_c = v(Y_c), Y_c = y_s + c h k_{c−1}
                theta = theta + gt
                ybar += gy
                if c:
                    kbar[c - 1] = kbar[c - 1] + (_RK4_NODES[c] * h) * gy
            g = ybar
        return g, theta

    # --- the solve ---------------------------------------------------------------------------

    def terminal_values(self, terminal) -> np.ndarray:
        """f at the nodes (owned and ghosts): shape=(K, n_local) (collective)."""
        return np.ascontiguousarray(self._terminal_at(terminal, self.nodes).T)

    def steps(self, slabs: int) -> list[tuple[int, int]]:
        """The semi-Lagrangian steps as slab ranges [j0, j1), in the order of the solve: the
        first ends at T (``slabs_per_step`` slabs each; the last takes what is left)."""
        per = slabs if self.slabs_per_step is None else min(int(self.slabs_per_step), slabs)
        ends = list(range(slabs, 0, -per))
        return [(max(end - per, 0), end) for end in ends]

    def solve(self, field, terminal, frozen_steps: list[int] | None = None,
              keep: bool = True, nodes: np.ndarray | None = None) -> ForwardResult:
        """u_h(0, ·) from u(T) = f (collective); ``TransportSolver.solve``'s arguments, with
        ``frozen_steps`` the RK4 substeps of each slab.

        ``nodes``: with one step from T to 0, trace only these owned nodes (a mask, shape=
        (n_owned,), e.g. ``read_nodes`` of the evaluators that will read u_h(0)); the others'
        values are NaN. Each node's value is f at its own traced end, so the nodes read are all
        that need tracing. Ignored with several steps (they interpolate between them).

        The step that ends at T takes f at its departure points itself (f is a function, not
        yet an interpolant); each later step interpolates the previous one's u_h. An adjoint
        needs f's Jacobian there: ``terminal.matrix`` of an affine terminal (``fem/affine.py``).
        """
        if field.dim != self.dim:
            raise InputError(f"velocity field has dimension {field.dim}, the mesh {self.dim}")
        pieces = TransportSolver.time_pieces(field)
        slabs = len(pieces) - 1
        if frozen_steps is not None and len(frozen_steps) != slabs:
            raise InputError(f"frozen_steps has {len(frozen_steps)} entries for {slabs} slabs")
        f_max = None
        trajectory = Trajectory(times=None, piece_of_step=[], checkpoint_every=1 if keep else 0)
        substeps = [0] * slabs
        owned = self.nodes[: self.num_owned]
        u = None  # u_h at the end of the current step (K, n_local); None at T
        times = []
        steps = self.steps(slabs)
        kept = 0  # bytes of hidden layers kept for the adjoint
        active = None if nodes is None or len(steps) > 1 else np.flatnonzero(nodes)
        for j0, j1 in steps:
            departure, stages = (owned if u is not None or active is None else owned[active]), {}
            for j in range(j0, j1):  # forward in t through the step's slabs: X = Φ_{j1−1} ∘ … ∘ Φ_{j0}(x)
                t0, t1 = pieces[j], pieces[j + 1]
                n = self.substeps_for(field, t0, t1) if frozen_steps is None else int(frozen_steps[j])
                if self.max_steps is not None and n > self.max_steps:
                    raise UnstableSolve(f"a slab needs {n} substeps, more than solver.max_steps = "
                                        f"{self.max_steps}")
                stages[j] = [] if keep else None
                # The hidden layers of the stages for the adjoint while they fit in HIDDEN_MEMORY.
                size = 4 * n * len(departure) * getattr(getattr(field, "model", None), "width", 0) * 8
                hidden = keep and kept + size <= HIDDEN_MEMORY
                kept += size if hidden else 0
                departure = self.trace(field, 0.5 * (t0 + t1), departure, t1 - t0, n, stages[j], hidden)
                substeps[j] = n
            if u is None:  # from T: f itself at the departure points
                values, evaluator = self._terminal_at(terminal, departure), None
                f_max = self.comm.allreduce(float(np.max(np.abs(values), initial=0.0)), op=MPI.MAX)
                if active is not None:  # the nodes not traced: NaN, never read
                    traced, values = values, np.full((self.num_owned, values.shape[1]), np.nan)
                    values[active] = traced
                if keep:
                    trajectory.states[0] = self.terminal_values(terminal)[:, : self.num_owned]
            else:
                evaluator = PointEvaluator(self.V, departure, "departure points", report=False, gradient=keep,
                                           continuous=True)
                if keep:
                    trajectory.states[len(times)] = u[:, : self.num_owned].copy()
                values = evaluator(u.T)  # the K components in one message
            if keep:
                trajectory.departures[j0] = (evaluator, stages, u, departure, terminal, active)
            times.append(pieces[j1])
            last = values if active is None else values[active]
            u = self._ghosted(np.ascontiguousarray(values.T))
            trajectory.piece_of_step.append(j0)
        trajectory.times = np.array(times + [pieces[0]])  # t at the start of each step, then 0
        trajectory.piece_of_step = np.asarray(trajectory.piece_of_step)
        growth = self.comm.allreduce(float(np.max(np.abs(last), initial=0.0)), op=MPI.MAX)
        if not np.isfinite(growth) or growth > 10.0 * f_max + 1e-12:
            raise UnstableSolve(f"the semi-Lagrangian solve is unstable (max|u(0)| = {growth:.3g} "
                                f"against max|f| = {f_max:.3g})")
        u0 = []
        for c in range(len(u)):
            uh = fem.Function(self.V, name=f"u{c}")
            uh.x.array[:] = u[c]
            u0.append(uh)
        lengths = list(np.diff(pieces))
        return ForwardResult(u0, trajectory, substeps, lengths, [0.0] * slabs)

    def read_nodes(self, *evaluators: PointEvaluator) -> np.ndarray:
        """The owned nodes whose values the evaluators' products read (the dofs of the cells
        holding their points, on any rank), a mask of shape=(n_owned,) (collective)."""
        local = np.zeros(self.num_local)
        for evaluator in evaluators:
            local[evaluator.P.indices] = 1.0
        return self.accumulate_ghosts(local) > 0.0

    def _terminal_at(self, terminal, points: np.ndarray) -> np.ndarray:
        """f at this rank's ``points`` (shape=(n, d)), shape=(n, K) (collective: the checks)."""
        values = np.asarray(terminal(points), dtype=np.float64).reshape(len(points), -1)
        if values.shape[1] != self.num_components:
            raise InputError(f"terminal function has {values.shape[1]} components, the solver "
                             f"expects {self.num_components}")
        if self.comm.allreduce(int(not np.all(np.isfinite(values))), op=MPI.SUM):
            raise InputError("terminal function f returned non-finite values on the mesh")
        return values

    def _work(self, k: int) -> la.Vector:
        """A vector of block size k on V's index map (one scatter for k values per node)."""
        if k not in self._works:
            self._works[k] = la.vector(self.V.dofmap.index_map, bs=k)
        return self._works[k]

    def _ghosted(self, owned: np.ndarray) -> np.ndarray:
        """Owned values (shape=(K, n_owned)) with their ghosts filled: shape=(K, n_local)
        (collective: one scatter for the K components)."""
        work = self._work(len(owned))
        values = work.array.reshape(self.num_local, len(owned))
        values[: self.num_owned] = owned.T
        work.scatter_forward()
        return values.T.copy()

    def accumulate_ghosts(self, local: np.ndarray) -> np.ndarray:
        """Local values (shape=(n_local,) or (n_local, k)) with the ghosts' added to their
        owners: the owned part, shape=(n_owned,) or (n_owned, k) (the transpose of
        ``_ghosted``; collective, one scatter)."""
        k = 1 if local.ndim == 1 else local.shape[1]
        work = self._work(k)
        work.array[:] = local.ravel()
        work.scatter_reverse(la.InsertMode.add)
        owned = work.array.reshape(self.num_local, k)[: self.num_owned]
        return (owned[:, 0] if local.ndim == 1 else owned).copy()

    def destroy(self) -> None:
        """Nothing PETSc to free (the interface of ``TransportSolver``)."""


class SemiLagrangianAdjoint(Owned):
    """The backward sweep of ``SemiLagrangianSolver.solve`` (collective).

    ``backward`` returns λ⁰ and no velocity-node cotangents: the θ-gradient of the tracing is
    accumulated here directly (``theta_gradient``), since the cotangents live at the RK4 stage
    points, not at fixed nodes.
    """

    def __init__(self, solver: SemiLagrangianSolver, num_components: int):
        self.solver = solver
        self.K = num_components
        self.theta_gradient: np.ndarray | None = None
        self.terminal_cotangent: tuple[np.ndarray, np.ndarray] | None = None

    def backward(self, field, result: ForwardResult, lam_final: list[np.ndarray]):
        """λ at T = ∂J/∂u_h(T) from λ^N = ∂J/∂u_h(0) (owned, K arrays); sets ``theta_gradient``
        and ``terminal_cotangent``.

        The step from T took f at its departure points X, so J depends on f through f(X) alone:
        the first return value is None and ``terminal_cotangent`` = (X, λ) (owned, shape=(n, d)
        and (K, n)): ∂J/∂f = Σ_n λ_n δ_{X_n}, e.g. ∂J/∂A = λ X and ∂J/∂b = Σ_n λ_n for f = A x + b.
        """
        solver, traj = self.solver, result.trajectory
        if not traj.departures:
            raise InputError("the forward run kept no departure points (solve(..., keep=False))")
        model, theta = field.model, field.theta
        params = model.unpack(theta)
        pieces = np.asarray(field.pieces(), dtype=np.float64)
        lam = np.array(lam_final, dtype=np.float64).reshape(self.K, solver.num_owned)
        grad = np.zeros(model.n_params)
        size = model.node_size
        for j0, j1 in reversed(solver.steps(len(pieces) - 1)):  # t = 0 first: the reverse of the forward
            evaluator, stages, u_next, departure, terminal, active = traj.departures[j0]
            # The departure points' cotangent Σ_c λ_c ∇u_{next,c}(X) (before λ moves on).
            if evaluator is None:  # the step from T: ∇f(X)
                matrix = getattr(terminal, "matrix", None)
                if matrix is None:
                    raise InputError("the semi-Lagrangian adjoint needs an affine terminal f = A x + b "
                                     "(fem/affine.py: Affine), whose Jacobian it knows")
                if active is not None:  # only these nodes were traced (the others are read by no one)
                    lam = lam[:, active]
                g = lam.T @ np.asarray(matrix, dtype=np.float64)
                self.terminal_cotangent = (departure, lam)
                lam = None
            else:
                gradients = evaluator.gradient(u_next.T)  # (n, d, K): one message for the K components
                g = np.einsum("cn,ndc->nd", lam, gradients)
                lam = solver.accumulate_ghosts(evaluator.transpose(lam.T)).T
            for j in reversed(range(j0, j1)):
                p = params[j]

                def slab_vjp(Y, H, kbar, p=p):
                    return model.slab_vjp(p, Y, kbar, points=True, hidden=H)

                g, g_theta = solver.trace_back(slab_vjp, stages[j], pieces[j + 1] - pieces[j],
                                               result.steps_per_piece[j], g)
                grad[j * size : (j + 1) * size] += g_theta
        self.theta_gradient = grad
        return lam, {}

    def destroy(self) -> None:
        """Nothing PETSc to free."""
