"""The gradient of the discrete objective: Taylor tests per block, on 1 and 2 ranks, and the same
gradient on one rank and on all."""

from mpi4py import MPI


import numpy as np
import pytest

from solver.model.domain import Box, Ball
from solver.errors import InputError
from solver.fem.transport import TransportSolver
from solver.fem.mesh import create_mesh
from solver.learn.reduced import ReducedFunctional
from solver.learn.taylor import taylor_remainders
from solver.model.velocity import VelocityModel


def make_problem(comm, domain=None, cells=12, degree=1, K=2, activation="tanh", slabs=2,
                 checkpoint_every=3, loss="cross_entropy", kinetic=0.0, roughness=0.0,
                 stage_memory=2**28, layers=2, viscosity=0.0, coordinates=None):
    """A small learning problem; the data are the same on every rank count (dealt out by rank).

    ``coordinates``: transport the coordinates (True) or the K logits (False); None: K > d."""
    domain = domain or Box((-1.0, -1.0), (1.0, 1.0))
    mesh = create_mesh(comm, domain, cells)
    coordinates = K > domain.dim if coordinates is None else coordinates
    components = domain.dim if coordinates else K
    solver = TransportSolver(mesh, degree=degree, num_components=components, checkpoint_every=checkpoint_every,
                             stage_memory=stage_memory, viscosity=viscosity)
    model = VelocityModel(dim=domain.dim, width=4 if layers == 2 else domain.dim, slabs=slabs, T=1.0,
                          activation=activation, domain=domain, layers=layers)
    rng = np.random.default_rng(0)
    X = rng.uniform(-0.6, 0.6, (60, domain.dim))
    if loss == "cross_entropy":
        y = (X[:, 0] * X[:, 1] > 0).astype(int) + 2 * (X[:, 0] > 0.3) * (K > 2)
        y = np.minimum(y, K - 1)
    else:
        y = np.sin(3 * X[:, :1] + np.arange(K))
    mine = slice(comm.rank, None, comm.size)
    J = ReducedFunctional(solver, model, X[mine], y[mine], K, loss=loss,
                          weight_decay=1e-3, smoothness=1e-2, kinetic=kinetic, roughness=roughness,
                          coordinates=coordinates)
    return J


CASES = [
    # name, kwargs
    ("box2d-DG1-tanh", dict()),
    ("box2d-DG2-softplus", dict(degree=2, activation="softplus", cells=8)),
    ("disk-DG1-sigmoid-3classes", dict(domain=Ball((0.0, 0.0), 1.0), K=3, activation="sigmoid")),
    ("box3d-DG1-tanh", dict(domain=Box((-1.0,) * 3, (1.0,) * 3), cells=4, slabs=2)),
    ("box2d-squared-error", dict(loss="squared_error", checkpoint_every=1)),
    # K > d: the d coordinates are transported, A and b act after the transport (fem/affine.py)
    ("box2d-5classes-coordinates", dict(K=5)),
    ("box3d-DG2-4outputs-squared-error", dict(domain=Box((-1.0,) * 3, (1.0,) * 3), cells=3, degree=2,
                                              K=4, loss="squared_error")),
    ("box2d-kinetic-energy", dict(kinetic=0.5)),
    ("box2d-kinetic-and-roughness", dict(kinetic=0.1, roughness=0.5)),
    # the one-layer field v = χ a(W x + b) (field.kind = "mlp1", issue #13)
    ("box2d-DG1-mlp1-tanh", dict(layers=1)),
    ("box3d-DG1-mlp1-softplus-roughness", dict(domain=Box((-1.0,) * 3, (1.0,) * 3), cells=4, layers=1,
                                                activation="softplus", roughness=0.5)),
    # ∂t u + v·∇u + εΔu = 0 (SIPG): the diffusion is in L, so in Lᵀ; some stages recomputed
    ("box2d-DG1-viscous", dict(viscosity=0.02, stage_memory=200_000)),
    ("box2d-DG2-viscous", dict(degree=2, cells=6, viscosity=0.01)),
    ("disk-DG1-viscous", dict(domain=Ball((0.0, 0.0), 1.0), viscosity=0.03, cells=8)),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[c[0] for c in CASES])
