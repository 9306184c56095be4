"""The optimizers on closed-form objectives: convergence, backing off from unstable trial
points, and resuming from a saved state to the same iterates (no dolfinx, no MPI)."""

import numpy as np
import pytest

from solver.errors import InputError, UnstableSolve
from solver.learn import optimize

A = np.diag([1.0, 10.0, 100.0])  # an ill-conditioned quadratic ½ pᵀAp − bᵀp
B = np.array([1.0, -2.0, 3.0])


def quadratic(p):
    return 0.5 * p @ A @ p - B @ p, A @ p - B


def rosenbrock(p):
    x, y = p
    value = (1 - x) ** 2 + 100 * (y - x**2) ** 2
    return value, np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


@pytest.mark.parametrize("fun, p0, solution", [
    (quadratic, np.zeros(3), np.linalg.solve(A, B)),
    (rosenbrock, np.array([-1.2, 1.0]), np.ones(2)),
])
def test_lbfgs_converges(fun, p0, solution):
    state = optimize.run(fun, optimize.start(fun, p0), "lbfgs", 200)
    assert np.abs(state.p - solution).max() < 1e-6, state.p
    assert np.linalg.norm(state.gradient) < 1e-6


def test_adam_decreases_a_quadratic():
    fun = quadratic
    state = optimize.start(fun, np.zeros(3))
    first = state.value
    state = optimize.run(fun, state, "adam", 300, learning_rate=0.05)
    assert state.value < first
    assert np.abs(state.p - np.linalg.solve(A, B)).max() < 0.05


def unstable_beyond(radius):
    """The quadratic, but its solve is 'unstable' (raises) outside the ball |p| <= radius."""
    calls = {"unstable": 0}

    def fun(p):
        if np.linalg.norm(p) > radius:
            calls["unstable"] += 1
            raise UnstableSolve("the transport solve is unstable (test)")
        return quadratic(p)

    return fun, calls


@pytest.mark.parametrize("method, options", [("lbfgs", dict(max_step=10.0)), ("adam", dict(learning_rate=5.0))])
def test_backs_off_from_unstable_trial_points(method, options):
    """A first trial step far outside the stable region halves instead of ending the run."""
    fun, calls = unstable_beyond(0.5)
    state = optimize.start(fun, np.zeros(3))
    state = optimize.run(fun, state, method, 5, **options)
    assert calls["unstable"] > 0
    assert np.linalg.norm(state.p) <= 0.5 and np.isfinite(state.value)
    assert state.value < quadratic(np.zeros(3))[0]


def test_other_input_errors_are_not_swallowed():
    def fun(p):
        if np.linalg.norm(p) > 0:
            raise InputError("the transport solve is unstable, says the message, but it is no UnstableSolve")
        return quadratic(p)

    state = optimize.start(fun, np.zeros(3))
    with pytest.raises(InputError, match="no UnstableSolve"):
        optimize.lbfgs_step(fun, state)


def test_non_finite_start_is_refused():
    with pytest.raises(InputError, match="not finite"):
        optimize.start(lambda p: (np.nan, np.zeros_like(p)), np.zeros(2))


@pytest.mark.parametrize("method", optimize.OPTIMIZERS)
def test_state_round_trip_resumes_to_identical_iterates(method, tmp_path):
    """Saved after 4 iterations and restored, a run continues exactly as without the stop."""
    fun = rosenbrock
    options = dict(learning_rate=0.01) if method == "adam" else {}
    straight = optimize.run(fun, optimize.start(fun, np.array([-1.2, 1.0])), method, 12, **options)

    state = optimize.run(fun, optimize.start(fun, np.array([-1.2, 1.0])), method, 4, **options)
    np.savez(tmp_path / "state.npz", **state.to_arrays())
    with np.load(tmp_path / "state.npz") as saved:
        restored = optimize.OptimizerState.from_arrays(saved)
    assert restored.iteration == 4 and restored.evaluations == state.evaluations
    resumed = optimize.run(fun, restored, method, 12, **options)

    np.testing.assert_array_equal(resumed.p, straight.p)
    np.testing.assert_array_equal(resumed.gradient, straight.gradient)
    assert resumed.value == straight.value and resumed.evaluations == straight.evaluations
    assert len(resumed.s) == len(straight.s)
    for a, b in zip(resumed.s + resumed.y, straight.s + straight.y):
        np.testing.assert_array_equal(a, b)


def test_unknown_method():
    state = optimize.start(quadratic, np.zeros(3))
    with pytest.raises(InputError, match='Invalid optimizer "sgd"'):
        optimize.run(quadratic, state, "sgd", 1)
