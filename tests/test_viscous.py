"""Viscous transport ∂t u + v·∇u + εΔu = 0 (SIPG, Neumann walls, explicit SSP-RK3): the operator,
the step, orders against an exact solution, the guard, and ε → 0."""

from mpi4py import MPI


import numpy as np
import pytest
import ufl

from dolfinx import fem

from solver import guards
from solver.check.compare_field import build_field
from solver.config import config_from_dict
from solver.errors import InputError
from solver.fem.mesh import create_mesh
from solver.fem.transport import TransportSolver
from solver.model.domain import Ball, Box
from solver.model.velocity import RigidRotation

BOX2 = Box((-1.0, -1.0), (1.0, 1.0))


def cosine(x: np.ndarray) -> np.ndarray:
    return np.cos(np.pi * x[:, :1])


def diffusion_error(comm, degree: int, cells: int, eps: float, T: float = 1.0) -> float:
    """‖u_h(0) − e^{−επ²T} cos(πx₁)‖_L2 for v = 0, u(T) = cos(πx₁) on [−1, 1]² (Neumann walls:
    ∂t u = −εΔu = επ² u backward from T, so u(t) = e^{−επ²(T−t)} cos(πx₁))."""
    with TransportSolver(create_mesh(comm, BOX2, cells), degree=degree, viscosity=eps) as solver:
        field = RigidRotation(0.0, (0.0, 0.0), T, 2)  # v = 0, steady
        u0 = solver.solve(field, cosine, keep=False).u0[0]
        x = ufl.SpatialCoordinate(solver.mesh)
        exact = np.exp(-eps * np.pi**2 * T) * ufl.cos(np.pi * x[0])
        dx = ufl.dx(domain=solver.mesh, metadata={"quadrature_degree": 3 * degree + 2})
        local = fem.assemble_scalar(fem.form((u0 - exact) ** 2 * dx))
    return float(np.sqrt(comm.allreduce(local, op=MPI.SUM)))


# degree, cells, min order on the finest pair (observed 1.96–1.99 and 3.00–3.02, see the README)
ORDERS = [
    pytest.param(1, (8, 16), 1.85, id="DG1"),
    pytest.param(2, (4, 8), 2.7, id="DG2"),
    pytest.param(1, (8, 16, 32), 1.9, id="DG1-32", marks=pytest.mark.slow),
    pytest.param(2, (8, 16, 32), 2.8, id="DG2-32", marks=pytest.mark.slow),  # DG2 32²: 6223 steps
]


@pytest.mark.parametrize("degree, cells, min_order", ORDERS)
def test_pure_diffusion_order_against_the_exact_solution(comm, degree, cells, min_order):
    errors = [diffusion_error(comm, degree, c, eps=0.05) for c in cells]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    print(f"\nDG{degree}, ε = 0.05, cells {cells}: L2 errors "
          f"{', '.join(f'{e:.3e}' for e in errors)}; orders {', '.join(f'{o:.2f}' for o in orders)}")
    assert orders[-1] >= min_order, f"DG{degree}: errors {errors}, orders {orders}"
    assert errors[-1] < 0.02


def test_zero_viscosity_is_the_inviscid_solver(comm):
    """ε = 0 builds no diffusion operator and gives the same bits as a solver without the key."""
    config = config_from_dict(dict(mesh=dict(cells=6), terminal=dict(kind="gaussian")))
    field, f = build_field(config, BOX2), config.terminal_object()
    mesh = create_mesh(comm, BOX2, 6)
    with TransportSolver(mesh) as plain, TransportSolver(mesh, viscosity=0.0) as zero:
        assert zero.diffusion is None and zero.max_dt(1.3) == plain.max_dt(1.3)
        a = plain.solve(field, f, keep=False)
        b = zero.solve(field, f, keep=False)
        assert a.steps_per_piece == b.steps_per_piece
        assert np.array_equal(a.u0[0].x.array, b.u0[0].x.array)


