"""The exported ResNet (``solver.resnet.net``) as an ONNX graph, and a checked onnxruntime session.

The graph is the numpy forward pass node by node (opset 17, float32 or float64):

    x (n, d) ─ Mul(scale) ─ Add(shift) ─ block_1 ─ … ─ block_N ─┬─ Gemm(A, b) ─ link ─ "output"
                                                                 └─ "flow": x_N (n, d)

Each stage of a block is Gemm(W1, b1) ─ activation ─ Gemm(s W2, s b2), times the cutoff χ(y)
(eq. 17 with the χ of the velocity model). The input scaling x_Ω = scale ⊙ x_data + shift is
the first node; the net's JSON metadata (``ResNet.metadata()``) is the model's metadata entry
``transport_resnet``. Stages that share parameters (``time="constant"``) share initializers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from solver import __version__
from solver.model.domain import Ball, Box
from solver.errors import InputError
from solver.resnet.net import ResNet, _metadata

OPSET = 17
# IR version 8 is the oldest that carries opset 17: the file loads in older runtimes too.
IR_VERSION = 8
METADATA_KEY = "transport_resnet"
DTYPES: dict[str, tuple[type, int]] = {
    "float32": (np.float32, TensorProto.FLOAT),
    "float64": (np.float64, TensorProto.DOUBLE),
}


def _dtype_name(dtype: Any) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise InputError(f'Invalid ONNX dtype "{dtype}". Must be one of {list(DTYPES)}')
    return name


class _GraphBuilder:
    """Collects nodes and (deduplicated) initializers of one dtype."""

    def __init__(self, dtype: str):
        self.np_dtype, self.onnx_dtype = DTYPES[dtype]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._by_value: dict[tuple, str] = {}
        self._count = 0

    def const(self, value: Any, name: str, dtype: type | None = None) -> str:
        """An initializer holding ``value`` (cast to the graph's dtype); reused if seen before."""
        a = np.ascontiguousarray(np.asarray(value, dtype=dtype or self.np_dtype))
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self._by_value:
            self._by_value[key] = name
            self.initializers.append(numpy_helper.from_array(a, name))
        return self._by_value[key]

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        """Append a node; returns its (single) output name."""
        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _cutoff(g: _GraphBuilder, net: ResNet, y: str, tag: str) -> str:
    """χ(y), shape=(n, 1): the domain's cutoff exactly as ``domain.cutoff`` computes it."""
    dom = net.domain
    if isinstance(dom, Box):
        a, b = np.asarray(dom.lower), np.asarray(dom.upper)
        # Π_i 4 (y_i − a_i)(b_i − y_i) / (b_i − a_i)²
        lo = g.op("Sub", [y, g.const(a, "box_lower")])
        hi = g.op("Sub", [g.const(b, "box_upper"), y])
        factor = g.op("Mul", [g.op("Mul", [lo, hi]), g.const(4.0 / (b - a) ** 2, "box_scale")])
        return g.op("ReduceProd", [factor], name=f"{tag}.chi", axes=[1], keepdims=1)
    if isinstance(dom, Ball):
        # 1 − |(y − c) / R|². 1/R is a vector of d entries, not a scalar: onnxruntime's
        # NoopElimination rounds a one-element factor to float32 before comparing it with 1, so
        # Mul(r2, 1/R²) with R = 1 + 1e-9 was dropped in float64 (measured: error 1.6e-9).
        inv_r = np.full(net.dim, 1.0 / dom.radius)
        r = g.op("Sub", [y, g.const(np.asarray(dom.center), "ball_center")])
        r = g.op("Mul", [r, g.const(inv_r, "ball_inv_radius")])
        r2 = g.op("ReduceSum", [g.op("Mul", [r, r]), g.const([1], "axis_1", np.int64)],
                  keepdims=1)
        return g.op("Sub", [g.const(1.0, "one"), r2], name=f"{tag}.chi")
    raise InputError(f"cannot export the cutoff of domain {dom!r}: expected a Box or Ball")


def _activation(g: _GraphBuilder, name: str, z: str) -> str:
    if name == "relu":
        return g.op("Relu", [z])
    if name == "tanh":
        return g.op("Tanh", [z])
    if name == "sigmoid":
        return g.op("Sigmoid", [z])
    if name == "softplus":
        # onnxruntime has no float64 Softplus; max(z, 0) + log(1 + e^{−|z|}) is the stable form
        # of log(1 + e^z) (numpy's logaddexp) in both dtypes.
        tail = g.op("Exp", [g.op("Neg", [g.op("Abs", [z])])])
        log = g.op("Log", [g.op("Add", [g.const(1.0, "one"), tail])])
        return g.op("Add", [g.op("Relu", [z]), log])
    raise InputError(f'activation "{name}" has no ONNX export')


def to_onnx(net: ResNet, dtype: Any = "float32") -> onnx.ModelProto:
    """The net as an ONNX model (opset 17) that passes ``onnx.checker``.

    Args:
        net: The net.
        dtype: ``"float32"`` or ``"float64"`` (or the numpy types): the input, output and
            parameter type.

    Returns:
        The model: input ``x`` shape=(n, d) in data coordinates; outputs ``output`` shape=(n, K)
        (f(x_N): logits, probabilities or x_N) and ``flow`` shape=(n, d) (x_N in Ω).
    """
    name = _dtype_name(dtype)
    g = _GraphBuilder(name)
    d, tab = net.dim, net.tableau
    # The documented input scaling x_Ω = scale ⊙ x_data + shift is the graph's first node.
    x = g.op("Mul", ["x", g.const(net.input_scale, "input_scale")], name="input_scaling.mul")
    x = g.op("Add", [x, g.const(net.input_shift, "input_shift")], name="input_scaling.add")
    for k in range(net.depth):
        stages: list[str] = []
        for i in range(net.stages):
            tag = f"block{k + 1}.stage{i + 1}"
            y = x
            for j, a_ij in enumerate(tab.a[i]):
                if a_ij != 0.0:
                    # Scalar factors are safe from onnxruntime's NoopElimination (see
                    # _cutoff): the tableau's a_ij, b_i are far from 0 and 1 or exactly 1.
                    term = g.op("Mul", [stages[j], g.const(a_ij, f"a_{i + 1}{j + 1}")])
                    y = g.op("Add", [y, term])
            z = g.op("Gemm", [y, g.const(net.W1[k, i], f"{tag}.W1"),
                              g.const(net.b1[k, i], f"{tag}.b1")], transB=1)
            h = _activation(g, net.activation, z)
            o = g.op("Gemm", [h, g.const(net.W2[k, i], f"{tag}.W2_scaled"),
                              g.const(net.b2[k, i], f"{tag}.b2_scaled")], transB=1)
            stages.append(g.op("Mul", [o, _cutoff(g, net, y, tag)], name=f"{tag}.K"))
        for i, b_i in enumerate(tab.b):
            if b_i == 0.0:
                continue
            term = stages[i] if b_i == 1.0 else g.op("Mul", [stages[i], g.const(b_i, f"b_{i + 1}")])
            x = g.op("Add", [x, term], name=f"block{k + 1}.add{i + 1}")
    g.op("Identity", [x], name="flow")
    out = net.output
    logits = g.op("Gemm", [x, g.const(out.weights, "output.A"), g.const(out.bias, "output.b")],
                  transB=1)
    link = {"linear": "Identity", "softmax": "Softmax", "sigmoid": "Sigmoid"}[out.kind]
    g.op(link, [logits], name="output", **({"axis": 1} if link == "Softmax" else {}))

    graph = helper.make_graph(
        g.nodes,
        f"transport_resnet_{net.scheme}_{net.depth}",
        [helper.make_tensor_value_info("x", g.onnx_dtype, ["n", d])],
        [helper.make_tensor_value_info("output", g.onnx_dtype, ["n", out.num_components]),
         helper.make_tensor_value_info("flow", g.onnx_dtype, ["n", d])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="solver",
        producer_version=__version__,
        doc_string=(
            f"ResNet of {net.depth} {net.scheme} blocks of the flow model (Li & Shi, eq. 17) on "
            f"[0, {net.T}]. Input x in data coordinates; x_domain = scale * x + shift (metadata "
            f"'{METADATA_KEY}'). Outputs: 'output' = f(x_N) ({out.kind}), 'flow' = x_N."
        ),
    )
    model.ir_version = IR_VERSION
    meta = net.metadata()
    meta["onnx_dtype"] = name
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    return model


def save_onnx(net: ResNet, path: str | Path, dtype: Any = "float32") -> Path:
    """Write ``to_onnx(net, dtype)`` to ``path``; returns the path."""
    path = Path(path)
    onnx.save_model(to_onnx(net, dtype), str(path))
    return path


class OnnxResNet:
    """An onnxruntime session of an exported net, with its metadata and input checks.

    Attributes:
        session: The ``onnxruntime.InferenceSession``.
        metadata: The net's JSON metadata (``ResNet.metadata()`` plus ``onnx_dtype``).
        dim: The input dimension d.
        dtype: The numpy dtype of the graph's input and outputs.
        source: The file it was loaded from.
    """

    def __init__(self, session: Any, metadata: dict[str, Any], source: str):
        self.session = session
        self.metadata = metadata
        self.dim = int(metadata["dim"])
        self.dtype = DTYPES[metadata["onnx_dtype"]][0]
        self.source = source

    def run(self, x_data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f(x_N) (shape=(n, K)) and x_N (shape=(n, d)) for ``x_data`` (shape=(n, d))."""
        x = np.asarray(x_data)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(
                f"ResNet input must have shape (n, {self.dim}) (the net's input dimension), "
                f"got shape {x.shape}", self.source
            )
        output, flow = self.session.run(["output", "flow"], {"x": x.astype(self.dtype)})
        return output, flow

    def __call__(self, x_data: np.ndarray) -> np.ndarray:
        """f(x_N), shape=(n, K), for ``x_data`` of shape=(n, d)."""
        return self.run(x_data)[0]


def load_onnx_session(path: str | Path, dim: int | None = None, threads: int | None = None) -> OnnxResNet:
    """Open an ONNX file written by ``save_onnx`` in onnxruntime (CPU).

    Args:
        path: The .onnx file.
        dim: The input dimension the caller will feed; None to accept the file's.
        threads: onnxruntime's intra-op threads (e.g. 1 for a one-core timing); None for its
            default (one per physical core).

    Raises:
        InputError: If the file is missing, is not ONNX, is not an exported ResNet (no
            ``transport_resnet`` metadata), or its input dimension is not ``dim``.
    """
    import onnxruntime as ort  # heavy: only when a session is wanted

    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise InputError("no such file (expected a ResNet .onnx written by save_onnx)", src)
    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf raises its own DecodeError (and others) on garbage
        raise InputError(f"not an exported ResNet: cannot parse it as ONNX ({err})", src) from None
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise InputError(
            f"not an exported ResNet: the ONNX model has no '{METADATA_KEY}' metadata", src
        )
    meta = _metadata(props[METADATA_KEY], src)
    if meta.get("onnx_dtype") not in DTYPES or not isinstance(meta.get("dim"), int):
        raise InputError(f"exported ResNet metadata has a bad dtype or dim: {meta!r:.200}", src)
    inputs = [i for i in model.graph.input if i.name == "x"]
    shape = [] if not inputs else inputs[0].type.tensor_type.shape.dim
    if len(shape) != 2 or shape[1].dim_value != meta["dim"]:
        raise InputError(
            f"exported ResNet graph input 'x' does not have shape (n, {meta['dim']}) as its "
            f"metadata says", src
        )
    if dim is not None and dim != meta["dim"]:
        raise InputError(
            f"the net takes {meta['dim']}-dimensional input, expected {dim}-dimensional", src
        )
    try:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise InputError(f"onnxruntime cannot load the exported ResNet: {err}", src) from None
    return OnnxResNet(session, meta, src)
