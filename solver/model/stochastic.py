"""Stochastic characteristics: u(0, x) = E[f(X_T) | X_0 = x] for the viscous transport equation.

    ∂t u + v·∇u + εΔu = 0 in (0, T) × Ω,   ∇u·n = 0 on ∂Ω,   u(T, ·) = f

is the Kolmogorov backward equation of dX = v(t, X) dt + √(2ε) dW reflected at ∂Ω (the Neumann
condition is the reflection). This module estimates u(0, x) by Monte Carlo: M paths per point,
Euler–Maruyama with the path mirrored back into Ω after each step, all points and paths of a chunk
advanced together (numpy only, vectorized over points × paths).

Its own error estimate, per point and component:

- the standard error of the mean, std / √M, of the paths at the step dt;
- the bias from dt, measured by halving: the same Brownian paths are also walked with 2dt (each
  coarse increment the sum of two fine ones, so the two estimates share most of their noise).
  With a bias C dt^p, the difference Δ = mean(2dt) − mean(dt) is C dt^p (2^p − 1). Euler–Maruyama
  has weak order p = 1, but the reflection can lower it to ½ near ∂Ω (measured here: on a disk,
  |Δ| underestimated the bias by a factor 1.3), so the bias is taken as |Δ| / (√2 − 1): an upper
  bound for any order p ≥ ½ (2.4 |Δ|; for p = 1 it overestimates by the same factor).

The PDE and the Monte Carlo agree when |u_h − mean| ≤ 3 SE + bias (``MonteCarloResult.bound``).

Two options make the estimate cheaper for the certification of training (``learn/certify.py``),
where it runs every few iterations at every data point. ``heun``: the stochastic Heun step
(``_step``), weak order 2 for this additive noise, so fewer steps for the same bias (the halving
estimate above stays an upper bound). ``antithetic``: the paths come in pairs driven by W and −W.
The mean is unbiased as before and the standard error is that of the M/2 pair means; the part of
f(X_T) linear in the noise cancels within a pair, which is most of it for small ε. Measured with
``scripts/bench_mc_check.py RUN`` at the 500 points of moons, ε = 0.01, 16 steps: after 5
iterations on 12², the largest standard error 0.065 with 256 independent Euler–Maruyama paths,
0.020 antithetic, at the same cost; after 30 iterations on 32², the largest bias 0.71 with
Euler–Maruyama, 0.09 with Heun, at twice the cost. (Tried and dropped: the exact characteristics
plus the Monte Carlo of f(X_T) − f(q̃_T), q̃ the noise-free Euler path, to cancel the drift's Euler
error; on 12² the bias estimate fell only from 0.132 to 0.112.)

Paths are drawn per chunk of points (``chunk_size``) from a stream seeded by (seed, chunk index), and
the chunks are split over the ranks whole: the result does not depend on the number of ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from mpi4py import MPI

from solver.errors import InputError
from solver.model.characteristics import check_points
from solver.model.domain import Ball, Box, Domain
from solver.parallel import gather_rows, rank_share

# 2^p − 1 for the least weak order p = ½ of reflected Euler–Maruyama: bias(dt) ≤ |Δ| / this.
BIAS_ORDER_FACTOR = math.sqrt(2.0) - 1.0
# Paths advanced together (a chunk of points × M paths, ~4 MB per array in 2D); a chunk of
# points shares one random stream. The chunking depends on M only, not on the ranks.
BATCH_PATHS = 2**18


def chunk_size(paths: int) -> int:
    """Points per chunk for M = ``paths``: at most 16, and BATCH_PATHS paths."""
    return max(1, min(16, BATCH_PATHS // int(paths)))


@dataclass(frozen=True)
class MonteCarloResult:
    """u(0, x) by Monte Carlo at n points, K components; every array shape=(n, K).

    Attributes:
        u0: the mean of f(X_T) over the M paths at the step ``dt``.
        standard_error: std / √M of those paths.
        bias: |mean at dt − mean at 2dt| / (√2 − 1) over the same Brownian paths (see above).
        paths: M.
        steps: Euler–Maruyama steps of one path at dt (over [0, T]).
    """

    u0: np.ndarray
    standard_error: np.ndarray
    bias: np.ndarray
    paths: int
    steps: int

    @property
    def bound(self) -> np.ndarray:
        """3 SE + bias: where the PDE's u_h(0, x) must lie."""
        return 3.0 * self.standard_error + self.bias


