from mpi4py import MPI  # first: mpi4py before anything that may load dolfinx


import numpy as np
import pytest

from solver.convergence import fitted_order
from solver.model.characteristics import CharacteristicsResult, flow, solve, trajectories
from solver.model.domain import Box
from solver.errors import InputError
from solver.model.velocity import RigidRotation, VelocityModel

serial = pytest.mark.skipif(MPI.COMM_WORLD.size > 1, reason="serial test")


def disk_points(n, center, radius, seed=0):
    """n points uniform in the closed disk, centre and a boundary point included."""
    rng = np.random.default_rng(seed)
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    r[0], r[1] = 0.0, radius
    a = rng.uniform(0, 2 * np.pi, n)
    return np.asarray(center) + np.c_[r * np.cos(a), r * np.sin(a)]


def mlp_field(act="tanh", seed=1, scale=2.0, width=8, slabs=4):
    box = Box((-1.0, -1.0), (1.0, 1.0))
    model = VelocityModel(2, width, slabs, 1.0, act, box)
    return model.field(model.init(seed, scale=scale))


class PiecewiseTranslation:
    """v = c_j on [t_j, t_{j+1}): q(t) is piecewise linear, so any error is the integrator's."""

    dim, T = 2, 1.0
    times = np.array([0.0, 0.3, 1.0])
    speeds = np.array([[1.0, 0.0], [0.0, 2.0]])

    def __call__(self, t, x):
        j = min(int(np.searchsorted(self.times, t, side="right")) - 1, 1)
        return np.broadcast_to(self.speeds[j], x.shape).copy()

    def pieces(self):
        return self.times

    def exact(self, x, t):
        dt = np.clip(t - self.times[:-1], 0, np.diff(self.times))
        return x + dt @ self.speeds


class Circling:
    """v(t) = (−sin t, cos t), continuous in t, one time per call (no vectorized_time)."""

    dim, T = 2, 3.0

    def __call__(self, t, x):
        assert np.ndim(t) == 0
        return np.broadcast_to([-np.sin(t), np.cos(t)], x.shape).copy()

    def pieces(self):
        return None

    def exact(self, x, t):
        return x + np.array([np.cos(t) - 1.0, np.sin(t)])


class Swirl:
    """v(t, x) = (1 + t)(−x2, x1): continuous in t and called with one time per point."""

    dim, T = 2, 1.5
    vectorized_time = True

    def __call__(self, t, x):
        speed = 1.0 + np.broadcast_to(t, (len(x),))
        return speed[:, None] * np.c_[-x[:, 1], x[:, 0]]

    def pieces(self):
        return None

    def exact(self, x, t):
        angle = t + 0.5 * t**2
        c, s = np.cos(angle), np.sin(angle)
        return np.c_[c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]]


# ---- accuracy ---------------------------------------------------------------------------------


@serial
def test_rotation_accurate_per_point():
    """2000 points, a full revolution: per-point error control keeps every point accurate."""
    center = (0.2, -0.1)
    rot = RigidRotation(1.3, center, T=2 * np.pi / 1.3, dim=2)
    x0 = disk_points(2000, center, 1.0)
    q = flow(rot, x0)
    err = np.abs(q - rot.exact_flow(x0, 0.0, rot.T)).max(axis=1)
    assert err.max() < 1e-9, f"max per-point error {err.max():.2e}"
    assert np.all(q[0] == x0[0])  # the centre does not move


@serial
def test_rotation_3d_partial_turn_backward():
    rot = RigidRotation(-0.8, (0.0, 0.0, 0.5), T=2.0, dim=3)
    x = np.random.default_rng(3).uniform(-1, 1, (300, 3))
    q = flow(rot, x, t0=1.7, t1=0.2)
    assert np.abs(q - rot.exact_flow(x, 1.7, 0.2)).max() < 1e-9
    assert np.array_equal(q[:, 2], x[:, 2])


@serial
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus", "relu"])
def test_mlp_forward_then_backward_returns(act):
    field = mlp_field(act)
    x0 = np.random.default_rng(0).uniform(-1, 1, (300, 2))
    q = flow(field, x0)
    assert np.abs(q - x0).max() > 0.05  # the field does move the points
    assert np.all(field.domain.contains(q))  # Ω is invariant
    back = flow(field, q, t0=field.T, t1=0.0)
    err = np.abs(back - x0).max()
    assert err < 1e-8, f"{act}: forward-backward error {err:.2e}"


# Smooth MLP fields are resolved far below loose tolerances (the slab length caps the step),
# so their table starts at 1e-7, where the error is controlled by rtol.
CONVERGENCE = {
    "rotation": [1e-4, 1e-6, 1e-8, 1e-10],
    "mlp-tanh": [1e-7, 1e-8, 1e-9, 1e-10, 1e-11],
    "mlp-softplus": [1e-7, 1e-8, 1e-9, 1e-10, 1e-11],
    "mlp-relu": [1e-6, 1e-7, 1e-8, 1e-9, 1e-10],
}


