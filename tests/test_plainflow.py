from mpi4py import MPI

# The flow model of a plain net and its ResNet (sections 3-4): exact identities of the flow,
# convergence of the ResNet to the plain net in l, a fitted scikit-learn MLP, ONNX vs numpy, the
# plain-net readers and the ``plain2resnet`` command on bad input.

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.linalg
from scipy.stats import special_ortho_group

from solver.plain2resnet import cli as cli_plain2resnet
from solver.errors import InputError
from solver.plain2resnet.resnet_export import load_npz as load_resnet_npz
from solver.plain2resnet.resnet_export import save_npz as save_resnet_npz
from solver.plain2resnet.resnet_export import save_onnx
from solver.resnet.onnx_builder import OnnxGraph
from solver.plain2resnet.flow import (
    activation_flow,
    convergence_study,
    embedding_dimension,
    study_order,
    flow_map,
    flow_model,
    plain_to_resnet,
)
from solver.plain2resnet.plainnet import Layer, PlainNet, random_plain_net
from solver.plain2resnet.plainnet_io import from_sklearn, load_npz, load_onnx, load_plain_net, save_npz
from solver.plain2resnet.rotations import proper_svd, rotation_log
from solver.plain2resnet.time_scaling import TIME_SCALINGS, relu_flow_rate, time_scaling

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")


def random_net(activation: str, rank: int | None = None) -> PlainNet:
    return random_plain_net(activation, rank=rank, slope=0.1)
X = np.random.default_rng(1).standard_normal((200, 4))


# --------------------------------------------------------------------------------------------
# Exact identities of the flow model (section 3)
# --------------------------------------------------------------------------------------------


def _pi_rotation(d: int, planes: int, seed: int) -> np.ndarray:
    """A rotation by π in ``planes`` planes, in a random basis: eigenvalue −1 of multiplicity 2·planes."""
    q = special_ortho_group.rvs(d, random_state=seed)
    return q @ np.diag([-1.0] * (2 * planes) + [1.0] * (d - 2 * planes)) @ q.T


ROTATIONS = {
    "identity": np.eye(4),
    "random SO(2)": special_ortho_group.rvs(2, random_state=0),
    "random SO(7)": special_ortho_group.rvs(7, random_state=1),
    "diag(-1,-1,1)": np.diag([-1.0, -1.0, 1.0]),
    "-I_4": -np.eye(4),
    "π in 2 planes of R^5": _pi_rotation(5, 2, seed=2),
    "angle π - 1e-9": scipy.linalg.expm(
        (np.pi - 1e-9) * np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ),
    "angle π + 1e-9": scipy.linalg.expm(
        (np.pi + 1e-9) * np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ),
}


@pytest.mark.parametrize("name", list(ROTATIONS))
def test_rotation_log_is_exact_including_angle_pi(name):
    u = ROTATIONS[name]
    phi = rotation_log(u)
    np.testing.assert_allclose(
        phi, -phi.T, atol=0.0
    )  # skew: exp(hΦ) is a rotation for all h (eq. 25)
    np.testing.assert_allclose(scipy.linalg.expm(phi), u, atol=1e-12, err_msg=name)
    assert np.max(np.abs(np.linalg.eigvals(phi).imag)) <= np.pi + 1e-8


def test_rotation_log_refuses_reflections():
    with pytest.raises(InputError, match="det U"):
        rotation_log(np.diag([-1.0, 1.0, 1.0]))


def test_reflection_is_absorbed_by_the_embedding():
    """det W < 0 and full rank: not U S V with proper rotations in d = 3, but in d = 4 (section 3.1.1)."""
    weight = np.diag([-2.0, 1.0, 0.5])
    with pytest.raises(InputError, match="rank"):
        proper_svd(weight)
    net = PlainNet((Layer(weight, np.zeros(3), "tanh"),))
    assert embedding_dimension(net) == 4
    embedded = np.zeros((4, 4))
    embedded[:3, :3] = weight
    u, s, v, rank = proper_svd(embedded)
    assert rank == 3 and np.linalg.det(u) > 0 and np.linalg.det(v) > 0
    np.testing.assert_allclose(u @ np.diag(s) @ v, embedded, atol=1e-14)
    x = X[:, :3]
    np.testing.assert_allclose(flow_map(flow_model(net), 40.0, x), net.forward(x), atol=1e-13)


