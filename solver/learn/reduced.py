"""The reduced functional J(p) of the learning problem and its exact discrete gradient.

p = (θ, A, b): the velocity parameters θ of eq. 2 and the output layer of the terminal value
f(x) = A x + b (K logits). The forward solve carries f back to t = 0, the prediction at the
data X_i is u_h(0, X_i) = P u^N, and

    J(p) = (1/N) Σ_i loss(u_h(0, X_i), y_i) + (α/2)|θ|² + (β/2) Σ_j |θ_{j+1} − θ_j|²
           + (γ/2) Σ_j |slab j| ∫_Ω |v_h,j|² dx + (ρ/2) Σ_j |slab j| ∫_Ω |∇v_h,j|² dx
           + (δ/2)|E|²,

with v_h,j the velocity interpolant on slab j (θ is constant there), α the weight decay, β the
smoothness, γ the kinetic and ρ the roughness weight, δ the weight of a learned input
layer's E (``input.decay``), and softmax cross-entropy
(classification) or squared error (regression) as the loss. The gradient is the gradient of
exactly this discrete J: λ^N = Pᵀ ∂loss, the transposed steps (``fem/adjoint.py``),
the VJP of the velocity model per slab, and for the output layer (f is linear, so its DG
interpolant is A·I(x) + b·I(1)) the products of λ⁰ with the interpolated coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

import ufl

import dolfinx.fem.petsc
from dolfinx import fem

from solver.config import TrainConfig
from solver.errors import InputError
from solver.fem.schemes import make_adjoint
from solver.fem.affine import solve_affine, transports_coordinates
from solver.fem.pointeval import PointEvaluator
from solver.fem.transport import TransportSolver
from solver.model.input_layer import InputLayer
from solver.model.losses import LOSSES, cross_entropy, squared_error
from solver.model.velocity import VelocityModel
from solver.owned import Owned

@dataclass
class Evaluation:
    """One evaluation of J: the value, its parts, and what the gradient needs."""

    value: float
    data_loss: float
    regularization: float
    predictions: np.ndarray  # u_h(0, X_i) at this rank's points, shape=(n, K)
    steps: list[int]
    u0: list  # u_h(0, ·), K DG functions
    everywhere: bool = True  # u0 at every node (False: only at ``ReducedFunctional.nodes_read``)


class ReducedFunctional(Owned):
    """J(p) and J'(p) for the transport learning problem (collective).

    The defaults of the objective are those of the config's ``[train]`` section.

    Args:
        solver: the transport solver (J is collective over its communicator).
        model: the velocity model (θ constant on slabs).
        points: this rank's data points in Ω, shape=(n, d) (any distribution over ranks).
        labels: this rank's labels, shape=(n,) (ints for cross-entropy, floats for regression).
        num_classes: K.
        loss: "cross_entropy" or "squared_error".
        weight_decay: α.
        smoothness: β, coupling θ of adjacent slabs (adjacent ResNet blocks should be close).
        kinetic: γ, the weight of the kinetic energy ∫∫|v|², which keeps the field (and with it
            the CFL step count, and so the cost) from growing during training.
        roughness: ρ, the weight of ∫∫|∇v|², which keeps the field smooth enough for the mesh
            (the PDE then agrees with the characteristics).
        coordinates: transport the d coordinates instead of the K logits (``fem/affine.py``);
            None: when K > d, the cheaper. The solver must carry d (True) or K (False)
            components. Both give the same J and ∇J to round-off (tests/test_train.py); False
            is there to measure the saving (``scripts/bench_gradient.py --logits``).
        input_layer: a learned input layer (``model/input_layer.py``): then ``points`` are this
            rank's raw features, shape=(n, F), the data points in Ω are z = layer(q, points), and
            p = (θ, A, b, q). u_h(0, ·) must be continuous (the semi-Lagrangian scheme), so that
            J is continuous in q as the points cross facets.
        input_start: the layer's starting q (the same on every rank: ``InputLayer.initial`` of
            all training features), for :meth:`initial`.
        input_decay: δ, the weight of |E|² of the input layer (its offset e is not penalized).
    """

    def __init__(
        self,
        solver: TransportSolver,
        model: VelocityModel,
        points: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        *,
        loss: str = TrainConfig.loss,
        weight_decay: float = TrainConfig.weight_decay,
        smoothness: float = TrainConfig.smoothness,
        kinetic: float = TrainConfig.kinetic,
        roughness: float = TrainConfig.roughness,
        coordinates: bool | None = None,
        input_layer: InputLayer | None = None,
        input_start: np.ndarray | None = None,
        input_decay: float = 0.0,
    ):
        if loss not in LOSSES:
            raise InputError(f'Invalid loss "{loss}". Must be one of {list(LOSSES)}')
        if coordinates is None:
            coordinates = transports_coordinates(num_classes, model.dim)
        components = model.dim if coordinates else num_classes
        if solver.num_components != components:
            raise InputError(f"solver has {solver.num_components} components, {num_classes} classes in "
                             f"{model.dim}D transported as {'coordinates' if coordinates else 'logits'} "
                             f"need {components}")
        self.coordinates_transported = bool(coordinates)
        self.comm = solver.comm
        self.solver = solver
        self.model = model
        self.K = num_classes
        self.d = model.dim
        self.labels = np.asarray(labels)
        self.loss = cross_entropy if loss == "cross_entropy" else squared_error
        self.num_points = self.comm.allreduce(len(points), op=MPI.SUM)
        self.input_layer = input_layer
        self.input_start = input_start
        self.input_decay = input_decay
        self.last_input = None  # the input layer's q at the latest evaluation (None: no layer)
        if input_layer is None:
            self.evaluator = PointEvaluator(solver.V, points, "data")
            self.points = np.asarray(points, dtype=np.float64)
        else:
            if solver.V.element.basix_element.discontinuous:
                raise InputError("a learned input layer needs a continuous u_h(0, ·) (solver.scheme = "
                                 "\"sl\"): with the discontinuous one of \"rk3\" J jumps wherever a data "
                                 "point crosses a facet")
            self.features = np.asarray(points, dtype=np.float64)
            self.points = None  # z at the latest evaluation (``_place``)
            self.evaluator = None
        self.weight_decay = weight_decay
        self.smoothness = smoothness
        self.kinetic = kinetic
        self.roughness = roughness
        self._energy_matrix = None
        if kinetic or roughness:
            # One quadratic form for both: γ ∫ v·w + ρ ∫ ∇v:∇w on the velocity space.
            v, w = ufl.TrialFunction(solver.Vv), ufl.TestFunction(solver.Vv)
            terms = [(kinetic, ufl.inner(v, w)), (roughness, ufl.inner(ufl.grad(v), ufl.grad(w)))]
            energy = sum(weight * term * ufl.dx for weight, term in terms if weight)
            self._energy_matrix = dolfinx.fem.petsc.assemble_matrix(fem.form(energy))
            self._energy_matrix.assemble()
        self.n_theta = model.n_params
        self.n_output = self.K * self.d + self.K
        self.n_input = 0 if input_layer is None else input_layer.n_params
        self.n_params = self.n_theta + self.n_output + self.n_input
        self.frozen_steps: list[int] | None = None
        self.adjoint = None  # made on the first gradient (fem/schemes.make_adjoint)
        # I(x_j) and I(1) in the DG space: f = A x + b is linear, so I f = Σ_j A_kj I(x_j) + b_k I(1).
        basis = fem.Function(solver.V)
        self._coordinates = []
        for j in range(self.d):
            basis.interpolate(lambda x, j=j: x[j])
            self._coordinates.append(basis.x.array[: solver.num_owned].copy())
        basis.interpolate(lambda x: np.ones(x.shape[1]))
        self._ones = basis.x.array[: solver.num_owned].copy()
        self._ones_local = basis.x.array.copy()
        # K > d: the solver transports the coordinates Q_j (``fem/affine.py``); the logits at the
        # points are A·(P Q) + b·(P I(1)), with P I(1) evaluated once per set of points.
        self._ones_at_points = None
        if input_layer is None and self.coordinates_transported:
            self._ones_at_points = self.evaluator(self._ones_local)
        self.last: Evaluation | None = None  # the latest evaluation (the accepted iterate, in an optimizer)
        self.nodes_read: np.ndarray | None = None  # ``restrict``: the owned nodes a solve traces

    def restrict(self, *evaluators: PointEvaluator) -> None:
        """Solve only for the nodes that J's data points and ``evaluators`` (e.g. the test
        points') read, where the scheme allows it: one semi-Lagrangian step from T to 0, fixed
        data points (no learned input layer). J and ∇J are unchanged; u_h(0) of ``last`` is
        NaN elsewhere until an ``evaluate(p, everywhere=True)`` or ``complete(p)`` (collective).

        Measured on peaks (data on the plane x3 = 0 of a 7³ P2 mesh): see
        ``python -m scripts.bench_schemes --problems peaks``."""
        solver = self.solver
        if self.input_layer is None and getattr(solver, "slabs_per_step", 0) is None:
            self.nodes_read = solver.read_nodes(self.evaluator, *evaluators)

    # --- parameters ---------------------------------------------------------------------

    def split(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p → (θ, A (K×d), b (K))."""
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (self.n_params,):
            raise InputError(f"parameter vector must have shape ({self.n_params},), got {p.shape}")
        theta = p[: self.n_theta]
        A = p[self.n_theta : self.n_theta + self.K * self.d].reshape(self.K, self.d)
        b = p[self.n_theta + self.K * self.d : self.n_theta + self.n_output]
        return theta, A, b

    def input_parameters(self, p: np.ndarray) -> np.ndarray:
        """The input layer's q, the last ``n_input`` entries of p (empty without a layer)."""
        return np.asarray(p, dtype=np.float64)[self.n_theta + self.n_output :]

    def initial(self, seed: int, scale: float = 1.0) -> np.ndarray:
        """A starting p: random θ (the model's init), a random output layer, and the input
        layer's ``input_start``."""
        rng = np.random.default_rng(seed + 7919)
        A = rng.normal(0.0, 1.0 / np.sqrt(self.d), (self.K, self.d))
        q = np.zeros(self.n_input) if self.input_start is None else np.asarray(self.input_start, dtype=np.float64)
        return np.concatenate([self.model.init(seed, scale), A.ravel(), np.zeros(self.K), q])

    def _place(self, p: np.ndarray) -> None:
        """The data points in Ω for p's input layer, and their evaluator (collective; rebuilt
        only when the points moved)."""
        if self.input_layer is None:
            return
        self.last_input = self.input_parameters(p).copy()
        z = self.input_layer(self.last_input, self.features)
        moved = self.points is None or not np.array_equal(z, self.points)
        if self.comm.allreduce(int(moved), op=MPI.MAX):
            self.evaluator = PointEvaluator(self.solver.V, z, "data", gradient=True)
            self.points = z
            self._ones_at_points = self.evaluator(self._ones_local) if self.coordinates_transported else None

    def freeze_steps(self, steps: list[int] | None) -> None:
        """Fix the number of time steps per slab (None: follow the CFL bound again)."""
        self.frozen_steps = None if steps is None else list(steps)

    # --- J and J' -------------------------------------------------------------------------

    def _regularization(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        value = 0.5 * self.weight_decay * float(theta @ theta)
        grad = self.weight_decay * theta
        if self.smoothness and self.model.slabs > 1:
            nodes = theta.reshape(self.model.slabs, -1)
            diff = np.diff(nodes, axis=0)
            value += 0.5 * self.smoothness * float((diff * diff).sum())
            g = np.zeros_like(nodes)
            g[1:] += self.smoothness * diff
            g[:-1] -= self.smoothness * diff
            grad = grad + g.ravel()
        return value, grad

    def _input_regularization(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """(δ/2)|E|² of the input layer and its gradient w.r.t. q, shape=(n_input,)."""
        grad = np.zeros(self.n_input)
        if self.input_layer is None or not self.input_decay:
            return 0.0, grad
        n_E = self.input_layer.dim * self.input_layer.num_features  # q = (E row by row, e)
        E = self.input_parameters(p)[:n_E]
        grad[:n_E] = self.input_decay * E
        return 0.5 * self.input_decay * float(E @ E), grad

    def _field_energy(self, theta: np.ndarray) -> tuple[float, dict[int, np.ndarray]]:
        """½ Σ_j |slab j| V_jᵀ (γ M + ρ K) V_j over the velocity interpolants (M the mass, K the
        stiffness matrix), and its gradient w.r.t. the owned velocity nodes of each slab
        (collective)."""
        if self._energy_matrix is None:
            return 0.0, {}
        M = self._energy_matrix
        x, y = M.createVecRight(), M.createVecLeft()
        n_owned = self.solver.Vv.dofmap.index_map.size_local
        times = self.model.slab_times
        value, grads = 0.0, {}
        for j in range(self.model.slabs):
            length, t_mid = times[j + 1] - times[j], 0.5 * (times[j] + times[j + 1])
            x.array[:] = self.model.velocity(theta, t_mid, self.solver.velocity_points[:n_owned]).ravel()
            M.mult(x, y)
            value += 0.5 * length * x.dot(y)
            grads[j] = length * y.array.reshape(n_owned, self.d).copy()
        x.destroy()
        y.destroy()
        return value, grads

    def _forward(self, p: np.ndarray, keep: bool = False, everywhere: bool = False):
        theta, A, b = self.split(p)
        self._place(p)
        field = self.model.field(theta)
        only = {} if everywhere or self.nodes_read is None else dict(nodes=self.nodes_read)
        result = solve_affine(self.solver, field, A, b, coordinates=self.coordinates_transported,
                              frozen_steps=self.frozen_steps, keep=keep, **only)
        # The transported components at the points, shape=(m, n): the logits by class, or the
        # coordinates Q_j (then logits = A PQ + b P1).
        # All components in one message (the evaluator takes k columns).
        at_points = np.ascontiguousarray(self.evaluator(np.stack([u.x.array for u in result.transported], axis=1)).T)
        logits = at_points
        if self.coordinates_transported:
            logits = A @ logits + b[:, None] * self._ones_at_points
        local_loss, dloss = self.loss(logits, self.labels)
        predictions = logits.T
        data_loss = self.comm.allreduce(local_loss, op=MPI.SUM) / self.num_points
        reg, _ = self._regularization(theta)
        reg += self._input_regularization(p)[0]
        energy, self._energy_gradient = self._field_energy(theta)  # the gradient's, if one follows
        reg += energy
        evaluation = Evaluation(data_loss + reg, data_loss, reg, predictions, result.steps_per_piece, result.u0,
                                everywhere=not only)
        return evaluation, field, result, dloss / self.num_points, at_points

    def __call__(self, p: np.ndarray) -> float:
        """J(p) (collective)."""
        evaluation, *_ = self._forward(p)
        self.last = evaluation
        return evaluation.value

    def complete(self, p: np.ndarray) -> Evaluation:
        """``last`` (which must be at ``p``) with u_h(0) at every node: one more solve only if
        the last one traced fewer (``restrict``) (collective)."""
        return self.last if self.last is not None and self.last.everywhere else self.evaluate(p, everywhere=True)

    def evaluate(self, p: np.ndarray, everywhere: bool = False) -> Evaluation:
        """J(p) with its parts and the predictions (collective); ``everywhere``: u_h(0) at every
        node even if ``restrict`` set nodes (for pictures and fields)."""
        evaluation, *_ = self._forward(p, everywhere=everywhere)
        self.last = evaluation
        return evaluation

    def value_and_gradient(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """J(p) and ∇J(p), the gradient of the discrete J (collective; the same on every rank)."""
        evaluation, field, result, dloss, at_points = self._forward(p, keep=True)
        self.last = evaluation
        theta, A, b = self.split(p)
        m = self.solver.num_components
        # ∂J/∂(transported values at the points): dloss itself, or Aᵀ dloss for the coordinates.
        r = A.T @ dloss if self.coordinates_transported else dloss
        owned = self.solver.accumulate_ghosts(self.evaluator.transpose(np.ascontiguousarray(r.T)))
        lam_final = [np.ascontiguousarray(owned[:, c]) for c in range(m)]  # Pᵀ r of every component, one message
        if self.adjoint is None:
            self.adjoint = make_adjoint(self.solver, m)
        lam0, velocity_grads = self.adjoint.backward(field, result, lam_final)
        for j, g in self._energy_gradient.items():
            velocity_grads[j] = velocity_grads.get(j, 0.0) + g

        traced = self.adjoint.theta_gradient  # the semi-Lagrangian tracing's, else None
        grad_theta = np.zeros(self.n_theta) if traced is None else traced.copy()
        pieces = np.asarray(field.pieces())
        n_owned_nodes = self.solver.Vv.dofmap.index_map.size_local
        x_nodes = self.solver.velocity_points[:n_owned_nodes]
        for j, g in velocity_grads.items():
            t_mid = 0.5 * (pieces[j] + pieces[j + 1])
            grad_theta += self.model.vjp(theta, t_mid, x_nodes, g)
        if self.coordinates_transported:
            # logits = A PQ + b P1 at the points: A and b act after the transport.
            grad_A = dloss @ at_points.T
            grad_b = dloss @ self._ones_at_points
        elif lam0 is None:  # f = A x + b taken at points X (semi-Lagrangian): ∂J/∂f = Σ_n λ_n δ_{X_n}
            X, lam = self.adjoint.terminal_cotangent
            grad_A, grad_b = lam @ X, lam.sum(axis=1)
        else:  # f = A x + b was transported: through λ⁰ and I(x_j), I(1)
            grad_A = np.array([[lam0[k] @ self._coordinates[j] for j in range(self.d)] for k in range(self.K)])
            grad_b = np.array([lam0[k] @ self._ones for k in range(self.K)])
        grad_q = np.zeros(self.n_input)
        if self.input_layer is not None:
            # ∂J/∂z_i = Σ_c r_ci ∇u_c(z_i) over the transported components (u_h(0, ·) is
            # continuous, so z ↦ u_c(z) is too; ∇ is the gradient in the cell holding z_i), then
            # the layer's VJP.
            gradients = self.evaluator.gradient(np.stack([u.x.array for u in result.transported], axis=1))
            gz = np.einsum("cn,ngc->ng", r, gradients)  # gradients: (n, gdim, components), one message
            grad_q = self.input_layer.vjp(self.input_parameters(p), self.features, gz)
        local = np.concatenate([grad_theta, grad_A.ravel(), grad_b, grad_q])
        grad = np.empty_like(local)
        self.comm.Allreduce(local, grad, op=MPI.SUM)
        _, reg_grad = self._regularization(theta)
        grad[: self.n_theta] += reg_grad
        grad[self.n_theta + self.n_output :] += self._input_regularization(p)[1]
        return evaluation.value, grad

    def derivative(self, p: np.ndarray) -> np.ndarray:
        """∇J(p) (collective)."""
        return self.value_and_gradient(p)[1]

    def destroy(self) -> None:
        if self.adjoint is not None:
            self.adjoint.destroy()
        if self._energy_matrix is not None:
            self._energy_matrix.destroy()
