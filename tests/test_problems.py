from mpi4py import MPI  # noqa: F401  (before anything that may load dolfinx)

import numpy as np
import pytest

from solver.errors import InputError
from solver.model.terminal import TERMINAL_KINDS, Terminal, make_terminal

POINTS = np.random.default_rng(0).uniform(-1.0, 1.0, size=(50, 3))

# kind, dim, params, expected number of components
CASES = [
    ("linear", 2, {}, 2),
    ("linear", 3, {"num_components": 4, "seed": 3}, 4),
    ("softmax", 2, {"num_components": 3}, 3),
    ("sigmoid", 2, {"weights": [1.0, -2.0], "bias": 0.5}, 1),
    ("gaussian", 2, {}, 1),
    ("gaussian", 3, {"center": [[0, 0, 0], [0.5, 0.5, 0.5]], "sigma": [0.2, 0.3]}, 2),
    ("sine", 2, {"wavenumbers": [1, 2], "phases": [0.0, 0.5]}, 1),
]


@pytest.mark.parametrize("kind, dim, params, k", CASES)
def test_shapes_and_determinism(kind, dim, params, k):
    f = make_terminal(kind, dim, **params)
    x = POINTS[:, :dim]
    u = f(x)
    assert f.num_components == k
    assert u.shape == (len(x), k)
    assert np.all(np.isfinite(u))
    np.testing.assert_array_equal(u, make_terminal(kind, dim, **params)(x))
    # Vectorized: evaluating point by point gives the same values.
    np.testing.assert_allclose(np.vstack([f(x[i : i + 1]) for i in range(5)]), u[:5], rtol=1e-15)


def test_every_kind_has_a_case():
    assert {case[0] for case in CASES} == set(TERMINAL_KINDS)


def test_softmax_rows_sum_to_one():
    f = make_terminal("softmax", 2, num_components=4, scale=50.0)  # large logits: no overflow
    u = f(POINTS[:, :2])
    np.testing.assert_allclose(u.sum(axis=1), 1.0, rtol=1e-14)
    assert np.all(u >= 0.0)


def test_values_of_given_maps():
    x = np.array([[0.5, -1.0]])
    lin = make_terminal("linear", 2, num_components=2, weights=[[1, 2], [3, 4]], bias=[1, 0])
    np.testing.assert_allclose(lin(x), [[1.5 - 2.0 + 0.0, 1.5 - 4.0]])
    gauss = make_terminal("gaussian", 2, center=[0.5, 0.0], sigma=0.5)
    np.testing.assert_allclose(gauss(x), [[np.exp(-1.0 / 0.5)]])
    sine = make_terminal("sine", 2)
    np.testing.assert_allclose(sine(np.array([[0.5, 0.5]])), [[1.0]])


def test_from_callable_and_interpolant():
    f = Terminal.from_callable(lambda x: x[:, 0] ** 2, num_components=1, name="square")
    np.testing.assert_allclose(f(POINTS[:, :2])[:, 0], POINTS[:, 0] ** 2)
    with pytest.raises(InputError, match=r"returned shape \(50,\).*expected \(50, 2\)"):
        Terminal.from_callable(lambda x: x[:, 0], num_components=2)(POINTS[:, :2])
    g = make_terminal("softmax", 2, num_components=3)
    padded = np.vstack([POINTS[:, :2].T, np.zeros(len(POINTS))])  # dolfinx's (3, n) layout
    np.testing.assert_allclose(g.interpolant()(padded), g(POINTS[:, :2]).T)


@pytest.mark.parametrize(
    "kind, params, match",
    [
        ("tanh", {}, r'Invalid terminal kind "tanh"\. Must be one of \[.*gaussian'),
        ("softmax", {"num_components": 1}, r"terminal\.num_components.*at least 2"),
        ("gaussian", {"sigma": 0.0}, r"terminal\.sigma.*> 0"),
        ("gaussian", {"center": [0.0, 0.0, 0.0]}, r"terminal\.center.*shape \(2,\)"),
        ("gaussian", {"radius": 1.0}, r"terminal\.radius.*Valid keys.*sigma"),
        ("linear", {"weights": [[1.0, 2.0]]}, r"terminal\.weights.*\(2, 2\)"),
        ("linear", {"seed": 1.5}, r"terminal\.seed.*integer"),
        ("sine", {"phases": [True, 0.0]}, r"terminal\.phases.*numbers"),
    ],
)
def test_bad_input(kind, params, match):
    with pytest.raises(InputError, match=match):
        make_terminal(kind, 2, **params)


def test_wrong_point_dimension():
    with pytest.raises(InputError, match=r"shape \(n, 2\)"):
        make_terminal("gaussian", 2)(POINTS)
