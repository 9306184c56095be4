"""The transport velocity v(t, x; θ) of eq. 2, cut off at ∂Ω, with its vector-Jacobian product.

    v(t, x) = χ(x) · [W2(t) a(W1(t) x + b1(t)) + b2(t)],   x ∈ Ω ⊂ R^d, d = 2 or 3,

with hidden width m (W1: m×d, b1: m, W2: d×m, b2: d; eq. 2 has m = d, any m is allowed here),
or the one-layer field (``layers = 1``, ``field.kind = "mlp1"``; issue #13)

    v(t, x) = χ(x) · a(W(t) x + b(t)),   W: d×d, b: d,

which is eq. 2 with m = d, W2 = I and b2 = 0 held fixed: the section 5 item 1 comparison (with
relu every component of v is >= 0, so the flow is monotone in each coordinate).
χ is the domain's cutoff: it vanishes on ∂Ω, so v·n = 0 there and Ω is invariant: the
characteristics never leave Ω, and the transport problem needs no inflow boundary data.

Time: [0, T] is split into L equal slabs t_0 = 0 < … < t_L = T (the partition of eq. 9), and θ
is constant on each: one parameter set per slab (one slab ≈ one ResNet block of eq. 17).

numpy and scipy only: the characteristics solver and the ResNet exporter use this without the FE
code. The activations are ``solver.model.activations``'s.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field as dataclass_field
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from solver.model import activations
from solver.model.activations import Activation
from solver.model.domain import Domain
from solver.errors import InputError

FIELD_KINDS = ("mlp", "mlp1", "rotation")
# The kinds with parameters θ to learn, and their number of layers.
LEARNED_KINDS = {"mlp": 2, "mlp1": 1}


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


# The velocity's activations: the smooth ones and relu (its kinks are located, see ``kinks``).
VELOCITY_ACTIVATIONS = ("relu", "tanh", "softplus", "sigmoid")
ACTIVATIONS: dict[str, Activation] = {name: activations.ACTIVATIONS[name] for name in VELOCITY_ACTIVATIONS}


def activation(name: str) -> Activation:
    """The velocity activation called ``name``; raises InputError for an unknown name."""
    return activations.activation(name, among=VELOCITY_ACTIVATIONS)


# --------------------------------------------------------------------------------------------
# The Field protocol: what the characteristics solver and the FE solver need from a velocity
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Field(Protocol):
    """A velocity field v(t, x) on [0, T] × R^dim.

    Attributes:
        dim: The space dimension d.
        T: The final time.

    Optional extras that ``characteristics.flow`` uses if present: ``vectorized_time = True``
    (``__call__`` also takes one time per point, shape=(n,)), ``kinks(t, x)`` (values whose sign
    changes mark where v is not smooth in x, or None) and ``domain`` (to check the points).
    """

    dim: int
    T: float

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """v(t, x) at the points ``x`` (shape=(n, dim)); returns shape=(n, dim)."""
        ...

    def pieces(self) -> np.ndarray | None:
        """Times 0 = t_0 < … < t_L = T with v independent of t inside each [t_j, t_{j+1}].

        Returns None if v varies continuously in t. Integrators must not step across these
        times with a high-order method: v jumps there.
        """
        ...


# --------------------------------------------------------------------------------------------
# The MLP velocity model of eq. 2
# --------------------------------------------------------------------------------------------


def _affine(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x Wᵀ + b for points x (shape=(n, k)), W (shape=(m, k)): a new array, shape=(n, m).

    Wᵀ is made contiguous first: numpy's matmul with the transposed view of a small W took
    4× as long (no BLAS), and the bias is added in place; the velocity is evaluated at every
    node of every RK4 stage."""
    out = x @ np.ascontiguousarray(W.T)
    out += b
    return out


