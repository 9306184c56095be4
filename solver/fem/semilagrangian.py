"""The terminal-value transport problem (eq. 1) by semi-Lagrangian steps, one per slab, with its
exact discrete adjoint.

On a slab [t_j, t_{j+1}] θ is constant, so v does not depend on t and the solution is carried
along the slab's flow map Φ_j (x' = v(x) from t_j to t_{j+1}):

    u(t_j, x) = u(t_{j+1}, Φ_j(x)).

The scheme: u_h lives in continuous P_k (Lagrange); its nodes x_n are traced through Φ_j by
classical RK4 substeps (the departure points X_n = Φ_j,h(x_n)), located across ranks
(``fem/pointeval.py``, the fast locator) and u_h(t_{j+1}) is interpolated there:

    u_j = S_j u_{j+1},   S_j[n, :] = the basis functions at X_n.

One sparse product per slab and component, whatever the speed of v: the step is not bound by the
CFL condition, and a local refinement costs only its own nodes.

Choices, measured (``scripts/bench_semilagrangian.py``; its report lists the numbers):

- **Continuous P_k, nodal interpolation.** u_h(t_{j+1}) is continuous, so J depends continuously
  on θ even where a departure point crosses a facet: with a discontinuous u_h it would jump there.
  ∇u_h jumps across facets, so J is piecewise smooth (a kink where a point crosses a facet): the
  Taylor remainder still falls at order 2 for small steps, as for a ReLU network, since the
  share of points that cross a facet within a step ε is O(ε).
- **Substeps.** RK4 on each slab with n = ⌈|slab| · Lip(v) / ``SUBSTEP_ROTATION``⌉ substeps,
  Lip(v) the largest Jacobian norm of v at the nodes (central differences): a substep turns the
  flow by at most ``SUBSTEP_ROTATION``. It does not depend on the mesh.
- **The adjoint.** With λ_j = ∂J/∂u_j: λ_{j+1} = S_jᵀ λ_j (the transpose sends values back to the
  ranks that own the cells, then adds ghost entries to their owners), and the departure points
  receive the cotangent Σ_c λ_j,c[n] ∇u_{j+1,c}(X_n), carried back through the RK4 substeps
  (reverse mode; ``VelocityModel.slab_vjp`` gives the θ- and point-cotangents of each stage).
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
from solver.fem.mesh import min_cell_size
from solver.fem.pointeval import PointEvaluator
from solver.fem.transport import ForwardResult, TransportSolver, Trajectory, velocity_space

# The most a substep may turn the flow: h · max‖∇v‖ ≤ SUBSTEP_ROTATION (see the module doc).
# The tracing error is far below the interpolation's (``scripts/bench_substeps.py RUN``: on
# trained moons and peaks fields the max logit difference to the characteristics was the same to
# 3 digits at 1.0 and at 0.1, with 5× the substeps).
SUBSTEP_ROTATION = 1.0

# RK4's stage offsets and weights.
_RK4_NODES = (0.0, 0.5, 0.5, 1.0)
_RK4_WEIGHTS = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)


class SemiLagrangianSolver:
    """Solves ∂t u + v·∇u = 0, u(T) = f backward in time by one semi-Lagrangian step per slab
    (collective over ``mesh.comm``), for K components sharing the departure points.

    The interface is ``TransportSolver``'s (``solve`` → ``ForwardResult``), so the learning
    problem, the certification and the outputs run on either.

    Args:
        mesh: an affine simplex mesh of an invariant domain Ω.
        degree: k of the continuous P_k space (1, 2, 3).
        num_components: K.
        substep_rotation: the substep rule's bound on h · max‖∇v‖.
        viscosity: must be 0 (the stochastic characteristics of a viscous run need ``rk3``).
    """

    scheme = "sl"
    max_steps: int | None = None  # the most substeps of one slab (solver.max_steps)
    # The state at the start of every slab's step is kept (``TransportSolver``'s attribute: the
    # outputs set it to thin a long trajectory; here there is one state per slab).
    checkpoint_every = 1

    def __init__(self, mesh: dmesh.Mesh, *, degree: int = 1, num_components: int = 1,
                 substep_rotation: float = SUBSTEP_ROTATION, viscosity: float = 0.0):
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
        self.substep_rotation = substep_rotation
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
              stages: list | None = None) -> np.ndarray:
        """Φ(x): RK4 with ``substeps`` steps of x' = v(t, x) over ``length`` (v steady at t).

        ``stages``: if a list, the stage points Y (shape=(n, d)) of every substep are appended,
        4 per substep, for the adjoint.
        """
        h = length / substeps
        y = x.copy()
        for _ in range(substeps):
            k_prev = None
            increment = np.zeros_like(y)
            for c, w in zip(_RK4_NODES, _RK4_WEIGHTS):
                point = y if k_prev is None else y + (c * h) * k_prev
                if stages is not None:
                    stages.append(point)
                k_prev = field(t, point)
                increment += w * k_prev
            y = y + h * increment
        return y

    @staticmethod
    def trace_back(slab_vjp, stages: list, length: float, substeps: int, g: np.ndarray):
        """Reverse mode through ``trace``: the point cotangent at x and the θ-cotangent, from
        ``g`` = ∂J/∂Φ(x) (shape=(n, d)). ``slab_vjp(Y, k̄)`` → (θ-grad, point-grad) of
        Σ k̄·v(Y)."""
        h = length / substeps
        theta = 0.0
        for s in reversed(range(substeps)):
            Y = stages[4 * s : 4 * s + 4]
            kbar = [w * h * g for w in _RK4_WEIGHTS]  # y_{s+1} = y_s + h Σ w_c k_c
            ybar = g.copy()
            for c in (3, 2, 1, 0):
                gt, gy = slab_vjp(Y[c], kbar[c])  # k_c = v(Y_c), Y_c = y_s + c h k_{c−1}
                theta = theta + gt
                ybar += gy
                if c:
                    kbar[c - 1] = kbar[c - 1] + (_RK4_NODES[c] * h) * gy
            g = ybar
        return g, theta

    # --- the solve ---------------------------------------------------------------------------

    def terminal_values(self, terminal) -> np.ndarray:
        """f at the nodes (owned and ghosts): shape=(K, n_local) (collective)."""
        values = np.asarray(terminal(self.nodes), dtype=np.float64).reshape(self.num_local, -1)
        if values.shape[1] != self.num_components:
            raise InputError(f"terminal function has {values.shape[1]} components, the solver "
                             f"expects {self.num_components}")
        if self.comm.allreduce(int(not np.all(np.isfinite(values))), op=MPI.SUM):
            raise InputError("terminal function f returned non-finite values on the mesh")
        return np.ascontiguousarray(values.T)

    def solve(self, field, terminal, frozen_steps: list[int] | None = None,
              keep: bool = True) -> ForwardResult:
        """u_h(0, ·) from u(T) = f (collective); ``TransportSolver.solve``'s arguments, with
        ``frozen_steps`` the RK4 substeps of each slab."""
        if field.dim != self.dim:
            raise InputError(f"velocity field has dimension {field.dim}, the mesh {self.dim}")
        pieces = TransportSolver.time_pieces(field)
        u = self.terminal_values(terminal)
        f_max = self.comm.allreduce(float(np.max(np.abs(u), initial=0.0)), op=MPI.MAX)
        trajectory = Trajectory(times=None, piece_of_step=[], checkpoint_every=1 if keep else 0)
        substeps, lengths, speeds = [], [], []
        owned = self.nodes[: self.num_owned]
        for j in reversed(range(len(pieces) - 1)):
            t0, t1 = pieces[j], pieces[j + 1]
            t = 0.5 * (t0 + t1)
            n = self.substeps_for(field, t0, t1) if frozen_steps is None else int(frozen_steps[j])
            if self.max_steps is not None and n > self.max_steps:
                raise UnstableSolve(f"a slab needs {n} substeps, more than solver.max_steps = "
                                    f"{self.max_steps}")
            stages = [] if keep else None
            departure = self.trace(field, t, owned, t1 - t0, n, stages)
            evaluator = PointEvaluator(self.V, departure, "departure points", report=False, gradient=keep,
                                       continuous=True)
            if keep:
                trajectory.states[len(trajectory.piece_of_step)] = u[:, : self.num_owned].copy()
                trajectory.departures[j] = (evaluator, stages, u)
            u = self._ghosted(evaluator(u.T).T)  # the K components in one message
            trajectory.piece_of_step.append(j)
            substeps.append(n)
            lengths.append(t1 - t0)
            speeds.append(0.0)
        trajectory.times = pieces[::-1].copy()  # t at the start of each slab's step, then 0
        trajectory.piece_of_step = np.asarray(trajectory.piece_of_step)
        growth = self.comm.allreduce(float(np.max(np.abs(u), initial=0.0)), op=MPI.MAX)
        if not np.isfinite(growth) or growth > 10.0 * f_max + 1e-12:
            raise UnstableSolve(f"the semi-Lagrangian solve is unstable (max|u(0)| = {growth:.3g} "
                                f"against max|f| = {f_max:.3g})")
        u0 = []
        for c in range(len(u)):
            uh = fem.Function(self.V, name=f"u{c}")
            uh.x.array[:] = u[c]
            u0.append(uh)
        return ForwardResult(u0, trajectory, substeps[::-1], lengths[::-1], speeds[::-1])

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


class SemiLagrangianAdjoint:
    """The backward sweep of ``SemiLagrangianSolver.solve`` (collective).

    ``backward`` returns λ⁰ and no velocity-node cotangents: the θ-gradient of the tracing is
    accumulated here directly (``theta_gradient``), since the cotangents live at the RK4 stage
    points, not at fixed nodes.
    """

    def __init__(self, solver: SemiLagrangianSolver, num_components: int):
        self.solver = solver
        self.K = num_components
        self.theta_gradient: np.ndarray | None = None

    def backward(self, field, result: ForwardResult, lam_final: list[np.ndarray]):
        """λ⁰ = ∂J/∂u⁰ from λ^N = ∂J/∂u_h(0) (owned, K arrays); sets ``theta_gradient``."""
        solver, traj = self.solver, result.trajectory
        if not traj.departures:
            raise InputError("the forward run kept no departure points (solve(..., keep=False))")
        model, theta = field.model, field.theta
        params = model.unpack(theta)
        pieces = np.asarray(field.pieces(), dtype=np.float64)
        lam = np.array(lam_final, dtype=np.float64).reshape(self.K, solver.num_owned)
        grad = np.zeros(model.n_params)
        size = model.node_size
        for j in range(len(pieces) - 1):  # t = 0 first: the reverse of the forward's order
            evaluator, stages, u_next = traj.departures[j]
            # The departure points' cotangent Σ_c λ_c ∇u_{j+1,c}(X) (before λ moves on).
            gradients = evaluator.gradient(u_next.T)  # (n, d, K): one message for the K components
            g = np.zeros((solver.num_owned, solver.dim))
            for c in range(self.K):
                g += lam[c][:, None] * gradients[:, :, c]
            lam = solver.accumulate_ghosts(evaluator.transpose(lam.T)).T
            n = result.steps_per_piece[j]
            p = params[j]

            def slab_vjp(Y, kbar, p=p):
                return model.slab_vjp(p, Y, kbar, points=True)

            _, g_theta = solver.trace_back(slab_vjp, stages, pieces[j + 1] - pieces[j], n, g)
            grad[j * size : (j + 1) * size] += g_theta
        self.theta_gradient = grad
        return lam, {}

    def destroy(self) -> None:
        """Nothing PETSc to free."""
