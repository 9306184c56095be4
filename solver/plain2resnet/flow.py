"""The flow model of a plain net (section 3) and its re-discretization as a ResNet (section 4).

Every layer x_k = a(W x_{k-1} + b) (eq. 18) is embedded in one ambient dimension d with
rank(W) < d, and written as five flows of one unit of time each (eq. 48, 49):

    V = exp Ψ        ż = ḣ Ψ z            eq. 27      (rotation)
    S ≈ exp(Λ + βΠ)  ż = ḣ (Λ + βΠ) z     eq. 21, 29  (stretch; zero singular values → e^{-β})
    U = exp Φ        ż = ḣ Φ z            eq. 31      (rotation)
    + b              ż = ḣ b              eq. 33      (translation)
    a                φ(τ, Z) = (1 − h) Z + h a(Z)    eq. 36–42 (activation; none for identity)

with a time scaling h(τ) from 0 to 1 on [0, 1] (``solver.plain2resnet.time_scaling``; ḣ = 0 outside
(0, 1), so the flows glue smoothly, eq. 50). ``discretize`` takes l Euler substeps
per unit of time (eq. 52–58, 69–70). Only the stretch flow is approximate in the limit: the
zero singular values become e^{-β}.

numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.linalg

from solver.errors import InputError
from solver.plain2resnet.resnet import (
    LINEARIZED_ACTIVATIONS,
    ActivationBlock,
    FlowResNet,
    LinearBlock,
    ReluBlock,
    Stage,
)
from solver import convergence
from solver.model import activations
from solver.model.activations import DEFAULT_LEAKY_SLOPE
from solver.plain2resnet.plainnet import PlainNet
from solver.plain2resnet.rotations import proper_svd, rotation_log
from solver.plain2resnet.time_scaling import DEFAULT_SCALING, relu_flow_rate, time_scaling

ANCHORS = ("input", "zero")


@dataclass(frozen=True)
class LayerFlow:
    """The generators of one layer's flow (eq. 49) in dimension d.

    Attributes:
        psi: Ψ, shape=(d, d), skew-symmetric, V = exp Ψ.
        log_singular: the diagonal of Λ, shape=(d,): log s_i for i < rank, 0 beyond.
        rank: r, the number of nonzero singular values; Π = −1 on the last d − r.
        phi: Φ, shape=(d, d), skew-symmetric, U = exp Φ.
        bias: b, shape=(d,).
        activation: a (``solver.plain2resnet.plainnet.LAYER_ACTIVATIONS``); identity has no activation flow.
        slope: leaky_relu's negative slope.
    """

    psi: np.ndarray
    log_singular: np.ndarray
    rank: int
    phi: np.ndarray
    bias: np.ndarray
    activation: str
    slope: float

    def stretch(self, beta: float) -> np.ndarray:
        """The diagonal of Λ + βΠ (eq. 21), shape=(d,)."""
        d = self.log_singular.shape[0]
        return self.log_singular - beta * (np.arange(d) >= self.rank)


@dataclass(frozen=True)
class PlainFlow:
    """The flow model of a whole plain net: its layers' flows in one ambient dimension d."""

    dim: int
    n_in: int
    n_out: int
    layers: tuple[LayerFlow, ...]
    output: str


def embedding_dimension(net: PlainNet) -> int:
    """The smallest d with every W_k fitting in d × d and rank(W_k) < d (section 3.1.1)."""
    return int(
        max(
            max(layer.n_in, layer.n_out, int(np.linalg.matrix_rank(layer.weight)) + 1)
            for layer in net.layers
        )
    )


def flow_model(net: PlainNet, dim: int | None = None) -> PlainFlow:
    """The generators Ψ, Λ, Φ, b of every layer, embedded in dimension d (eq. 19–21).

    Args:
        net: the plain net.
        dim: the ambient dimension d; default ``embedding_dimension(net)``, the smallest.

    Raises:
        InputError: if ``dim`` is below ``embedding_dimension(net)``.
    """
    smallest = embedding_dimension(net)
    d = smallest if dim is None else int(dim)
    if d < smallest:
        raise InputError(
            f"ambient dimension {d} is too small: the widths and ranks of this net need d >= {smallest}"
        )
    layers = []
    for layer in net.layers:
        weight = np.zeros((d, d))
        weight[: layer.n_out, : layer.n_in] = layer.weight  # embedding: zero rows/columns
        bias = np.zeros(d)
        bias[: layer.n_out] = layer.bias
        u, s, v, rank = proper_svd(weight)
        log_s = np.where(np.arange(d) < rank, np.log(np.where(s > 0.0, s, 1.0)), 0.0)
        layers.append(
            LayerFlow(
                rotation_log(v), log_s, rank, rotation_log(u), bias, layer.activation, layer.slope
            )
        )
    return PlainFlow(d, net.widths[0], net.widths[-1], tuple(layers), net.output)


