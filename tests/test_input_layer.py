"""The learned input layer (model/input_layer.py): its map stays inside Ω, its VJP against finite
differences, its starts, and Taylor tests of J in (θ, A, b, E, e) with the data points moving
through the semi-Lagrangian u_h(0, ·), on 1 and 2 ranks."""

from mpi4py import MPI

import numpy as np
import pytest

from solver.errors import InputError
from solver.fem.mesh import create_mesh
from solver.fem.semilagrangian import SemiLagrangianSolver
from solver.fem.schemes import make_solver
from solver.config import SolverConfig
from solver.learn.reduced import ReducedFunctional
from solver.learn.taylor import taylor_remainders
from solver.model.domain import Ball, Box
from solver.model.input_layer import InputLayer
from solver.model.velocity import VelocityModel

SQUARE = Box((-1.0, -1.0), (1.0, 1.0))
CUBE = Box((-1.0,) * 3, (1.0,) * 3)
DISK = Ball((0.0, 0.0), 1.0)


def features(n=80, F=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, F)) * np.arange(1, F + 1) + 3.0
    y = (X[:, 0] - 3.0 + 0.5 * (X[:, 1] - 3.0) > 0).astype(int) + (X[:, 2] > 4.0)
    return X, y


@pytest.mark.parametrize("domain", [SQUARE, DISK, CUBE], ids=["square", "disk", "cube"])
def test_points_stay_inside_and_the_vjp_is_the_transposed_jacobian(domain):
    X, y = features()
    layer = InputLayer.fit(X, domain, margin=0.2)
    rng = np.random.default_rng(1)
    q = layer.initial(X, y) + 0.5 * rng.standard_normal(layer.n_params)
    q[-layer.dim:] += 3.0  # far out: tanh saturates, the points must still lie inside
    z = layer(q, X)
    assert np.all(domain.contains(z))
    if isinstance(domain, Ball):
        assert np.linalg.norm(z - domain.center, axis=1).max() < 0.8 * domain.radius
    else:
        assert np.abs(z).max() < 0.8
    gz = rng.standard_normal(z.shape)
    grad = layer.vjp(q, X, gz)
    for _ in range(3):
        dq = rng.standard_normal(layer.n_params)
        h = 1e-6
        fd = np.sum(gz * (layer(q + h * dq, X) - layer(q - h * dq, X))) / (2 * h)
        assert abs(fd - grad @ dq) <= 1e-7 * max(1.0, abs(fd))


def test_the_radial_squash_near_its_centre():
    """The ball's tanh(r)/r and its derivative switch to their series below r = 1e-4: both sides
    agree there to round-off, and the VJP matches finite differences at w = 0."""
    X, y = features(F=3)
    layer = InputLayer.fit(X, DISK, margin=0.2)
    r = np.array([[1e-4 * (1 - 1e-9), 0.0], [1e-4 * (1 + 1e-9), 0.0]])
    g, dg = layer._radial(r)
    assert abs(g[0] - g[1]) < 1e-12 and abs(dg[0] - dg[1]) < 1e-6
    q = np.zeros(layer.n_params)
    gz = np.ones((len(X), 2))
    dq = np.random.default_rng(0).standard_normal(layer.n_params)
    h = 1e-6
    fd = np.sum(gz * (layer(q + h * dq, X) - layer(q - h * dq, X))) / (2 * h)
    assert abs(fd - layer.vjp(q, X, gz) @ dq) <= 1e-7 * max(1.0, abs(fd))