def reflect(domain: Domain, x: np.ndarray) -> np.ndarray:
    """Points ``x`` (shape=(n, d)) mirrored back into Ω, in place (``Box.reflect``, ``Ball.reflect``)."""
    if not isinstance(domain, Box | Ball):
        raise InputError(f"reflection needs a box, disk or ball domain, got {domain!r}")
    return domain.reflect(x)


def _step_grid(field, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The step starts' times and the steps (each shape=(N,)), N ≥ ``steps`` even, every piece of
    the field (θ constant on it) cut into the same even number of equal steps."""
    pieces = field.pieces()
    pieces = np.array([0.0, float(field.T)]) if pieces is None else np.asarray(pieces, float)
    L = len(pieces) - 1
    per_piece = 2 * math.ceil(steps / (2 * L))
    starts, dts = [], []
    for t0, t1 in zip(pieces[:-1], pieces[1:]):
        dt = (t1 - t0) / per_piece
        starts.append(t0 + dt * np.arange(per_piece))
        dts.append(np.full(per_piece, dt))
    return np.concatenate(starts), np.concatenate(dts)


def _step(field, domain: Domain, t: float, x: np.ndarray, h: float, noise: np.ndarray,
          heun: bool) -> np.ndarray:
    """One reflected step of length h from ``x`` (shape=(m, d)) with the noise increment
    √(2ε) ΔW (shape=(m, d)); v at the time t (θ is constant over the step).

    Euler–Maruyama: x + v(x) h + √(2ε) ΔW. Heun: the predictor x̄ = that, then
    x + ½(v(x) + v(x̄)) h + √(2ε) ΔW: weak order 2 for additive noise (Kloeden & Platen,
    Numerical Solution of SDEs, §15.1) against order 1, at two velocity calls a step.
    """
    velocity = field(t, x)
    predicted = reflect(domain, x + velocity * h + noise)
    if not heun:
        return predicted
    return reflect(domain, x + 0.5 * (velocity + field(t, predicted)) * h + noise)


class _Abandoned(Exception):
    """A stop was requested (``solver.stopping``) while paths were walked (rank-local)."""


def terminal_samples(field, domain: Domain, terminal: Callable, x0: np.ndarray, epsilon: float,
                     paths: int, steps: int, rng: np.random.Generator,
                     antithetic: bool = False, heun: bool = False,
                     stop: Callable[[], int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """f(X_T) of ``paths`` reflected Euler–Maruyama paths from each of ``x0`` (shape=(n, d)), at
    the step dt and, on the same Brownian paths, at 2dt: two arrays shape=(n, paths, K).

    v is evaluated at the middle of each step's time interval: θ is constant on the field's pieces
    and every step lies in one piece, so this is v(t_n, X_n) of Euler–Maruyama. With
    ``antithetic`` (``paths`` even) path j + paths/2 of a point is driven by −W of path j. With
    ``heun`` the steps are the stochastic Heun scheme (``_step``). ``stop`` is asked before each
    coarse step; if it returns nonzero, ``_Abandoned`` is raised.
    """
    n, d = x0.shape
    starts, dts = _step_grid(field, steps)
    fine = np.repeat(x0, paths, axis=0)
    coarse = fine.copy()
    noise = math.sqrt(2.0 * epsilon)
    for i in range(0, len(starts), 2):  # a coarse step of 2dt is two fine steps of dt
        if stop is not None and stop():
            raise _Abandoned
        w = []
        for j in (i, i + 1):
            if antithetic:
                half = rng.standard_normal((n, paths // 2, d))
                dW = np.concatenate([half, -half], axis=1).reshape(fine.shape) * math.sqrt(dts[j])
            else:
                dW = rng.standard_normal(fine.shape) * math.sqrt(dts[j])
            fine = _step(field, domain, starts[j] + 0.5 * dts[j], fine, dts[j], noise * dW, heun)
            w.append(dW)
        h = dts[i] + dts[i + 1]
        coarse = _step(field, domain, starts[i] + 0.5 * h, coarse, h, noise * (w[0] + w[1]), heun)
    values = [np.asarray(terminal(x), dtype=np.float64).reshape(n, paths, -1) for x in (fine, coarse)]
    return values[0], values[1]


def solve(comm: MPI.Comm, field, domain: Domain, terminal: Callable, x0: np.ndarray,
          epsilon: float, *, paths: int = 1000, steps: int = 64, seed: int = 0,
          antithetic: bool = False, heun: bool = False) -> MonteCarloResult:
    """u(0, x0) = E[f(X_T) | X_0 = x0] with its standard error and dt bias (collective).

    Every rank passes the same ``x0`` and gets the whole result; the chunks of points
    (``chunk_size``) are shared out with ``parallel.rank_share``.

    Args:
        field: the velocity (``Field``: called as field(t, x), constant in t on ``pieces()``).
        domain: Ω, where the paths are reflected (box, disk, ball).
        terminal: f, x (shape=(m, d)) -> shape=(m, K) or (m,).
        x0: points in Ω, shape=(n, d).
        epsilon: ε ≥ 0 (0: the characteristics by Euler, its bias by halving too).
        paths: M ≥ 2 per point.
        steps: Euler–Maruyama steps over [0, T] at the finer dt (rounded up to an even number per
            piece of the field).
        seed: of the random streams (one per chunk of points).
        antithetic: paths in pairs W, −W (``paths`` even); the standard error is the pairs'.
        heun: the stochastic Heun step instead of Euler–Maruyama (``_step``).

    Raises:
        stopping.Interrupted: on every rank, if a stop was requested on any rank while its
            paths were walked (``solver.stopping``: SIGINT/SIGTERM during training); each rank
            polls before every step, so a long Monte Carlo ends within a step.
    """
    from solver import stopping

    x0 = check_points(field, x0)
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise InputError(f"viscosity must be a finite number >= 0, got {epsilon}")
    if int(paths) < 2 or int(steps) < 2:
        raise InputError(f"Monte Carlo needs paths >= 2 and steps >= 2, got {paths}, {steps}")
    if antithetic and int(paths) % 2:
        raise InputError(f"antithetic Monte Carlo needs an even number of paths, got {paths}")
    n = len(x0)
    size = chunk_size(paths)
    chunks = [slice(s, min(s + size, n)) for s in range(0, n, size)]
    mine = rank_share(comm, len(chunks))
    rows = []
    for c in range(mine.start, mine.stop):
        rng = np.random.default_rng([seed, c])
        try:
            fine, coarse = terminal_samples(field, domain, terminal, x0[chunks[c]], epsilon, paths, steps,
                                            rng, antithetic, heun, stop=stopping.pending)
        except _Abandoned:
            break
        if antithetic:  # the independent samples are the pair means
            fine = 0.5 * (fine[:, : paths // 2] + fine[:, paths // 2 :])
            coarse = 0.5 * (coarse[:, : paths // 2] + coarse[:, paths // 2 :])
        mean_fine, mean_coarse = fine.mean(axis=1), coarse.mean(axis=1)
        se = fine.std(axis=1, ddof=1) / math.sqrt(fine.shape[1])
        bias = np.abs(mean_fine - mean_coarse) / BIAS_ORDER_FACTOR
        rows.append(np.stack([mean_fine, se, bias], axis=1))
    agreed = np.array([rows[0].shape[2] if rows else 0, stopping.pending()], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, agreed, op=MPI.MAX)
    K, signum = (int(v) for v in agreed)
    if signum:  # every rank alike: none waits in the gather below
        raise stopping.Interrupted(signum)
    local = np.concatenate(rows) if rows else np.zeros((0, 3, K))
    result = gather_rows(comm, local)
    return MonteCarloResult(u0=result[:, 0], standard_error=result[:, 1], bias=result[:, 2],
                            paths=int(paths), steps=len(_step_grid(field, steps)[0]))
