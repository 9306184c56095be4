"""The affine terminal value f(x) = A x + b, transported as min(K, d) components.

The discrete transport (either scheme) is linear in u and leaves constants where they are, so
with Q_j the transported coordinate x_j,

    u_h(0) = Σ_j A_kj Q_j + b_k · I(1),

and K logits cost the transport of d coordinates. ``solve_affine`` transports whichever is fewer:
the K logits themselves (K ≤ d, exactly as before) or the d coordinates (K > d: peaks' 5 classes
in 3D, 10 digits), and hands back the K logit functions either way. The adjoint then runs on
min(K, d) components too: λ for Q_j is Σ_k A_kj λ_k (``ForwardResult.output``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dolfinx import fem


@dataclass(frozen=True, eq=False)
class Affine:
    """The terminal value f(x) = A x + b (A shape=(K, d), b shape=(K,)): values at points
    (shape=(n, d) → (n, K)) and its Jacobian ``matrix`` = A, which the semi-Lagrangian adjoint
    needs where it takes f at departure points (``fem/semilagrangian.py``)."""

    A: np.ndarray
    b: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        return self.A

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.A.T + self.b


def transported_components(num_classes: int, dim: int) -> int:
    """min(K, d): the components a solver needs for the logits of f = A x + b."""
    return min(int(num_classes), int(dim))


def transports_coordinates(num_classes: int, dim: int) -> bool:
    """Whether the coordinates (not the K logits) are transported: K > d."""
    return int(num_classes) > int(dim)


def constant_coefficients(V: fem.FunctionSpace) -> np.ndarray:
    """The coefficients of I(1) in ``V`` (all dofs, ghosts included)."""
    one = fem.Function(V)
    one.interpolate(lambda x: np.ones(x.shape[1]))
    return one.x.array.copy()


def solve_affine(solver, field, A: np.ndarray, b: np.ndarray, coordinates: bool | None = None,
                 **options):
    """Transport f = A x + b back to t = 0 on ``solver`` (collective).

    Args:
        solver: a transport solver with ``transported_components(K, d)`` components.
        field: the velocity.
        A: shape=(K, d); b: shape=(K,).
        coordinates: transport the coordinates (True) or the logits (False); None: whichever
            are fewer (K > d: the coordinates).
        options: passed to ``solver.solve`` (``frozen_steps``, ``keep``).

    Returns:
        The solver's ForwardResult, whose ``u0`` are the K logit functions; with coordinates
        transported, ``transported`` holds the d coordinate functions Q_j and ``output`` (A, b,
        I(1)) maps trajectory states to logits (``logit_rows``).
    """
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    K, d = A.shape
    if coordinates is None:
        coordinates = transports_coordinates(K, d)
    if solver.num_components != (d if coordinates else K):
        raise ValueError(f"solver carries {solver.num_components} components, f = A x + b with "
                         f"A {A.shape} transported as {'coordinates' if coordinates else 'logits'} "
                         f"needs {d if coordinates else K}")
    if not coordinates:
        result = solver.solve(field, Affine(A, b), **options)
        result.transported = result.u0
        return result
    result = solver.solve(field, Affine(np.eye(d), np.zeros(d)), **options)
    ones = constant_coefficients(solver.V)
    result.transported = result.u0
    result.output = (A, b, ones)
    logits = A @ np.stack([q.x.array for q in result.u0]) + b[:, None] * ones
    result.u0 = []
    for k in range(K):
        uh = fem.Function(solver.V, name=f"u{k}")
        uh.x.array[:] = logits[k]
        result.u0.append(uh)
    return result