@pytest.mark.parametrize("scaling", TIME_SCALINGS)
def test_time_scaling_and_activation_flow_end_points(scaling):
    """h: 0 → 1, ḣ = 0 outside (0, 1), ∫ḣ = 1 (section 3); φ(0, Z) = Z, φ(1, Z) = a(Z) (eq. 37)."""
    tau = np.linspace(-0.5, 1.5, 20001)
    h, keep, hdot = time_scaling(tau, scaling)
    assert np.all(np.diff(h) >= 0) and h[0] == 0.0 and h[-1] == 1.0
    np.testing.assert_allclose(h + keep, 1.0, atol=1e-15)
    assert np.all(hdot[(tau <= 0) | (tau >= 1)] == 0.0)
    assert abs(np.trapezoid(hdot, tau) - 1.0) < 1e-8
    np.testing.assert_allclose(np.gradient(h, tau), hdot, atol=1e-6)
    inside = (tau > 0) & (tau < 0.99)  # beyond, the naive ḣ/(1 − h) is 0/0 for "smooth"
    np.testing.assert_allclose(
        relu_flow_rate(tau, 0.0, scaling)[inside], hdot[inside] / keep[inside], rtol=1e-10
    )
    np.testing.assert_allclose(
        relu_flow_rate(tau, 0.3, scaling), hdot * 0.7 / (keep + 0.3 * h), rtol=1e-12
    )
    z = np.linspace(-4, 4, 81)
    for name in ACTIVATIONS:
        np.testing.assert_array_equal(activation_flow(0.0, z, name, scaling=scaling), z)
        expected = Layer(np.eye(1), [0.0], name)(z[:, None])[:, 0]
        np.testing.assert_allclose(activation_flow(1.0, z, name, scaling=scaling), expected)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_exact_flow_reproduces_the_plain_net(activation):
    """The time-1 maps of eq. 48 compose to the plain net, up to e^{-β} (eq. 22)."""
    net = random_net(activation)
    np.testing.assert_allclose(flow_map(flow_model(net), 40.0, X), net.forward(X), atol=1e-12)


def test_beta_error_of_a_rank_deficient_layer_is_e_to_minus_beta():
    net = random_net("tanh", rank=3)
    flow = flow_model(net)
    errors = {
        beta: np.max(np.abs(flow_map(flow, beta, X) - net.forward(X)))
        for beta in (2.0, 4.0, 8.0, 16.0)
    }
    constants = [errors[beta] * np.exp(beta) for beta in errors]
    print(
        "\nβ: exact-flow error, error·e^β:",
        {b: (f"{e:.2e}", f"{c:.2f}") for (b, e), c in zip(errors.items(), constants)},
    )
    assert errors[2.0] > 1e-2  # data in the kernel: β matters
    assert max(constants) < 2.0 * min(constants)


# --------------------------------------------------------------------------------------------
# Convergence of the ResNet to the plain net (section 4)
# --------------------------------------------------------------------------------------------

# Observed orders, these nets, quintic h, β = 10: least-squares over l = 32 … 256 relu 1.14,
# leaky_relu 1.14, tanh 1.10, sigmoid 1.04; pairwise 128 → 256 1.06, 1.06, 1.05, 1.02.
# Euler is first order; below l ≈ 2β the stretch flow's Euler factors are < −1 (eq. 29).
ORDER_MIN = 0.9
LEVELS = [4, 8, 16, 32, 64, 128, 256]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_resnet_converges_to_the_plain_net_at_order_one(activation):
    rows = convergence_study(random_net(activation), X, LEVELS, beta=10.0)
    print(f"\n{activation}: l, max error, order")
    for r in rows:
        print(
            f"  {r['substeps']:4d} {r['error']:10.3e} {'' if r['order'] is None else format(r['order'], '6.2f')}"
        )
    order = study_order(rows, smallest=32)
    assert (
        order >= ORDER_MIN
    ), f"{activation}: observed order {order:.2f} over l >= 32, expected >= {ORDER_MIN}"
    assert rows[-1]["error"] < 0.25


def test_fixed_anchor_does_not_converge():
    """Eq. 66 linearizes at z_k, the data; at a fixed anchor the error stalls as l grows."""
    rows = convergence_study(random_net("tanh"), X, [64, 128, 256], beta=10.0, anchor="zero")
    assert rows[-1]["order"] < 0.5 and rows[-1]["error"] > 0.3