class Params(NamedTuple):
    """The parameters of eq. 2 on one slab (a one-layer field: W1 = W, b1 = b, W2 = I, b2 = 0).

    Attributes:
        W1: Inner weights, shape=(width, dim).
        b1: Inner bias, shape=(width,).
        W2: Outer weights, shape=(dim, width).
        b2: Outer bias, shape=(dim,).
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class VelocityModel:
    """The velocity model v(t, x; θ) = χ(x)·[W2(t) a(W1(t) x + b1(t)) + b2(t)] (eq. 2).

    θ is a flat float64 vector: slab by slab, each slab W1 (row-major), b1, W2, b2. With
    ``layers = 1`` it is v = χ(x)·a(W(t) x + b(t)), each slab W (row-major, d×d), b; ``unpack``
    then gives W1 = W, b1 = b, W2 = I, b2 = 0, so everything that reads ``Params`` (the
    characteristics, the exported ResNet) treats it as eq. 2 with m = d.

    Attributes:
        dim: Space dimension d, 2 or 3.
        width: Hidden width m >= 1.
        slabs: Number L >= 1 of equal time slabs of [0, T].
        T: Final time, > 0.
        activation: Name of the activation, a key of ``ACTIVATIONS``.
        domain: The domain Ω; its cutoff χ multiplies the velocity.
        layers: 2 (eq. 2) or 1 (v = χ a(W x + b); then width must equal dim).
    """

    dim: int
    width: int
    slabs: int
    T: float
    activation: str
    domain: Domain
    layers: int = 2

    def __post_init__(self) -> None:
        if not _is_int(self.dim) or self.dim not in (2, 3):
            raise InputError(f"velocity dim must be 2 or 3, got {self.dim!r}")
        if not _is_int(self.width) or self.width < 1:
            raise InputError(f"velocity width must be an integer >= 1, got {self.width!r}")
        if not _is_int(self.slabs) or self.slabs < 1:
            raise InputError(f"velocity slabs must be an integer >= 1, got {self.slabs!r}")
        if not (isinstance(self.T, (int, float, np.floating)) and np.isfinite(self.T)
                and self.T > 0):
            raise InputError(f"final time T must be a finite number > 0, got {self.T!r}")
        if getattr(self.domain, "dim", None) != self.dim:
            raise InputError(
                f"velocity dim {self.dim} does not match the domain {self.domain!r} "
                f"(dim {getattr(self.domain, 'dim', None)})"
            )
        activation(self.activation)  # a bad name fails here, not at the first evaluation
        if self.layers not in (1, 2) or not _is_int(self.layers):
            raise InputError(f"velocity layers must be 1 or 2, got {self.layers!r}")
        if self.layers == 1 and self.width != self.dim:
            raise InputError(
                f"a one-layer velocity has width = dim = {self.dim} (W is d×d), got width {self.width}"
            )

    @property
    def _act(self) -> Activation:
        # Looked up, not stored: the model stays picklable (the registry holds lambdas).
        return ACTIVATIONS[self.activation]

    # ---- layout of θ ------------------------------------------------------------------------

    @property
    def node_size(self) -> int:
        """Number of parameters of one slab: 2 m d + m + d (one layer: d² + d)."""
        if self.layers == 1:
            return self.dim * self.dim + self.dim
        return 2 * self.width * self.dim + self.width + self.dim

    @property
    def n_params(self) -> int:
        """Length of θ."""
        return self.slabs * self.node_size

    @property
    def slab_times(self) -> np.ndarray:
        """The slab times t_0 = 0 < … < t_L = T, shape=(L + 1,)."""
        return np.linspace(0.0, float(self.T), self.slabs + 1)

    def _block_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        m, d = self.width, self.dim
        if self.layers == 1:
            return [("W", (d, d)), ("b", (d,))]
        return [("W1", (m, d)), ("b1", (m,)), ("W2", (d, m)), ("b2", (d,))]

    def _fixed_outer(self) -> tuple[np.ndarray, np.ndarray]:
        """W2 = I and b2 = 0 of a one-layer field (read-only: shared by every slab)."""
        eye, zero = np.eye(self.dim), np.zeros(self.dim)
        eye.flags.writeable = zero.flags.writeable = False
        return eye, zero

    def block_slices(self) -> dict[str, slice]:
        """Slices of θ, one per parameter block, in θ's order.

        Keys are ``"slab{j}.W1"`` … (one layer: ``"slab{j}.W"``, ``"slab{j}.b"``); together they
        cover θ exactly.
        """
        slices: dict[str, slice] = {}
        start = 0
        for j in range(self.slabs):
            for name, shape in self._block_shapes():
                size = int(np.prod(shape))
                slices[f"slab{j}.{name}"] = slice(start, start + size)
                start += size
        return slices

    def _check_theta(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise InputError(
                f"θ must have shape ({self.n_params},) for this model, got shape {theta.shape}"
            )
        return theta

    def unpack(self, theta: np.ndarray) -> list[Params]:
        """θ (shape=(n_params,)) -> one ``Params`` per slab (views into θ, not copies)."""
        theta = self._check_theta(theta)
        nodes = []
        for j in range(self.slabs):
            start = j * self.node_size
            blocks = []
            for _, shape in self._block_shapes():
                size = math.prod(shape)  # not np.prod: unpack runs at every field evaluation
                blocks.append(theta[start : start + size].reshape(shape))
                start += size
            if self.layers == 1:
                blocks.extend(self._fixed_outer())
            nodes.append(Params(*blocks))
        return nodes

    def pack(self, params: list[Params]) -> np.ndarray:
        """One ``Params`` per slab -> θ, a new float64 array of shape=(n_params,)."""
        if len(params) != self.slabs:
            raise InputError(
                f"pack needs {self.slabs} parameter sets (one per slab), got {len(params)}"
            )
        parts = []
        for j, p in enumerate(params):
            if self.layers == 1 and not (np.array_equal(p.W2, np.eye(self.dim))
                                         and not np.any(p.b2)):
                raise InputError(f"slab {j}: a one-layer velocity has W2 = I and b2 = 0")
            for (name, shape), block in zip(self._block_shapes(), p):
                block = np.asarray(block, dtype=np.float64)
                if block.shape != shape:
                    raise InputError(
                        f"slab {j} block {name} must have shape {shape}, got {block.shape}"
                    )
                parts.append(block.ravel())
        return np.concatenate(parts)

    def init(self, seed: int, scale: float = 1.0) -> np.ndarray:
        """A random θ, deterministic in ``seed``.

        Weights are N(0, scale²/fan_in) (fan_in = d for W1, m for W2), biases N(0, (0.1 scale)²):
        O(scale) velocities whatever the width.
        """
        rng = np.random.default_rng(seed)
        m, d = self.width, self.dim
        if self.layers == 1:
            eye, zero = self._fixed_outer()
            return self.pack([Params(W1=rng.normal(0.0, scale / np.sqrt(d), (d, d)),
                                     b1=rng.normal(0.0, 0.1 * scale, d), W2=eye, b2=zero)
                              for _ in range(self.slabs)])
        params = [
            Params(
                W1=rng.normal(0.0, scale / np.sqrt(d), (m, d)),
                b1=rng.normal(0.0, 0.1 * scale, m),
                W2=rng.normal(0.0, scale / np.sqrt(m), (d, m)),
                b2=rng.normal(0.0, 0.1 * scale, d),
            )
            for _ in range(self.slabs)
        ]
        return self.pack(params)

    # ---- time dependence ----------------------------------------------------------------------

    def _slabs_of(self, t: np.ndarray) -> np.ndarray:
        """The slabs j (shape=(n,)) holding the times t (shape=(n,))."""
        t = np.asarray(t, dtype=np.float64)
        # Integrators may land a rounding error outside [0, T]; anything further is a bug.
        slack = 1e-12 * max(1.0, float(self.T))
        bad = ~(np.isfinite(t) & (t >= -slack) & (t <= self.T + slack))
        if bad.any():
            raise InputError(
                f"time t must lie in [0, T] = [0, {self.T}], got {t[bad][:5].tolist()}"
            )
        times = self.slab_times
        # side="right": t = t_j belongs to slab j; t = T belongs to the last slab.
        return np.clip(np.searchsorted(times, t, side="right") - 1, 0, self.slabs - 1)

    def _slab_of(self, t: float) -> int:
        """The slab j holding the time t (``_slabs_of``'s rule for one time, without arrays: an
        integrator asks at every stage)."""
        t = float(t)
        slack = 1e-12 * max(1.0, float(self.T))
        if not -slack <= t <= self.T + slack:  # also NaN
            raise InputError(f"time t must lie in [0, T] = [0, {self.T}], got {[t]}")
        return min(max(bisect.bisect_right(self.slab_times.tolist(), t) - 1, 0), self.slabs - 1)

    def params_at(self, theta: np.ndarray, t: float) -> Params:
        """The parameters W1(t), b1(t), W2(t), b2(t) at time t ∈ [0, T]: those of its slab."""
        return self.unpack(theta)[self._slab_of(t)]

    # ---- evaluation ---------------------------------------------------------------------------

    def _check_points(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"points must have shape (n, {self.dim}), got shape {x.shape}")
        return x

    def _evaluate(self, p: Params, x: np.ndarray) -> np.ndarray:
        """v at ``x`` (shape=(n, d)) for the fixed parameters ``p``; returns shape=(n, d)."""
        return self._evaluate_keeping(p, x)[0]

    def _evaluate_keeping(self, p: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """v at ``x`` and the hidden layer a(W1 x + b1) (shape=(n, m)) it came from."""
        hidden = self._act.value(_affine(x, p.W1, p.b1))
        chi = self.domain.cutoff(x)[:, None]
        if self.layers == 1:  # W2 = I, b2 = 0
            return hidden * chi, hidden
        out = _affine(hidden, p.W2, p.b2)
        out *= chi
        return out, hidden

    def velocity(self, theta: np.ndarray, t: float, x: np.ndarray) -> np.ndarray:
        """v(t, x; θ) of eq. 2 at the points ``x`` (shape=(n, d)); returns shape=(n, d)."""
        return self._evaluate(self.params_at(theta, t), self._check_points(x))

    def vjp(self, theta: np.ndarray, t: float, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Gradient with respect to θ of Σ_i g_i · v(t, x_i; θ).

        Args:
            theta: Parameters, shape=(n_params,).
            t: Time in [0, T].
            x: Points, shape=(n, d).
            g: Cotangents, shape=(n, d).

        Returns:
            The gradient, shape=(n_params,); nonzero only in the block of the slab holding t.
        """
        x = self._check_points(x)
        g = np.asarray(g, dtype=np.float64)
        if g.shape != x.shape:
            raise InputError(f"cotangent g must have the shape of x {x.shape}, got {g.shape}")
        grad = np.zeros(self.n_params)
        j, size = self._slab_of(t), self.node_size
        grad[j * size : (j + 1) * size] = self.slab_vjp(self.params_at(theta, t), x, g)[0]
        return grad

    def slab_vjp(self, p: Params, x: np.ndarray, g: np.ndarray, points: bool = False,
                 hidden: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Gradients of Σ_i g_i · v(x_i) for one slab's parameters ``p``: with respect to them
        (flat, shape=(node_size,)) and, if ``points``, to the points (shape=(n, d); else None).

        v = χ h with h = W2 a(W1 x + b1) + b2, so ∂(g·v)/∂x = (g·h) ∇χ + χ W1ᵀ (a'(z) ⊙ W2ᵀ g):
        what the semi-Lagrangian adjoint (``fem/semilagrangian.py``) carries back through the
        traced departure points. ``x``, ``g`` unchecked (shape=(n, d)); ``hidden``: a(W1 x + b1)
        if the caller kept it (``MLPField.evaluate_keeping``).
        """
        act = self._act
        z = _affine(x, p.W1, p.b1) if hidden is None or act.derivative_at is None else None  # (n, m)
        hidden = act.value(z) if hidden is None else hidden
        chi = self.domain.cutoff(x)
        gc = chi[:, None] * g  # χ is θ-independent: fold it into g
        dz = (gc if self.layers == 1 else gc @ p.W2) * act.slope(z, hidden)  # (n, m)
        ones = np.ones(len(x))  # column sums as products: a sum over axis 0 took 6× as long
        if self.layers == 1:  # W2 = I, b2 = 0 are not parameters
            local = (dz.T @ x, ones @ dz)
        else:
            local = Params(W1=dz.T @ x, b1=ones @ dz, W2=gc.T @ hidden, b2=ones @ gc)
        flat = np.concatenate([block.ravel() for block in local])
        if not points:
            return flat, None
        h = hidden if self.layers == 1 else _affine(hidden, p.W2, p.b2)
        gx = dz @ p.W1 + np.einsum("ij,ij->i", g, h)[:, None] * self.domain.cutoff_gradient(x)
        return flat, gx

    def field(self, theta: np.ndarray) -> MLPField:
        """The velocity field v(·, ·; θ) as a ``Field``."""
        return MLPField(self, theta)


@dataclass(frozen=True, eq=False)  # eq=False: identity equality, as θ is an array
class MLPField:
    """The ``Field`` v(t, x; θ) of a ``VelocityModel`` at a fixed θ (held as a read-only copy)."""

    model: VelocityModel
    theta: np.ndarray
    # Accepts one time per point: an integrator may then give each point its own step.
    vectorized_time: ClassVar[bool] = True
    _nodes: list[Params] = dataclass_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        theta = np.array(self.model._check_theta(self.theta), dtype=np.float64)
        theta.flags.writeable = False  # the field is a value: θ must not change under it
        object.__setattr__(self, "theta", theta)
        # Unpacked once: an integrator calls the field a dozen times per step.
        object.__setattr__(self, "_nodes", self.model.unpack(theta))

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def T(self) -> float:
        return float(self.model.T)

    @property
    def domain(self) -> Domain:
        return self.model.domain

    def __call__(self, t: float | np.ndarray, x: np.ndarray) -> np.ndarray:
        """v(t, x) at ``x`` (shape=(n, dim)); returns shape=(n, dim).

        ``t`` is a float, or one time per point (shape=(n,)): see ``vectorized_time``.
        """
        model = self.model
        x = model._check_points(x)
        if np.ndim(t) == 0:
            return model._evaluate(self._nodes[model._slab_of(t)], x)

        t = np.asarray(t, dtype=np.float64)
        if t.shape != (len(x),):
            raise InputError(f"per-point times must have shape ({len(x)},), got {t.shape}")
        j = model._slabs_of(t)
        if len(j) and j.min() == j.max():  # the usual case inside an integrator: no scatter
            return model._evaluate(self._nodes[int(j[0])], x)
        out = np.empty_like(x)
        for slab in np.unique(j):
            mask = j == slab
            out[mask] = model._evaluate(self._nodes[slab], x[mask])
        return out

    def evaluate_keeping(self, t: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """v(t, x) (shape=(n, dim)) for one time t, and the hidden layer it came from (shape=(n,
        width)): what ``VelocityModel.slab_vjp`` takes to skip recomputing it."""
        model = self.model
        return model._evaluate_keeping(self._nodes[model._slab_of(t)], model._check_points(x))

    def jacobian(self, t: float, x: np.ndarray) -> np.ndarray:
        """∂v/∂x at ``x`` (shape=(n, d)) for one time t, shape=(n, d, d):
        [n, i, k] = ∂v_i/∂x_k = χ Σ_m W2_im a'(z_m) W1_mk + h_i ∂χ/∂x_k."""
        model = self.model
        p = self._nodes[model._slab_of(t)]
        z = _affine(x, p.W1, p.b1)
        hidden = model._act.value(z)
        slope = model._act.slope(z, hidden)  # (n, m)
        d = model.dim
        W2 = np.eye(d) if model.layers == 1 else p.W2
        h = hidden if model.layers == 1 else _affine(hidden, p.W2, p.b2)
        chi = model.domain.cutoff(x)
        # Σ_m W2_im a'_m W1_mk for all (i, k) as one product (n, m) @ (m, d²): a batched
        # (n, d, m) @ (m, d) product took 3× as long.
        pairs = (W2.T[:, :, None] * p.W1[:, None, :]).reshape(len(p.W1), d * d)  # [m, i d + k]
        inner = (slope @ pairs).reshape(len(x), d, d)
        return chi[:, None, None] * inner + h[:, :, None] * model.domain.cutoff_gradient(x)[:, None, :]

    def kinks(self, t: float | np.ndarray, x: np.ndarray) -> np.ndarray | None:
        """Pre-activations z = W1(t) x + b1(t) (shape=(n, width)) if a is not smooth, else None.

        v is smooth in x except where some z_k changes sign (relu): a characteristic whose z
        changes sign within a step crossed a kink. ``t`` as in ``__call__``.
        """
        model = self.model
        if model._act.smooth:
            return None
        x = model._check_points(x)
        j = model._slabs_of(np.broadcast_to(np.asarray(t, dtype=np.float64), (len(x),)))
        z = np.empty((len(x), model.width))
        for slab in np.unique(j):
            mask = j == slab
            a = self._nodes[slab]
            z[mask] = x[mask] @ a.W1.T + a.b1
        return z

    def pieces(self) -> np.ndarray:
        """The slab times: v is steady on each slab."""
        return self.model.slab_times


# --------------------------------------------------------------------------------------------
# A field with an exact flow, for testing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RigidRotation:
    """Rigid rotation with angular velocity ω about ``center`` (about the x3 axis in 3D).

    v = ω (−(x2 − c2), x1 − c1) in 2D and ω (−(x2 − c2), x1 − c1, 0) in 3D. No cutoff: v is
    tangent to every disk or ball centred at ``center``, which is therefore invariant.
    """

    omega: float
    center: tuple[float, ...]
    T: float
    dim: int

    def __post_init__(self) -> None:
        if not _is_int(self.dim) or self.dim not in (2, 3):
            raise InputError(f"rotation dim must be 2 or 3, got {self.dim!r}")
        if len(self.center) != self.dim:
            raise InputError(
                f"rotation center must have {self.dim} entries, got {tuple(self.center)}"
            )
        if not (np.isfinite(self.T) and self.T > 0):
            raise InputError(f"final time T must be a finite number > 0, got {self.T!r}")
        if not np.isfinite(self.omega):
            raise InputError(f"rotation omega must be finite, got {self.omega!r}")
        object.__setattr__(self, "center", tuple(float(c) for c in self.center))

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """v(t, x) at ``x`` (shape=(n, dim)); returns shape=(n, dim)."""
        y = np.asarray(x, dtype=np.float64) - np.asarray(self.center)
        v = np.zeros_like(y)
        v[:, 0] = -self.omega * y[:, 1]
        v[:, 1] = self.omega * y[:, 0]
        return v

    def pieces(self) -> np.ndarray:
        """[0, T]: the field is steady."""
        return np.array([0.0, float(self.T)])

    def exact_flow(self, x: np.ndarray, t0: float, t1: float) -> np.ndarray:
        """The characteristics from t0 to t1: ``x`` (shape=(n, dim)) rotated by ω (t1 − t0)."""
        angle = self.omega * (t1 - t0)
        c, s = np.cos(angle), np.sin(angle)
        y = np.asarray(x, dtype=np.float64) - np.asarray(self.center)
        out = y.copy()
        out[:, 0] = c * y[:, 0] - s * y[:, 1]
        out[:, 1] = s * y[:, 0] + c * y[:, 1]
        return out + np.asarray(self.center)