@pytest.mark.serial  # dense eigenvalues of a small operator on one rank
@pytest.mark.parametrize("domain, cells", [(BOX2, 4), (Ball((0.0, 0.0), 1.0), 4),
                                           (Box((-1.0,) * 3, (1.0,) * 3), 2), (Box((0.0,) * 3, (1.0, 2.0, 3.0)), 2)],
                         ids=["box", "disk", "box3d", "box3d-aspect3"])
@pytest.mark.parametrize("degree", [1, 2])
def test_sipg_operator_is_symmetric_semidefinite_and_bounded(domain, cells, degree):
    """M^½(−εM⁻¹S)M^{−½} = −εM^{−½}SM^{−½} is symmetric with eigenvalues in [−‖εM⁻¹S‖∞, 0]
    (the penalty makes S positive semi-definite; the ∞-norm bounds the spectral radius, which
    the explicit step uses)."""
    with TransportSolver(create_mesh(MPI.COMM_SELF, domain, cells), degree=degree, viscosity=1.0) as solver:
        D = solver.diffusion.convert("dense").getDenseArray()
        m = np.sqrt(1.0 / solver.inverse_mass.array)
        A = m[:, None] * D / m[None, :]
        assert np.abs(A - A.T).max() <= 1e-10 * np.abs(A).max()
        eig = np.linalg.eigvalsh(0.5 * (A + A.T))
        assert eig.max() <= 1e-9 * solver.diffusion_rate
        assert -eig.min() <= solver.diffusion_rate
        assert -eig.min() >= 0.3 * solver.diffusion_rate  # the bound is not loose by much (1.3–2.0 ×)


def test_viscous_step_is_stable_and_smooths(comm):
    """At the explicit step for a large ε, a rough terminal value decays (max principle), and the
    step count grows like ε / h²."""
    mesh = create_mesh(comm, BOX2, 8)
    field = RigidRotation(0.0, (0.0, 0.0), 1.0, 2)
    rough = lambda x: np.sign(np.sin(7 * x[:, :1]))  # noqa: E731
    steps = []
    for eps in (0.01, 0.04):
        with TransportSolver(mesh, degree=1, viscosity=eps) as solver:
            result = solver.solve(field, rough, keep=False)
            steps.append(sum(result.steps_per_piece))
            top = comm.allreduce(np.abs(result.u0[0].x.array).max(), op=MPI.MAX)
            assert top <= 1.0
    assert 3.5 <= steps[1] / steps[0] <= 4.5


@pytest.mark.parametrize("domain, cells, degree", [
    (dict(kind="box", lower=[-1.0, -1.0], upper=[1.0, 1.0]), 8, 1),
    (dict(kind="box", lower=[0.0, 0.0, 0.0], upper=[1.0, 2.0, 3.0]), 3, 2),
    (dict(kind="disk", center=[0.0, 0.0], radius=1.0), 12, 1),
])
def test_guard_estimates_the_viscous_steps_on_the_low_side(comm, domain, cells, degree):
    """The guard's step count with ε > 0 is below the solver's, within a factor 2.5."""
    config = config_from_dict(dict(domain=domain, mesh=dict(cells=cells, degree=degree),
                                   field=dict(viscosity=0.05), terminal=dict(kind="gaussian")))
    omega = config.domain_object()
    with TransportSolver(create_mesh(comm, omega, cells), degree=degree, viscosity=0.05) as solver:
        result = solver.solve(build_field(config, omega), config.terminal_object(), keep=False)
        speeds = guards.initial_speed(config, cells=cells, degree=degree)
        estimate = guards.time_steps(config, guards.mesh_estimate(omega, cells, degree), degree, speeds)
        actual = sum(result.steps_per_piece)
        assert actual / 2.5 <= estimate <= actual, (estimate, actual)


# --- stochastic characteristics (model/stochastic.py) -------------------------------------------

from solver.check import compare_field as cmp  # noqa: E402
from solver.model import stochastic  # noqa: E402


@pytest.mark.parametrize("domain", [BOX2, Ball((0.5, 0.0), 2.0), Ball((0.0, 0.0, 0.0), 1.0)],
                         ids=["box", "disk", "ball"])
