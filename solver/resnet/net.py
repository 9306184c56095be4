"""The explicit ResNet of a learned velocity field: eq. 17, or blocks of a higher-order scheme.

The characteristics x' = v(t, x), x(0) = x0 (eq. 3) carry u: u(0, x0) = f(q(T; x0)) (eq. 6).
Cutting [0, T] into N equal steps t_k = k T / N, s = T / N, and taking one explicit step per
block gives the ResNet of eq. 13, f ∘ (block_N) ∘ … ∘ (block_1), with (eq. 17, cutoff χ kept)

    x_k = x_{k-1} + χ(x_{k-1}) · [W̄2_k a(W1_k x_{k-1} + b1_k) + b̄2_k],  W̄2 = s W2, b̄2 = s b2.

``scheme="midpoint"`` and ``"rk4"`` make each block an explicit Runge–Kutta step (2 and 4
stages; each stage is one such 2-layer sub-block, its W̄2, b̄2 scaled by s like eq. 16):

    K̄_i = χ(y_i) · [W̄2_{k,i} a(W1_{k,i} y_i + b1_{k,i}) + b̄2_{k,i}],
    y_i = x_{k-1} + Σ_j a_ij K̄_j,
    x_k = x_{k-1} + Σ_i b_i K̄_i        (Butcher tableau a, b, c of the scheme).

Where θ(t) is sampled (documented choice): θ is piecewise constant on L slabs, and every stage
of block k uses the slab holding the block's midpoint t_{k-1/2}. That time lies strictly inside
the block, so no rounding of t_{k-1} or t_k onto a slab time can pick the wrong slab; when N is
a multiple of L the block lies in that slab and the scheme keeps its order; a block that
straddles a slab time (N not a multiple of L) uses the slab covering most of it, a local error
O(s) in at most L − 1 blocks, so Euler stays first order (measured ~1.0 with L = 3,
N = 4 … 256), while midpoint and rk4 drop to first order too (measured). Choose N a multiple of
L for them.

The exported net documents its input scaling: it takes data coordinates and first maps them to
Ω by x_Ω = scale ⊙ x_data + shift.

numpy only, and independent of the FE solver and of the characteristics solver, so that either
can check it: ``depth_table`` takes the reference end points as an argument. ONNX export is in
``solver.resnet.onnx_net``; the npz layout is that of ``solver.resnet.formats``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from solver import __version__
from solver.model.activations import sigmoid, softmax
from solver.model.domain import Ball, Box, Domain
from solver.model.input_layer import InputLayer, squash
from solver.errors import InputError
from solver.resnet.formats import load_net_npz, parse_meta, save_net_npz
# _affine is private to model/terminal.py: sharing it is what guarantees output_layer's weights are
# those of make_terminal.
from solver.model.terminal import _affine, make_terminal, terminal_defaults
from solver.model.velocity import ACTIVATIONS, VelocityModel, activation

log = logging.getLogger("solver")

FORMAT = "transport-resnet"
# Version 2: the npz convention of solver.resnet.formats (version 1 named the npz entry
# "metadata" and the version key "format_version"; both still load). Version 3: ``input_dim``
# and a learned input layer (``input_weights``, ``input_bias``; ``input_scaling.learned``).
FORMAT_VERSION = 3
OUTPUT_KINDS = ("linear", "softmax", "sigmoid")


# --------------------------------------------------------------------------------------------
# Schemes: explicit Runge–Kutta tableaux
# --------------------------------------------------------------------------------------------


class Tableau(NamedTuple):
    """An explicit Runge–Kutta method: stage times c, coupling a (strictly lower), weights b."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int


SCHEMES: dict[str, Tableau] = {
    # Euler's c = 1/2 is the time θ is sampled at, the block midpoint (module docstring).
    "euler": Tableau(a=((),), b=(1.0,), c=(0.5,), order=1),
    "midpoint": Tableau(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5), order=2),
    "rk4": Tableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
        c=(0.0, 0.5, 0.5, 1.0),
        order=4,
    ),
}


