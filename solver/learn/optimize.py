"""L-BFGS and Adam on the parameter vector p, the same p on every rank, with resumable state.

Hand-written rather than scipy's L-BFGS-B: a run must be checkpointed and resumed to the same
iterates (its whole state — iterate, gradient, curvature pairs — is a few arrays here, and hidden
inside scipy's Fortran driver there), and a line search that meets a non-finite or unstable
objective must back off instead of stopping the run.

Every rank runs the same arithmetic on the same allreduced values and gradients, so every rank
holds the same p without any broadcast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from solver.errors import InputError, UnstableSolve

log = logging.getLogger("solver")

OPTIMIZERS = ("lbfgs", "adam")
# The defaults of the steps' options, also those of the config's [train] section.
DEFAULT_MEMORY = 10  # L-BFGS curvature pairs
DEFAULT_MAX_STEP = 1.0  # L-BFGS: the longest first trial step |Δp|
DEFAULT_LEARNING_RATE = 0.02  # Adam


@dataclass
class OptimizerState:
    """All an optimizer needs to continue: a checkpoint is this, saved."""

    iteration: int
    p: np.ndarray
    value: float
    gradient: np.ndarray
    s: list[np.ndarray] = field(default_factory=list)  # L-BFGS: p_{k+1} − p_k
    y: list[np.ndarray] = field(default_factory=list)  # L-BFGS: g_{k+1} − g_k
    m: np.ndarray | None = None  # Adam: first moment
    v: np.ndarray | None = None  # Adam: second moment
    evaluations: int = 0

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = dict(
            iteration=np.array(self.iteration),
            p=self.p,
            value=np.array(self.value),
            gradient=self.gradient,
            evaluations=np.array(self.evaluations),
            s=np.array(self.s).reshape(len(self.s), self.p.size),
            y=np.array(self.y).reshape(len(self.y), self.p.size),
        )
        if self.m is not None:
            arrays["m"], arrays["v"] = self.m, self.v
        return arrays

    @classmethod
    def from_arrays(cls, a) -> OptimizerState:
        return cls(
            iteration=int(a["iteration"]),
            p=np.array(a["p"]),
            value=float(a["value"]),
            gradient=np.array(a["gradient"]),
            s=[np.array(r) for r in a["s"]],
            y=[np.array(r) for r in a["y"]],
            m=np.array(a["m"]) if "m" in a else None,
            v=np.array(a["v"]) if "v" in a else None,
            evaluations=int(a["evaluations"]),
        )


ValueAndGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]


class NoDecrease(Exception):
    """A step found no decrease of J along its direction, not even a tiny one: the optimizer gets
    no further from this iterate (raised alike on every rank). Typically the trial points were
    unstable: a forced ``solver.dt`` (or ``solver.max_steps``) caps the field's speed, and J
    would decrease only beyond the cap."""


def _safe(fun: ValueAndGradient, p: np.ndarray) -> tuple[float, np.ndarray | None]:
    """fun(p), or (inf, None) where the solve is unstable, (nan, None) where J or ∇J is not
    finite."""
    try:
        value, gradient = fun(p)
    except UnstableSolve as error:  # raised alike on every rank
        log.debug("unstable trial point, backing off: %s", error.message)
        return np.inf, None
    if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
        return np.nan, None
    return value, gradient


def _no_decrease(what: str, state: OptimizerState, trials: list[float]) -> NoDecrease:
    unstable = sum(1 for v in trials if v == np.inf)
    why = (f"; {unstable} of the {len(trials)} trial points were unstable: the forced solver.dt "
           f"(or solver.max_steps) caps the field, so lower or remove it" if unstable else "")
    return NoDecrease(f"{what} found no decrease at iteration {state.iteration} (J = {state.value:.6g}, "
                      f"|g| = {np.linalg.norm(state.gradient):.3g}){why}")


def start(fun: ValueAndGradient, p0: np.ndarray) -> OptimizerState:
    """The state at the initial point."""
    value, gradient = fun(np.asarray(p0, dtype=np.float64))
    if not np.isfinite(value):
        raise InputError(f"the objective is not finite at the initial parameters (J = {value})")
    return OptimizerState(0, np.array(p0, dtype=np.float64), value, gradient, evaluations=1)


def lbfgs_direction(state: OptimizerState) -> np.ndarray:
    """−H g by the two-loop recursion (Nocedal & Wright, Alg. 7.4)."""
    q = state.gradient.copy()
    alphas = []
    for s, y in zip(reversed(state.s), reversed(state.y)):
        rho = 1.0 / (y @ s)
        a = rho * (s @ q)
        q -= a * y
        alphas.append((rho, a))
    if state.s:
        s, y = state.s[-1], state.y[-1]
        q *= (s @ y) / (y @ y)
    for (s, y), (rho, a) in zip(zip(state.s, state.y), reversed(alphas)):
        b = rho * (y @ q)
        q += (a - b) * s
    return -q


def lbfgs_step(
    fun: ValueAndGradient,
    state: OptimizerState,
    memory: int = DEFAULT_MEMORY,
    max_backtracks: int = 20,
    max_step: float = DEFAULT_MAX_STEP,
) -> OptimizerState:
    """One L-BFGS iteration with a backtracking (Armijo) line search.

    The first trial step is 1 (scaled so that |Δp| ≤ max_step); a trial whose objective is
    non-finite or whose solve is unstable counts as a failed decrease and halves the step. If
    ``max_backtracks`` halvings find no decrease, the search is repeated once along steepest
    descent (the curvature pairs dropped), then ``NoDecrease`` is raised.
    """
    trials: list[float] = []
    while True:
        d = lbfgs_direction(state)
        slope = float(state.gradient @ d)
        if slope >= 0:  # not a descent direction (lost curvature): restart from steepest descent
            state.s, state.y = [], []
            d = -state.gradient
            slope = float(state.gradient @ d)
        step = min(1.0, max_step / max(np.linalg.norm(d), 1e-300))
        for _ in range(max_backtracks):
            p_new = state.p + step * d
            value, gradient = _safe(fun, p_new)
            state.evaluations += 1
            trials.append(value)
            if value <= state.value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            if state.s:  # once more from steepest descent
                state.s, state.y = [], []
                continue
            raise _no_decrease(f"the line search ({max_backtracks} halvings)", state, trials)
        break
    s, y = p_new - state.p, gradient - state.gradient
    if s @ y > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):  # keep H positive definite
        state.s = (state.s + [s])[-memory:]
        state.y = (state.y + [y])[-memory:]
    state.p, state.value, state.gradient = p_new, value, gradient
    state.iteration += 1
    return state


def adam_step(
    fun: ValueAndGradient,
    state: OptimizerState,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> OptimizerState:
    """One Adam iteration (Kingma & Ba); a non-finite or unstable trial halves the step (up to 20
    times, then ``NoDecrease``)."""
    if state.m is None:
        state.m, state.v = np.zeros_like(state.p), np.zeros_like(state.p)
    k = state.iteration + 1
    m = betas[0] * state.m + (1 - betas[0]) * state.gradient
    v = betas[1] * state.v + (1 - betas[1]) * state.gradient**2
    update = (m / (1 - betas[0] ** k)) / (np.sqrt(v / (1 - betas[1] ** k)) + eps)
    scale = learning_rate
    trials: list[float] = []
    for _ in range(20):
        value, gradient = _safe(fun, state.p - scale * update)
        state.evaluations += 1
        trials.append(value)
        if np.isfinite(value):
            break
        scale *= 0.5
    else:
        raise _no_decrease("Adam (20 halvings of the update)", state, trials)
    state.p = state.p - scale * update
    state.m, state.v = m, v
    state.value, state.gradient = value, gradient
    state.iteration = k
    return state


def run(
    fun: ValueAndGradient,
    state: OptimizerState,
    method: str,
    iterations: int,
    callback: Callable[[OptimizerState, float], None] | None = None,
    **options,
) -> OptimizerState:
    """Iterate from ``state`` until ``iterations`` in total; ``callback(state, seconds)`` after each."""
    if method not in OPTIMIZERS:
        raise InputError(f'Invalid optimizer "{method}". Must be one of {list(OPTIMIZERS)}')
    step = lbfgs_step if method == "lbfgs" else adam_step
    while state.iteration < iterations:
        started = time.perf_counter()
        state = step(fun, state, **options)
        if callback:
            callback(state, time.perf_counter() - started)
    return state
