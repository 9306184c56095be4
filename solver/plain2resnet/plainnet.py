"""A plain net x_k = a_k(W_k x_{k-1} + b_k) (eq. 18) with an output function f, and its forward pass.

A ``PlainNet`` is a list of ``Layer`` (W, b, activation) plus the output function applied after
the last layer (softmax, logistic or identity; the terminal function f of Table 1). The output
function is *not* a layer: the flow model of ``solver.plain2resnet.flow`` transports the layers only,
so an MLP's softmax is left as the terminal function (eq. 6).

Layer activations are monotone, as section 3.2 assumes: identity, relu, leaky_relu (slope s in
[0, 1)), tanh, sigmoid. Readers for npz, ONNX and fitted scikit-learn models are in
``solver.plain2resnet.plainnet_io``.

The activations and their derivatives are ``solver.model.activations``'s (one convention
at kinks and one set of numerics for the velocity and the plain nets). numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from solver.errors import InputError
from solver.model.activations import DEFAULT_LEAKY_SLOPE, activation, sigmoid, softmax

LAYER_ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")
OUTPUT_FUNCTIONS = ("identity", "softmax", "logistic")

_OUTPUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda y: y,
    "softmax": softmax,
    "logistic": sigmoid,
}


def apply_output(name: str, y: np.ndarray) -> np.ndarray:
    """The output function ``name`` (one of ``OUTPUT_FUNCTIONS``) of y, shape (N, n_L), row-wise."""
    if name not in _OUTPUTS:
        raise InputError(
            f'invalid output function "{name}"; must be one of {list(OUTPUT_FUNCTIONS)}'
        )
    return _OUTPUTS[name](y)


@dataclass(frozen=True)
class Layer:
    """One plain layer x ↦ a(W x + b) (eq. 18).

    Attributes:
        weight: W, shape=(n_out, n_in).
        bias: b, shape=(n_out,).
        activation: one of ``LAYER_ACTIVATIONS``.
        slope: the negative slope s of leaky_relu, 0 <= s < 1 (ignored otherwise).
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: str
    slope: float = DEFAULT_LEAKY_SLOPE

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=float)
        b = np.asarray(self.bias, dtype=float).reshape(-1)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise InputError(
                f"a layer needs W of shape (n_out, n_in) and b of shape (n_out,), got W {w.shape}, b {b.shape}"
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise InputError("a layer's W or b holds NaN or inf")
        if self.activation not in LAYER_ACTIVATIONS:
            raise InputError(
                f'invalid activation "{self.activation}"; must be one of {list(LAYER_ACTIVATIONS)}'
            )
        # Section 3.2 needs a non-decreasing a, so that φ(τ, ·) of eq. 36 is invertible for τ < 1.
        if self.activation == "leaky_relu" and not 0.0 <= self.slope < 1.0:
            raise InputError(
                f"leaky_relu slope must be in [0, 1) (a non-decreasing, section 3.2), got {self.slope}"
            )
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """a(W x + b) for a batch x of shape (N, n_in); returns shape (N, n_out)."""
        a = activation(self.activation, self.slope, among=LAYER_ACTIVATIONS)
        return a.value(x @ self.weight.T + self.bias)


@dataclass(frozen=True)
class PlainNet:
    """x_L = layer_L ∘ … ∘ layer_1 (x_0), then the output function f (eq. 6, Table 1).

    Attributes:
        layers: the layers in order; consecutive widths must match.
        output: the output function, one of ``OUTPUT_FUNCTIONS``; scikit-learn's
            ``out_activation_`` (softmax for multi-class, logistic for binary/multi-label,
            identity for regression).
    """

    layers: tuple[Layer, ...]
    output: str = "identity"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise InputError("a plain net needs at least one layer")
        for k in range(1, len(layers)):
            if layers[k].n_in != layers[k - 1].n_out:
                raise InputError(
                    f"layer {k}: W{k} has shape {layers[k].weight.shape} but layer {k - 1} has "
                    f"{layers[k - 1].n_out} outputs"
                )
        if self.output not in OUTPUT_FUNCTIONS:
            raise InputError(
                f'invalid output function "{self.output}"; must be one of {list(OUTPUT_FUNCTIONS)}'
            )
        object.__setattr__(self, "layers", layers)

    @property
    def widths(self) -> list[int]:
        """[n_0, n_1, …, n_L]."""
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x_L for inputs x of shape (N, n_0); returns shape (N, n_L), before the output function."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.widths[0]:
            raise InputError(f"inputs must have shape (N, {self.widths[0]}), got {x.shape}")
        for layer in self.layers:
            x = layer(x)
        return x

    def output_function(self, y: np.ndarray) -> np.ndarray:
        """f(y) for y of shape (N, n_L), e.g. softmax probabilities."""
        return apply_output(self.output, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """f(x_L(x)), shape (N, n_L): for a multi-class MLPClassifier, its ``predict_proba``."""
        return self.output_function(self.forward(x))


def random_plain_net(
    activation: str,
    widths: tuple[int, ...] = (4, 8, 8, 3),
    seed: int = 0,
    rank: int | None = None,
    slope: float = DEFAULT_LEAKY_SLOPE,
) -> PlainNet:
    """A random MLP for tests and benchmarks: W ~ N(0, 1/n_in), b ~ N(0, 1/4), an affine last
    layer, softmax output.

    With ``rank``, the second layer's W is a product of random (n_out × rank)(rank × n_in)
    factors: rank-deficient, so data lie in its kernel and β matters (eq. 21).
    """
    rng = np.random.default_rng(seed)
    layers = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        weight = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
        if rank is not None and k == 1:
            weight = rng.normal(size=(n_out, rank)) @ rng.normal(size=(rank, n_in)) / np.sqrt(rank * n_in)
        last = k == len(widths) - 2
        layers.append(Layer(weight, 0.5 * rng.normal(size=n_out), "identity" if last else activation, slope=slope))
    return PlainNet(tuple(layers), output="softmax")
