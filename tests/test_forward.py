"""The FE transport solver against the characteristics reference: orders, rank invariance, inputs."""

from mpi4py import MPI

import warnings

import numpy as np
import pytest

from solver.check import compare_field as cmp
from solver.config import config_from_dict
from solver.model.domain import Box
from solver.errors import InputError, UnstableSolve
from solver.fem.transport import TransportSolver
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import evaluate_everywhere
from solver.model.terminal import make_terminal

BOX2 = dict(kind="box", lower=[-1, -1], upper=[1, 1])
BOX3 = dict(kind="box", lower=[-1, -1, -1], upper=[1, 1, 1])
DISK = dict(kind="disk", center=[0, 0], radius=1.0)
MLP2 = dict(kind="mlp", width=8, activation="tanh", slabs=2, seed=3, scale=1.0)
MLP3 = dict(kind="mlp", width=6, activation="tanh", slabs=2, seed=3, scale=0.5)
MLP1 = dict(kind="mlp1", activation="tanh", slabs=2, seed=3, scale=1.0)  # v = χ a(W x + b), #13
ROTATION = dict(kind="rotation", omega=2 * np.pi, T=1.0)
GAUSS2 = dict(kind="gaussian", center=[0.2, -0.1], sigma=0.3)
GAUSS3 = dict(kind="gaussian", center=[0.1, -0.1, 0.1], sigma=0.5)
OFFCENTRE = dict(kind="gaussian", center=[0.4, 0.0], sigma=0.25)


def make_config(domain, field, terminal, degree=1, cells=8, **solver):
    """The DG/RK3 solver's problem (the semi-Lagrangian scheme's orders: test_semilagrangian.py)."""
    solver = dict(dict(cfl=1.0, scheme="rk3"), **solver)
    return config_from_dict(
        dict(
            domain=domain,
            field=field,
            terminal=terminal,
            mesh=dict(cells=cells, degree=degree),
            solver=solver,
            compare=dict(points=100, grid=5),
            output=dict(vtx=False, png=False),
        )
    )


# Observed L2 order of u_h(0) against f(q(T)) on the finest pair of meshes. The rotation on the
# disk has a closed-form solution (f rotated back), which the comparison uses there.
CONVERGENCE = [
    # name,           domain, field,    terminal,  k, cells,       min order
    ("box2d-DG1", BOX2, MLP2, GAUSS2, 1, (8, 16, 32), 1.8),
    ("box2d-DG2", BOX2, MLP2, GAUSS2, 2, (8, 16, 32), 2.6),
    ("box3d-DG1", BOX3, MLP3, GAUSS3, 1, (8, 16), 1.8),
    ("box3d-DG2", BOX3, MLP3, GAUSS3, 2, (6, 12), 2.6),
    ("box2d-DG1-mlp1", BOX2, MLP1, GAUSS2, 1, (8, 16, 32), 1.8),
    ("box2d-DG2-mlp1", BOX2, MLP1, GAUSS2, 2, (8, 16, 32), 2.6),
    ("box3d-DG1-mlp1", BOX3, MLP1, GAUSS3, 1, (8, 16), 1.8),
    ("disk-rotation-DG1", DISK, ROTATION, OFFCENTRE, 1, (8, 16, 32), 1.8),
    ("disk-rotation-DG2", DISK, ROTATION, OFFCENTRE, 2, (8, 16, 32), 2.6),
]


@pytest.mark.slow  # refinement studies (3D DG2: over 10 s)
@pytest.mark.parametrize(
    "name, domain, field, terminal, degree, cells, min_order",
    CONVERGENCE,
    ids=[c[0] for c in CONVERGENCE],
)
def test_convergence_order(comm, name, domain, field, terminal, degree, cells, min_order):
    config = make_config(domain, field, terminal, degree, cells[0])
    study = cmp.refinement_study(comm, config, list(cells))
    table = cmp.format_table(study)
    print(f"\n{name}\n{table}")
    observed = study["rows"][-1]["order_l2"]
    assert observed >= min_order, f"{name}: observed L2 order {observed:.2f} < {min_order}\n{table}"
    # Errors must also be small in absolute terms on the finest mesh.
    assert study["rows"][-1]["l2_relative"] < 0.05, table


