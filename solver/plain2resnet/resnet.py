"""The ResNet obtained by re-discretizing a plain net's flow model (section 4): blocks and forward.

The state y lives in the ambient dimension d (section 3.1.1). Inputs of width n_0 are padded
with zeros to d; the output is the first n_L coordinates, followed by the plain net's output
function f. The blocks, each one Euler substep of size α = 1/l (eq. 54):

    LinearBlock      y ← y + M y + c                 eq. 52 (and its analogues for S, U, b)
    ReluBlock        y ← y + relu(w y), w scalar     eq. 58, 59 (leaky relu s: w = αḣ(1−s)/(h(1−s)−1))
    ActivationBlock  y ← y + αḣ (a(Ẑ) − Ẑ),          eq. 69, 70 with Ẑ = W⁽¹⁾ y + b⁽¹⁾ (eq. 68)

ActivationBlock linearizes φ(τ_r, ·) at an anchor ẑ (eq. 64–67): W⁽¹⁾ = J⁻¹(τ_r, ẑ) (diagonal,
eq. 63) and b⁽¹⁾ = ẑ − J⁻¹ φ(τ_r, ẑ). The paper's anchor is z_k, the input of the activation
stage (eq. 66: "linearize φ at y_0 = z_k"), which depends on the data: W⁽¹⁾ and b⁽¹⁾ are then
elementwise functions of the stage input, not constants: the exported graph carries z_k from
the start of the stage to every block (a skip connection besides the residual one).
``anchor=None`` means that; a fixed anchor vector gives a constant-weight 2-layer block, but
then the linearization error does not vanish as l grows. Eq. 70 is used rather than eq. 72,
which divides by ḣ(τ_r) (0 at τ_0) and by (id − αḣW⁽¹⁾) (singular when αḣ/J = 1); eq. 71
as printed also omits b_r⁽²⁾ = −W_r⁽²⁾ b_r⁽¹⁾, which eq. 70 → 72 needs.

The blocks are grouped in stages, one per unit of time of the layer flow (eq. 48):
V (Ψ), S (Λ + βΠ), U (Φ), b, a. Exports: ``solver.plain2resnet.resnet_export``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.errors import InputError
from solver.model import activations
from solver.plain2resnet.plainnet import OUTPUT_FUNCTIONS, apply_output
from solver.plain2resnet.time_scaling import DEFAULT_SCALING

LINEARIZED_ACTIVATIONS = ("tanh", "sigmoid")
CAP = float(np.finfo(float).max) / 16  # bound on h/(1 − h), 1/(1 − h) (as the float64 ONNX export)
# Ẑ is clipped to ±SATURATED before a(Ẑ): tanh and σ are constant to rounding beyond it, and an
# ill-conditioned Ẑ = ẑ + (y − φ)/J (J tiny) must not overflow to inf (onnxruntime: NaN).
SATURATED = 100.0


@dataclass(frozen=True)
class LinearBlock:
    """y ← y + M y + c, a linear 1-layer ResNet block (eq. 52, 33).

    Attributes:
        matrix: M, shape=(d, d), or its diagonal, shape=(d,); None for M = 0.
        shift: c, shape=(d,); None for c = 0.
    """

    matrix: np.ndarray | None = None
    shift: np.ndarray | None = None

    def __call__(self, y: np.ndarray, stage_input: np.ndarray) -> np.ndarray:
        out = y
        if self.matrix is not None:
            out = out + (y * self.matrix if self.matrix.ndim == 1 else y @ self.matrix.T)
        if self.shift is not None:
            out = out + self.shift
        return out


@dataclass(frozen=True)
class ReluBlock:
    """y ← y + relu(w y) with a scalar weight w <= 0 (eq. 58, 59): exact for the relu flow."""

    weight: float

    def __call__(self, y: np.ndarray, stage_input: np.ndarray) -> np.ndarray:
        return y + np.maximum(self.weight * y, 0.0)


@dataclass(frozen=True)
class ActivationBlock:
    """y ← y + step · (a(Ẑ) − Ẑ), Ẑ = W⁽¹⁾ y + b⁽¹⁾ linearizing φ⁻¹(τ_r, y) at ẑ (eq. 68–70).

    With W⁽¹⁾ = 1/J, J = (1 − h) + h a'(ẑ) (eq. 62, 63, 66) and b⁽¹⁾ = ẑ − W⁽¹⁾ φ(τ_r, ẑ)
    (eq. 67), Ẑ = ẑ + (y − φ(τ_r, ẑ)) / J. The block is evaluated as

        q = (1 − h) / J = 1 / (1 + ratio · a'(ẑ)),          ratio = h / (1 − h)
        Ẑ = ẑ + q · inv_keep · (y − φ(τ_r, ẑ)),             inv_keep = 1 / (1 − h)
        y + step · (a(Ẑ) − ẑ) − rate · q · (y − φ(τ_r, ẑ)), rate = α ḣ / (1 − h)

    which is eq. 69 (step · W⁽¹⁾ = rate · q) but never forms J: near τ = 1 at a saturated ẑ,
    J underflows and the literal form gives inf − inf. ``ratio`` and ``inv_keep`` are capped
    (at 1/16 of the float type's range) and Ẑ is clipped to ±``SATURATED``,
    beyond which tanh and σ are constant to rounding; both change nothing where they act,
    because there step ≈ 0.

    Attributes:
        activation: a, one of ``LINEARIZED_ACTIVATIONS``.
        step: α ḣ(τ_r).
        h: h(τ_r).
        keep: 1 − h(τ_r), computed without cancellation.
        rate: α ḣ(τ_r) / (1 − h(τ_r)).
        anchor: ẑ, shape=(d,), or None for the stage input z_k (eq. 66, 67: data-dependent).
    """

    activation: str
    step: float
    h: float
    keep: float
    rate: float
    anchor: np.ndarray | None = None

    def coefficients(self, cap: float = CAP) -> tuple[float, float]:
        """``ratio`` = h/(1 − h) and ``inv_keep`` = 1/(1 − h), each at most ``cap``."""
        if self.keep <= 0.0:
            return cap, cap
        return min(self.h / self.keep, cap), min(1.0 / self.keep, cap)

    def weights(self, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """W⁽¹⁾ (its diagonal) and b⁽¹⁾ of eq. 66, 67 at a fixed ``anchor`` (J >= min a' > 0)."""
        jacobian = self.keep + self.h * activations.activation(self.activation).derivative(anchor)  # eq. 62
        flow = self.keep * anchor + self.h * activations.activation(self.activation).value(anchor)  # eq. 36
        return 1.0 / jacobian, anchor - flow / jacobian

    def __call__(self, y: np.ndarray, stage_input: np.ndarray) -> np.ndarray:
        anchor = stage_input if self.anchor is None else self.anchor
        ratio, inv_keep = self.coefficients()
        q = 1.0 / (1.0 + ratio * activations.activation(self.activation).derivative(anchor))
        residual = y - (
            self.keep * anchor + self.h * activations.activation(self.activation).value(anchor)
        )  # y − φ, eq. 36
        with np.errstate(over="ignore"):
            z = np.clip(
                anchor + (q * residual) * inv_keep, -SATURATED, SATURATED
            )  # ≈ φ⁻¹(τ_r, y), eq. 68
        return (
            y
            + self.step * (activations.activation(self.activation).value(z) - anchor)
            - self.rate * q * residual
        )


Block = LinearBlock | ReluBlock | ActivationBlock


@dataclass(frozen=True)
class Stage:
    """One unit of time of a layer flow (eq. 48): ``label`` like "layer 2: U"; its blocks in order."""

    label: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class FlowResNet:
    """The ResNet approximating a plain net (section 4).

    Attributes:
        dim: ambient dimension d.
        n_in: input width n_0 (padded with zeros to d).
        n_out: output width n_L (the first n_L coordinates of the state).
        stages: the stages in order of time.
        output: the plain net's output function (``solver.plain2resnet.plainnet.OUTPUT_FUNCTIONS``).
        substeps: l, Euler substeps per unit of time.
        beta: β of the stretch flow (eq. 21).
        scaling: the time scaling h (``solver.plain2resnet.time_scaling``).
    """

    dim: int
    n_in: int
    n_out: int
    stages: tuple[Stage, ...]
    output: str = "identity"
    substeps: int = 0
    beta: float = 0.0
    scaling: str = DEFAULT_SCALING

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_FUNCTIONS:
            raise InputError(f'output must be one of {list(OUTPUT_FUNCTIONS)}, got "{self.output}"')

    @property
    def num_blocks(self) -> int:
        return sum(len(stage.blocks) for stage in self.stages)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Pad inputs x of shape (N, n_0) with zeros to shape (N, d) (section 3.1.1)."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise InputError(f"inputs must have shape (N, {self.n_in}), got {x.shape}")
        y = np.zeros((x.shape[0], self.dim))
        y[:, : self.n_in] = x
        return y

    def trajectory(self, x: np.ndarray) -> list[np.ndarray]:
        """The state y, shape=(N, d), at the end of every stage (index 0: the embedded input)."""
        y = self.embed(x)
        states = [y]
        for stage in self.stages:
            stage_input = y
            for block in stage.blocks:
                y = block(y, stage_input)
            states.append(y)
        return states

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The ResNet's x_L for x of shape (N, n_0); returns shape (N, n_L), before f."""
        return self.trajectory(x)[-1][:, : self.n_out]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """f(x_L), shape (N, n_L), f the plain net's output function."""
        return apply_output(self.output, self.forward(x))