def scheme_tableau(name: str) -> Tableau:
    """The tableau of the scheme ``name``; raises InputError for an unknown name."""
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise InputError(f'Invalid scheme "{name}". Must be one of {list(SCHEMES)}') from None


# --------------------------------------------------------------------------------------------
# The output layer f
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OutputLayer:
    """The terminal function f as the net's output layer: z = x Aᵀ + b, then a link.

    Attributes:
        kind: ``"linear"`` (logits z), ``"softmax"`` (softmax of z) or ``"sigmoid"`` (K = 1).
        weights: A, shape=(K, d).
        bias: b, shape=(K,).
    """

    kind: str
    weights: np.ndarray
    bias: np.ndarray

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise InputError(
                f'Invalid output kind "{self.kind}". Must be one of {list(OUTPUT_KINDS)}'
            )
        weights = np.array(self.weights, dtype=np.float64, ndmin=2)
        bias = np.array(self.bias, dtype=np.float64, ndmin=1)
        if weights.ndim != 2 or bias.shape != (weights.shape[0],):
            raise InputError(
                f"output weights must have shape (K, d) and bias shape (K,), got "
                f"{weights.shape} and {bias.shape}"
            )
        if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(bias))):
            raise InputError("output weights and bias must be finite")
        if self.kind == "softmax" and weights.shape[0] < 2:
            raise InputError(f"softmax output needs K >= 2 components, got {weights.shape[0]}")
        if self.kind == "sigmoid" and weights.shape[0] != 1:
            raise InputError(f"sigmoid output needs K = 1 component, got {weights.shape[0]}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """f at points ``x`` (shape=(n, d)); returns shape=(n, K)."""
        z = x @ self.weights.T + self.bias
        if self.kind == "softmax":
            return softmax(z)
        if self.kind == "sigmoid":
            return sigmoid(z)
        return z

    @classmethod
    def identity(cls, dim: int) -> OutputLayer:
        """f = id: the net's output is the flow map x_N itself."""
        return cls("linear", np.eye(dim), np.zeros(dim))


def output_layer(kind: str, dim: int, **params: Any) -> OutputLayer:
    """The output layer equal to ``problems.make_terminal(kind, dim, **params)``.

    ``Terminal`` keeps its weights in a closure, so they are rebuilt here from the same
    parameters (a config's ``terminal.params``) by the same code as ``make_terminal``: the
    weights given, or the same random ones for the same ``seed`` and ``scale``.

    Raises:
        InputError: For a kind that is not an affine map plus link (gaussian, sine), or bad
            parameters (named ``terminal.<key>``).
    """
    if kind not in OUTPUT_KINDS:
        raise InputError(
            f'terminal kind "{kind}" cannot be a ResNet output layer; it must be one of '
            f"{list(OUTPUT_KINDS)}"
        )
    make_terminal(kind, dim, **params)  # the same validation and messages as the solver's f
    p = {**terminal_defaults(kind, dim), **params}
    k = 1 if kind == "sigmoid" else int(p["num_components"])
    weights, bias = _affine(dim, k, p)
    return OutputLayer(kind, weights, bias)


# --------------------------------------------------------------------------------------------
# The domain's cutoff χ, as data
# --------------------------------------------------------------------------------------------


def domain_description(domain: Domain) -> dict[str, Any]:
    """The domain as JSON data: ``{"kind": "box", "lower", "upper"}`` or disk/ball with
    ``center``, ``radius``."""
    if isinstance(domain, Box):
        return {"kind": "box", "lower": list(map(float, domain.lower)),
                "upper": list(map(float, domain.upper))}
    if isinstance(domain, Ball):
        return {"kind": "disk" if domain.dim == 2 else "ball",
                "center": list(map(float, domain.center)), "radius": float(domain.radius)}
    raise InputError(f"cannot export the cutoff of domain {domain!r}: expected a Box or Ball")


def domain_from_description(desc: dict[str, Any], source: str | None = None) -> Domain:
    """The inverse of ``domain_description``; ``source`` names the file for errors."""
    try:
        if desc["kind"] == "box":
            return Box(tuple(map(float, desc["lower"])), tuple(map(float, desc["upper"])))
        if desc["kind"] in ("disk", "ball"):
            return Ball(tuple(map(float, desc["center"])), float(desc["radius"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"bad domain description {desc!r}: {err}", source) from None
    raise InputError(
        f"bad domain kind {desc.get('kind')!r}: expected box, disk or ball", source
    )


# --------------------------------------------------------------------------------------------
# The net
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ResNet:
    """An explicit ResNet f ∘ block_N ∘ … ∘ block_1 ∘ (input scaling), all parameters as arrays.

    Block k has S stages (S = 1, 2, 4 for euler, midpoint, rk4); stage i is the 2-layer
    sub-block K̄ = χ(y) [W̄2 a(W1 y + b1) + b̄2] with W̄2 = s_k W2(τ), b̄2 = s_k b2(τ) (eq. 16)
    at its sample time τ (see the module docstring).

    Attributes:
        scheme: A key of ``SCHEMES``.
        activation: A key of ``velocity.ACTIVATIONS``.
        domain: Ω; its cutoff χ multiplies every stage (it vanishes on ∂Ω).
        W1: Inner weights, shape=(N, S, m, d).
        b1: Inner biases, shape=(N, S, m).
        W2: Outer weights times the step, s_k W2, shape=(N, S, d, m).
        b2: Outer biases times the step, s_k b2, shape=(N, S, d).
        block_times: t_0 = 0 < … < t_N = T, shape=(N + 1,).
        sample_times: The time θ was sampled at for each stage (the block's midpoint),
            shape=(N, S).
        output: The output layer f.
        input_scale: ``scale`` of x_Ω = scale ⊙ x_data + shift, shape=(d,).
        input_shift: ``shift``, shape=(d,).
        input_weights: a learned input layer's W (the standardization folded in), shape=(d, F),
            or None. With it x_Ω = shift + scale ⊙ tanh(W x_data + input_bias) (box), or for a
            ball shift + scale ⊙ tanh(|w|) w/|w|, w = W x_data + input_bias
            (``model/input_layer.py``): the net takes F features.
        input_bias: the learned input layer's bias, shape=(d,) (with ``input_weights``).
        input_ball: the learned input layer's squash is radial (Ω a ball).
        slabs: The velocity model's number of slabs L, for the record.
        source: The file the net was loaded from, for error messages; None if built here.
        noise: ε ≥ 0. If > 0, the net is stochastic: after block k, x_k += √(2ε s_k) ξ_k with
            ξ_k ~ N(0, I), then x_k is reflected into Ω (``Domain.reflect``): Euler–Maruyama of
            dX = v dt + √(2ε) dW reflected at ∂Ω, whose mean prediction E[f(x_N)] is the viscous
            PDE's u(0, x) (``model/stochastic.py``). Average M samples (``sample_mean``).
    """

    scheme: str
    activation: str
    domain: Domain
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    block_times: np.ndarray
    sample_times: np.ndarray
    output: OutputLayer
    input_scale: np.ndarray
    input_shift: np.ndarray
    slabs: int = 1
    source: str | None = dataclass_field(default=None, compare=False)
    noise: float = 0.0
    input_weights: np.ndarray | None = None
    input_bias: np.ndarray | None = None
    input_ball: bool = False

    def __post_init__(self):
        src = self.source
        if not (isinstance(self.noise, (int, float, np.floating)) and np.isfinite(self.noise)
                and self.noise >= 0):
            raise InputError(f"noise (the viscosity ε) must be a finite number >= 0, got {self.noise!r}", src)
        object.__setattr__(self, "noise", float(self.noise))
        tableau = _tableau(self.scheme, src)
        if self.activation not in ACTIVATIONS:
            raise InputError(
                f'Invalid activation "{self.activation}". Must be one of {list(ACTIVATIONS)}', src
            )
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float64)
                  for name in ("W1", "b1", "W2", "b2", "block_times", "sample_times",
                               "input_scale", "input_shift")}
        W1 = arrays["W1"]
        if W1.ndim != 4 or W1.shape[0] < 1:
            raise InputError(f"W1 must have shape (N, S, m, d) with N >= 1, got {W1.shape}", src)
        n, s, m, d = W1.shape
        expected = {"b1": (n, s, m), "W2": (n, s, d, m), "b2": (n, s, d),
                    "block_times": (n + 1,), "sample_times": (n, s),
                    "input_scale": (d,), "input_shift": (d,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise InputError(
                    f"{name} must have shape {shape} for W1 of shape {W1.shape}, got "
                    f"{arrays[name].shape}", src
                )
        if s != len(tableau.b):
            raise InputError(
                f'scheme "{self.scheme}" has {len(tableau.b)} stages, the arrays have {s}', src
            )
        for name, a in arrays.items():
            if not np.all(np.isfinite(a)):
                raise InputError(f"{name} must be finite", src)
        if np.any(arrays["input_scale"] == 0):
            raise InputError(f"input scale must be nonzero, got {arrays['input_scale']}", src)
        if (self.input_weights is None) != (self.input_bias is None):
            raise InputError("a learned input layer needs both input_weights and input_bias", src)
        if self.input_weights is not None:
            layer = {"input_weights": np.asarray(self.input_weights, dtype=np.float64),
                     "input_bias": np.asarray(self.input_bias, dtype=np.float64)}
            if layer["input_weights"].ndim != 2 or layer["input_weights"].shape[0] != d or layer["input_bias"].shape != (d,):
                raise InputError(f"input_weights must have shape ({d}, F) and input_bias ({d},), got "
                                 f"{layer['input_weights'].shape} and {layer['input_bias'].shape}", src)
            arrays.update(layer)
        if getattr(self.domain, "dim", None) != d:
            raise InputError(f"domain {self.domain!r} does not have the net's dimension {d}", src)
        if self.output.weights.shape[1] != d:
            raise InputError(
                f"output weights must have shape (K, {d}), got {self.output.weights.shape}", src
            )
        for name, a in arrays.items():
            a = a.copy()
            a.flags.writeable = False  # the net is a value, like MLPField's θ
            object.__setattr__(self, name, a)

    @property
    def dim(self) -> int:
        """The flow's dimension d (Ω's)."""
        return self.W1.shape[3]

    @property
    def input_dim(self) -> int:
        """The number of features the net takes: F with a learned input layer, else d."""
        return self.dim if self.input_weights is None else self.input_weights.shape[1]

    @property
    def width(self) -> int:
        """The hidden width m."""
        return self.W1.shape[2]

    @property
    def depth(self) -> int:
        """The number of blocks N."""
        return self.W1.shape[0]

    @property
    def stages(self) -> int:
        """Stages (2-layer sub-blocks) per block S."""
        return self.W1.shape[1]

    @property
    def T(self) -> float:
        return float(self.block_times[-1])

    @property
    def tableau(self) -> Tableau:
        return SCHEMES[self.scheme]

    def metadata(self) -> dict[str, Any]:
        """The net's description as JSON data (what the npz and ONNX files carry)."""
        tab = self.tableau
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "producer": f"solver {__version__}",
            "dim": self.dim,
            "width": self.width,
            "depth": self.depth,
            "scheme": self.scheme,
            "stages": self.stages,
            "tableau": {"a": [list(r) for r in tab.a], "b": list(tab.b), "c": list(tab.c)},
            "activation": self.activation,
            "domain": domain_description(self.domain),
            "cutoff": "v = chi(x) * [W2 a(W1 x + b1) + b2], chi = 0 on the boundary of the domain",
            "T": self.T,
            "slabs": int(self.slabs),
            "block_times": self.block_times.tolist(),
            "sample_times": self.sample_times.tolist(),
            "input_dim": self.input_dim,
            "input_scaling": {
                "formula": "x_domain = scale * x_data + shift",
                "scale": self.input_scale.tolist(),
                "shift": self.input_shift.tolist(),
            } if self.input_weights is None else {
                "formula": ("x_domain = shift + scale * tanh(|w|) * w / |w|" if self.input_ball else
                            "x_domain = shift + scale * tanh(w)") + ", w = input_weights @ x_data + input_bias",
                "scale": self.input_scale.tolist(),
                "shift": self.input_shift.tolist(),
                "learned": True,
                "ball": bool(self.input_ball),
            },
            "output": {"kind": self.output.kind,
                       "num_components": self.output.num_components},
            **({"noise": {
                "viscosity": self.noise,
                "formula": "after block k: x_k += sqrt(2 * viscosity * s_k) * xi_k, xi_k ~ N(0, I), "
                           "then x_k reflected into the domain",
                "mean": "the prediction is the mean of f(x_N) over M samples (standard error ~ M^-1/2)",
            }} if self.noise > 0 else {}),
        }


def _tableau(scheme: str, source: str | None) -> Tableau:
    try:
        return scheme_tableau(scheme)
    except InputError as err:
        raise InputError(str(err), source) from None


def _vector(name: str, value: Any, dim: int) -> np.ndarray:
    try:
        a = np.broadcast_to(np.asarray(value, dtype=np.float64), (dim,)).copy()
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number or shape ({dim},), got {value!r}") from None
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} must be finite, got {value!r}")
    return a


def resnet_from_velocity(
    model: VelocityModel,
    theta: np.ndarray,
    depth: int,
    scheme: str = "euler",
    output: OutputLayer | None = None,
    input_scale: float | np.ndarray = 1.0,
    input_shift: float | np.ndarray = 0.0,
    noise: float = 0.0,
    input_layer: InputLayer | None = None,
    input_q: np.ndarray | None = None,
) -> ResNet:
    """The ResNet of ``depth`` blocks that integrates v(·, ·; θ) from 0 to T (eqs. 13, 17);
    with ``noise`` = ε > 0 the stochastic one (see ``ResNet.noise``).

    Args:
        model: The velocity model of eq. 2.
        theta: Its parameters, shape=(model.n_params,).
        depth: The number of blocks N >= 1 (equal steps s = T / N).
        scheme: ``"euler"`` (eq. 17), ``"midpoint"`` or ``"rk4"``.
        output: The output layer f (see ``output_layer``); None for f = id (the net's output is
            then the flow map x_N).
        input_scale: ``scale`` in x_Ω = scale ⊙ x_data + shift, a number or shape=(d,).
        input_shift: ``shift``, a number or shape=(d,).
        input_layer, input_q: a learned input layer and its parameters q, in place of the
            scaling (the net then takes the layer's F features).

    Returns:
        The net; a larger ``depth`` refines the same flow.
    """
    tableau = scheme_tableau(scheme)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise InputError(f"ResNet depth must be an integer >= 1, got {depth!r}")
    if output is None:
        output = OutputLayer.identity(model.dim)
    if not isinstance(output, OutputLayer):
        raise InputError(
            f"output must be an OutputLayer (build one with resnet.output_layer(kind, dim, "
            f"**params)), got {type(output).__name__}"
        )
    model.unpack(theta)  # checks θ's shape, with the model's message
    if tableau.order > 1 and depth % model.slabs:
        log.warning(
            "ResNet depth %d is not a multiple of the %d slabs: blocks straddle slab times, "
            "where θ jumps or kinks, and the %s blocks lose their order there",
            depth, model.slabs, scheme,
        )
    d, m, n, s = model.dim, model.width, int(depth), len(tableau.c)
    times = np.linspace(0.0, float(model.T), n + 1)
    step = np.diff(times)  # s_k; equal up to rounding
    # Every stage samples the slab holding the block midpoint: see the module docstring.
    sample = np.repeat((0.5 * (times[:-1] + times[1:]))[:, None], s, axis=1)  # shape (N, S)
    W1 = np.empty((n, s, m, d))
    b1 = np.empty((n, s, m))
    W2 = np.empty((n, s, d, m))
    b2 = np.empty((n, s, d))
    for k in range(n):
        for i in range(s):
            p = model.params_at(theta, float(sample[k, i]))
            W1[k, i], b1[k, i] = p.W1, p.b1
            W2[k, i], b2[k, i] = step[k] * p.W2, step[k] * p.b2  # eq. 16
    learned = {}
    if input_layer is not None:
        W, c = input_layer.folded(input_q)
        learned = dict(input_weights=W, input_bias=c, input_ball=input_layer.ball)
        input_scale, input_shift = input_layer.half, input_layer.center
    return ResNet(
        scheme=scheme, activation=model.activation, domain=model.domain,
        W1=W1, b1=b1, W2=W2, b2=b2, block_times=times, sample_times=sample, output=output,
        input_scale=_vector("input_scale", input_scale, d),
        input_shift=_vector("input_shift", input_shift, d),
        slabs=model.slabs,
        noise=noise,
        **learned,
    )


# --------------------------------------------------------------------------------------------
# The pure-numpy forward pass (the reference for the ONNX graph)
# --------------------------------------------------------------------------------------------


def check_input(x: np.ndarray, dim: int, source: str | None, dtype: Any = np.float64) -> np.ndarray:
    """``x`` as an array of ``dtype``; InputError naming ``source`` unless its shape is (n, dim)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(
            f"ResNet input must have shape (n, {dim}) (the net's input dimension), "
            f"got shape {x.shape}", source
        )
    return x.astype(dtype, copy=False)


def to_domain(net: ResNet, x_data: np.ndarray) -> np.ndarray:
    """x_Ω = scale ⊙ x_data + shift for ``x_data`` of shape=(n, d), or the learned input layer
    for ``x_data`` of shape=(n, F)."""
    x = check_input(x_data, net.input_dim, net.source)
    if net.input_weights is None:
        return x * net.input_scale + net.input_shift
    return squash(x @ net.input_weights.T + net.input_bias, net.input_shift, net.input_scale, net.input_ball)


def noise_scales(net: ResNet) -> np.ndarray:
    """√(2ε s_k) of each block, shape=(N,) (zeros for a deterministic net)."""
    return np.sqrt(2.0 * net.noise * np.diff(net.block_times))


def flow_map(net: ResNet, x_data: np.ndarray, rng: np.random.Generator | None = None,
             xi: np.ndarray | None = None) -> np.ndarray:
    """x_N: the blocks applied to the scaled input; shape=(n, d), in Ω's coordinates.

    Args:
        net: The net.
        x_data: Points in data coordinates, shape=(n, d); scaled into Ω first.
        rng: for a noisy net (``net.noise`` > 0), the generator of ξ (default: a fresh one).
        xi: for a noisy net, the ξ_k themselves instead, shape=(N, n, d).

    Returns:
        The end points x_N ≈ q(T; x_Ω) (eq. 12), shape=(n, d); for a noisy net one sample.
    """
    x = to_domain(net, x_data)
    scales = noise_scales(net)
    if net.noise > 0 and xi is None:
        rng = np.random.default_rng() if rng is None else rng
    if xi is not None and np.shape(xi) != (net.depth, *x.shape):
        raise InputError(f"xi must have shape {(net.depth, *x.shape)}, got {np.shape(xi)}", net.source)
    act = activation(net.activation).value
    tab = net.tableau
    for k in range(net.depth):
        stages: list[np.ndarray] = []
        for i in range(net.stages):
            y = x
            for a_ij, kj in zip(tab.a[i], stages):
                if a_ij != 0.0:
                    y = y + a_ij * kj
            hidden = act(y @ net.W1[k, i].T + net.b1[k, i])
            stages.append(net.domain.cutoff(y)[:, None] * (hidden @ net.W2[k, i].T + net.b2[k, i]))
        for b_i, ki in zip(tab.b, stages):
            if b_i != 0.0:
                x = x + b_i * ki
        if net.noise > 0:
            x = x + scales[k] * (rng.standard_normal(x.shape) if xi is None else xi[k])
            net.domain.reflect(x)
    return x


def forward(net: ResNet, x_data: np.ndarray, rng: np.random.Generator | None = None,
            xi: np.ndarray | None = None) -> np.ndarray:
    """The net's output f(x_N) (eq. 13): logits, probabilities or x_N; shape=(n, K). For a
    noisy net one sample (``rng``, ``xi`` as in ``flow_map``)."""
    return net.output(flow_map(net, x_data, rng, xi))


def sample_mean(net: ResNet, x_data: np.ndarray, samples: int,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mean of ``samples`` = M outputs of a noisy net and its standard error (std / √M),
    each shape=(n, K): how a user predicts with the stochastic ResNet (its mean converges to the
    viscous PDE's u(0, x) up to the O(s) bias of the blocks, at the rate M^{-1/2})."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
        raise InputError(f"samples must be an integer >= 2, got {samples!r}", net.source)
    rng = np.random.default_rng() if rng is None else rng
    total = total2 = 0.0
    for _ in range(samples):
        y = forward(net, x_data, rng)
        total = total + y
        total2 = total2 + y * y
    mean = total / samples
    var = np.maximum(total2 / samples - mean * mean, 0.0) * samples / (samples - 1)
    return mean, np.sqrt(var / samples)


# --------------------------------------------------------------------------------------------
# npz + JSON metadata
# --------------------------------------------------------------------------------------------

_ARRAYS = ("W1", "b1", "W2", "b2")
WHAT = "an exported ResNet"


def save_npz(net: ResNet, path: str | Path) -> Path:
    """Write the net to ``path`` (.npz, ``solver.resnet.formats``): the block arrays, the output
    layer's ``output_weights`` and ``output_bias``, and ``net.metadata()`` (incl. the input
    scaling) as the JSON entry ``meta``.

    Returns:
        The path written (``.npz`` appended if missing).
    """
    arrays = {name: getattr(net, name) for name in _ARRAYS}
    arrays.update(output_weights=net.output.weights, output_bias=net.output.bias)
    if net.input_weights is not None:
        arrays.update(input_weights=net.input_weights, input_bias=net.input_bias)
    return save_net_npz(path, FORMAT, FORMAT_VERSION, net.metadata(), arrays)


def parse_metadata(text: str, source: str) -> dict[str, Any]:
    """Parse and check the JSON metadata of an exported net (npz or ONNX); InputError naming
    ``source`` if it is not that of a ResNet this solver reads."""
    meta = parse_meta(text, FORMAT, FORMAT_VERSION, source, WHAT)
    _check_time(meta, source)
    return meta


def _check_time(meta: dict[str, Any], source: str) -> None:
    """Files written before θ was always constant on slabs record ``"time"``: "constant" loads,
    a net of a field linear in time (which this solver no longer makes) does not."""
    time = meta.get("time", "constant")
    if time != "constant":
        raise InputError(
            f'the net was exported from a velocity field with time = {time!r}; this solver reads '
            f'only nets of fields constant in time on slabs (time = "constant")', source
        )


def _metadata_version_1(entries: dict[str, np.ndarray]) -> str | None:
    """Version 1 kept the metadata in the entry ``metadata`` (its version: ``format_version``)."""
    return str(entries.pop("metadata")) if "metadata" in entries else None


def load_npz(path: str | Path) -> ResNet:
    """Read a net written by ``save_npz`` (of this or an earlier format version).

    Raises:
        InputError: If the file is missing, is not an npz, or is not an exported ResNet (no or
            bad metadata, missing or inconsistent arrays); the message names the file.
    """
    src = str(path)
    meta, entries = load_net_npz(path, FORMAT, FORMAT_VERSION, WHAT, _metadata_version_1)
    _check_time(meta, src)
    missing = [n for n in (*_ARRAYS, "output_weights", "output_bias") if n not in entries]
    if missing:
        raise InputError(f"exported ResNet is missing the arrays {missing}", src)
    try:
        net = _net_from_meta(meta, entries, src)
    except InputError as err:  # before ValueError: InputError is one
        if err.source:
            raise
        raise InputError(str(err), src) from None
    except KeyError as err:
        raise InputError(f"exported ResNet metadata lacks the key {err}", src) from None
    except (TypeError, ValueError) as err:
        raise InputError(f"exported ResNet metadata is malformed: {err}", src) from None
    if meta.get("dim") != net.dim or meta.get("depth") != net.depth:
        raise InputError(
            f"metadata says dim {meta.get('dim')}, depth {meta.get('depth')}, the arrays have "
            f"dim {net.dim}, depth {net.depth}", src
        )
    return net


def _net_from_meta(meta: dict[str, Any], arrays: dict[str, np.ndarray], src: str) -> ResNet:
    """The net the metadata and arrays of a saved file describe (raises KeyError, TypeError,
    ValueError and InputError for malformed ones)."""
    scaling = meta["input_scaling"]
    return ResNet(
        scheme=meta["scheme"],
        activation=meta["activation"],
        domain=domain_from_description(meta["domain"], src),
        **{name: arrays[name] for name in _ARRAYS},
        block_times=np.asarray(meta["block_times"], dtype=np.float64),
        sample_times=np.asarray(meta["sample_times"], dtype=np.float64),
        output=OutputLayer(meta["output"]["kind"], arrays["output_weights"],
                           arrays["output_bias"]),
        input_scale=np.asarray(scaling["scale"], dtype=np.float64),
        input_shift=np.asarray(scaling["shift"], dtype=np.float64),
        slabs=int(meta.get("slabs", 1)),
        source=src,
        noise=float(meta.get("noise", {}).get("viscosity", 0.0)),
        input_weights=arrays.get("input_weights") if scaling.get("learned") else None,
        input_bias=arrays.get("input_bias") if scaling.get("learned") else None,
        input_ball=bool(scaling.get("ball", False)),
    )


# --------------------------------------------------------------------------------------------
# Depth study: error against a reference flow, observed orders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthRow:
    """One row of a depth table.

    Attributes:
        depth: N.
        max_error: max over the points of |x_N − q(T)| (Euclidean).
        order: log(e_prev / e) / log(N / N_prev) against the previous row; NaN for the first.
        label_agreement: Fraction of points where argmax f(x_N) = argmax f(q(T)) (for K = 1:
            the same side of 1/2); NaN without an output layer to compare.
    """

    depth: int
    max_error: float
    order: float
    label_agreement: float


def labels(values: np.ndarray) -> np.ndarray:
    """Class labels of outputs (shape=(n, K)): argmax, or value > 1/2 for K = 1 (sigmoid)."""
    return (values[:, 0] > 0.5).astype(int) if values.shape[1] == 1 else values.argmax(axis=1)


def depth_table(
    model: VelocityModel,
    theta: np.ndarray,
    x0: np.ndarray,
    q_T: np.ndarray,
    depths: list[int],
    scheme: str = "euler",
    output: OutputLayer | None = None,
) -> list[DepthRow]:
    """Export at each depth and measure the flow map against reference end points.

    Args:
        model, theta: The velocity model and its parameters.
        x0: Start points in Ω, shape=(n, d) (no input scaling is applied).
        q_T: The reference end points q(T; x0), e.g. ``characteristics.flow``, shape=(n, d).
        depths: Increasing depths N.
        scheme: The block scheme.
        output: If given, the label agreement of f(x_N) with f(q(T)) is measured too.

    Returns:
        One row per depth.
    """
    rows: list[DepthRow] = []
    ref_labels = None if output is None else labels(output(q_T))
    for n in depths:
        net = resnet_from_velocity(model, theta, n, scheme)
        x_n = flow_map(net, x0)
        err = float(np.max(np.linalg.norm(x_n - q_T, axis=1)))
        order = float("nan")
        if rows:
            prev = rows[-1]
            order = float(np.log(prev.max_error / err) / np.log(n / prev.depth))
        agree = float("nan")
        if output is not None:
            agree = float(np.mean(labels(output(x_n)) == ref_labels))
        rows.append(DepthRow(n, err, order, agree))
    return rows