def test_rotation_matches_exact_solution(comm):
    """One revolution of a rigid rotation returns f: u_h(0) ≈ f, the error shrinking with h."""
    errors = []
    terminal = make_terminal("gaussian", 2, center=[0.4, 0.0], sigma=0.25)
    config = make_config(DISK, ROTATION, OFFCENTRE, degree=2)
    for cells in (8, 16):
        mesh = create_mesh(comm, config.domain_object(), cells)
        with TransportSolver(mesh, degree=2, cfl=1.0) as solver:
            result = solver.solve(cmp.build_field(config, config.domain_object()), terminal)
            points = np.random.default_rng(0).uniform(-0.6, 0.6, (200, 2))
            values = evaluate_everywhere(solver.V, result.u0, points)[:, 0]
            errors.append(np.abs(values - terminal(points)[:, 0]).max())
    assert errors[1] < errors[0] / 4, errors
    assert errors[1] < 5e-3, errors


@pytest.mark.slow
@pytest.mark.parametrize("domain, field, terminal, degree", [
    (BOX2, MLP2, GAUSS2, 1),
    (BOX2, MLP2, GAUSS2, 2),
    (BOX3, MLP3, GAUSS3, 1),
    (DISK, ROTATION, OFFCENTRE, 1),
])
def test_same_answer_on_one_and_all_ranks(comm, domain, field, terminal, degree):
    """The partition must not change the answer beyond round-off: COMM_SELF vs this comm."""
    config = make_config(domain, field, terminal, degree, cells=8)
    points, grid = cmp.sample_points(config)
    results = []
    for c in (MPI.COMM_SELF, comm):
        with cmp.solve_and_compare(c, config, 8, points, grid) as run:
            results.append((run.comparison, run.fe_points, run.fe_grid))
    (c1, p1, g1), (c2, p2, g2) = results
    scale = np.abs(p1).max()
    assert np.abs(p1 - p2).max() <= 1e-10 * scale
    assert np.abs(g1 - g2).max() <= 1e-10 * scale
    assert c1.steps == c2.steps and c1.dofs == c2.dofs
    assert abs(c1.l2 - c2.l2) <= 1e-10 * c1.l2


def test_components_share_one_operator(comm):
    """K components solved together equal each component solved alone."""
    config = make_config(BOX2, MLP2, GAUSS2)
    domain = config.domain_object()
    field = cmp.build_field(config, domain)
    mesh = create_mesh(comm, domain, 8)
    terminal = make_terminal("linear", 2, num_components=3, seed=1)
    together = TransportSolver(mesh, num_components=3).solve(field, terminal)
    for c in range(3):
        single = make_terminal("linear", 2, num_components=3, seed=1)
        alone = TransportSolver(mesh, num_components=1).solve(
            field, lambda x, c=c: single(x)[:, c : c + 1]
        )
        assert np.allclose(alone.u0[0].x.array, together.u0[c].x.array, rtol=0, atol=1e-13)


def test_block_products_match_single_products(comm):
    """L·U and Lᵀ·U for two blocks U, each one MatMatMult with a reused result, equal K
    MatMults per column, also on the second use with new values."""
    config = make_config(BOX2, MLP2, GAUSS2)
    domain = config.domain_object()
    with TransportSolver(create_mesh(comm, domain, 8), num_components=3) as solver:
        solver.set_velocity(cmp.build_field(config, domain), 0.3)
        solver.assemble_operator()
        rng = np.random.default_rng(comm.rank)
        x, y = solver.L.createVecRight(), solver.L.createVecLeft()
        from petsc4py import PETSc

        Lt = solver.L.transpose(PETSc.Mat())
        for A, transposed in ((solver.L, False), (Lt, True)):
            for name in ("first", "second", "first"):
                block = solver.block(name, 3)
                block.rows[:] = rng.standard_normal(block.rows.shape)
                product = block.product(A).copy()
                for k in range(3):
                    x.array[:] = block.rows[k]
                    (solver.L.multTranspose if transposed else solver.L.mult)(x, y)
                    assert np.allclose(product[k], y.array, rtol=0, atol=1e-12 * np.abs(y.array).max())
        for v in (x, y, Lt):
            v.destroy()