def test_fitted_sklearn_mlp_on_iris():
    import warnings

    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    model = MLPClassifier((8,), activation="tanh", max_iter=400, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    net = from_sklearn(model)
    np.testing.assert_allclose(net.predict(x), model.predict_proba(x), atol=1e-12)
    rows = convergence_study(net, x, [32, 64, 128, 256], beta=10.0)
    print(
        "\niris/tanh MLP: l, max logit error:", [(r["substeps"], f"{r['error']:.2e}") for r in rows]
    )
    assert study_order(rows) >= ORDER_MIN
    resnet = plain_to_resnet(net, 256, 10.0)
    assert np.mean(resnet.predict(x).argmax(1) == model.predict(x)) >= 0.95


# --------------------------------------------------------------------------------------------
# Exports: ONNX (onnxruntime) and npz + JSON against the numpy forward
# --------------------------------------------------------------------------------------------


def _run_onnx(path, x: np.ndarray, dtype) -> list[np.ndarray]:
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.astype(dtype)})


@pytest.mark.parametrize(
    "activation, anchor", [(a, "input") for a in ACTIVATIONS] + [("tanh", "zero")]
)
def test_onnxruntime_matches_numpy(activation, anchor, tmp_path):
    resnet = plain_to_resnet(random_net(activation), 16, beta=4.0, anchor=anchor)
    y, p = resnet.forward(X), resnet.predict(X)
    scale = max(1.0, np.max(np.abs(y)))
    y32, p32 = _run_onnx(save_onnx(resnet, tmp_path / "f32.onnx", np.float32), X, np.float32)
    assert np.max(np.abs(y32 - y)) <= 1e-5 * scale and np.max(np.abs(p32 - p)) <= 1e-5
    y64, p64 = _run_onnx(save_onnx(resnet, tmp_path / "f64.onnx", np.float64), X, np.float64)
    assert np.max(np.abs(y64 - y)) <= 1e-12 * scale and np.max(np.abs(p64 - p)) <= 1e-12


@pytest.mark.slow
def test_saturated_units_quintic_is_well_conditioned_smooth_is_not(tmp_path):
    """Pre-activations ~50 saturate tanh; near τ = 1 the Euler factor 1 − αḣ/(1 − h) of eq. 69
    reaches −(l − 1) for the C∞ h and amplifies round-off; the quintic h keeps it in [−2, 1]
    (solver/plain2resnet/time_scaling.py). Measured at l = 128, relative to max|y|: |float32 − float64| = 1.6
    (smooth), 7e-6 (quintic); at l = 256: 8e2 and 5e-5."""
    net = random_net("tanh")
    big = PlainNet(
        tuple(Layer(50.0 * layer.weight, layer.bias, layer.activation) for layer in net.layers),
        net.output,
    )
    differences = {}
    for scaling in ("quintic", "smooth"):
        resnet = plain_to_resnet(big, 128, beta=10.0, scaling=scaling)
        y = resnet.forward(X)
        y32, _ = _run_onnx(
            save_onnx(resnet, tmp_path / f"{scaling}.onnx", np.float32), X, np.float32
        )
        assert np.all(np.isfinite(y)) and np.all(
            np.isfinite(y32)
        ), scaling  # J of eq. 62 underflows: no NaN
        differences[scaling] = np.max(np.abs(y32 - y)) / np.max(np.abs(y))
    print(f"\nsaturated tanh net, l = 128: |float32 ONNX − float64| / max|y|: {differences}")
    assert differences["quintic"] < 1e-4 and differences["smooth"] > 0.1


def test_npz_round_trip(tmp_path):
    resnet = plain_to_resnet(random_net("sigmoid"), 8, beta=4.0, anchor="zero")
    npz = save_resnet_npz(resnet, tmp_path / "resnet.onnx")
    assert npz == tmp_path / "resnet.npz"
    meta = json.loads(str(np.load(npz)["meta"]))
    assert (meta["format"], meta["version"]) == ("flow-resnet", 2)
    assert meta["stages"][4]["label"] == "layer 0: a"
    back = load_resnet_npz(npz)
    assert back.stages[4].label == "layer 0: a" and back.scaling == resnet.scaling
    np.testing.assert_array_equal(back.forward(X), resnet.forward(X))


