"""The method of characteristics: an FE-independent reference for the transport solve.

The characteristics of ∂t u + v·∇u = 0 solve x' = v(t, x), x(0) = x0 (eq. 3), and u is constant
along them, so u(0, x0) = f(q(T; x0)) (eq. 6). This module integrates eq. 3 for many points at
once with the Dormand–Prince 8(5,3) pair (DOP853, Hairer–Nørsett–Wanner II.5; the coefficients
are scipy's) and depends on the velocity model alone, never on the FE solver, so that it can
check the FE solution independently.

Why not ``scipy.integrate.solve_ivp``: it measures the error in an RMS norm over the whole
state, which dilutes one point's error by √n. Here every point is its own ODE with its own
error control (RMS over the d components of that point) and its own step sequence, so each
point is accurate to about the tolerance, and a point crossing a kink of a relu field shortens
only its own steps. The points are still integrated together: one velocity call per stage
for all points that have not yet arrived.

Where v is not smooth the high-order error estimate is not to be trusted: the integration
restarts at the times where v jumps (slab times), and a step that crosses a kink in
x (a relu hyperplane, ``MLPField.kinks``) is judged by a cruder, safe estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from mpi4py import MPI

# scipy's published DOP853 tableau (a private module, stable since scipy 1.4): only the
# numbers are used, not the solver.
from scipy.integrate._ivp import dop853_coefficients as _dop853

from solver.errors import InputError
from solver.model.domain import Domain
from solver.model.velocity import Field
from solver.parallel import gather_rows, rank_share

_STAGES = _dop853.N_STAGES  # 12; each step also evaluates v at its end, for the next step
_A = _dop853.A[:_STAGES, :_STAGES]
_B = _dop853.B
_C = _dop853.C[:_STAGES]
_E3 = _dop853.E3
_E5 = _dop853.E5
_ERROR_EXPONENT = -1.0 / 8.0  # the error estimate is O(h^8): exponent −1/(7 + 1)
_KINK_ERROR_EXPONENT = -1.0 / 2.0  # a step across a kink of v (relu) has an O(h^2) error
_SAFETY = 0.9
_MIN_FACTOR = 0.2
_MAX_FACTOR = 4.0  # Hairer uses 6; 4 keeps DOP853's rare underestimates of a grown step in check
_MAX_ITERATIONS = 100_000


@dataclass(frozen=True)
class CharacteristicsResult:
    """The characteristics of all points, identical on every rank.

    Attributes:
        q_T: End points q(T; x0) of the characteristics, shape=(n, d).
        u0: u(0, x0) = f(q(T; x0)) (eq. 6), shape=(n, K).
        times: Times of the trajectories, shape=(num_trajectory_times,), or None.
        trajectories: q(times; x0), shape=(num_trajectory_times, n, d), or None.
    """

    q_T: np.ndarray
    u0: np.ndarray
    times: np.ndarray | None = None
    trajectories: np.ndarray | None = None


def _domain_of(field: Field) -> Domain | None:
    """The field's domain if it has one (``MLPField``), else None (e.g. ``RigidRotation``)."""
    domain = getattr(field, "domain", None)
    if domain is None:
        domain = getattr(getattr(field, "model", None), "domain", None)
    return domain