def test_starts():
    """PCA: E's rows are orthogonal principal directions; LDA: K − 1 = 2 discriminant directions,
    the first separating the classes better than PCA's first."""
    X, y = features(n=300, F=8)
    layer = InputLayer.fit(X, SQUARE, margin=0.2)
    x = layer.standardize(X)
    for init in ("pca", "lda"):
        E, e = layer.split(layer.initial(X, y, init))
        assert np.all(e == 0)
        if init == "pca":
            assert abs(E[0] @ E[1]) < 1e-10 * np.linalg.norm(E[0]) * np.linalg.norm(E[1])
        assert np.linalg.matrix_rank(E) == 2
        w = x @ E.T
        assert np.isclose(np.std(w, axis=0).max(), 0.5)  # SPREAD = 2 standard deviations
    fisher = []
    for init in ("pca", "lda"):
        w = x @ layer.split(layer.initial(X, y, init))[0][0]
        means = np.array([w[y == k].mean() for k in np.unique(y)])
        fisher.append(np.var(means) / np.mean([w[y == k].var() for k in np.unique(y)]))
    assert fisher[1] > fisher[0]
    with pytest.raises(InputError, match="init"):
        layer.initial(X, y, "ica")


def test_constant_columns_and_records():
    X, _ = features()
    X[:, 3] = 7.0
    with pytest.raises(InputError, match=r"1 feature column\(s\) are constant.*'x4'") as error:
        InputLayer.fit(X, SQUARE, 0.2, source="data.csv")
    assert error.value.source == "data.csv"
    X, _ = features()
    layer = InputLayer.fit(X, DISK, 0.2, feature_names=[f"f{j}" for j in range(6)])
    back = InputLayer.from_dict(layer.to_dict())
    q = layer.initial(X)
    assert np.array_equal(back(q, X), layer(q, X)) and back.feature_names == layer.feature_names
    with pytest.raises(InputError, match="input layer record"):
        InputLayer.from_dict({"mean": [0.0]})


def test_pretrain_fits_the_layers_without_the_flow():
    """InputLayer.pretrain lowers the flow-less model's loss from its start and classifies wine (13
    features, 3 classes) through a 3D box, and gives the same numbers when called again (every
    rank calls it alike); the regression loss is fitted too."""
    from sklearn.datasets import load_wine

    from solver.model.losses import cross_entropy, squared_error

    X, y = load_wine(return_X_y=True)
    layer = InputLayer.fit(X, CUBE, margin=0.1)
    q0 = layer.initial(X, y)

    def loss(q, A, b, fn, targets):
        return fn(A @ layer(q, X).T + b[:, None], targets)[0] / len(X)

    A0 = np.random.default_rng(7919).normal(0.0, 1.0 / np.sqrt(3), (3, 3))  # pretrain's seed 0 start
    q, A, b, value = layer.pretrain(q0, X, y, 3, "cross_entropy", 1e-3, 200)
    assert loss(q, A, b, cross_entropy, y) < 0.5 * loss(q0, A0, np.zeros(3), cross_entropy, y)
    E = q[: 3 * X.shape[1]]
    assert value == pytest.approx(loss(q, A, b, cross_entropy, y) + 0.5e-3 * E @ E, rel=1e-12)
    assert np.mean(np.argmax(layer(q, X) @ A.T + b, axis=1) == y) > 0.95
    again = layer.pretrain(q0, X, y, 3, "cross_entropy", 1e-3, 200)
    assert all(np.array_equal(u, v) for u, v in zip((q, A, b, value), again))
    other = layer.pretrain(q0, X, y, 3, "cross_entropy", 1e-3, 200, restart=1)  # another start of A
    assert not np.array_equal(other[1], A)
    t = (X[:, :1] - X[:, :1].mean()) / X[:, :1].std()  # a standardized target, shape=(n, 1)
    q, A, b, _ = layer.pretrain(q0, X, t, 1, "squared_error", 1e-3, 200)
    assert loss(q, A, b, squared_error, t) < 0.05  # ½ mean square: R² > 0.9


def make_problem(comm, domain=SQUARE, cells=8, degree=2, K=3, F=6, loss="cross_entropy", input_decay=0.0):
    """Raw features in R^F through a learned layer into Ω; the same data on any rank count."""
    solver = SemiLagrangianSolver(create_mesh(comm, domain, cells), degree=degree,
                                  num_components=min(K, domain.dim))
    model = VelocityModel(dim=domain.dim, width=4, slabs=2, T=1.0, activation="tanh", domain=domain,
                          layers=2)
    X, y = features(F=F)
    y = np.minimum(y, K - 1)
    if loss == "squared_error":
        y = np.sin(X[:, :1] + np.arange(K))
    layer = InputLayer.fit(X, domain, margin=0.2)
    start = layer.initial(X, None)
    mine = slice(comm.rank, None, comm.size)
    return ReducedFunctional(solver, model, X[mine], y[mine], K, loss=loss, weight_decay=1e-3,
                             smoothness=1e-2, input_layer=layer, input_start=start, input_decay=input_decay)


