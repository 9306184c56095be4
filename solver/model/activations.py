"""The one registry of activations a and their derivatives a', elementwise on arrays of any shape.

Used by the velocity field (``solver.model.velocity``: relu, tanh, softplus, sigmoid) and by the
plain nets of ``solver.plain2resnet`` (identity, relu, leaky_relu, tanh, sigmoid), with the
ONNX operator of each (``ONNX_OPS``) for the readers and writers of nets. The ONNX writer of
``solver.plain2resnet.resnet_export`` builds the same a' as here from Exp nodes.

Conventions, the same for every user:

- At a kink, a' is the derivative from the left: relu'(0) = 0 and leaky_relu'(0) = s (as PyTorch
  and JAX take it). A kink is a set of measure zero for the points and parameters; what matters
  is that the velocity, the plain nets and their tests agree.
- tanh' = 4e/(1 + e)² with e = exp(-2|z|), and σ' = e/(1 + e)² with e = exp(-|z|): accurate to
  relative rounding where they are tiny (1 - tanh² rounds to 0 for |z| > 19), which the inverse
  Jacobian of a linearized activation flow divides by, and one exp each (the products
  σ(z)σ(-z) they equal took 5× as long: the semi-Lagrangian adjoint takes a' at every node of
  every RK4 stage). σ is scipy's expit: no overflow, accurate in both tails.

numpy and scipy.special only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit

from solver.errors import InputError

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_LEAKY_SLOPE",
    "ONNX_OPS",
    "Activation",
    "activation",
    "sigmoid",
    "softmax",
]

DEFAULT_LEAKY_SLOPE = 0.01  # ONNX LeakyRelu's default alpha


class Activation(NamedTuple):
    """An activation a and its derivative a', both elementwise on arrays of any shape.

    ``smooth`` is False if a' jumps (relu at 0): v then has kinks in x, which an ODE solver
    must treat with care (see ``solver.model.velocity.MLPField.kinks``).
    """

    name: str
    value: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    smooth: bool = True
    # a'(z) from a = a(z) and z, where a' is cheaper so: tanh' = 1 − a², σ' = a(1 − a) (accurate
    # to absolute rounding, not relative in the tails: for a caller that has a(z) at hand and
    # adds a' into sums, the velocity's adjoint). Default: ``derivative(z)``.
    derivative_at: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def slope(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """a'(z), given a = a(z) (``derivative_at`` if there is one)."""
        return self.derivative(z) if self.derivative_at is None else self.derivative_at(z, a)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function σ(z) = 1 / (1 + e^{-z}), without overflow and accurate in the tails."""
    return expit(z)


def softmax(y: np.ndarray) -> np.ndarray:
    """Softmax along the last axis (shape kept), shifted by the row maximum: no overflow."""
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _tanh_derivative(z: np.ndarray) -> np.ndarray:
    """tanh'(z) = 1 - tanh(z)² = 4e/(1 + e)², e = exp(-2|z|) (no overflow, no cancellation)."""
    e = np.exp(-2.0 * np.abs(z))
    d = 1.0 + e
    return 4.0 * e / (d * d)


def _sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    """σ'(z) = σ(z) σ(-z) = e/(1 + e)², e = exp(-|z|)."""
    e = np.exp(-np.abs(z))
    d = 1.0 + e
    return e / (d * d)


def _leaky_relu(slope: float) -> Activation:
    """a(z) = z for z >= 0, s z below; a' = 1 for z > 0, s at and below the kink."""
    return Activation(
        "leaky_relu",
        lambda z: np.where(z >= 0.0, z, slope * z),
        lambda z: np.where(z > 0.0, 1.0, slope),
        smooth=slope == 1.0,
    )


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", lambda z: z, lambda z: np.ones_like(z, dtype=float)),
    "relu": Activation(
        "relu", lambda z: np.maximum(z, 0.0), lambda z: (z > 0.0).astype(float), smooth=False
    ),
    "leaky_relu": _leaky_relu(DEFAULT_LEAKY_SLOPE),
    "tanh": Activation("tanh", np.tanh, _tanh_derivative, derivative_at=lambda z, a: 1.0 - a * a),
    # logaddexp(0, z) = log(1 + e^z) without overflow for large z.
    "softplus": Activation("softplus", lambda z: np.logaddexp(0.0, z), expit),
    "sigmoid": Activation("sigmoid", expit, _sigmoid_derivative, derivative_at=lambda z, a: a * (1.0 - a)),
}


# The ONNX operator of each activation that has one (LeakyRelu's alpha is the slope; its default
# is DEFAULT_LEAKY_SLOPE): what the ONNX readers map back and the writers emit. softplus has
# none that onnxruntime runs in float64, so a writer builds it from elementary operators.
ONNX_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "tanh": "Tanh", "sigmoid": "Sigmoid"}


def activation(
    name: str,
    slope: float = DEFAULT_LEAKY_SLOPE,
    among: tuple[str, ...] | None = None,
) -> Activation:
    """The activation called ``name``, one of ``among`` (default: all of ``ACTIVATIONS``).

    ``slope`` is leaky_relu's negative slope s (ignored for the others). Raises InputError
    naming the bad value for an unknown name.
    """
    names = tuple(ACTIVATIONS) if among is None else among
    if not isinstance(name, str) or name not in names:
        raise InputError(f'Invalid activation "{name}". Must be one of {list(names)}')
    if name == "leaky_relu" and slope != DEFAULT_LEAKY_SLOPE:
        return _leaky_relu(slope)
    return ACTIVATIONS[name]
