from mpi4py import MPI  # noqa: F401  # first: mpi4py before anything that may load dolfinx

import json

import numpy as np
import onnx
import pytest

from solver.convergence import fitted_order
from solver.model.characteristics import flow
from solver.model.domain import Ball, Box
from solver.errors import InputError
from solver.model.terminal import make_terminal
from solver.resnet.net import (
    FORMAT_VERSION,
    SCHEMES,
    OutputLayer,
    ResNet,
    depth_table,
    flow_map,
    forward,
    labels,
    load_npz,
    output_layer,
    resnet_from_velocity,
    save_npz,
)
from solver.resnet.formats import FORMATS, parse_formats
from solver.resnet.onnx_builder import OPSET
from solver.resnet.onnx_net import load_onnx_session, save_onnx, to_onnx
from solver.model.velocity import ACTIVATIONS, Params, VelocityModel

# The exporter is serial numpy (no communicator); several tests write files.
pytestmark = pytest.mark.serial

DOMAINS = {
    "box2": Box((-1.0, -1.5), (1.5, 1.0)),
    "disk": Ball((0.2, -0.1), 1.2),
    "box3": Box((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)),
    "ball3": Ball((0.0, 0.0, 0.0), 1.0),
}


def interior_points(domain, n, seed=0):
    """n random points with χ > 0.01 (inside Ω, away from ∂Ω)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(domain.lower), np.asarray(domain.upper)
    x = lo + (hi - lo) * rng.uniform(0, 1, (8 * n, domain.dim))
    return x[domain.cutoff(x) > 0.01][:n]


def random_model(domain="box2", act="tanh", slabs=4, width=6, T=1.0, seed=1, layers=2):
    dom = DOMAINS[domain]
    model = VelocityModel(dom.dim, width if layers == 2 else dom.dim, slabs, T, act, dom, layers=layers)
    return model, model.init(seed, scale=2.0)


def reference(model, theta, x):
    return flow(model.field(theta), x, 0.0, model.T, rtol=1e-12, atol=1e-13)


# ---- construction: eq. 17 ----------------------------------------------------------------------


def test_depth_one_euler_block_is_eq17():
    model, theta = random_model("disk", slabs=3, T=0.7)
    net = resnet_from_velocity(model, theta, 1, "euler")
    # The block samples θ at its midpoint T/2, inside slab 1 of 3.
    p = model.params_at(theta, 0.35)
    s = model.T
    x0 = interior_points(model.domain, 50)
    chi = model.domain.cutoff(x0)[:, None]
    by_hand = x0 + chi * (np.tanh(x0 @ p.W1.T + p.b1) @ (s * p.W2).T + s * p.b2)  # eq. 16-17
    assert np.allclose(flow_map(net, x0), by_hand, rtol=0, atol=1e-14)
    assert np.array_equal(net.W2[0, 0], s * p.W2) and np.array_equal(net.b2[0, 0], s * p.b2)
    assert np.array_equal(net.W1[0, 0], p.W1) and np.array_equal(net.b1[0, 0], p.b1)
    assert (net.depth, net.stages, net.width, net.dim) == (1, 1, 6, 2)


def test_blocks_sample_slab_holding_midpoint():
    # Constant θ, 2 slabs, 4 blocks: blocks 1-2 in slab 0, blocks 3-4 in slab 1, for every stage
    # (the rk4 stage at c = 1 sits on the slab time but must keep the block's slab).
    model, theta = random_model(slabs=2)
    nodes = model.unpack(theta)
    net = resnet_from_velocity(model, theta, 4, "rk4")
    for k in range(4):
        for i in range(4):
            assert np.array_equal(net.W1[k, i], nodes[k // 2].W1)
            assert np.array_equal(net.W2[k, i], 0.25 * nodes[k // 2].W2)


def test_input_scaling_is_applied_first():
    model, theta = random_model()
    scale, shift = np.array([0.5, 2.0]), np.array([0.1, -0.2])
    net = resnet_from_velocity(model, theta, 3, "midpoint", input_scale=scale, input_shift=shift)
    plain = resnet_from_velocity(model, theta, 3, "midpoint")
    x_omega = interior_points(model.domain, 20)
    x_data = (x_omega - shift) / scale
    assert np.allclose(flow_map(net, x_data), flow_map(plain, x_omega), atol=1e-14)


def test_output_layer_equals_make_terminal():
    x = interior_points(DOMAINS["box3"], 30)
    for kind, params in [("softmax", {"num_components": 3, "seed": 4}),
                         ("linear", {"weights": [[1.0, 2.0, 3.0]], "bias": [0.5],
                                     "num_components": 1}),
                         ("sigmoid", {"seed": 1, "scale": 2.0})]:
        out = output_layer(kind, 3, **params)
        assert np.allclose(out(x), make_terminal(kind, 3, **params)(x), atol=1e-15), kind
    with pytest.raises(InputError, match="gaussian"):
        output_layer("gaussian", 3)


# ---- convergence to the characteristics -------------------------------------------------------


def rotation_model(dim, eps=1e-3):
    """v = χ(x) J tanh(ε x) / ε ≈ χ(x) J x on the unit disk/ball: a rotation slowed to 0 at ∂Ω."""
    dom = Ball((0.0,) * dim, 1.0)
    model = VelocityModel(dim, dim, 1, 2.0, "tanh", dom)
    J = np.zeros((dim, dim))
    J[0, 1], J[1, 0] = -1.0, 1.0
    theta = model.pack([Params(W1=eps * np.eye(dim), b1=np.zeros(dim), W2=J / eps,
                               b2=np.zeros(dim))])
    return model, theta


@pytest.mark.parametrize("dim", [2, 3])
def test_rotation_like_field_converges_to_characteristics(dim):
    model, theta = rotation_model(dim)
    x0 = interior_points(model.domain, 200)
    q = reference(model, theta, x0)
    assert np.max(np.abs(q - x0)) > 0.5  # it does move
    errors = [np.max(np.abs(flow_map(resnet_from_velocity(model, theta, n), x0) - q))
              for n in (8, 32, 128, 512)]
    print(f"rotation {dim}D euler errors: {errors}")
    assert all(b < 0.3 * a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 5e-3


# Table-driven: scheme, depths, minimal fitted order (measured: euler 0.96-1.02, midpoint
# 1.92-2.03, rk4 3.91-4.03 on these fields; the error of rk4 at N = 64 is ~5e-7, far above
# the reference's ~1e-12).
ORDERS = [("euler", [32, 64, 128, 256], 0.9), ("midpoint", [32, 64, 128, 256], 1.8),
          ("rk4", [8, 16, 32, 64], 3.5)]


@pytest.mark.slow
@pytest.mark.parametrize("domain, layers", [("box2", 2), ("disk", 2), ("box3", 2), ("ball3", 2),
                                           ("box2", 1), ("ball3", 1)])  # 1: field.kind = "mlp1"
def test_observed_orders(domain, layers):
    model, theta = random_model(domain, layers=layers)
    x0 = interior_points(model.domain, 100)
    q = reference(model, theta, x0)
    for scheme, depths, minimum in ORDERS:
        rows = depth_table(model, theta, x0, q, depths, scheme)
        errors = [r.max_error for r in rows]
        rate = fitted_order(1.0 / np.asarray(depths), errors)
        print(f"{domain} {scheme}: errors {np.array(errors)}, order {rate:.2f}")
        assert rate >= minimum, f"{scheme} on {domain}: order {rate:.2f} < {minimum}"


def test_euler_first_order_when_blocks_straddle_slabs():
    # 3 slabs, N = 4 … 64 blocks: block boundaries never all meet the slab times.
    model, theta = random_model(slabs=3)
    x0 = interior_points(model.domain, 100)
    q = reference(model, theta, x0)
    depths = [4, 8, 16, 32, 64]
    rows = depth_table(model, theta, x0, q, depths, "euler")
    rate = fitted_order(1.0 / np.asarray(depths), [r.max_error for r in rows])
    assert rate >= 0.9, f"euler across slab times: order {rate:.2f}"


@pytest.mark.parametrize("scheme,depth", [("euler", 128), ("midpoint", 16), ("rk4", 8)])
def test_label_agreement(scheme, depth):
    model, theta = random_model("box2", seed=3)  # a field that changes 32% of the labels
    out = output_layer("softmax", 2, num_components=3, seed=2)
    x0 = interior_points(model.domain, 2000)
    q = reference(model, theta, x0)
    row = depth_table(model, theta, x0, q, [depth], scheme, out)[0]
    print(f"{scheme} N={depth}: error {row.max_error:.2e}, agreement {row.label_agreement:.4f}")
    assert row.label_agreement >= 0.99
    assert np.mean(labels(out(x0)) == labels(out(q))) < 0.9  # the flow changes the labels


# ---- ONNX ---------------------------------------------------------------------------------------


ONNX_CASES = [("box2", "tanh", "euler", "softmax", 2),
              ("disk", "softplus", "midpoint", "sigmoid", 2),
              ("box3", "relu", "rk4", "linear", 2),
              ("ball3", "sigmoid", "rk4", "softmax", 2),
              # the one-layer field (field.kind = "mlp1"): exported with W2 = s I, b2 = 0
              ("box2", "relu", "euler", "softmax", 1),
              ("box3", "tanh", "midpoint", "linear", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("domain,act,scheme,kind,layers", ONNX_CASES)
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_onnxruntime_equals_numpy(tmp_path, domain, act, scheme, kind, layers, dtype, tol):
    model, theta = random_model(domain, act, layers=layers)
    d = model.dim
    params = {"seed": 3} if kind == "sigmoid" else {"seed": 3, "num_components": 2}
    net = resnet_from_velocity(model, theta, 12, scheme, output=output_layer(kind, d, **params),
                               input_scale=0.5, input_shift=np.linspace(-0.1, 0.1, d))
    proto = to_onnx(net, dtype)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17 and OPSET >= 17
    assert proto.graph.node[0].op_type == "Mul" and proto.graph.node[0].input[0] == "x"
    path = save_onnx(net, tmp_path / "net.onnx", dtype)
    session = load_onnx_session(path, dim=d)
    x_data = (interior_points(model.domain, 300) - net.input_shift) / net.input_scale
    out, x_n = session.run(x_data)
    assert out.dtype == np.dtype(dtype)
    assert np.max(np.abs(out - forward(net, x_data))) <= tol
    assert np.max(np.abs(x_n - flow_map(net, x_data))) <= tol
    assert session.metadata["input_scaling"]["scale"] == [0.5] * d


def test_onnx_float64_keeps_factors_near_one(tmp_path):
    # onnxruntime drops a one-element Mul factor that rounds to 1 in float32, even in a float64
    # graph: a radius 1 + 1e-9 once cost 1.6e-9.
    dom = Ball((0.0, 0.0), 1.0 + 1e-9)
    model = VelocityModel(2, 4, 1, 1.0, "tanh", dom)
    net = resnet_from_velocity(model, model.init(0, 2.0), 3, "rk4", input_scale=1.0 + 1e-9)
    session = load_onnx_session(save_onnx(net, tmp_path / "net.onnx", "float64"))
    x = interior_points(dom, 100)
    assert np.max(np.abs(session.run(x)[1] - flow_map(net, x))) <= 1e-12


def test_onnx_covers_every_activation():
    # ONNX_CASES run every activation: a new one must get an ONNX export and a case.
    assert {"relu", "tanh", "softplus", "sigmoid"} == set(ACTIVATIONS)


# ---- npz ----------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    model, theta = random_model("ball3", "softplus")
    out = output_layer("softmax", 3, num_components=4, seed=1)
    net = resnet_from_velocity(model, theta, 5, "midpoint", output=out, input_scale=[1, 2, 3])
    path = save_npz(net, tmp_path / "net")
    assert path.name == "net.npz"
    back = load_npz(path)
    x = interior_points(model.domain, 50) / np.array([1, 2, 3])
    assert np.array_equal(forward(back, x), forward(net, x))
    meta = json.loads(str(np.load(path)["meta"]))
    assert meta["format"] == "transport-resnet" and meta["version"] == FORMAT_VERSION
    assert (meta["dim"], meta["depth"], meta["scheme"], meta["activation"]) == (3, 5, "midpoint",
                                                                               "softplus")
    assert meta["domain"] == {"kind": "ball", "center": [0.0, 0.0, 0.0], "radius": 1.0}
    assert meta["input_scaling"]["scale"] == [1.0, 2.0, 3.0] and meta["T"] == 1.0
    assert "time" not in meta  # θ is constant on slabs: nothing to record
    assert back.source == str(path)


def rewritten_meta(path, new_path, **changes):
    """A copy of the npz at ``path`` with its metadata updated by ``changes``."""
    with np.load(path) as data:
        entries = {name: data[name] for name in data.files}
    meta = {**json.loads(str(entries.pop("meta"))), **changes}
    np.savez(new_path, meta=np.array(json.dumps(meta)), **entries)
    return new_path


def test_files_recording_the_time_mode(tmp_path, small_net):
    # Files written while the velocity could also be linear in time record "time": "constant"
    # ones still load; a net of a field linear in time is refused, by name.
    path = save_npz(small_net, tmp_path / "net.npz")
    x = interior_points(small_net.domain, 20)
    old = load_npz(rewritten_meta(path, tmp_path / "constant.npz", time="constant"))
    assert np.array_equal(forward(old, x), forward(small_net, x))
    linear = rewritten_meta(path, tmp_path / "linear.npz", time="linear")
    with pytest.raises(InputError, match="time = 'linear'") as err:
        load_npz(linear)
    assert err.value.source == str(linear)

    proto = to_onnx(small_net)
    entry = next(p for p in proto.metadata_props if p.key == "transport_resnet")
    entry.value = json.dumps({**json.loads(entry.value), "time": "linear"})
    onnx.save_model(proto, str(tmp_path / "linear.onnx"))
    with pytest.raises(InputError, match="time = 'linear'"):
        load_onnx_session(tmp_path / "linear.onnx")
    entry.value = json.dumps({**json.loads(entry.value), "time": "constant"})
    onnx.save_model(proto, str(tmp_path / "constant.onnx"))
    assert np.allclose(load_onnx_session(tmp_path / "constant.onnx")(x), forward(small_net, x), atol=1e-5)


def test_npz_version_1_still_loads(tmp_path):
    # Version 1 (before solver.resnet.formats) named the JSON entry "metadata" and its version
    # key "format_version"; the arrays were the same.
    model, theta = random_model("disk")
    net = resnet_from_velocity(model, theta, 3, "rk4", input_shift=[0.1, -0.2])
    with np.load(save_npz(net, tmp_path / "new.npz")) as data:
        entries = {name: data[name] for name in data.files}
    meta = json.loads(str(entries.pop("meta")))
    meta["format_version"] = meta.pop("version") - 1
    old = tmp_path / "old.npz"
    np.savez(old, metadata=np.array(json.dumps(meta)), **entries)
    x = interior_points(model.domain, 40)
    assert np.array_equal(forward(load_npz(old), x), forward(net, x))


def test_truncated_or_empty_npz_names_the_file(tmp_path, small_net):
    data = save_npz(small_net, tmp_path / "net.npz").read_bytes()
    truncated, empty = tmp_path / "truncated.npz", tmp_path / "empty.npz"
    truncated.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    for path in (truncated, empty):
        with pytest.raises(InputError, match="cannot read it as .npz") as err:
            load_npz(path)
        assert err.value.source == str(path)


def test_parse_formats():
    assert parse_formats("onnx") == ["onnx"]
    assert parse_formats(" NPZ, onnx,npz ") == ["npz", "onnx"]
    assert set(FORMATS) == {"onnx", "npz"}
    for text in ("", " , ", "bogus", "onnx,bogus"):
        with pytest.raises(InputError, match=f"got {text!r}"):
            parse_formats(text)


# ---- errors -------------------------------------------------------------------------------------


@pytest.fixture
def small_net():
    model, theta = random_model()
    return resnet_from_velocity(model, theta, 2, output=output_layer("softmax", 2, seed=0))


def test_not_an_exported_net(tmp_path, small_net):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a net\n")
    bare = tmp_path / "bare.npz"
    np.savez(bare, W1=np.zeros(3))
    other = tmp_path / "other.npz"
    np.savez(other, metadata=np.array(json.dumps({"format": "something-else"})))
    for path, fragment in [(text, "cannot read it as .npz"), (bare, "no 'meta'"),
                           (other, "something-else"), (tmp_path / "missing.npz", "no such file")]:
        with pytest.raises(InputError, match=fragment) as err:
            load_npz(path)
        assert str(path) in str(err.value)

    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 2])]))
    foreign = tmp_path / "foreign.onnx"
    onnx.save_model(plain, str(foreign))
    for path, fragment in [(text, "not an exported ResNet"), (foreign, "no 'transport_resnet'"),
                           (tmp_path / "missing.onnx", "no such file")]:
        with pytest.raises(InputError, match=fragment) as err:
            load_onnx_session(path)
        assert str(path) in str(err.value)


def test_wrong_input_dimension(tmp_path, small_net):
    path = save_onnx(small_net, tmp_path / "net.onnx")
    with pytest.raises(InputError, match="takes 2-dimensional input, expected 3"):
        load_onnx_session(path, dim=3)
    session = load_onnx_session(path)
    with pytest.raises(InputError, match=r"shape \(n, 2\).*got shape \(4, 3\)"):
        session(np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"shape \(n, 2\).*got shape \(4, 3\)"):
        forward(small_net, np.zeros((4, 3)))
    loaded = load_npz(save_npz(small_net, tmp_path / "net.npz"))
    with pytest.raises(InputError, match=r"net\.npz.*got shape \(5,\)"):
        forward(loaded, np.zeros(5))


def test_bad_arguments(small_net):
    model, theta = random_model()
    with pytest.raises(InputError, match=r'Invalid scheme "rk3". Must be one of'):
        resnet_from_velocity(model, theta, 4, "rk3")
    for depth in (0, 2.0, True):
        with pytest.raises(InputError, match="depth must be an integer >= 1"):
            resnet_from_velocity(model, theta, depth)
    with pytest.raises(InputError, match="output must be an OutputLayer"):
        resnet_from_velocity(model, theta, 2, output=make_terminal("softmax", 2))
    with pytest.raises(InputError, match=r"output weights must have shape \(K, 2\)"):
        resnet_from_velocity(model, theta, 2, output=OutputLayer("linear", np.eye(3), np.zeros(3)))
    with pytest.raises(InputError, match="dtype"):
        to_onnx(small_net, "float16")
    with pytest.raises(InputError, match="scale must be nonzero"):
        resnet_from_velocity(model, theta, 2, input_scale=[1.0, 0.0])
    assert isinstance(small_net, ResNet) and set(SCHEMES) == {"euler", "midpoint", "rk4"}