def test_reflection_puts_points_back_and_keeps_those_inside(domain):
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (2000, domain.dim))
    inside = domain.contains(x)
    before = x.copy()
    stochastic.reflect(domain, x)
    assert domain.contains(x).all()
    assert np.array_equal(x[inside], before[inside])
    # A point just outside lands as far inside, on the same normal.
    if isinstance(domain, Box):
        y = np.array([[1.1, 0.3]])
        assert np.allclose(stochastic.reflect(domain, y), [[0.9, 0.3]])
    else:
        c = np.asarray(domain.center)
        y = c + np.eye(domain.dim)[:1] * domain.radius * 1.1
        assert np.allclose(stochastic.reflect(domain, y), c + np.eye(domain.dim)[:1] * domain.radius * 0.9)


@pytest.mark.parametrize("antithetic, heun", [(False, False), (True, True)])
def test_monte_carlo_of_pure_diffusion_is_within_its_error_estimate(comm, antithetic, heun):
    """v = 0, u(T) = cos(πx₁) on [−1, 1]² with reflecting walls: the exact E[f(X_T)] is
    e^{−επ²T} cos(πx₁); the Monte Carlo must lie within 3 SE + bias of it at every point."""
    eps = 0.05
    x0 = np.random.default_rng(1).uniform(-0.99, 0.99, (24, 2))
    mc = stochastic.solve(comm, RigidRotation(0.0, (0.0, 0.0), 1.0, 2), BOX2, cosine, x0, eps,
                          paths=1000, steps=16, seed=3, antithetic=antithetic, heun=heun)
    exact = np.exp(-eps * np.pi**2) * cosine(x0)
    assert np.all(np.abs(mc.u0 - exact) <= mc.bound), np.abs(mc.u0 - exact) / mc.bound
    assert mc.standard_error.max() < 0.03 and mc.steps == 16


@pytest.mark.parametrize("antithetic, heun", [(False, False), (True, True)])
def test_monte_carlo_is_the_same_on_one_rank_and_all(comm, antithetic, heun):
    x0 = np.random.default_rng(2).uniform(-0.9, 0.9, (40, 2))
    field = RigidRotation(1.0, (0.0, 0.0), 1.0, 2)
    disk = Ball((0.0, 0.0), 1.0)
    f = lambda x: x ** 2  # noqa: E731
    x0 = x0[disk.contains(x0)]
    one = stochastic.solve(MPI.COMM_SELF, field, disk, f, x0, 0.02, paths=300, steps=8, seed=5,
                           antithetic=antithetic, heun=heun)
    all_ = stochastic.solve(comm, field, disk, f, x0, 0.02, paths=300, steps=8, seed=5,
                            antithetic=antithetic, heun=heun)
    for a, b in ((one.u0, all_.u0), (one.standard_error, all_.standard_error), (one.bias, all_.bias)):
        assert np.array_equal(a, b)


def test_heun_and_antithetic_paths_shrink_the_error_estimate(comm):
    """On an MLP field (the certification's Monte Carlo, ``learn/certify.py``): Heun's dt bias is
    well below Euler–Maruyama's at the same steps, antithetic pairs lower the standard error at
    the same paths, and the estimates agree within their bounds with a fine reference."""
    config = config_from_dict(dict(field=dict(kind="mlp", width=8, slabs=2, seed=3, scale=1.0)))
    field = build_field(config, BOX2)
    f = lambda x: x @ np.array([[3.0, -2.0], [1.0, 4.0]])  # noqa: E731 (logits of a linear layer)
    x0 = np.random.default_rng(4).uniform(-0.7, 0.7, (8, 2))
    run = lambda **kw: stochastic.solve(comm, field, BOX2, f, x0, 0.01, seed=2, **kw)  # noqa: E731
    euler, heun = run(paths=256, steps=16), run(paths=256, steps=16, heun=True)
    pairs = run(paths=256, steps=16, heun=True, antithetic=True)
    fine = run(paths=1000, steps=32, heun=True)
    print(f"\nlargest bias: Euler {euler.bias.max():.3f}, Heun {heun.bias.max():.3f}; largest SE: "
          f"independent {heun.standard_error.max():.3f}, antithetic {pairs.standard_error.max():.3f}")
    assert heun.bias.max() < 0.4 * euler.bias.max()  # measured: 0.017 against 0.084
    assert pairs.standard_error.max() < 0.7 * heun.standard_error.max()
    for mc in (euler, heun, pairs):
        assert np.all(np.abs(mc.u0 - fine.u0) <= mc.bound + fine.bound)
    with pytest.raises(InputError, match="even number of paths"):
        run(paths=255, steps=8, antithetic=True)


