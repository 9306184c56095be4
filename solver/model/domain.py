"""Domains Ω and the smooth cutoff χ that makes them invariant under the flow.

numpy only: the characteristics solver and the ResNet exporter use these without the FE code.
The velocity of eq. 2 is multiplied by χ, which is positive inside Ω and vanishes on ∂Ω, so
v·n = 0 on the boundary: no inflow data is needed and characteristics never leave Ω.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.errors import InputError

DOMAIN_KINDS = ("box", "disk", "ball")


@dataclass(frozen=True)
class Box:
    """The box Π [lower_i, upper_i] in 2 or 3 dimensions.

    χ(x) = Π_i 4 (x_i − a_i)(b_i − x_i) / (b_i − a_i)²: a polynomial, 1 at the centre, 0 on ∂Ω.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self):
        if len(self.lower) != len(self.upper) or len(self.lower) not in (2, 3):
            raise InputError(
                f"box lower and upper must both have 2 or 3 entries, got lower={self.lower}, "
                f"upper={self.upper}"
            )
        if any(b <= a for a, b in zip(self.lower, self.upper)):
            raise InputError(f"box needs lower < upper, got lower={self.lower}, upper={self.upper}")

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def diameter(self) -> float:
        return float(np.linalg.norm(np.subtract(self.upper, self.lower)))

    # χ and ∇χ column by column: a product over the short axis of (n, dim) arrays cost 4× the
    # arithmetic (the velocity takes χ at every node of every RK4 stage).
    def _factors(self, x: np.ndarray) -> list[np.ndarray]:
        """4 (x_i − a_i)(b_i − x_i)/(b_i − a_i)², one array of shape=(n,) per coordinate."""
        return [(4.0 / (b - a) ** 2) * ((x[:, i] - a) * (b - x[:, i]))
                for i, (a, b) in enumerate(zip(self.lower, self.upper))]

    def cutoff(self, x: np.ndarray) -> np.ndarray:
        """χ at points ``x`` (shape=(n, dim)); returns shape=(n,)."""
        factors = self._factors(x)
        out = factors[0].copy()
        for f in factors[1:]:
            out *= f
        return out

    def cutoff_gradient(self, x: np.ndarray) -> np.ndarray:
        """∇χ at points ``x`` (shape=(n, dim)); returns shape=(n, dim)."""
        factors = self._factors(x)
        out = np.empty(x.shape)
        for i, (a, b) in enumerate(zip(self.lower, self.upper)):
            column = (4.0 / (b - a) ** 2) * (a + b - 2.0 * x[:, i])  # the slope, times the other factors
            for j, f in enumerate(factors):
                if j != i:
                    column *= f
            out[:, i] = column
        return out

    def contains(self, x: np.ndarray, tol: float = 1e-12) -> np.ndarray:
        """Boolean mask (shape=(n,)) of the points of ``x`` (shape=(n, dim)) in Ω."""
        a, b = np.asarray(self.lower), np.asarray(self.upper)
        scale = tol * max(1.0, self.diameter)
        return np.all((x >= a - scale) & (x <= b + scale), axis=1)

    def reflect(self, x: np.ndarray) -> np.ndarray:
        """Points ``x`` (shape=(n, dim)) mirrored back into the box, in place (and returned): each
        coordinate folded, u = (x − a) mod 2w, x ← a + w − |w − u| (any distance; the identity
        inside). The reflecting walls of dX = v dt + √(2ε) dW (``model/stochastic.py``)."""
        a, w = np.asarray(self.lower), np.subtract(self.upper, self.lower)
        u = np.mod(x - a, 2.0 * w)
        x[:] = a + w - np.abs(w - u)
        return x

    def grid(self, n: int) -> np.ndarray:
        """A uniform grid of n points per direction in the closed box, shape=(n**dim, dim)."""
        axes = [np.linspace(a, b, n) for a, b in zip(self.lower, self.upper)]
        return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)


@dataclass(frozen=True)
class Ball:
    """The disk (dim 2) or ball (dim 3) |x − c| ≤ R.

    χ(x) = 1 − |x − c|² / R²: a polynomial, 1 at the centre, 0 on ∂Ω.
    """

    center: tuple[float, ...]
    radius: float

    def __post_init__(self):
        if len(self.center) not in (2, 3):
            raise InputError(f"disk/ball centre must have 2 or 3 entries, got {self.center}")
        if not self.radius > 0:
            raise InputError(f"disk/ball radius must be > 0, got {self.radius}")

    @property
    def dim(self) -> int:
        return len(self.center)

    @property
    def diameter(self) -> float:
        return 2.0 * self.radius

    @property
    def lower(self) -> tuple[float, ...]:
        return tuple(c - self.radius for c in self.center)

    @property
    def upper(self) -> tuple[float, ...]:
        return tuple(c + self.radius for c in self.center)

    def cutoff(self, x: np.ndarray) -> np.ndarray:
        """χ at points ``x`` (shape=(n, dim)); returns shape=(n,)."""
        r2 = sum((x[:, i] - c) ** 2 for i, c in enumerate(self.center))  # by column, as the box's
        return 1.0 - r2 / self.radius**2

    def cutoff_gradient(self, x: np.ndarray) -> np.ndarray:
        """∇χ at points ``x`` (shape=(n, dim)); returns shape=(n, dim)."""
        return -2.0 * (x - np.asarray(self.center)) / self.radius**2

    def contains(self, x: np.ndarray, tol: float = 1e-12) -> np.ndarray:
        """Boolean mask (shape=(n,)) of the points of ``x`` (shape=(n, dim)) in Ω."""
        r = np.linalg.norm(x - np.asarray(self.center), axis=1)
        return r <= self.radius * (1.0 + tol)

    def reflect(self, x: np.ndarray) -> np.ndarray:
        """Points ``x`` (shape=(n, dim)) mirrored back into the ball, in place (and returned):
        a radius r > R becomes min(|2R − r|, R) on the same ray; the identity inside."""
        c = np.asarray(self.center)
        r = np.linalg.norm(x - c, axis=1)
        out = r > self.radius
        if out.any():
            folded = np.minimum(np.abs(2.0 * self.radius - r[out]), self.radius)
            x[out] = c + (x[out] - c) * (folded / r[out])[:, None]
        return x

    def grid(self, n: int) -> np.ndarray:
        """The points of a uniform n-per-direction grid of the bounding box that lie in Ω."""
        box = Box(self.lower, self.upper)
        x = box.grid(n)
        return x[self.contains(x, tol=0.0)]


Domain = Box | Ball


def make_domain(kind: str, dim: int | None = None, **kw) -> Domain:
    """A domain by name: ``box`` (lower, upper), ``disk`` or ``ball`` (center, radius)."""
    if kind == "box":
        return Box(tuple(map(float, kw["lower"])), tuple(map(float, kw["upper"])))
    if kind in ("disk", "ball"):
        d = 2 if kind == "disk" else 3
        center = tuple(map(float, kw.get("center", (0.0,) * d)))
        if len(center) != d:
            raise InputError(f"{kind} centre must have {d} entries, got {center}")
        return Ball(center, float(kw.get("radius", 1.0)))
    raise InputError(f'Invalid domain kind "{kind}". Must be one of {list(DOMAIN_KINDS)}')