TAYLOR_CASES = [
    ("square-P2-3classes", dict()),
    ("disk-P2-2classes", dict(domain=DISK, K=2)),
    ("cube-P1-4classes", dict(domain=CUBE, cells=4, degree=1, K=4, F=5)),
    ("square-P2-regression", dict(K=2, loss="squared_error")),
]
EPSILON = 2e-3
# E and e move all data points at once (here about 5ε per unit step): from ε₀ = 2e-3 and 2e-4 the
# point nearest a facet crossed it at every halving, and its kink added a term linear in ε
# (measured: fitted slopes 1.48 and 1.60 for E on the square, while central differences agreed
# with ∇J to 1e-8); from 2e-5 the rates were 2.000 ± 0.001. The remainders there (~1e-10 against
# J ~ 1) are far above round-off.
EPSILON_INPUT = 2e-5


@pytest.mark.parametrize("name, kwargs", TAYLOR_CASES, ids=[c[0] for c in TAYLOR_CASES])
def test_taylor_every_block_with_the_input_layer(comm, name, kwargs, parameter_blocks):
    """J(p + ε dp) − J(p) − ε ∇J·dp = O(ε²) in every block, the input layer's E and e included:
    the data points move with them through the continuous u_h(0, ·), whose gradient is
    piecewise (a point crossing a facet is a kink, met by O(ε) of the points: the slope is fitted
    over four halvings, as for the semi-Lagrangian steps)."""
    with make_problem(comm, **kwargs) as J:
        p = J.initial(seed=1, scale=1.5)
        p[J.n_theta + J.n_output :] += 0.3 * np.random.default_rng(5).standard_normal(J.n_input)
        J0 = J(p)
        J.freeze_steps(J.evaluate(p).steps)
        value, gradient = J.value_and_gradient(p)
        assert value == J0
        rng = np.random.default_rng(3)
        blocks = parameter_blocks(J)
        n = J.n_theta + J.n_output
        d, F = J.input_layer.dim, J.input_layer.num_features
        blocks["input.E"] = slice(n, n + d * F)
        blocks["input.e"] = slice(n + d * F, J.n_params)
        lines = []
        for block, where in blocks.items():
            direction = np.zeros(J.n_params)
            direction[where] = rng.standard_normal(where.stop - where.start)
            epsilon = EPSILON_INPUT if block.startswith("input") else EPSILON
            remainders, rates = taylor_remainders(J, p, gradient, direction, J0=J0, epsilon=epsilon, num=5)
            slope = np.polyfit(np.log2(epsilon / 2.0 ** np.arange(5)), np.log2(remainders), 1)[0]
            lines.append(f"{block:>12}: slope {slope:.3f}, rates {np.array2string(rates, precision=3)}")
            assert slope >= 1.75, f"{name} {block}: remainders {remainders}, rates {rates}, slope {slope}"
        print(f"\n{name}\n" + "\n".join(lines))


def test_input_decay_adds_half_its_weight_times_E_squared(comm):
    """input.decay δ adds (δ/2)|E|² to J and δE to ∇J's E block: nothing to e, θ, A, b."""
    p, d, F = None, None, None
    out = []
    for decay in (0.0, 0.7):
        J = make_problem(comm, input_decay=decay)
        if p is None:
            p = J.initial(seed=1)
            p[J.n_theta + J.n_output :] += 0.3 * np.random.default_rng(5).standard_normal(J.n_input)
            d, F, n = J.input_layer.dim, J.input_layer.num_features, J.n_theta + J.n_output
        out.append(J.value_and_gradient(p))
        J.destroy()
    (v0, g0), (v1, g1) = out
    E = p[n : n + d * F]
    assert abs((v1 - v0) - 0.5 * 0.7 * float(E @ E)) <= 1e-12 * abs(v1)
    expected = np.zeros_like(g0)
    expected[n : n + d * F] = 0.7 * E
    assert np.abs((g1 - g0) - expected).max() <= 1e-12 * np.abs(g1).max()