def test_linear_terminal_transported_along_exact_characteristics(comm):
    """A check independent of the characteristics solver: for the rotation, u(0) = f∘R exactly;
    with a linear f (in the DG1 space) the only error is the velocity/time discretization."""
    config = make_config(DISK, ROTATION, OFFCENTRE)
    domain = config.domain_object()
    field = cmp.build_field(config, domain)
    terminal = make_terminal("linear", 2, num_components=1, weights=[[1.0, -0.5]], bias=[0.2])
    errors = []
    for cells in (8, 16):
        solver = TransportSolver(create_mesh(comm, domain, cells), degree=1)
        u0 = solver.solve(field, terminal).u0
        points = np.random.default_rng(1).uniform(-0.5, 0.5, (100, 2))
        exact = terminal(field.exact_flow(points, 0.0, field.T))[:, 0]
        errors.append(np.abs(evaluate_everywhere(solver.V, u0, points)[:, 0] - exact).max())
    assert errors[1] < errors[0] / 3, errors


def test_checkpoints_are_bounded(comm):
    config = make_config(BOX2, MLP2, GAUSS2)
    domain = config.domain_object()
    field = cmp.build_field(config, domain)
    mesh = create_mesh(comm, domain, 8)
    terminal = config.terminal_object()
    every = TransportSolver(mesh, checkpoint_every=1).solve(field, terminal).trajectory
    sparse = TransportSolver(mesh, checkpoint_every=5).solve(field, terminal).trajectory
    none = TransportSolver(mesh, checkpoint_every=5).solve(field, terminal, keep=False).trajectory
    assert len(every.states) == every.num_steps
    piece_starts = {0} | set(np.flatnonzero(np.diff(sparse.piece_of_step)) + 1)
    assert set(sparse.states) == set(range(0, sparse.num_steps, 5)) | piece_starts
    assert not none.states and not none.stages
    np.testing.assert_array_equal(none.times, sparse.times)
    assert np.isclose(every.times[0], field.T) and np.isclose(every.times[-1], 0.0)
    np.testing.assert_array_equal(every.states[5], sparse.states[5])


def test_forced_dt_beyond_cfl_bound_is_refused(comm):
    config = make_config(BOX2, MLP2, GAUSS2)
    domain = config.domain_object()
    mesh = create_mesh(comm, domain, 8)
    solver = TransportSolver(mesh, dt=0.5)
    with pytest.raises(UnstableSolve, match=r"dt=0.5 breaks the CFL bound"):
        solver.solve(cmp.build_field(config, domain), config.terminal_object())


def test_unstable_cfl_is_detected(comm):
    config = make_config(BOX2, dict(MLP2, scale=3.0), GAUSS2)
    domain = config.domain_object()
    mesh = create_mesh(comm, domain, 16)
    solver = TransportSolver(mesh, cfl=8.0)
    with pytest.raises(UnstableSolve, match="unstable"):
        solver.solve(cmp.build_field(config, domain), config.terminal_object())


@pytest.mark.parametrize("kwargs, message", [
    (dict(degree=4), "DG degree must be 1, 2 or 3, got 4"),
    (dict(cfl=0.0), "cfl must be > 0, got 0.0"),
    (dict(dt=-1.0), "dt must be > 0, got -1.0"),
    (dict(checkpoint_every=0), "checkpoint_every: expected an integer >= 1, got 0"),
])
def test_bad_solver_arguments(comm, kwargs, message):
    mesh = create_mesh(comm, make_config(BOX2, MLP2, GAUSS2).domain_object(), 4)
    with pytest.raises(InputError, match=message):
        TransportSolver(mesh, **kwargs)


def test_non_finite_terminal_is_refused(comm):
    config = make_config(BOX2, MLP2, GAUSS2)
    domain = config.domain_object()
    solver = TransportSolver(create_mesh(comm, domain, 4))
    with pytest.raises(InputError, match="non-finite"):
        solver.solve(cmp.build_field(config, domain), lambda x: np.full((len(x), 1), np.nan))