def test_taylor_every_block(comm, name, kwargs, parameter_blocks):
    with make_problem(comm, **kwargs) as J:
        p = J.initial(seed=1, scale=1.5)
        J0 = J(p)
        J.freeze_steps(J.evaluate(p).steps)  # a step count jumping with θ would make J non-smooth
        value, gradient = J.value_and_gradient(p)
        assert value == J0
        rng = np.random.default_rng(3)  # the same direction on every rank
        lines = []
        for block, where in parameter_blocks(J).items():
            direction = np.zeros(J.n_params)
            direction[where] = rng.standard_normal(where.stop - where.start)
            remainders, rates = taylor_remainders(J, p, gradient, direction, J0=J0, epsilon=0.02, num=4)
            lines.append(f"{block:>12}: rates {np.array2string(rates, precision=3)}")
            assert min(rates) >= 1.9, f"{name} {block}: remainders {remainders}, rates {rates}"
        print(f"\n{name}\n" + "\n".join(lines))
        # No state was left perturbed: J at p is what it was.
        assert J(p) == J0


@pytest.mark.parametrize("viscosity", [0.0, 0.02])
def test_gradient_same_on_one_rank_and_all(comm, viscosity):
    """The partition changes neither J nor ∇J beyond round-off (1e-10 relative)."""
    results = []
    for c in (MPI.COMM_SELF, comm):
        with make_problem(c, viscosity=viscosity) as J:
            value, gradient = J.value_and_gradient(J.initial(seed=2, scale=1.0))
            results.append((value, gradient))
    (v1, g1), (v2, g2) = results
    assert abs(v1 - v2) <= 1e-10 * abs(v1)
    assert np.abs(g1 - g2).max() <= 1e-10 * np.abs(g1).max()


@pytest.mark.parametrize("K, dim, degree, loss", [(5, 2, 1, "cross_entropy"), (10, 3, 1, "cross_entropy"),
                                                  (4, 2, 2, "squared_error")])
def test_transported_coordinates_give_the_logits_solution_and_gradient(comm, K, dim, degree, loss):
    """K > d: transporting the d coordinates and applying A, b after (fem/affine.py) gives the
    J, ∇J and u_h(0) of transporting the K logits, to round-off: the scheme is linear and keeps
    constants."""
    domain = Box((-1.0,) * dim, (1.0,) * dim)
    cells = 10 if dim == 2 else 4
    runs = []
    for coordinates in (True, False):
        with make_problem(comm, domain=domain, cells=cells, degree=degree, K=K, loss=loss, coordinates=coordinates) as J:
            assert J.solver.num_components == (dim if coordinates else K)
            p = J.initial(seed=4, scale=1.5)
            value, gradient = J.value_and_gradient(p)
            u0 = np.stack([u.x.array[: J.solver.num_owned] for u in J.last.u0])
            runs.append((value, gradient, u0, J.last.steps))
    (v1, g1, u1, s1), (v2, g2, u2, s2) = runs
    assert s1 == s2
    assert abs(v1 - v2) <= 1e-12 * abs(v2), (v1, v2)
    assert np.abs(g1 - g2).max() <= 1e-10 * np.abs(g2).max(), np.abs(g1 - g2).max()
    scale = comm.allreduce(np.abs(u2).max(initial=0.0), op=MPI.MAX)
    assert comm.allreduce(np.abs(u1 - u2).max(initial=0.0), op=MPI.MAX) <= 1e-12 * scale


def test_stored_and_recomputed_stages_give_the_same_gradient(comm):
    """The adjoint reads stored stage states (and the slabs' Lᵀ) while they fit in stage_memory
    and recomputes the rest from checkpoints: all stored, some, none give one gradient (to
    round-off)."""
    p = None
    gradients = []
    for stage_memory in (2**28, 150_000, 0):  # all, a few steps (~41 kB each in serial), none
        with make_problem(comm, stage_memory=stage_memory) as J:
            p = J.initial(seed=2, scale=1.0) if p is None else p
            gradients.append(J.value_and_gradient(p)[1])
            kept, steps = len(J.solver._stage_pool), sum(J.last.steps)
            operators = len(J.solver._operator_pool)
        if stage_memory == 0:
            assert kept == 0 and operators == 0
        elif stage_memory == 2**28:
            assert kept == steps and operators == J.model.slabs
    for g in gradients[1:]:
        assert np.abs(g - gradients[0]).max() <= 1e-12 * np.abs(gradients[0]).max()