def test_same_on_one_rank_and_all(comm):
    results = []
    for c in (MPI.COMM_SELF, comm):
        with make_problem(c) as J:
            p = J.initial(seed=2)
            results.append((J.value_and_gradient(p), J.points))
    ((v1, g1), _), ((v2, g2), _) = results
    assert abs(v1 - v2) <= 1e-10 * abs(v1)
    assert np.abs(g1 - g2).max() <= 1e-9 * np.abs(g1).max()


def test_refused_on_a_discontinuous_scheme(comm):
    mesh = create_mesh(comm, SQUARE, 4)
    with make_solver(mesh, SolverConfig(scheme="rk3"), degree=1, num_components=2) as solver:
        model = VelocityModel(dim=2, width=4, slabs=2, T=1.0, activation="tanh", domain=SQUARE, layers=2)
        X, y = features()
        layer = InputLayer.fit(X, SQUARE, 0.2)
        with pytest.raises(InputError, match="continuous"):
            ReducedFunctional(solver, model, X, np.minimum(y, 1), 2, input_layer=layer)


def write_wine(path_train, path_test):
    """scikit-learn's wine data (13 features, 3 classes): 140 rows to train, 38 held out."""
    from sklearn.datasets import load_wine

    from solver.model.data import write_csv

    X, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    names = [f"f{j}" for j in range(13)]
    write_csv(path_train, X[order[:140]], y[order[:140]], names)
    write_csv(path_test, X[order[140:]], y[order[140:]], names)
    return X[order[140:]], y[order[140:]]


def test_a_13_feature_csv_trains_compares_exports_and_predicts(comm, shared_directory, capsys):
    """A CSV of 13 feature columns: ``train`` (the learned input layer into the 3D box by default),
    ``compare RUN`` (certified again from theta.npz), ``export`` (the layer is the ONNX graph's
    first nodes: float64 ONNX equals the numpy net to 1e-12) and ``predict`` on the held-out rows,
    whose labels the ONNX net gives too. Collective."""
    from solver.__main__ import main
    from solver.resnet.net import forward, load_npz
    from solver.rundir import store

    work = shared_directory(comm)
    X_test, _ = write_wine(work / "wine.csv", work / "held.csv") if comm.rank == 0 else (None, None)
    X_test = comm.bcast(X_test, root=0)
    config = work / "wine.toml"
    if comm.rank == 0:
        config.write_text('[data]\nkind = "csv"\npath = "wine.csv"\ntest_path = "held.csv"\n\n'
                          '[train]\niterations = 20\n\n[output]\npng = false\nanimation = false\nvtx = false\n')
    comm.Barrier()
    run = work / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    metrics = store.read_json(run / store.METRICS)
    assert metrics["certified"] and metrics["test_accuracy"] > 0.85
    meta = store.read_parameters(run / store.THETA).meta
    assert meta["input"]["kind"] == "learned" and len(meta["input"]["mean"]) == 13
    assert main(["compare", str(run)]) == 0
    compared = store.read_json(run / store.COMPARISON)
    assert compared["test"]["label_agreement"] >= 0.99
    assert main(["export", str(run), "--out", str(work / "net"), "--depth", "64", "--scheme", "rk4"]) == 0
    assert main(["predict", str(run), str(work / "held.csv"), "--out", str(work / "predicted.csv")]) == 0
    if comm.rank == 0:
        from solver.resnet.onnx_net import load_onnx_session

        net = load_npz(work / "net" / "resnet-rk4-64.npz")
        onnx = load_onnx_session(work / "net" / "resnet-rk4-64-float64.onnx")
        assert np.abs(onnx(X_test) - forward(net, X_test)).max() <= 1e-12
        predicted = np.loadtxt(work / "predicted.csv", delimiter=",", skiprows=1)[:, -1]
        assert np.mean(onnx(X_test).argmax(axis=1) == predicted) >= 0.99
    comm.Barrier()


