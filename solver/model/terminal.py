"""Terminal functions f: the value u(T, ·) = f of the transport problem (eq. 1).

numpy only. In the flow model f is the output layer of the network (eq. 13: u_0 = f ∘ flow map),
e.g. a softmax classifier; smooth f (a Gaussian, a product of sines) serve convergence studies.

A :class:`Terminal` maps points x, shape=(n, d), to values, shape=(n, K); it is vectorized and
deterministic. Build one by name with :func:`make_terminal` or from any callable with
:meth:`Terminal.from_callable`. Errors about a parameter name it as ``terminal.<key>`` so the
config loader can point at the line it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from solver import validate
from solver.errors import InputError
from solver.model.activations import sigmoid, softmax

TERMINAL_KINDS = ("linear", "softmax", "sigmoid", "gaussian", "sine")

# The parameters each kind accepts (besides ``kind``); config.py checks keys against this table.
TERMINAL_PARAMS: dict[str, tuple[str, ...]] = {
    "linear": ("num_components", "weights", "bias", "seed", "scale"),
    "softmax": ("num_components", "weights", "bias", "seed", "scale"),
    "sigmoid": ("weights", "bias", "seed", "scale"),
    "gaussian": ("center", "sigma"),
    "sine": ("wavenumbers", "phases"),
}


class Terminal:
    """A terminal function f: x, shape=(n, d) -> f(x), shape=(n, K).

    Args:
        fn: vectorized callable; may return shape (n,) when K = 1.
        num_components: K, the number of components (classes) of f.
        name: what f is, for messages.
        dim: the space dimension d that f expects, or None if any.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        num_components: int,
        name: str = "callable",
        dim: int | None = None,
    ):
        self._fn = fn
        self.num_components = validate.integer("terminal.num_components", num_components, low=1)
        self.name = name
        self.dim = dim

    @classmethod
    def from_callable(
        cls, fn: Callable[[np.ndarray], np.ndarray], num_components: int, name: str = "callable"
    ) -> Terminal:
        """Wrap a vectorized callable x (shape=(n, d)) -> (n, K) or (n,) (K = 1)."""
        return cls(fn, num_components, name=name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """f at points ``x`` (shape=(n, d)); returns shape=(n, K), float64."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or (self.dim is not None and x.shape[1] != self.dim):
            expected = f"(n, {self.dim})" if self.dim is not None else "(n, d)"
            raise InputError(
                f"terminal {self.name}: points must have shape {expected}, got {x.shape}"
            )
        n, k = x.shape[0], self.num_components
        u = np.asarray(self._fn(x), dtype=np.float64)
        if u.shape == (n,) and k == 1:
            u = u[:, None]
        if u.shape != (n, k):
            raise InputError(
                f"terminal {self.name} returned shape {u.shape} for {n} points, expected ({n}, {k})"
            )
        return u

    def interpolant(self) -> Callable[[np.ndarray], np.ndarray]:
        """f in dolfinx's interpolation layout: x, shape=(3, n) (padded) -> shape=(K, n).

        dolfinx always passes three coordinate rows, even on a 2D mesh; the extra rows are
        dropped here, so ``dim`` must be known.
        """
        if self.dim is None:
            raise InputError(f"terminal {self.name}: interpolant() needs a known dimension")
        d = self.dim
        return lambda x: self(x[:d].T).T

    def __repr__(self) -> str:
        return f"Terminal({self.name}, num_components={self.num_components}, dim={self.dim})"


def _fail(key: str, message: str) -> InputError:
    return validate.fail(f"terminal.{key}", message)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | np.ndarray):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _array(key: str, value: Any, shapes: list[tuple[int, ...]]) -> np.ndarray:
    """``value`` as a float array of one of ``shapes``, or an InputError naming ``key``."""
    expected = " or ".join(map(str, shapes))
    # bool is an int in Python, and numpy would turn True into 1.0: refuse it explicitly.
    if any(isinstance(v, bool | str | np.bool_) or v is None for v in _leaves(value)):
        raise _fail(key, f"expected numbers of shape {expected}, got {value!r}")
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(key, f"expected numbers of shape {expected}, got {value!r}") from None
    if a.shape not in shapes:
        raise _fail(key, f"expected shape {expected}, got shape {a.shape}: {value!r}")
    if not np.all(np.isfinite(a)):
        raise _fail(key, f"expected finite numbers, got {value!r}")
    return a


def _affine(dim: int, num_components: int, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The map x ↦ x Aᵀ + b: A (K×d) and b (K) given, or A random N(0, scale²) and b = 0."""
    k = num_components
    seed = validate.integer("terminal.seed", params.get("seed", 0), low=0)
    scale = float(_array("scale", params.get("scale", 1.0), [()]))
    if "weights" in params:
        shapes = [(k, dim)] + ([(dim,)] if k == 1 else [])
        weights = _array("weights", params["weights"], shapes).reshape(k, dim)
    else:
        weights = scale * np.random.default_rng(seed).standard_normal((k, dim))
    if "bias" in params:
        bias = _array("bias", params["bias"], [(k,)] + ([()] if k == 1 else [])).reshape(k)
    else:
        bias = np.zeros(k)
    return weights, bias


def terminal_defaults(kind: str, dim: int) -> dict[str, Any]:
    """The default parameters of ``kind`` in ``dim`` dimensions (weights/bias: random/zero)."""
    _check_kind(kind)
    if kind in ("linear", "softmax"):
        return {"num_components": 2, "seed": 0, "scale": 1.0}
    if kind == "sigmoid":
        return {"seed": 0, "scale": 1.0}
    if kind == "gaussian":
        return {"center": [0.0] * dim, "sigma": 0.25}
    return {"wavenumbers": [1.0] * dim, "phases": [0.0] * dim}


def _check_kind(kind: str) -> None:
    if kind not in TERMINAL_KINDS:
        raise InputError(f'Invalid terminal kind "{kind}". Must be one of {list(TERMINAL_KINDS)}')


def make_terminal(kind: str, dim: int, **params: Any) -> Terminal:
    """A terminal function by name.

    Kinds and their parameters (defaults from :func:`terminal_defaults`):

    - ``linear``: logits f(x) = x Aᵀ + b; ``weights`` A (K×d), ``bias`` b (K), or A random
      N(0, ``scale``²) from ``seed`` and b = 0; ``num_components`` K.
    - ``softmax``: softmax of a linear map, K >= 2 (a classifier: rows sum to 1).
    - ``sigmoid``: sigmoid of a linear map with K = 1 (``weights`` shape (d,) or (1, d)).
    - ``gaussian``: exp(−|x − c_k|² / (2σ_k²)); ``center`` shape (d,) (K = 1) or (K, d),
      ``sigma`` > 0, a number or shape (K,).
    - ``sine``: Π_i sin(k_i π x_i + φ_i), K = 1; ``wavenumbers`` k and ``phases`` φ, shape (d,).

    Args:
        kind: one of :data:`TERMINAL_KINDS`.
        dim: the space dimension d.
        **params: the kind's parameters (see :data:`TERMINAL_PARAMS`).

    Returns:
        The terminal function, with ``num_components`` K and ``dim`` d.
    """
    _check_kind(kind)
    validate.integer("terminal dimension", dim, low=1)
    unknown = sorted(set(params) - set(TERMINAL_PARAMS[kind]))
    if unknown:
        raise _fail(
            unknown[0],
            f'unknown key for kind "{kind}". Valid keys: {["kind", *TERMINAL_PARAMS[kind]]}',
        )
    p = {**terminal_defaults(kind, dim), **params}

    if kind in ("linear", "softmax", "sigmoid"):
        k = 1 if kind == "sigmoid" else validate.integer("terminal.num_components", p["num_components"], low=1)
        if kind == "softmax" and k < 2:
            raise _fail("num_components", f"softmax needs at least 2 components, got {k}")
        weights, bias = _affine(dim, k, p)
        link = {"linear": lambda z: z, "softmax": softmax, "sigmoid": sigmoid}[kind]
        return Terminal(lambda x: link(x @ weights.T + bias), k, name=kind, dim=dim)

    if kind == "gaussian":
        c = p["center"]
        # A list of centres (shape (K, d)) gives K Gaussians, one centre (shape (d,)) gives one.
        nested = isinstance(c, list | tuple | np.ndarray) and len(c) > 0 and np.ndim(c[0]) > 0
        num_centers = len(c) if nested else 1
        shapes = [(dim,), (num_centers, dim)]
        center = _array("center", p["center"], shapes).reshape(-1, dim)
        k = center.shape[0]
        sigma = _array("sigma", p["sigma"], [()] + [(k,)]) * np.ones(k)
        if np.any(sigma <= 0):
            raise _fail("sigma", f"expected > 0, got {p['sigma']!r}")

        def gaussian(x: np.ndarray) -> np.ndarray:
            r2 = np.sum((x[:, None, :] - center[None, :, :]) ** 2, axis=2)  # shape=(n, K)
            return np.exp(-r2 / (2.0 * sigma**2))

        return Terminal(gaussian, k, name=kind, dim=dim)

    wavenumbers = _array("wavenumbers", p["wavenumbers"], [(dim,)])
    phases = _array("phases", p["phases"], [(dim,)])
    return Terminal(
        lambda x: np.prod(np.sin(np.pi * wavenumbers * x + phases), axis=1), 1, name=kind, dim=dim
    )