def test_assembled_fallback_gives_the_same_gradient(comm, monkeypatch):
    """Where the slab contraction does not apply (P3 velocity), the adjoint assembles dolfinx's
    derivative form per add instead: the same gradient (forced here on a DG1 problem)."""
    from solver.fem import adjoint

    gradients = []
    for supported in (True, False):
        monkeypatch.setattr(adjoint.SlabGradient, "supported", staticmethod(lambda solver: supported))
        with make_problem(comm, stage_memory=0) as J:
            gradients.append(J.value_and_gradient(J.initial(seed=2, scale=1.0))[1])
            assert isinstance(J.adjoint.gradient, adjoint.SlabGradient if supported else adjoint.AssembledSlab)
    assert np.abs(gradients[1] - gradients[0]).max() <= 1e-12 * np.abs(gradients[0]).max()


def test_kept_stages_are_the_same_steps_on_every_rank(comm):
    """The adjoint recomputes the steps whose stages were not kept, collectively: every rank must
    keep the same steps, whatever its share of the dofs (a disk mesh splits unevenly)."""
    with make_problem(comm, domain=Ball((0.0, 0.0), 1.0), cells=9) as J:
        p = J.initial(seed=2, scale=1.0)
        theta, A, b = J.split(p)
        field = J.model.field(theta)
        n_min = comm.allreduce(J.solver.num_owned, op=MPI.MIN)
        n_max = comm.allreduce(J.solver.num_owned, op=MPI.MAX)  # the budget is the largest share's
        if comm.size > 1:
            assert n_min < comm.allreduce(J.solver.num_owned, op=MPI.MAX)  # else the test proves nothing
        pieces = J.model.slabs
        for steps in range(2, 8):  # a budget that fits `steps` steps of the smallest rank's share
            # (and Lᵀ of pieces whose steps all fit)
            J.solver.stage_memory = steps * 3 * 2 * n_min * 8 + pieces * J.solver.operator_bytes()
            result = J.solver.solve(field, lambda x: x @ A.T + b, keep=True)
            kept = sorted(result.trajectory.stages)
            operators = sorted(result.trajectory.operators)
            used = len(kept) * 3 * 2 * n_max * 8 + len(operators) * J.solver.operator_bytes()
            assert len(kept) >= 1 and used <= J.solver.stage_memory
            assert all(k == (kept, operators) for k in comm.allgather((kept, operators)))
        J.value_and_gradient(p)  # some steps kept, the others recomputed: collective on all ranks


def test_adjoint_needs_checkpoints(comm):
    from solver.fem.adjoint import Adjoint

    with make_problem(comm) as J:
        theta, A, b = J.split(J.initial(seed=0))
        field = J.model.field(theta)
        result = J.solver.solve(field, lambda x: x @ A.T + b, keep=False)
        with Adjoint(J.solver, J.K) as adjoint:
            with pytest.raises(InputError, match="checkpoints"):
                adjoint.backward(field, result, [np.zeros(J.solver.num_owned)] * J.K)


def test_bad_loss(comm):
    domain = Box((-1.0, -1.0), (1.0, 1.0))
    solver = TransportSolver(create_mesh(comm, domain, 4), num_components=2)
    model = VelocityModel(dim=2, width=4, slabs=2, T=1.0, activation="tanh", domain=domain)
    X, y = np.zeros((1, 2)), np.zeros(1, dtype=int)
    with pytest.raises(InputError, match='Invalid loss "hinge"'):
        ReducedFunctional(solver, model, X, y, 2, loss="hinge")


def test_cross_entropy_of_a_transposed_view():
    """The loss's gradient subtracts 1 at each label through a flat index: a transposed (not
    C-ordered) array of logits gives the same value and gradient as its contiguous copy (it
    lost the −1 before: the reduced functional's batched point evaluation hands in such a view)."""
    from solver.model.losses import cross_entropy

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 3)), rng.integers(0, 3, 50)
    view, copy = logits.T, np.ascontiguousarray(logits.T)
    (value, gradient), (expected, expected_gradient) = cross_entropy(view, labels), cross_entropy(copy, labels)
    assert value == expected and np.array_equal(gradient, expected_gradient)
    assert np.allclose(gradient.sum(axis=0), 0.0)  # softmax minus the one-hot label, per point