@pytest.mark.serial  # the command line on one process's own files (2 ranks: the test above)
def test_bad_inputs_of_many_features(tmp_path, capsys):
    """Resume with a learned input layer is bit-identical; bad input gets one clear message naming
    the file or key, exit 2: a feature-count mismatch between the run and the points, a constant
    column, NaN, a CSV of one feature column, input.dim = 4."""
    from solver.__main__ import main
    from solver.config import config_from_dict
    from solver.model.data import make_dataset

    write_wine(tmp_path / "wine.csv", tmp_path / "held.csv")
    (tmp_path / "wine.toml").write_text('[data]\nkind = "csv"\npath = "wine.csv"\n\n[train]\niterations = 2\n\n'
                                         '[output]\npng = false\nanimation = false\nvtx = false\n')
    assert main(["train", str(tmp_path / "wine.toml"), "--out", str(tmp_path / "run")]) == 0
    # Resumed with more iterations, the run ends on the uninterrupted one's parameters, bit for bit.
    (tmp_path / "wine4.toml").write_text((tmp_path / "wine.toml").read_text().replace("iterations = 2",
                                                                                       "iterations = 4"))
    assert main(["train", str(tmp_path / "wine4.toml"), "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", str(tmp_path / "wine4.toml"), "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert np.array_equal(np.load(tmp_path / "run" / "theta.npz")["p"], np.load(tmp_path / "straight" / "theta.npz")["p"])
    twelve = tmp_path / "twelve.csv"
    twelve.write_text("\n".join(",".join(["1.0"] * 12) for _ in range(3)) + "\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(twelve), "--out", str(tmp_path / "p.csv")]) == 2
    message = capsys.readouterr().err
    assert "twelve.csv" in message and "12 feature column(s), expected 13" in message
    rows = (tmp_path / "wine.csv").read_text().splitlines()
    constant = tmp_path / "constant.csv"
    constant.write_text("\n".join([rows[0]] + [",".join(["7.0"] + r.split(",")[1:]) for r in rows[1:]]) + "\n")
    with pytest.raises(InputError, match=r"constant.*'f0'") as error:
        make_dataset("csv", None, path=str(constant), domain=CUBE)
    assert error.value.source == str(constant)
    nan = tmp_path / "nan.csv"
    nan.write_text("\n".join([rows[0], "nan," + rows[1].split(",", 1)[1]] + rows[2:]) + "\n")
    with pytest.raises(InputError, match="non-finite") as error:
        make_dataset("csv", None, path=str(nan), domain=CUBE)
    assert error.value.source == str(nan)
    one = tmp_path / "one.csv"
    one.write_text("x1,label\n" + "\n".join(f"{i / 10},{i % 2}" for i in range(20)) + "\n")
    with pytest.raises(InputError, match="1 feature column") as error:
        make_dataset("csv", None, path=str(one), domain=SQUARE)
    assert error.value.source == str(one)
    with pytest.raises(InputError, match=r"input\.dim") as error:
        config_from_dict({"input": {"dim": 4}}, source="p.toml")
    with pytest.raises(InputError, match=r"input\.pretrain"):
        config_from_dict({"input": {"pretrain": -1}}, source="p.toml")
    with pytest.raises(InputError, match=r"input\.restarts"):
        config_from_dict({"input": {"restarts": 0}}, source="p.toml")
    with pytest.raises(InputError, match=r"input\.decay"):
        config_from_dict({"input": {"decay": -1.0}}, source="p.toml")
    with pytest.raises(InputError, match=r"input\.kind.*sl"):
        config_from_dict({"input": {"kind": "learned"}, "solver": {"scheme": "rk3"}})
    with pytest.raises(InputError, match=r"input\.dim"):
        config_from_dict({"input": {"dim": 2}, "domain": {"kind": "ball"}})