@serial
@pytest.mark.slow  # a convergence study in rtol, down to 1e-11
@pytest.mark.parametrize("case", sorted(CONVERGENCE))
def test_error_converges_with_rtol(case):
    """Global error ≈ C·rtol: the slope of log(error) against log(rtol) is about 1."""
    rtols = np.array(CONVERGENCE[case])
    if case == "rotation":
        field = RigidRotation(1.0, (0.0, 0.0), T=2 * np.pi, dim=2)
        x0 = disk_points(500, (0.0, 0.0), 1.0, seed=1)
        exact = field.exact_flow(x0, 0.0, field.T)
    else:
        field = mlp_field(case.split("-")[1])
        x0 = np.random.default_rng(2).uniform(-1, 1, (200, 2))
        exact = flow(field, x0, rtol=1e-14, atol=1e-16)
    errors = np.array([np.abs(flow(field, x0, rtol=r, atol=1e-2 * r) - exact).max() for r in rtols])
    rate = fitted_order(rtols, errors)
    print(f"{case}: rtol {rtols}, max errors {errors}, observed rate {rate:.2f}")
    assert np.all(np.diff(errors) < 0), f"{case}: errors {errors} do not decrease"
    assert 0.7 <= rate <= 1.3, f"{case}: observed rate {rate:.2f}, expected about 1"
    assert np.all(errors < 50 * rtols), f"{case}: errors {errors} for rtol {rtols}"


@serial
def test_restarts_at_pieces():
    """v jumps at t = 0.3: a high-order step across it would be wrong at O(1)."""
    field = PiecewiseTranslation()
    x0 = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    times = np.array([0.0, 0.1, 0.3, 0.3, 0.65, 1.0])  # a repeated time is recorded twice
    traj = trajectories(field, x0, times)
    q = traj[-1]
    assert np.allclose(q, field.exact(x0, 1.0), atol=1e-13)
    assert traj.shape == (len(times), 50, 2)
    for k, t in enumerate(times):
        assert np.allclose(traj[k], field.exact(x0, t), atol=1e-13), t
    back = flow(field, q, t0=1.0, t1=0.0)
    assert np.allclose(back, x0, atol=1e-13)


@serial
def test_time_dependent_field_without_per_point_times():
    field = Circling()
    x0 = np.random.default_rng(0).uniform(-1, 1, (100, 2))
    traj = trajectories(field, x0, np.linspace(0, field.T, 7))
    q = traj[-1]
    assert np.abs(q - field.exact(x0, field.T)).max() < 1e-9
    assert np.abs(traj[3] - field.exact(x0, 1.5)).max() < 1e-9


@serial
def test_time_dependent_field_with_per_point_times():
    field = Swirl()
    x0 = np.random.default_rng(0).uniform(-1, 1, (100, 2))
    traj = trajectories(field, x0, np.linspace(0, field.T, 7))
    assert np.abs(traj[-1] - field.exact(x0, field.T)).max() < 1e-9
    assert np.abs(traj[3] - field.exact(x0, 0.75)).max() < 1e-9
    assert np.abs(flow(field, traj[-1], t0=field.T, t1=0.0) - x0).max() < 1e-9


@serial
def test_trajectories_of_mlp_field():
    field = mlp_field("tanh")
    x0 = np.random.default_rng(4).uniform(-1, 1, (100, 2))
    times = np.linspace(0.0, 1.0, 9)
    traj = trajectories(field, x0, times)
    q = traj[-1]
    assert np.array_equal(traj[0], x0)
    assert np.abs(flow(field, x0) - q).max() < 1e-9  # other steps (none land on the times)
    back = trajectories(field, q, times[::-1])  # backward, recorded on the way
    assert np.abs(back[::-1] - traj).max() < 1e-8
    assert np.abs(traj[4] - flow(field, x0, t1=0.5)).max() < 1e-9
    assert np.abs(flow(field, traj[2], t0=0.25) - q).max() < 1e-9


# ---- the collective solve ---------------------------------------------------------------------


def terminal_scalar(x):
    return np.sin(3 * x[:, 0]) * x[:, 1]


def terminal_vector(x):
    return np.c_[x[:, 0] ** 2, x[:, 1], x[:, 0] - x[:, 1]]