def test_npz_version_1_still_loads(tmp_path):
    """Version 1 wrote the arrays to NAME.npz and the listing, format "flow-resnet/1", to NAME.json."""
    resnet = plain_to_resnet(random_net("tanh"), 8, beta=4.0)
    with np.load(save_resnet_npz(resnet, tmp_path / "new.npz")) as data:
        arrays = {name: data[name] for name in data.files}
    listing = json.loads(str(arrays.pop("meta")))
    del listing["version"]
    listing["format"] = "flow-resnet/1"
    np.savez(tmp_path / "old.npz", **arrays)
    (tmp_path / "old.json").write_text(json.dumps(listing))
    np.testing.assert_array_equal(load_resnet_npz(tmp_path / "old.npz").forward(X), resnet.forward(X))
    (tmp_path / "old.json").unlink()
    with pytest.raises(InputError, match="old.npz.*no 'meta' entry"):
        load_resnet_npz(tmp_path / "old.npz")


def test_truncated_or_empty_npz_names_the_file(tmp_path):
    data = save_resnet_npz(plain_to_resnet(random_net("relu"), 4, 4.0), tmp_path / "r.npz")
    plain = save_npz(random_net("relu"), tmp_path / "plain.npz")
    for name, original in (("resnet", data), ("plain", plain)):
        truncated, empty = tmp_path / f"{name}-truncated.npz", tmp_path / f"{name}-empty.npz"
        truncated.write_bytes(original.read_bytes()[:-40])
        empty.write_bytes(b"")
        for path in (truncated, empty):
            with pytest.raises(InputError, match="cannot read it as .npz|the file is empty") as info:
                (load_resnet_npz if name == "resnet" else load_plain_net)(path)
            assert info.value.source == str(path)


# --------------------------------------------------------------------------------------------
# Plain-net readers and bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "activation, use_matmul",
    [("relu", False), ("leaky_relu", False), ("tanh", True), ("sigmoid", True)],
)
def test_plain_net_readers_round_trip(activation, use_matmul, tmp_path, plain_onnx):
    net = random_net(activation)
    for loaded in (
        load_plain_net(save_npz(net, tmp_path / "net.npz")),
        load_plain_net(plain_onnx(net, tmp_path / "net.onnx", use_matmul)),
    ):
        assert [l.activation for l in loaded.layers] == [
            l.activation for l in net.layers
        ] and loaded.output == "softmax"
        np.testing.assert_allclose(loaded.predict(X), net.predict(X), atol=1e-6)


def _write_bad_files(tmp_path, plain_onnx) -> dict[str, tuple[object, str]]:
    """name → (path, a phrase the error must contain)."""
    net = random_net("relu")
    np.savez(tmp_path / "not_mlp.npz", x=np.zeros(3))
    np.savez(
        tmp_path / "shapes.npz",
        W0=np.zeros((5, 4)),
        b0=np.zeros(5),
        W1=np.zeros((3, 6)),
        b1=np.zeros(3),
        activations=np.array(["relu", "identity"]),
    )
    np.savez(
        tmp_path / "bias.npz", W0=np.zeros((5, 4)), b0=np.zeros(4), activations=np.array(["relu"])
    )
    np.savez(
        tmp_path / "activation.npz",
        W0=np.zeros((5, 4)),
        b0=np.zeros(5),
        activations=np.array(["gelu"]),
    )
    np.savez(tmp_path / "pickled.npz", W0=np.array([object()], dtype=object))
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not an onnx model\xff" * 10)
    (tmp_path / "model.pkl").write_bytes(b"never unpickled")
    return {
        "not_mlp": (tmp_path / "not_mlp.npz", "no key W0"),
        "shapes": (tmp_path / "shapes.npz", "layer 1"),
        "bias": (tmp_path / "bias.npz", "shape"),
        "activation": (tmp_path / "activation.npz", "gelu"),
        "pickled": (tmp_path / "pickled.npz", "not a plain-net npz"),
        "garbage": (tmp_path / "garbage.onnx", "not an ONNX model"),
        "unsupported op": (
            plain_onnx(net, tmp_path / "exp.onnx", extra_op="Exp"),
            "unsupported ONNX op Exp",
        ),
        "pickle": (tmp_path / "model.pkl", "runs code"),
        "missing": (tmp_path / "missing.npz", "no such file"),
    }


def test_bad_files_raise_input_error_naming_the_file(tmp_path, plain_onnx):
    for name, (path, phrase) in _write_bad_files(tmp_path, plain_onnx).items():
        with pytest.raises(InputError) as info:
            load_plain_net(path)
        assert info.value.source == str(path), name
        assert str(path) in str(info.value) and phrase in str(info.value), f"{name}: {info.value}"