def check_points(field: Field, x0: np.ndarray) -> np.ndarray:
    """``x0`` as a float64 array of shape=(n, field.dim), finite and inside the field's domain.

    Raises:
        InputError: For a wrong shape, non-finite points, or points outside the domain; the
            message says how many and shows the first few.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 2 or x0.shape[1] != field.dim:
        raise InputError(f"points must have shape (n, {field.dim}), got shape {x0.shape}")
    bad = ~np.all(np.isfinite(x0), axis=1)
    if bad.any():
        raise InputError(
            f"{int(bad.sum())} of {len(x0)} points are not finite, first few: "
            f"{np.flatnonzero(bad)[:5].tolist()} = {x0[bad][:5].tolist()}"
        )
    domain = _domain_of(field)
    if domain is not None:
        outside = ~domain.contains(x0)
        if outside.any():
            raise InputError(
                f"{int(outside.sum())} of {len(x0)} points lie outside the domain {domain}, "
                f"first few: {x0[outside][:5].tolist()}"
            )
    return x0


def _restart_times(field: Field) -> np.ndarray | None:
    """Times the integration must restart at: where v jumps (the field's pieces), or None."""
    pieces = field.pieces()
    return None if pieces is None else np.asarray(pieces, dtype=np.float64)


def _segments(field: Field, t0: float, t1: float) -> list[tuple[float, float]]:
    """[t0, t1] cut at the restart times, in the direction of integration."""
    cuts = _restart_times(field)
    lo, hi = min(t0, t1), max(t0, t1)
    inner = [] if cuts is None else sorted(c for c in cuts if lo < c < hi)
    points = [lo, *inner, hi]
    if t1 < t0:
        points = points[::-1]
    return list(zip(points[:-1], points[1:]))


def _point_norm(err: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per point RMS over the components of err/scale (both shape=(n, d)); shape=(n,)."""
    return np.sqrt(np.mean((err / scale) ** 2, axis=1))


def _time_map(a: float, b: float, mode: str) -> Callable[[np.ndarray], float | np.ndarray]:
    """The time argument to call the field with on the segment [a, b], from per-point times."""
    if mode == "steady":
        # v does not depend on t inside a piece: evaluate at its middle, so no stage (e.g.
        # c = 1 at the piece's end) picks the next piece's parameters through rounding.
        mid = 0.5 * (a + b)
        return lambda t: mid
    lo, hi = min(a, b), max(a, b)
    if mode == "per_point":
        return lambda t: np.clip(t, lo, hi)
    # "shared": all points are at the same time.
    return lambda t: min(max(float(t[0]), lo), hi)


def _initial_step(
    fun: Callable, t: np.ndarray, y: np.ndarray, f: np.ndarray, direction: float,
    length: float, rtol: float, atol: float,
) -> np.ndarray:
    """Hairer's starting step (HNW I, II.4), per point; shape=(n,)."""
    scale = atol + np.abs(y) * rtol
    d0 = _point_norm(y, scale)
    d1 = _point_norm(f, scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = np.where(small, 1e-6, 0.01 * d0 / np.where(small, 1.0, d1))
    # Near the origin d0 ~ |y|/atol says nothing about the step (the move of 1% of |y| would
    # be ~1e-18 at y ~ 1e-17, an underflow): keep h0 above a millionth of the interval.
    h0 = np.minimum(np.maximum(h0, 1e-6 * length), length)
    f1 = fun(t + direction * h0, y + direction * h0[:, None] * f)
    d2 = _point_norm(f1 - f, scale) / h0
    dmax = np.maximum(d1, d2)
    still = dmax <= 1e-15
    h1 = np.where(
        still, np.maximum(1e-6, 1e-3 * h0), (0.01 / np.where(still, 1.0, dmax)) ** (1.0 / 8.0)
    )
    return np.minimum(np.minimum(100.0 * h0, h1), length)


def _dop853_step(
    fun: Callable, t: np.ndarray, y: np.ndarray, f: np.ndarray, h: np.ndarray,
    rtol: float, atol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One DOP853 step of each point from (t, y) (f = fun(t, y)) with its own step h.

    Args:
        t, h: Times and signed steps, shape=(n,).
        y, f: Points and velocities, shape=(n, d).

    Returns:
        y(t + h) (shape=(n, d)) and each point's scaled error estimate (shape=(n,); the step is
        acceptable below 1): scipy's DOP853 error formula applied to each point alone; and a
        cruder, larger estimate (shape=(n,)) for steps that cross a kink of v.
    """
    K = np.empty((_STAGES, *y.shape))
    K[0] = f
    hc = h[:, None]
    for s in range(1, _STAGES):
        K[s] = fun(t + _C[s] * h, y + hc * np.tensordot(_A[s, :s], K[:s], axes=(0, 0)))
    y_new = y + hc * np.tensordot(_B, K, axes=(0, 0))
    scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
    # E3, E5 have a 13th entry for f(t + h, y_new); it is 0, so K needs only 12 stages.
    e5 = np.sum((np.tensordot(_E5[:_STAGES], K, axes=(0, 0)) / scale) ** 2, axis=1)
    e3 = np.sum((np.tensordot(_E3[:_STAGES], K, axes=(0, 0)) / scale) ** 2, axis=1)
    d = y.shape[1]
    denom = np.sqrt((e5 + 0.01 * e3) * d)
    err = np.abs(h) * np.divide(e5, denom, out=np.zeros_like(e5), where=denom > 0)
    # The extrapolated estimate assumes a smooth v. Across a kink the 5th-order difference
    # can nearly vanish by accident (seen: 1e5 times too small); the raw 3rd- and 5th-order
    # differences do not both vanish, so they bound the error of such a step.
    err_kink = np.abs(h) * np.sqrt(np.maximum(e3, e5) / d)
    return y_new, err, err_kink


def _integrate(
    field: Field, x0: np.ndarray, t0: float, t1: float, rtol: float, atol: float,
    t_eval: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """DOP853 over [t0, t1] for every point with its own step sequence: q(t1) and, if
    ``t_eval`` is given, q(t_eval) (shape=(len(t_eval), n, d)), else None.

    Restarts at the field's pieces and lands exactly on the t_eval times. Each
    point is an independent ODE, so a point's result does not depend on the other points
    (nor on how solve() splits them over ranks), and a point that crosses a kink of a relu
    field shortens only its own steps. A field that is neither steady on its pieces nor
    ``vectorized_time`` needs one time for all points: then the points share the steps and
    the worst point decides.
    """
    n, d = x0.shape
    if field.pieces() is not None:
        mode = "steady"
    elif getattr(field, "vectorized_time", False):
        mode = "per_point"
    else:
        mode = "shared"
    path = _Path(
        y=x0.copy(),
        t=np.full(n, float(t0)),
        stops=np.empty(0) if t_eval is None else t_eval,
        next_stop=np.zeros(n, dtype=np.intp),
        trajectory=None if t_eval is None else np.empty((len(t_eval), n, d)),
    )
    path.record(np.arange(n))
    budget = [_MAX_ITERATIONS]
    for a, b in _segments(field, t0, t1):
        _integrate_segment(field, path, a, b, mode, rtol, atol, budget)
    return path.y, path.trajectory


@dataclass
class _Path:
    """The integrator's state: points y (n, d) at times t (n,), and the recorded trajectory."""

    y: np.ndarray
    t: np.ndarray
    stops: np.ndarray  # the t_eval times
    next_stop: np.ndarray  # per point, index of its next t_eval time
    trajectory: np.ndarray | None  # (len(stops), n, d)

    def record(self, idx: np.ndarray) -> None:
        """Store y of the points ``idx`` that stand on their next output time (repeats too)."""
        if self.trajectory is None:
            return
        while idx.size:
            idx = idx[self.next_stop[idx] < len(self.stops)]
            idx = idx[self.stops[self.next_stop[idx]] == self.t[idx]]
            self.trajectory[self.next_stop[idx], idx] = self.y[idx]
            self.next_stop[idx] += 1


def _integrate_segment(
    field: Field, path: _Path, a: float, b: float, mode: str, rtol: float, atol: float,
    budget: list[int],
) -> None:
    """Advance every point of ``path`` from a to b, on which v is smooth in t."""
    direction = 1.0 if b > a else -1.0
    time_of = _time_map(a, b, mode)
    kink_values = getattr(field, "kinks", None)

    def fun(t: np.ndarray, x: np.ndarray) -> np.ndarray:
        return field(time_of(t), x)

    def kinks(t: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        return None if kink_values is None else kink_values(time_of(t), x)

    y, t = path.y, path.t
    t[:] = a
    f = fun(t, y)  # a fresh first stage: v may jump at a
    # A fresh starting step too: the step size of the last piece says nothing about this one,
    # and DOP853's error estimate can be far too small for a too-large first step.
    h = _initial_step(fun, t, y, f, direction, abs(b - a), rtol, atol)
    if mode == "shared":
        h[:] = h.min()
    retry = np.zeros(len(t), dtype=bool)  # the point's last attempt was rejected
    active = np.arange(len(t))
    while active.size:
        budget[0] -= 1
        if budget[0] < 0:
            raise RuntimeError(
                f"characteristics: more than {_MAX_ITERATIONS} steps before t={b} "
                f"(rtol={rtol}, atol={atol}); is the velocity field very large?"
            )
        ta, ha = t[active], h[active]
        tiny = ha < 10.0 * np.spacing(np.maximum(np.abs(ta), 1.0))
        if tiny.any():
            i = active[np.argmax(tiny)]
            raise RuntimeError(
                f"characteristics: step size underflow for point {i} at t={t[i]}, "
                f"x={y[i].tolist()}"
            )
        t_new, clipped = _step_ends(path, active, ta, ha, b, direction)
        step = t_new - ta
        ya = y[active]
        y_new, err, err_kink = _dop853_step(fun, ta, ya, f[active], step, rtol, atol)

        exponent, theta = _ERROR_EXPONENT, None
        z_old = kinks(ta, ya)
        if z_old is not None:
            err, exponent, theta = _kink_errors(z_old, kinks(t_new, y_new), err, err_kink)
        if mode == "shared":
            err[:] = err.max()
        accept = err < 1.0
        h_next = _next_step(np.abs(step), ha, err, exponent, accept, clipped, retry[active], theta)
        h[active] = h_next.min() if mode == "shared" else h_next
        retry[active] = ~accept

        moved = active[accept]
        y[moved] = y_new[accept]
        t[moved] = t_new[accept]
        path.record(moved)
        active = active[direction * (b - t[active]) > 0]
        going = moved[direction * (b - t[moved]) > 0]
        if going.size:
            f[going] = fun(t[going], y[going])  # the 13th call of a step


def _step_ends(
    path: _Path, active: np.ndarray, t: np.ndarray, h: np.ndarray, b: float, direction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where the steps h (shape=(n,)) of the ``active`` points from t end, and whether they were
    clipped: exactly on the point's next output time before b, else on b; a step that would
    leave a sliver of rounding size is stretched to it."""
    k = path.next_stop[active]
    stops = path.stops
    stop = stops[np.minimum(k, len(stops) - 1)] if len(stops) else np.full(len(k), b)
    target = np.where((k < len(stops)) & (direction * (stop - b) < 0), stop, b)
    clipped = h >= np.abs(target - t) * (1.0 - 1e-9)
    return np.where(clipped, target, t + direction * h), clipped


def _kink_errors(
    z_old: np.ndarray, z_new: np.ndarray, err: np.ndarray, err_kink: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The errors, error exponents and kink positions θ ∈ (0, 1] (1: none) of steps whose
    pre-activations went from z_old to z_new (shape=(n, width)): a step across a kink is
    judged by the cruder estimate ``err_kink``."""
    flips = (z_old > 0) != (z_new > 0)
    crossed = np.any(flips, axis=1)
    err = np.where(crossed, np.maximum(err, err_kink), err)
    # Across a kink the error is O(h^2), not O(h^8): size the retry for that.
    exponent = np.where(crossed, _KINK_ERROR_EXPONENT, _ERROR_EXPONENT)
    # Where along the step z first reaches 0 (linear interpolation); 1 if nowhere.
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.min(np.where(flips, z_old / (z_old - z_new), 1.0), axis=1)
    return err, exponent, theta


def _next_step(
    step: np.ndarray, proposed: np.ndarray, err: np.ndarray, exponent: float | np.ndarray,
    accept: np.ndarray, clipped: np.ndarray, retry: np.ndarray, theta: np.ndarray | None,
) -> np.ndarray:
    """The next step sizes (shape=(n,)) after steps of sizes ``step`` with errors ``err``.

    ``proposed`` is what the step would have been without ``clipped`` to an output time,
    ``retry`` marks points whose previous attempt was rejected, and ``theta`` is where along
    the step a kink was crossed (None for a smooth field).
    """
    with np.errstate(divide="ignore"):
        factor = _SAFETY * err**exponent  # inf where err == 0
    # No growth right after a rejection (as in scipy): else a point closing in on a kink of
    # v grows its step into the kink and is rejected again, over and over.
    grown = step * np.minimum(np.where(retry, 1.0, _MAX_FACTOR), factor)
    # A step shortened to hit an output time says little about the step to come.
    grown = np.where(clipped, np.maximum(proposed, grown), grown)
    shrunk = step * np.maximum(_MIN_FACTOR, factor)
    if theta is not None:
        # Retry up to the kink, where that is not too close to the start.
        to_kink = np.minimum(np.maximum(shrunk, theta * step), 0.5 * step)
        shrunk = np.where(theta > 0.01, to_kink, shrunk)
    return np.where(accept, grown, shrunk)


def _check_times(field: Field, t0: float, t1: float | None) -> tuple[float, float]:
    T = float(field.T)
    t1 = T if t1 is None else float(t1)
    t0 = float(t0)
    for name, t in (("t0", t0), ("t1", t1)):
        if not (np.isfinite(t) and 0.0 <= t <= T):
            raise InputError(f"{name} must lie in [0, T] = [0, {T}], got {name}={t}")
    return t0, t1


def _check_t_eval(t_eval: np.ndarray, t0: float, t1: float) -> np.ndarray:
    t_eval = np.asarray(t_eval, dtype=np.float64).ravel()
    lo, hi = min(t0, t1), max(t0, t1)
    direction = 1.0 if t1 >= t0 else -1.0
    if np.any(~np.isfinite(t_eval)) or np.any(t_eval < lo) or np.any(t_eval > hi):
        raise InputError(f"times must lie between t0={t0} and t1={t1}, got {t_eval}")
    if np.any(direction * np.diff(t_eval) < 0):
        raise InputError(f"times must be sorted from t0={t0} towards t1={t1}, got {t_eval}")
    return t_eval


def flow(
    field: Field,
    x0: np.ndarray,
    t0: float = 0.0,
    t1: float | None = None,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> np.ndarray:
    """The characteristics x' = v(t, x) (eq. 3) from t0 to t1 for all points at once: q(t1).

    Serial (not collective). DOP853 with the local error of each point kept below about
    atol + rtol·|x| per step, each point with its own steps; restarted at the field's
    ``pieces()``, where v jumps. t1 < t0 integrates backward. A field that is neither steady on
    its pieces nor ``vectorized_time`` can only be called at one time for all points: then the
    points share the steps, the worst point decides, and a point's result depends (within the
    tolerance) on the others.

    Args:
        field: The velocity field.
        x0: Starting points at t0, shape=(n, dim); inside the field's domain if it has one.
        t0: Start time in [0, T].
        t1: End time in [0, T]; default ``field.T``.
        rtol: Relative tolerance per point.
        atol: Absolute tolerance per point.

    Returns:
        q(t1), shape=(n, dim).

    Raises:
        InputError: For bad points, times or tolerances.
        RuntimeError: If the step size underflows or more than 100 000 steps are needed.
    """
    x0 = check_points(field, x0)
    t0, t1 = _check_times(field, t0, t1)
    _check_tolerances(rtol, atol)
    if len(x0) == 0 or t0 == t1:
        return x0.copy()
    return _integrate(field, x0, t0, t1, rtol, atol, None)[0]


def trajectories(
    field: Field, x0: np.ndarray, times: np.ndarray, *, rtol: float = 1e-10, atol: float = 1e-12
) -> np.ndarray:
    """The characteristics through ``x0`` at ``times[0]``, recorded at all ``times``.

    Serial, as :func:`flow`, which integrates from ``times[0]`` to ``times[-1]`` here (backward
    if they decrease) and lands exactly on every time on the way (a repeated time is recorded
    twice).

    Args:
        field: The velocity field.
        x0: Starting points at ``times[0]``, shape=(n, dim).
        times: At least one time in [0, T], sorted (increasing or decreasing).
        rtol, atol: Tolerances per point, as for :func:`flow`.

    Returns:
        q(times), shape=(len(times), n, dim); the first entry is ``x0``, the last q(times[-1]).
    """
    times = np.asarray(times, dtype=np.float64).ravel()
    if times.size == 0:
        raise InputError("times must hold at least one time")
    x0 = check_points(field, x0)
    t0, t1 = _check_times(field, times[0], times[-1])
    times = _check_t_eval(times, t0, t1)
    _check_tolerances(rtol, atol)
    if len(x0) == 0 or t0 == t1:
        return np.broadcast_to(x0, (len(times), *x0.shape)).copy()
    return _integrate(field, x0, t0, t1, rtol, atol, times)[1]


def _check_tolerances(rtol: float, atol: float) -> None:
    if not (np.isfinite(rtol) and rtol > 0):
        raise InputError(f"rtol must be a finite number > 0, got {rtol}")
    if not (np.isfinite(atol) and atol >= 0):
        raise InputError(f"atol must be a finite number >= 0, got {atol}")


def solve(
    comm: MPI.Comm,
    field: Field,
    terminal: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    num_trajectory_times: int = 0,
) -> CharacteristicsResult:
    """u(0, x0) = f(q(T; x0)) by the method of characteristics (eqs. 3 and 6).

    Collective. Every rank passes the same ``x0``; each integrates its
    :func:`~solver.parallel.rank_share`, and the results are gathered so every rank returns the
    full arrays in the original order. Each
    point has its own step sequence, so the number of ranks changes the result only through
    rounding (1 ulp from BLAS on differently sized arrays, measured 5e-16; for a relu field
    such a difference can flip the acceptance of a step at a kink, measured 5e-11 at
    rtol=1e-10). A field that is neither steady on pieces nor ``vectorized_time`` shares the
    steps between the points of a rank (see ``flow``): its result depends on the split within
    the tolerance.

    Args:
        comm: The communicator.
        field: The velocity field.
        terminal: The terminal function f: shape=(n, dim) -> shape=(n, K) or (n,).
        x0: Points at t = 0, shape=(n, dim), the same on every rank.
        rtol: Relative tolerance per point.
        atol: Absolute tolerance per point.
        num_trajectory_times: If >= 2, also record q at that many equally spaced times in
            [0, T]; 0 for none.

    Returns:
        The end points, u(0, x0) (shape=(n, K); K = 1 for a terminal returning shape=(n,)), and
        optionally the trajectories.
    """
    # x0 is the same everywhere, so every rank raises here or none does.
    x0 = check_points(field, x0)
    _check_tolerances(rtol, atol)
    if not (isinstance(num_trajectory_times, (int, np.integer)) and (
        num_trajectory_times == 0 or num_trajectory_times >= 2
    )):
        raise InputError(f"num_trajectory_times must be 0 or >= 2, got {num_trajectory_times!r}")
    T = float(field.T)
    times = np.linspace(0.0, T, num_trajectory_times) if num_trajectory_times else None

    n = len(x0)
    local = x0[rank_share(comm, n)]

    # Each point is integrated on its own step sequence, so no communication is needed here;
    # but a failure on one rank must reach all of them before the collective gather.
    failure = None
    try:
        if times is None:
            traj_local = flow(field, local, 0.0, T, rtol=rtol, atol=atol)[None]
        else:
            traj_local = trajectories(field, local, times, rtol=rtol, atol=atol)
    except (InputError, RuntimeError, FloatingPointError) as error:
        failure = error
    if comm.allreduce(failure is not None, op=MPI.LOR):
        if failure is not None:
            raise failure
        raise RuntimeError("characteristics failed on another rank; its error says why")
    # Gathered along the point axis: points first, so each rank's block is contiguous.
    gathered = gather_rows(comm, traj_local.transpose(1, 0, 2)).transpose(1, 0, 2)
    q_T = np.ascontiguousarray(gathered[-1])
    trajectories_all = None if times is None else np.ascontiguousarray(gathered)

    # Every rank evaluates f on all end points: cheap, and no rank needs to guess K.
    u0 = np.asarray(terminal(q_T), dtype=np.float64)
    if u0.ndim == 1:
        u0 = u0[:, None]
    if u0.ndim != 2 or u0.shape[0] != n:
        raise InputError(f"terminal must return shape ({n}, K) or ({n},), got shape {u0.shape}")
    return CharacteristicsResult(q_T=q_T, u0=u0, times=times, trajectories=trajectories_all)
