"""Data losses of the learning problem, with their gradients (numpy only: the config imports it)."""

from __future__ import annotations

import numpy as np

LOSSES = ("cross_entropy", "squared_error")


def cross_entropy(u: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ_i −log softmax(u_i)[y_i] and its gradient w.r.t. u (shape=(n, K)); rank-local sums."""
    z = u - u.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -float(log_p[np.arange(n), y].sum())
    grad = np.exp(log_p)
    grad[np.arange(n), y] -= 1.0
    return loss, grad


def squared_error(u: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ_i ½|u_i − y_i|² and its gradient (shape=(n, K)); y of shape (n,) or (n, K)."""
    r = u - y.reshape(len(u), -1)
    return 0.5 * float((r * r).sum()), r
