"""Taylor tests: |J(p + ε dp) − J(p) − ε ∇J(p)·dp| = O(ε²) iff the gradient is right.

After pyadjoint's ``taylor_test``: ε = ε₀/2^i, the observed rates of the remainder must approach
2. Unlike pyadjoint it changes no state: J is evaluated at new parameter vectors only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def taylor_remainders(
    J: Callable[[np.ndarray], float],
    p: np.ndarray,
    gradient: np.ndarray,
    direction: np.ndarray,
    J0: float | None = None,
    epsilon: float = 0.01,
    num: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """The remainders and their observed rates for ε = ε₀/2^i, i = 0 … num−1.

    Returns:
        (remainders, shape=(num,); rates log2(r_i / r_{i+1}), shape=(num − 1,)).
    """
    J0 = J(p) if J0 is None else J0
    slope = float(gradient @ direction)
    eps = epsilon / 2.0 ** np.arange(num)
    remainders = np.array([abs(J(p + e * direction) - J0 - e * slope) for e in eps])
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.log2(remainders[:-1] / remainders[1:])
    return remainders, rates
