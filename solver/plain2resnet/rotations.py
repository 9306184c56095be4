"""Proper-rotation SVD W = U S V (eq. 19) and real logarithms of rotations, U = exp Φ (eq. 20).

``scipy.linalg.logm`` is not made for this: at a rotation angle of π the principal logarithm
does not exist as a real matrix (eigenvalue −1), and logm returns a complex or inaccurate
result. Here the real Schur form of the orthogonal U, U = Z T Zᵀ with T block diagonal
(2×2 blocks [[cos θ, −sin θ], [sin θ, cos θ]] and 1×1 blocks ±1), gives Φ = Z L Zᵀ with
L = θ [[0, −1], [1, 0]] per block; eigenvalues −1 (an even number of them when det U = 1) are
paired into planes rotated by π. Φ is skew-symmetric, so exp(h Φ) is a rotation for every h.

numpy/scipy only.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from solver.errors import InputError


def proper_svd(
    weight: np.ndarray, rtol: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """W = U diag(s) V with U, V proper rotations (det = +1), eq. 19.

    Singular values below ``rtol · max(s)`` are set to exactly 0 (they are the projections
    of eq. 21). Because rank(W) < d there is at least one such zero, and flipping the sign
    of its column of U (row of V) turns a reflection into a rotation without changing W.

    Args:
        weight: W, shape=(d, d).
        rtol: relative rank tolerance; default d · eps, as ``numpy.linalg.matrix_rank``.

    Returns:
        U shape=(d, d), s shape=(d,) (non-increasing, zeros last), V shape=(d, d), rank r.

    Raises:
        InputError: if rank(W) = d, and a reflection could not be absorbed.
    """
    d = weight.shape[0]
    u, s, v = np.linalg.svd(weight)
    rtol = d * np.finfo(float).eps if rtol is None else rtol
    rank = int(np.sum(s > rtol * max(s[0], np.finfo(float).tiny)))
    if rank >= d:
        raise InputError(
            f"the embedded W has full rank {rank} = d; section 3.1.1 needs rank(W) < d"
        )
    s = np.where(np.arange(d) < rank, s, 0.0)
    if np.linalg.det(u) < 0:
        u[:, -1] *= -1.0  # multiplies s[-1] = 0: W unchanged
    if np.linalg.det(v) < 0:
        v[-1, :] *= -1.0
    return u, s, v, rank


def rotation_log(rotation: np.ndarray, atol: float = 1e-8) -> np.ndarray:
    """A real skew-symmetric Φ with exp Φ = rotation (eq. 20), robust at angle π.

    Args:
        rotation: U, shape=(d, d), orthogonal with det U = +1.
        atol: tolerance for the checks that U is orthogonal and proper.

    Returns:
        Φ, shape=(d, d), Φᵀ = −Φ, every rotation angle in [−π, π].

    Raises:
        InputError: if U is not orthogonal or has det −1 (no real logarithm).
    """
    u = np.asarray(rotation, dtype=float)
    d = u.shape[0]
    if np.max(np.abs(u.T @ u - np.eye(d)), initial=0.0) > atol:
        raise InputError("rotation_log needs an orthogonal matrix (UᵀU = I)")
    if np.linalg.det(u) < 0:
        raise InputError("rotation_log needs det U = +1: a reflection has no real logarithm")
    t, z = scipy.linalg.schur(u, output="real")
    log_t = np.zeros((d, d))
    negatives: list[int] = []  # 1×1 blocks at −1, to be paired into π-rotations
    i = 0
    while i < d:
        if i + 1 < d and abs(t[i + 1, i]) > 0.0:
            # LAPACK standardizes a 2×2 block as [[a, b], [c, a]], b·c < 0; orthogonal ⇒ c = sin θ.
            theta = np.arctan2(0.5 * (t[i + 1, i] - t[i, i + 1]), 0.5 * (t[i, i] + t[i + 1, i + 1]))
            log_t[i + 1, i], log_t[i, i + 1] = theta, -theta
            i += 2
        else:
            if t[i, i] < 0.0:
                negatives.append(i)
            i += 1
    if len(negatives) % 2:
        raise InputError(
            f"rotation_log: an odd number ({len(negatives)}) of eigenvalues −1; det U = +1 expected"
        )
    for j, k in zip(negatives[::2], negatives[1::2]):
        # diag(−1, −1) on the plane (z_j, z_k) is the rotation by π: log = π [[0, −1], [1, 0]].
        log_t[k, j], log_t[j, k] = np.pi, -np.pi
    phi = z @ log_t @ z.T
    return 0.5 * (phi - phi.T)  # exactly skew-symmetric: exp(hΦ) stays a rotation for all h