@pytest.mark.parametrize("n", [1, 3, 401])
@pytest.mark.parametrize("kind", ["mlp", "per_point"])
def test_solve_same_on_all_ranks_as_serial(kind, n):
    comm = MPI.COMM_WORLD
    field = mlp_field("tanh", scale=1.5) if kind == "mlp" else Swirl()
    x0 = np.random.default_rng(9).uniform(-1, 1, (n, 2))
    par = solve(comm, field, terminal_scalar, x0, num_trajectory_times=5)
    ser = solve(MPI.COMM_SELF, field, terminal_scalar, x0, num_trajectory_times=5)
    assert isinstance(par, CharacteristicsResult)
    assert par.q_T.shape == (n, 2) and par.u0.shape == (n, 1)
    assert par.trajectories.shape == (5, n, 2)
    assert np.array_equal(par.times, np.linspace(0, field.T, 5))
    # Every point has its own step sequence, so the split over ranks changes nothing.
    np.testing.assert_allclose(par.q_T, ser.q_T, rtol=0, atol=1e-14)
    np.testing.assert_allclose(par.u0, ser.u0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(par.trajectories, ser.trajectories, rtol=0, atol=1e-14)
    assert np.allclose(par.u0[:, 0], terminal_scalar(par.q_T))
    assert np.array_equal(par.trajectories[0], x0)
    # identical on every rank
    assert np.array_equal(comm.bcast(par.q_T, root=0), par.q_T)


def test_solve_vector_terminal_on_rotation():
    comm = MPI.COMM_WORLD
    rot = RigidRotation(2.0, (0.0, 0.0), T=1.0, dim=2)
    x0 = disk_points(100, (0.0, 0.0), 1.0)
    result = solve(comm, rot, terminal_vector, x0)
    assert result.times is None and result.trajectories is None
    assert result.u0.shape == (100, 3)
    assert np.abs(result.q_T - rot.exact_flow(x0, 0.0, 1.0)).max() < 1e-9
    # eq. 6: u(0, x0) = f(q(T; x0))
    assert np.abs(result.u0 - terminal_vector(rot.exact_flow(x0, 0.0, 1.0))).max() < 1e-8


# ---- bad input --------------------------------------------------------------------------------


def test_points_outside_domain_raise_on_every_rank():
    comm = MPI.COMM_WORLD
    field = mlp_field()
    x0 = np.random.default_rng(0).uniform(-1, 1, (10, 2))
    x0[[2, 5, 7]] = [[1.5, 0.0], [0.0, -3.0], [2.0, 2.0]]
    with pytest.raises(InputError) as info:
        solve(comm, field, terminal_scalar, x0)
    message = str(info.value)
    assert "3 of 10 points" in message and "1.5" in message and "-3.0" in message


class FailsNearEdge:
    """A steady field that fails for points with x1 > 0.9: only one rank sees the failure."""

    dim, T = 2, 1.0

    def __call__(self, t, x):
        if np.any(x[:, 0] > 0.9):
            raise RuntimeError("velocity failed")
        return np.zeros_like(x)

    def pieces(self):
        return np.array([0.0, 1.0])


def test_failure_on_one_rank_raises_on_all():
    comm = MPI.COMM_WORLD
    x0 = np.zeros((4 * comm.size, 2))
    x0[-1, 0] = 0.95  # in the last rank's chunk
    with pytest.raises(RuntimeError, match="failed"):
        solve(comm, FailsNearEdge(), terminal_scalar, x0)


@serial
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x0": [[0.0, np.nan]]}, "not finite"),
        ({"x0": [[0.0, 0.0, 0.0]]}, r"shape \(n, 2\)"),
        ({"t1": 1.5}, "t1=1.5"),
        ({"t0": -0.1}, "t0=-0.1"),
        ({"rtol": 0.0}, "rtol"),
    ],
)
def test_flow_bad_input(kwargs, match):
    args = {"x0": [[0.0, 0.0]], **kwargs}
    with pytest.raises(InputError, match=match):
        flow(mlp_field(), **args)


@serial
@pytest.mark.parametrize(
    "times, match", [([0.0, 2.0], "t1=2.0"), ([0.2, 0.6, 0.4, 0.8], "sorted"), ([], "at least one")]
)
def test_trajectories_bad_times(times, match):
    with pytest.raises(InputError, match=match):
        trajectories(mlp_field(), [[0.0, 0.0]], times)


@serial
def test_rotation_has_no_domain_check_and_trivial_cases():
    rot = RigidRotation(1.0, (0.0, 0.0), T=1.0, dim=2)
    far = np.array([[10.0, 0.0]])
    assert np.allclose(flow(rot, far), rot.exact_flow(far, 0.0, 1.0), atol=1e-8)
    empty = flow(rot, np.empty((0, 2)))
    assert empty.shape == (0, 2)
    assert np.array_equal(flow(rot, far, t0=0.5, t1=0.5), far)
    with pytest.raises(InputError, match="num_trajectory_times"):
        solve(MPI.COMM_SELF, rot, terminal_scalar, far, num_trajectory_times=1)
    with pytest.raises(InputError, match=r"terminal must return shape \(1, K\)"):
        solve(MPI.COMM_SELF, rot, lambda x: np.zeros(3), far)
