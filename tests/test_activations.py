"""solver.model.activations: the one registry of a and a' (velocity and plain nets), its
convention at kinks and its numerics in the tails; solver.convergence's order fits."""

import numpy as np
import pytest

from solver.convergence import fitted_order, observed_orders
from solver.errors import InputError
from solver.model import activations
from solver.model.activations import ACTIVATIONS, activation, sigmoid, softmax
from solver.model.velocity import VELOCITY_ACTIVATIONS
from solver.plain2resnet.plainnet import LAYER_ACTIVATIONS, Layer


def test_both_users_draw_from_the_one_registry():
    assert set(VELOCITY_ACTIVATIONS) | set(LAYER_ACTIVATIONS) == set(ACTIVATIONS)
    from solver.model import velocity

    assert all(velocity.activation(n) is ACTIVATIONS[n] for n in VELOCITY_ACTIVATIONS)
    with pytest.raises(InputError, match='"leaky_relu".*Must be one of'):
        velocity.activation("leaky_relu")  # a plain-net activation, not a velocity one


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_matches_a_difference_quotient(name):
    a = activation(name, slope=0.2)
    z = np.linspace(-4.0, 4.0, 101) + 0.013  # off the kink at 0
    eps = 1e-6
    np.testing.assert_allclose(a.derivative(z), (a.value(z + eps) - a.value(z - eps)) / (2 * eps), atol=1e-8)
    assert np.all(np.isfinite(a.value(np.array([-800.0, 800.0]))))  # no overflow


def test_the_derivative_at_a_kink_is_the_left_one():
    zero = np.zeros(1)
    assert activation("relu").derivative(zero)[0] == 0.0
    assert activation("leaky_relu", slope=0.3).derivative(zero)[0] == 0.3
    assert activation("leaky_relu", slope=0.3).value(np.array([-2.0]))[0] == pytest.approx(-0.6)
    assert not activation("relu").smooth and activation("tanh").smooth


def test_tanh_and_sigmoid_derivatives_are_relatively_accurate_in_the_tails():
    # 1 - tanh(z)^2 rounds to 0 beyond |z| = 19; the exact values are 4 e^{-2|z|} (1 + e^{-2|z|})^-2.
    z = np.array([-30.0, 25.0, 300.0])
    exact_tanh = 4.0 * np.exp(-2 * np.abs(z)) / (1 + np.exp(-2 * np.abs(z))) ** 2
    np.testing.assert_allclose(activation("tanh").derivative(z), exact_tanh, rtol=1e-13)
    exact_sigmoid = np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))) ** 2
    np.testing.assert_allclose(activation("sigmoid").derivative(z), exact_sigmoid, rtol=1e-13)
    assert sigmoid(np.array([-800.0]))[0] == 0.0 and sigmoid(np.array([-40.0]))[0] > 0.0


def test_plain_layer_uses_the_registry():
    layer = Layer(np.eye(2), np.zeros(2), "leaky_relu", slope=0.5)
    np.testing.assert_array_equal(layer(np.array([[-2.0, 3.0]])), [[-1.0, 3.0]])


def test_unknown_names_are_refused_with_the_name():
    with pytest.raises(InputError, match='"swish"'):
        activations.activation("swish")


def test_softmax_rows_without_overflow():
    y = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), -np.inf]])
    np.testing.assert_allclose(softmax(y), [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]], rtol=1e-14)
    assert softmax(np.zeros((2, 3, 4))).shape == (2, 3, 4)  # along the last axis


def test_orders_of_a_known_power_law():
    h = 1.0 / np.array([4.0, 8.0, 16.0, 32.0])
    errors = 3.0 * h**2 * (1.0 + 0.01 * np.array([1.0, -1.0, 1.0, -1.0]))
    assert fitted_order(h, errors) == pytest.approx(2.0, abs=0.02)
    np.testing.assert_allclose(observed_orders(h, 3.0 * h**1.5), 1.5, rtol=1e-12)
    assert observed_orders(h[:2], [1.0, 0.0])[0] == np.inf  # an exact run: no warning, inf