VISCOUS_PROBLEMS = [
    # name, domain, field, terminal, cells (the finest last), DG degree, SDE steps (Euler spirals out of a
    # rotation: it needs smaller steps than the MLP field)
    ("box-mlp", dict(kind="box", lower=[-1, -1], upper=[1, 1]),
     dict(kind="mlp", width=8, activation="tanh", slabs=2, seed=3, scale=1.0, viscosity=0.02),
     dict(kind="gaussian", center=[0.2, -0.1], sigma=0.3), [8, 16], 1, 16),
    ("disk-rotation", dict(kind="disk", center=[0, 0], radius=1.0),
     dict(kind="rotation", omega=3.0, T=1.0, viscosity=0.01),
     dict(kind="gaussian", center=[0.4, 0.0], sigma=0.25), [8, 16], 2, 256),
]


@pytest.mark.parametrize("name, domain, field, terminal, cells, degree, sde_steps",
                         VISCOUS_PROBLEMS, ids=[p[0] for p in VISCOUS_PROBLEMS])
def test_pde_and_monte_carlo_agree_on_the_finest_mesh(comm, name, domain, field, terminal, cells,
                                                      degree, sde_steps):
    """compare's refinement study with ε > 0: on the finest mesh |u_h − MC| ≤ 3 SE + bias +
    |u_h − u_2h| (the PDE's own error, estimated) at every Monte Carlo point; the difference
    shrinks from the coarse mesh."""
    config = config_from_dict(dict(
        domain=domain, field=field, terminal=terminal, mesh=dict(cells=cells[-1], degree=degree),
        compare=dict(points=24, grid=5, mc_points=24, paths=1000, sde_steps=sde_steps),
        output=dict(vtx=False, png=False)))
    study = cmp.refinement_study(comm, config, cells)
    table = cmp.format_table(study)
    coarse, fine = (r["monte_carlo"] for r in (study["rows"][0], study["rows"][-1]))
    assert fine["agree"], f"{name}\n{table}"
    assert fine["max_difference"] <= coarse["max_difference"], table
    # The characteristics (inviscid) are visibly another solution: ε matters here.
    assert study["rows"][-1]["max_points"] > 2 * fine["max_bound"], table


def test_viscous_solution_tends_to_the_inviscid_one(comm):
    """‖u_ε − u_0‖ on a fixed mesh falls like ε (the diffusion is O(ε) over the time T)."""
    config = config_from_dict(dict(mesh=dict(cells=12), field=dict(slabs=2),
                                   terminal=dict(kind="gaussian", sigma=0.3)))
    field, f = build_field(config, BOX2), config.terminal_object()
    mesh = create_mesh(comm, BOX2, 12)
    u, steps = {}, None
    for eps in (4e-3, 1e-3, 0.0):
        with TransportSolver(mesh, viscosity=eps) as solver:
        # the largest ε's step count for every ε: the differences are the viscosity's, not the step's
            result = solver.solve(field, f, frozen_steps=steps, keep=False)
            steps = steps or result.steps_per_piece
            u[eps] = result.u0[0].x.array[: solver.num_owned].copy()
    d = [np.sqrt(comm.allreduce(np.sum((u[e] - u[0.0]) ** 2), op=MPI.SUM)) for e in (4e-3, 1e-3)]
    assert 3.0 <= d[0] / d[1] <= 5.0, d
