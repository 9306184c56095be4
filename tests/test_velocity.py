from mpi4py import MPI  # noqa: F401  # first: mpi4py before anything that may load dolfinx

import numpy as np
import pytest

from solver.model.domain import Ball, Box
from solver.errors import InputError
from solver.model.velocity import (
    ACTIVATIONS,
    FIELD_KINDS,
    Field,
    MLPField,
    Params,
    RigidRotation,
    VelocityModel,
    activation,
)

DOMAINS = {
    "box2": Box((-1.0, -2.0), (2.0, 1.0)),
    "disk": Ball((0.5, -0.5), 1.5),
    "box3": Box((0.0, 0.0, 0.0), (1.0, 2.0, 1.0)),
    "ball3": Ball((0.0, 0.0, 0.0), 1.0),
}


def make_model(domain="box2", width=5, slabs=3, act="tanh", T=2.0, layers=2):
    dom = DOMAINS[domain]
    if layers == 1:
        width = dom.dim
    return VelocityModel(dom.dim, width, slabs, T, act, dom, layers=layers)


def interior_points(domain, n, seed=0):
    """Random points strictly inside the domain."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(domain.lower), np.asarray(domain.upper)
    x = lo + (hi - lo) * rng.uniform(0.05, 0.95, (4 * n, domain.dim))
    return x[domain.cutoff(x) > 1e-3][:n]


def boundary_points(domain, n, seed=0):
    """Random points on ∂Ω."""
    rng = np.random.default_rng(seed)
    if isinstance(domain, Box):
        lo, hi = np.asarray(domain.lower), np.asarray(domain.upper)
        x = lo + (hi - lo) * rng.uniform(0, 1, (n, domain.dim))
        face = rng.integers(domain.dim, size=n)
        side = rng.integers(2, size=n)
        x[np.arange(n), face] = np.where(side == 0, lo[face], hi[face])
        return x
    u = rng.normal(size=(n, domain.dim))
    return np.asarray(domain.center) + domain.radius * u / np.linalg.norm(u, axis=1)[:, None]


# ---- layout of θ ------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["box2", "ball3"])
def test_pack_unpack_round_trip(domain):
    model = make_model(domain)
    theta = model.init(seed=3)
    assert theta.shape == (model.n_params,) and theta.dtype == np.float64
    params = model.unpack(theta)
    assert len(params) == model.slabs == 3
    m, d = model.width, model.dim
    for p in params:
        assert p.W1.shape == (m, d) and p.b1.shape == (m,)
        assert p.W2.shape == (d, m) and p.b2.shape == (d,)
    assert np.array_equal(model.pack(params), theta)
    # and the other way round, from arbitrary parameter sets
    rng = np.random.default_rng(0)
    sets = [Params(*(rng.normal(size=b.shape) for b in p)) for p in params]
    for a, b in zip(model.unpack(model.pack(sets)), sets):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)


def test_layout_is_slab_by_slab_row_major():
    model = make_model(width=2, slabs=2)  # slab size 2*2 + 2 + 2*2 + 2 = 12
    theta = np.arange(model.n_params, dtype=float)
    p = model.unpack(theta)
    assert np.array_equal(p[0].W1, [[0, 1], [2, 3]])
    assert np.array_equal(p[0].b1, [4, 5])
    assert np.array_equal(p[0].W2, [[6, 7], [8, 9]])
    assert np.array_equal(p[0].b2, [10, 11])
    assert p[1].W1[0, 0] == 12


@pytest.mark.parametrize("domain", ["disk", "box3"])
def test_block_slices_cover_theta(domain):
    model = make_model(domain)
    slices = model.block_slices()
    assert list(slices) == [
        f"slab{j}.{b}" for j in range(model.slabs) for b in ("W1", "b1", "W2", "b2")
    ]
    covered = np.concatenate([np.arange(model.n_params)[s] for s in slices.values()])
    assert np.array_equal(covered, np.arange(model.n_params))  # in order, no gap, no overlap
    theta = model.init(seed=1)
    for j, p in enumerate(model.unpack(theta)):
        for name, block in zip(("W1", "b1", "W2", "b2"), p):
            assert np.array_equal(theta[slices[f"slab{j}.{name}"]], block.ravel())


def test_init_is_deterministic():
    model = make_model()
    assert np.array_equal(model.init(7), model.init(7))
    assert not np.array_equal(model.init(7), model.init(8))
    assert np.allclose(model.init(7, scale=2.0), 2.0 * model.init(7))


# ---- evaluation -------------------------------------------------------------------------------


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_velocity_vanishes_on_boundary(domain, act):
    model = make_model(domain, act=act)
    theta = model.init(seed=2, scale=3.0)
    dom = DOMAINS[domain]
    for t in (0.0, 0.7, model.T):
        v_bd = model.velocity(theta, t, boundary_points(dom, 200))
        assert v_bd.shape == (200, dom.dim)
        assert np.abs(v_bd).max() < 1e-13
        v_in = model.velocity(theta, t, interior_points(dom, 200))
        assert np.all(np.isfinite(v_in)) and np.abs(v_in).max() > 1e-3


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives(name):
    act = activation(name)
    z = np.linspace(-4.0, 4.0, 101) + 0.013  # avoid relu's kink at 0
    eps = 1e-6
    fd = (act.value(z + eps) - act.value(z - eps)) / (2 * eps)
    assert np.allclose(act.derivative(z), fd, atol=1e-8)
    assert np.all(np.isfinite(act.value(np.array([-800.0, 800.0]))))  # no overflow


def test_params_at_time_dependence():
    model = make_model(slabs=4, T=2.0)
    theta = model.init(0)
    slabs = model.unpack(theta)
    # slab j is [t_j, t_{j+1}); T belongs to the last slab
    for t, j in [(0.0, 0), (0.49, 0), (0.5, 1), (1.999, 3), (2.0, 3)]:
        assert np.array_equal(model.params_at(theta, t).W1, slabs[j].W1), t
    with pytest.raises(InputError, match="2.5"):
        model.params_at(theta, 2.5)


def test_field_matches_model_and_takes_per_point_times():
    model = make_model(act="softplus", slabs=4)
    theta = model.init(5)
    field = model.field(theta)
    assert isinstance(field, Field) and isinstance(field, MLPField)
    x = interior_points(model.domain, 50)
    t = np.random.default_rng(1).uniform(0, model.T, len(x))
    expected = np.array([model.velocity(theta, ti, xi[None])[0] for ti, xi in zip(t, x)])
    assert np.allclose(field(t, x), expected, rtol=1e-13, atol=1e-14)
    assert np.allclose(field(0.3, x), model.velocity(theta, 0.3, x), rtol=1e-13, atol=1e-14)


def test_pieces_are_the_slabs():
    model = make_model(slabs=5, T=1.5)
    field = model.field(model.init(0))
    assert np.allclose(model.slab_times, np.linspace(0, 1.5, 6))
    assert np.array_equal(field.pieces(), model.slab_times)


def test_field_holds_a_copy_of_theta():
    model = make_model()
    theta = model.init(0)
    field = model.field(theta)
    x = interior_points(model.domain, 5)
    before = field(0.1, x)
    theta[:] = 0.0
    assert np.array_equal(field(0.1, x), before)
    with pytest.raises(ValueError):
        field.theta[0] = 1.0


def test_kinks_only_for_relu():
    for act in ACTIVATIONS:
        model = make_model(act=act)
        theta = model.init(0)
        x = interior_points(model.domain, 7)
        z = model.field(theta).kinks(0.9, x)
        if act == "relu":
            p = model.params_at(theta, 0.9)
            assert np.allclose(z, x @ p.W1.T + p.b1)
        else:
            assert z is None


# ---- vector-Jacobian product ------------------------------------------------------------------


@pytest.mark.parametrize("layers", [2, 1])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("domain", ["box2", "ball3"])
def test_vjp_matches_central_differences(domain, act, layers):
    model = make_model(domain, width=4, act=act, layers=layers)
    theta = model.init(seed=11)
    x = interior_points(model.domain, 20, seed=4)
    g = np.random.default_rng(5).normal(size=x.shape)
    eps = 1e-6
    for t, slab in ((0.37 * model.T, 1), (model.T, 2)):  # inside a slab, and the end time (3 slabs)
        grad = model.vjp(theta, t, x, g)

        def objective(th):
            return np.sum(g * model.velocity(th, t, x))

        fd = np.empty(model.n_params)
        for i in range(model.n_params):
            e = np.zeros(model.n_params)
            e[i] = eps
            fd[i] = (objective(theta + e) - objective(theta - e)) / (2 * eps)
        rel = np.linalg.norm(grad - fd) / np.linalg.norm(fd)
        assert rel < 1e-7, f"{domain} {act} t={t}: relative error {rel:.2e}"
        # only the slab that defines v(t) gets gradient
        nonzero = {name.split(".")[0] for name, s in model.block_slices().items() if grad[s].any()}
        assert nonzero == {f"slab{slab}"}


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, bad",
    [
        ({"activation": "swish"}, '"swish"'),
        ({"activation": "Tanh"}, '"Tanh"'),
        ({"width": 0}, "0"),
        ({"width": 2.5}, "2.5"),
        ({"slabs": 0}, "0"),
        ({"slabs": -3}, "-3"),
        ({"dim": 4}, "4"),
        ({"T": -1.0}, "-1.0"),
        ({"T": float("nan")}, "nan"),
        ({"dim": 3}, "dim 3"),  # the 2D box cannot host a 3D model
    ],
)
def test_invalid_model_raises_input_error_naming_the_value(change, bad):
    kw = dict(dim=2, width=3, slabs=2, T=1.0, activation="tanh", domain=DOMAINS["box2"])
    kw.update(change)
    with pytest.raises(InputError) as info:
        VelocityModel(**kw)
    assert bad in str(info.value)


def test_invalid_activation_lists_the_valid_ones():
    with pytest.raises(InputError) as info:
        activation("swish")
    message = str(info.value)
    assert message.startswith('Invalid activation "swish". Must be one of [')
    for name in ("relu", "tanh", "softplus", "sigmoid"):
        assert name in message


def test_bad_theta_and_points_raise():
    model = make_model()
    with pytest.raises(InputError, match=r"shape \(3,\)"):
        model.unpack(np.zeros(3))
    with pytest.raises(InputError, match=r"\(4, 3\)"):
        model.velocity(model.init(0), 0.1, np.zeros((4, 3)))


# ---- the rotation field -----------------------------------------------------------------------


def test_field_kinds():
    assert FIELD_KINDS == ("mlp", "mlp1", "rotation")


# ---- the one-layer field (issue #13) ----------------------------------------------------------


@pytest.mark.parametrize("domain", ["box2", "ball3"])
def test_one_layer_is_eq2_with_identity_outer_weights(domain):
    one = make_model(domain, slabs=2, act="relu", layers=1)
    d = one.dim
    theta = one.init(seed=2)
    assert one.n_params == 2 * (d * d + d)
    assert [k.split(".")[1] for k in one.block_slices()] == ["W", "b"] * 2
    two = make_model(domain, width=d, slabs=2, act="relu")
    nodes = one.unpack(theta)
    for p in nodes:
        assert np.array_equal(p.W2, np.eye(d)) and not p.b2.any()
    assert np.array_equal(one.pack(nodes), theta)
    x = interior_points(one.domain, 50)
    for t in (0.3, 1.7):
        assert np.allclose(one.velocity(theta, t, x), two.velocity(two.pack(nodes), t, x), rtol=1e-14)
    # relu: every component of v is >= 0 where χ > 0 (the paper's section 5, item 1)
    assert (one.velocity(theta, 0.3, x) >= 0).all()


def test_one_layer_refuses_a_width_other_than_dim_and_outer_weights():
    with pytest.raises(InputError, match="width = dim = 2"):
        VelocityModel(2, 3, 1, 1.0, "tanh", DOMAINS["box2"], layers=1)
    with pytest.raises(InputError, match="layers must be 1 or 2"):
        VelocityModel(2, 2, 1, 1.0, "tanh", DOMAINS["box2"], layers=3)
    one = make_model(slabs=1, layers=1)
    p = one.unpack(one.init(0))[0]
    with pytest.raises(InputError, match="W2 = I"):
        one.pack([p._replace(b2=np.ones(2))])


@pytest.mark.parametrize("dim", [2, 3])
def test_rotation_exact_flow(dim):
    center = (0.3, -0.2, 0.1)[:dim]
    omega = 1.7
    rot = RigidRotation(omega, center, T=2 * np.pi / omega, dim=dim)
    assert isinstance(rot, Field)
    assert np.array_equal(rot.pieces(), [0.0, rot.T])
    x = np.random.default_rng(0).uniform(-1, 1, (100, dim))
    # a full revolution returns every point
    assert np.allclose(rot.exact_flow(x, 0.0, rot.T), x, atol=1e-13)
    # and the flow's time derivative is the velocity
    eps = 1e-6
    dq = (rot.exact_flow(x, 0.0, 0.4 + eps) - rot.exact_flow(x, 0.0, 0.4 - eps)) / (2 * eps)
    assert np.allclose(dq, rot(0.4, rot.exact_flow(x, 0.0, 0.4)), atol=1e-8)
    # tangent to spheres about the centre, and no motion along x3
    v = rot(0.0, x)
    assert np.allclose(np.sum(v * (x - np.asarray(center)), axis=1), 0.0, atol=1e-14)
    if dim == 3:
        assert np.all(v[:, 2] == 0.0)


def test_rotation_validation():
    with pytest.raises(InputError, match="center"):
        RigidRotation(1.0, (0.0, 0.0, 0.0), T=1.0, dim=2)
    with pytest.raises(InputError, match="-1"):
        RigidRotation(1.0, (0.0, 0.0), T=-1.0, dim=2)