def test_onnx_loader_refuses_a_branching_graph(tmp_path):
    g = OnnxGraph("branch", np.float32)
    x = g.node("Gemm", g.input("x", 2), g.constant(np.eye(2)), g.constant(np.zeros(2)))
    g.output(g.node("Add", x, g.node("Relu", x)), "y", 2)  # a residual block: not a plain chain
    path = g.save(tmp_path / "branch.onnx")
    with pytest.raises(InputError, match="branch.onnx.*chain"):
        load_onnx(path)


def test_npz_activations_must_be_strings(tmp_path):
    np.savez(tmp_path / "bad.npz", W0=np.zeros((2, 2)), b0=np.zeros(2), activations=np.array([1.0]))
    with pytest.raises(InputError, match="'activations' must be 1 strings"):
        load_npz(tmp_path / "bad.npz")


# --------------------------------------------------------------------------------------------
# The plain2resnet command (collective: the same verdict on every rank)
# --------------------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_plain2resnet.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["plain2resnet", *argv])


def test_command_writes_onnx_npz_json(tmp_path):
    comm = MPI.COMM_WORLD
    root = comm.bcast(str(tmp_path) if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        save_npz(random_net("tanh"), f"{root}/net.npz")
    comm.Barrier()
    args = _args(f"{root}/net.npz", "--substeps", "32", "--beta", "8", "--out", f"{root}/new.onnx")
    assert args.run(comm, args) == 0
    comm.Barrier()
    (y,) = _run_onnx(f"{root}/new.onnx", X, np.float32)[:1]
    reference = load_resnet_npz(f"{root}/new.npz").forward(X)
    assert np.max(np.abs(y - reference)) <= 1e-5 * max(1.0, np.max(np.abs(reference)))
    # An existing output is not overwritten without --force: the same InputError on every rank.
    with pytest.raises(InputError, match="--force"):
        args.run(comm, args)


def test_command_refuses_a_net_wider_than_max_width_on_every_rank(tmp_path):
    """The width limit (the d x d decompositions' time grows as d³) with its estimate, before any
    decomposition; raising --max-width lets the same net through."""
    comm = MPI.COMM_WORLD
    root = comm.bcast(str(tmp_path) if comm.rank == 0 else None, root=0)
    net = random_net("tanh")
    width = max(max(layer.n_in, layer.n_out) for layer in net.layers)
    if comm.rank == 0:
        save_npz(net, f"{root}/net.npz")
    comm.Barrier()
    base = [f"{root}/net.npz", "--substeps", "8", "--out", f"{root}/new.onnx", "--format", "npz"]
    narrow = _args(*base, "--max-width", str(width - 1))
    with pytest.raises(InputError, match=rf"net of width {width} \({len(net.layers)} layers\).* an estimated "
                                         rf".* over --max-width {width - 1}; use a narrower net, or pass "
                                         rf"--max-width {width} to run it anyway"):
        narrow.run(comm, narrow)
    with pytest.raises(InputError, match="--max-width must be >= 1, got 0"):
        zero = _args(*base, "--max-width", "0")
        zero.run(comm, zero)
    assert not Path(f"{root}/new.npz").exists()
    enough = _args(*base, "--max-width", str(width))
    assert enough.run(comm, enough) == 0


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["{root}/model.pkl", "--substeps", "4"], "runs code"),
        (["{root}/exp.onnx", "--substeps", "4"], "unsupported ONNX op Exp"),
        (["{root}/not_mlp.npz", "--substeps", "4"], "not_mlp.npz"),
        (["{root}/not_mlp.npz", "--substeps", "4", "--format", "onnx,pdf"], "--format"),
        (["{root}/not_mlp.npz", "--substeps", "0"], "--substeps"),
    ],
)
def test_command_bad_input_is_an_input_error_on_every_rank(argv, phrase, tmp_path, plain_onnx):
    comm = MPI.COMM_WORLD
    root = comm.bcast(str(tmp_path) if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        _write_bad_files(tmp_path, plain_onnx)
    comm.Barrier()
    args = _args(*(a.format(root=root) for a in argv), "--out", f"{root}/new.onnx")
    with pytest.raises(InputError, match=phrase.replace(".", r"\.")):
        args.run(comm, args)