def test_field_varying_continuously_in_time_is_refused(comm):
    """The solver takes fields constant in time on pieces (θ constant on slabs) only."""

    class Swirl:  # v(t, x) = (1 + t)(−x2, x1), continuous in t
        dim, T = 2, 1.0

        def __call__(self, t, x):
            return (1.0 + t) * np.c_[-x[:, 1], x[:, 0]]

        def pieces(self):
            return None

    box = Box((-1.0, -1.0), (1.0, 1.0))
    with TransportSolver(create_mesh(comm, box, 4)) as solver:
        with pytest.raises(InputError, match="constant in time on pieces"):
            solver.solve(Swirl(), lambda x: x[:, :1])


def test_points_on_facets_are_counted_and_reported(comm):
    """Points on interior facets (where u_h jumps) are counted, and rank 0 warns: one sentence,
    a ``solver.FacetWarning`` (so ``warnings`` filters it)."""
    from solver import FacetWarning
    from solver.fem.pointeval import PointEvaluator

    box = Box((-1.0, -1.0), (1.0, 1.0))
    with TransportSolver(create_mesh(comm, box, 4)) as solver:
        y = np.linspace(-0.9, 0.9, 7)
        on = np.stack([np.zeros_like(y), y + 0.01], axis=1)
        off = on + [0.1, 0.0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert PointEvaluator(solver.V, on, "on.csv").num_on_facets == 7 * comm.size
            assert PointEvaluator(solver.V, off, "off.csv").num_on_facets == 0
        messages = [str(w.message) for w in caught if issubclass(w.category, FacetWarning)]
        if comm.rank == 0:
            assert len(messages) == 1 and messages[0].startswith(f"on.csv: {7 * comm.size} of {7 * comm.size} points")
            assert messages[0].count(". ") == 0 and len(messages[0]) < 200  # one sentence
        else:
            assert messages == []
        with warnings.catch_warnings():
            warnings.simplefilter("error", FacetWarning)  # filtered by class: raised here, were it not ignored
            warnings.filterwarnings("ignore", category=FacetWarning)
            PointEvaluator(solver.V, on, "on.csv")


def test_internal_grid_is_moved_off_facets_silently(comm):
    """An internal grid on the mesh's vertices is moved off the facets, the same on every rank,
    without a warning, while the same points given by the user are reported."""
    from solver import FacetWarning
    from solver.fem.pointeval import PointEvaluator, grid_evaluator
    from solver.parallel import rank_share

    box = Box((-1.0, -1.0), (1.0, 1.0))
    with TransportSolver(create_mesh(comm, box, 16)) as solver:
        grid = box.grid(17)  # every point a vertex of the mesh
        with warnings.catch_warnings():
            warnings.simplefilter("error", FacetWarning)
            on_grid = grid_evaluator(solver.V, grid, "plot grid")
        assert on_grid.num_on_facets == 0
        moved = np.abs(on_grid.points - grid).max()
        assert 0 < moved < 5e-3  # moved, by less than a pixel of the 81² plot grid (2.5e-2)
        # Every rank holds the same moved grid (the nudge depends on the point, not the partition).
        assert np.array_equal(comm.bcast(on_grid.points, root=0), on_grid.points)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            as_given = PointEvaluator(solver.V, grid[rank_share(comm, len(grid))], "user.csv")
        assert as_given.num_on_facets == len(grid)
        if comm.rank == 0:
            assert any("user.csv" in str(w.message) for w in caught if w.category is FacetWarning)


def test_points_beside_a_curved_mesh_are_not_on_facets(comm):
    """Random points of a disk that fall in the gap between the circle and its polygonal mesh
    are outside their cell (barycentric < 0), not on a facet: counted apart, not reported."""
    from solver.fem.pointeval import PointEvaluator
    from solver.parallel import rank_share

    config = make_config(DISK, ROTATION, OFFCENTRE, cells=16)
    points, _ = cmp.sample_points(config)
    with TransportSolver(create_mesh(comm, config.domain_object(), 16)) as solver:
        evaluator = PointEvaluator(solver.V, points[rank_share(comm, len(points))], "compare.points")
        assert evaluator.num_outside > 0  # 3 of these 500 (measured)
        assert evaluator.num_on_facets == 0