def activation_flow(
    tau: float,
    z: np.ndarray,
    activation: str,
    slope: float = DEFAULT_LEAKY_SLOPE,
    scaling: str = DEFAULT_SCALING,
) -> np.ndarray:
    """φ(τ, Z) = (1 − h(τ)) Z + h(τ) a(Z) (eq. 36), elementwise on Z of any shape."""
    h, one_minus_h, _ = time_scaling(tau, scaling)
    return one_minus_h * z + h * activations.activation(activation, slope).value(z)


def flow_map(flow: PlainFlow, beta: float, x: np.ndarray) -> np.ndarray:
    """The exact time-5L map of the flow model (eq. 48 at τ = 5 per layer): no discretization.

    Equals the plain net up to the stretch limit of eq. 22 (an error of order e^{-β}).

    Args:
        flow: the flow model.
        beta: β of eq. 21.
        x: inputs, shape=(N, n_0).

    Returns:
        x_L, shape=(N, n_L).
    """
    y = np.zeros((x.shape[0], flow.dim))
    y[:, : flow.n_in] = x
    for layer in flow.layers:
        y = y @ scipy.linalg.expm(layer.psi).T
        y = y * np.exp(layer.stretch(beta))
        y = y @ scipy.linalg.expm(layer.phi).T + layer.bias
        y = activation_flow(1.0, y, layer.activation, layer.slope)
    return y[:, : flow.n_out]


def discretize(
    flow: PlainFlow,
    substeps: int,
    beta: float,
    anchor: str = "input",
    scaling: str = DEFAULT_SCALING,
) -> FlowResNet:
    """Re-discretize the flow model with l Euler substeps per unit of time (section 4).

    Substep r of a stage uses τ_r = r/l, α = 1/l (eq. 52, 54). Substeps with ḣ(τ_r) = 0
    (r = 0) are the identity and are left out, so a stage has l − 1 blocks.

    Args:
        flow: the flow model (``flow_model``).
        substeps: l >= 1.
        beta: β > 0 of the stretch flow (eq. 21). Euler on the compressed directions is
            monotone only for α ḣ β < 1, i.e. l > max ḣ · β ≈ 2β.
        anchor: where tanh/sigmoid flows are linearized (eq. 64–67): "input" is the paper's
            z_k (data-dependent weights, converges as l grows); "zero" linearizes at Z = 0
            (constant weights; the linearization error does not vanish as l grows).
        scaling: the time scaling h, a name in ``solver.plain2resnet.time_scaling.TIME_SCALINGS``.

    Returns:
        The ResNet.
    """
    if not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise InputError(f"substeps must be an integer >= 1, got {substeps!r}")
    if not np.isfinite(beta) or beta <= 0:
        raise InputError(f"beta must be a positive number, got {beta!r}")
    if anchor not in ANCHORS:
        raise InputError(f'invalid anchor "{anchor}"; must be one of {list(ANCHORS)}')
    grid = Substeps.of(int(substeps), scaling)
    fixed = None if anchor == "input" else np.zeros(flow.dim)
    stages: list[Stage] = []
    for k, layer in enumerate(flow.layers):
        stages += _linear_stages(f"layer {k}", layer, beta, grid)
        if layer.activation != "identity":
            stages.append(_activation_stage(f"layer {k}: a", layer, grid, fixed))
    return FlowResNet(
        flow.dim,
        flow.n_in,
        flow.n_out,
        tuple(stages),
        flow.output,
        int(substeps),
        float(beta),
        scaling,
    )


class Substeps(NamedTuple):
    """The l Euler substeps r of one unit of time, τ_r = r α, α = 1/l (eq. 52, 54).

    Attributes:
        alpha: α.
        tau, h, keep: τ_r, h(τ_r) and 1 − h(τ_r), shape=(l,).
        steps: the Euler steps α ḣ(τ_r), shape=(l,).
        live: the r with ḣ(τ_r) > 0; the others are the identity and get no block.
        scaling: the time scaling h.
    """

    alpha: float
    tau: np.ndarray
    h: np.ndarray
    keep: np.ndarray
    steps: np.ndarray
    live: np.ndarray
    scaling: str

    @classmethod
    def of(cls, substeps: int, scaling: str) -> Substeps:
        alpha = 1.0 / substeps
        tau = np.arange(substeps) * alpha
        h, keep, hdot = time_scaling(tau, scaling)
        return cls(alpha, tau, h, keep, alpha * hdot, np.flatnonzero(hdot > 0.0), scaling)


def _linear_stages(label: str, layer: LayerFlow, beta: float, grid: Substeps) -> list[Stage]:
    """The stages V, S, U, b of one layer (eq. 52 for the flows of eq. 27, 29, 31, 33)."""
    steps, live, stretch = grid.steps, grid.live, layer.stretch(beta)
    return [
        Stage(f"{label}: V", tuple(LinearBlock(matrix=steps[r] * layer.psi) for r in live)),
        Stage(f"{label}: S", tuple(LinearBlock(matrix=steps[r] * stretch) for r in live)),
        Stage(f"{label}: U", tuple(LinearBlock(matrix=steps[r] * layer.phi) for r in live)),
        Stage(f"{label}: b", tuple(LinearBlock(shift=steps[r] * layer.bias) for r in live)),
    ]


def _activation_stage(
    label: str, layer: LayerFlow, grid: Substeps, fixed: np.ndarray | None
) -> Stage:
    """The stage of the activation flow φ (eq. 36): exact relu blocks (eq. 58, 59), or tanh and
    sigmoid linearized at the stage input (``fixed`` None) or at ``fixed`` (eq. 64–70)."""
    alpha, tau, live = grid.alpha, grid.tau, grid.live
    if layer.activation in ("relu", "leaky_relu"):
        slope = 0.0 if layer.activation == "relu" else layer.slope
        # Eq. 58, 59: W_r = α ḣ / (h − 1); for leaky relu α ḣ (1 − s) / (h (1 − s) − 1).
        weights = -alpha * relu_flow_rate(tau, slope, grid.scaling)
        return Stage(label, tuple(ReluBlock(float(weights[r])) for r in live))
    if layer.activation in LINEARIZED_ACTIVATIONS:
        rate = alpha * relu_flow_rate(tau, 0.0, grid.scaling)  # α ḣ / (1 − h)
        coefficients = (grid.steps, grid.h, grid.keep, rate)
        return Stage(
            label,
            tuple(
                ActivationBlock(layer.activation, *(float(c[r]) for c in coefficients), fixed)
                for r in live
            ),
        )
    raise InputError(f'no activation flow for "{layer.activation}"')


def plain_to_resnet(
    net: PlainNet, substeps: int, beta: float, dim: int | None = None, **options: str
) -> FlowResNet:
    """``discretize(flow_model(net, dim), substeps, beta, **options)``: the whole construction;
    ``options`` are ``discretize``'s ``anchor`` and ``scaling``."""
    return discretize(flow_model(net, dim), substeps, beta, **options)


def convergence_study(
    net: PlainNet,
    x: np.ndarray,
    substeps: list[int],
    beta: float,
    anchor: str = "input",
    scaling: str = DEFAULT_SCALING,
) -> list[dict]:
    """max |ResNet(x) − plain net(x)| for each l, with the observed order log2(e_{l/2} / e_l).

    Args:
        net: the plain net.
        x: inputs, shape=(N, n_0).
        substeps: the values of l, increasing (doubling, for the order to be meaningful).
        beta: β of eq. 21.
        anchor, scaling: see ``discretize``.

    Returns:
        One row per l: {"substeps", "blocks", "error", "order"} (order None for the first row).
    """
    flow = flow_model(net)
    reference = net.forward(x)
    rows: list[dict] = []
    for l in substeps:
        resnet = discretize(flow, l, beta, anchor, scaling)
        error = float(np.max(np.abs(resnet.forward(x) - reference)))
        rows.append({"substeps": l, "blocks": resnet.num_blocks, "error": error})
    add_orders(rows)
    return rows


def add_orders(rows: list[dict]) -> None:
    """Sets each row's "order", the observed order against the previous row's l (step 1/l):
    None for the first row and where an error is 0."""
    steps = [1.0 / r["substeps"] for r in rows]
    orders = convergence.observed_orders(steps, [r["error"] for r in rows])
    for row, order in zip(rows, [np.nan, *orders]):
        row["order"] = float(order) if np.isfinite(order) else None


def study_order(rows: list[dict], smallest: int = 1) -> float:
    """The least-squares order over the rows with l >= ``smallest`` (``solver.convergence``)."""
    kept = [r for r in rows if r["substeps"] >= smallest]
    return convergence.fitted_order([1.0 / r["substeps"] for r in kept], [r["error"] for r in kept])
