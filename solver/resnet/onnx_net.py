"""The exported ResNet (``solver.resnet.net``) as an ONNX graph, and a checked onnxruntime session.

The graph is the numpy forward pass node by node (built with ``solver.resnet.onnx_builder``,
which fixes the opset and IR version; float32 or float64):

    x (n, d) ─ Mul(scale) ─ Add(shift) ─ block_1 ─ … ─ block_N ─┬─ Gemm(A, b) ─ link ─ "output"
                                                                 └─ "flow": x_N (n, d)

Each stage of a block is Gemm(W1, b1) ─ activation ─ Gemm(s W2, s b2), times the cutoff χ(y)
(eq. 17 with the χ of the velocity model). The input scaling x_Ω = scale ⊙ x_data + shift is
the first node; the net's JSON metadata (``ResNet.metadata()``) is the model's metadata entry
``transport_resnet``. Equal parameter arrays share one initializer (θ is constant on slabs, so the
stages of a block repeat theirs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from solver.model.domain import Ball, Box
from solver.errors import InputError
from solver.resnet.net import ResNet, check_input, noise_scales, parse_metadata
from solver.resnet.onnx_builder import DTYPES, OnnxGraph, float_dtype
from solver.rundir.files import atomic_file

METADATA_KEY = "transport_resnet"
LINKS = {  # the output layer's link: ONNX op and attributes
    "linear": ("Identity", {}),
    "softmax": ("Softmax", {"axis": 1}),
    "sigmoid": ("Sigmoid", {}),
}


def _cutoff(g: OnnxGraph, net: ResNet, y: str, tag: str) -> str:
    """χ(y), shape=(n, 1): the domain's cutoff exactly as ``domain.cutoff`` computes it."""
    dom = net.domain
    if isinstance(dom, Box):
        a, b = np.asarray(dom.lower), np.asarray(dom.upper)
        # Π_i 4 (y_i − a_i)(b_i − y_i) / (b_i − a_i)²
        lo = g.node("Sub", y, g.constant(a, name="box_lower"))
        hi = g.node("Sub", g.constant(b, name="box_upper"), y)
        factor = g.node("Mul", g.node("Mul", lo, hi),
                        g.constant(4.0 / (b - a) ** 2, name="box_scale"))
        return g.node("ReduceProd", factor, out=f"{tag}.chi", axes=[1], keepdims=1)
    if isinstance(dom, Ball):
        # 1 − |(y − c) / R|², 1/R a vector (OnnxGraph.vector): a radius R = 1 + 1e-9 must count.
        r = g.node("Sub", y, g.constant(np.asarray(dom.center), name="ball_center"))
        r = g.node("Mul", r, g.vector(1.0 / dom.radius, net.dim, name="ball_inv_radius"))
        axis = g.constant(np.array([1], dtype=np.int64), name="axis_1")
        r2 = g.node("ReduceSum", g.node("Mul", r, r), axis, keepdims=1)
        return g.node("Sub", g.constant(1.0, name="one"), r2, out=f"{tag}.chi")
    raise InputError(f"cannot export the cutoff of domain {dom!r}: expected a Box or Ball")


def _reflect(g: OnnxGraph, net: ResNet, x: str, tag: str) -> str:
    """x mirrored back into Ω, as ``Box.reflect`` / ``Ball.reflect`` compute it."""
    dom = net.domain
    if isinstance(dom, Box):
        a, w = np.asarray(dom.lower), np.subtract(dom.upper, dom.lower)
        two_w = g.constant(2.0 * w, name="box_2w")
        # u = (x − a) mod 2w in [0, 2w): fmod twice (ONNX's float Mod keeps the dividend's sign)
        u = g.node("Mod", g.node("Sub", x, g.constant(a, name="box_lower")), two_w, fmod=1)
        u = g.node("Mod", g.node("Add", u, two_w), two_w, fmod=1)
        width = g.constant(w, name="box_width")
        folded = g.node("Abs", g.node("Sub", width, u))
        return g.node("Sub", g.node("Add", g.constant(a, name="box_lower"), width), folded,
                      out=f"{tag}.reflected")
    if isinstance(dom, Ball):
        c = g.constant(np.asarray(dom.center), name="ball_center")
        y = g.node("Sub", x, c)
        axis = g.constant(np.array([1], dtype=np.int64), name="axis_1")
        r = g.node("Sqrt", g.node("ReduceSum", g.node("Mul", y, y), axis, keepdims=1))
        R = g.constant(np.array([dom.radius]), name="ball_radius")
        folded = g.node("Min", g.node("Abs", g.node("Sub", g.constant(np.array([2.0 * dom.radius]),
                                                                       name="ball_diameter"), r)), R)
        factor = g.node("Where", g.node("Greater", r, R), g.node("Div", folded, r),
                        g.constant(np.array([1.0]), name="one_1"))
        return g.node("Add", c, g.node("Mul", y, factor), out=f"{tag}.reflected")
    raise InputError(f"cannot export the reflection at the boundary of domain {dom!r}")


def _noise(g: OnnxGraph, net: ResNet, k: int, x: str, xi: str | None) -> str:
    """x_k + √(2ε s_k) ξ_k, reflected into Ω: ξ_k from RandomNormalLike (fresh on every run),
    or row k of the input ``xi`` (shape (N, n, d); for checking against numpy)."""
    tag = f"block{k + 1}.noise"
    if xi is None:
        draw = g.node("RandomNormalLike", x, out=f"{tag}.xi")
    else:
        # (the builder stores constants at least 1-D: Gather row [k], then drop that axis)
        row = g.node("Gather", xi, g.constant(np.array([k], dtype=np.int64), name=f"index_{k}"), axis=0)
        draw = g.node("Squeeze", row, g.constant(np.array([0], dtype=np.int64), name="axis_0"),
                      out=f"{tag}.xi")
    scaled = g.node("Mul", draw, g.vector(noise_scales(net)[k], net.dim, name=f"{tag}.scale"))
    return _reflect(g, net, g.node("Add", x, scaled), tag)


def _block(g: OnnxGraph, net: ResNet, k: int, x: str) -> str:
    """Block k + 1 (one step of the scheme) applied to ``x``; returns x_{k+1}.

    Its scalar factors a_ij, b_i are one-element constants: the tableaux's are far from 0 and 1
    or exactly 1, so onnxruntime's NoopElimination (``solver.resnet.onnx_builder``) is harmless.
    """
    tab = net.tableau
    stages: list[str] = []
    for i in range(net.stages):
        tag = f"block{k + 1}.stage{i + 1}"
        y = x
        for j, a_ij in enumerate(tab.a[i]):
            if a_ij != 0.0:
                term = g.node("Mul", stages[j], g.constant(a_ij, name=f"a_{i + 1}{j + 1}"))
                y = g.node("Add", y, term)
        z = g.node("Gemm", y, g.constant(net.W1[k, i], name=f"{tag}.W1"),
                   g.constant(net.b1[k, i], name=f"{tag}.b1"), transB=1)
        o = g.node("Gemm", g.activation(net.activation, z),
                   g.constant(net.W2[k, i], name=f"{tag}.W2_scaled"),
                   g.constant(net.b2[k, i], name=f"{tag}.b2_scaled"), transB=1)
        stages.append(g.node("Mul", o, _cutoff(g, net, y, tag), out=f"{tag}.K"))
    for i, b_i in enumerate(tab.b):
        if b_i != 0.0:
            term = stages[i] if b_i == 1.0 else g.node(
                "Mul", stages[i], g.constant(b_i, name=f"b_{i + 1}"))
            x = g.node("Add", x, term, out=f"block{k + 1}.add{i + 1}")
    return x


def _input(g: OnnxGraph, net: ResNet) -> str:
    """The documented input scaling x_Ω = scale ⊙ x_data + shift, or the learned input layer
    x_Ω = shift + scale ⊙ tanh(W x + c) (Gemm, Tanh, Mul, Add; a ball: the radial squash
    tanh(|w|) w/|w|, |w| kept from 0 by the smallest normal number): the graph's first nodes."""
    x = g.input("x", net.input_dim)
    if net.input_weights is None:
        x = g.node("Mul", x, g.constant(net.input_scale, name="input_scale"), out="input_scaling.mul")
        return g.node("Add", x, g.constant(net.input_shift, name="input_shift"), out="input_scaling.add")
    w = g.node("Gemm", x, g.constant(net.input_weights, name="input.W"), g.constant(net.input_bias, name="input.c"),
               transB=1, out="input.w")
    if net.input_ball:
        r = g.node("Sqrt", g.node("ReduceSumSquare", w, axes=[1], keepdims=1))
        r = g.node("Max", r, g.constant(np.array([np.finfo(g.dtype).tiny]), name="input.tiny"))
        squashed = g.node("Mul", w, g.node("Div", g.node("Tanh", r), r), out="input.squash")
    else:
        squashed = g.node("Tanh", w, out="input.squash")
    x = g.node("Mul", squashed, g.constant(net.input_scale, name="input_scale"), out="input_scaling.mul")
    return g.node("Add", x, g.constant(net.input_shift, name="input_shift"), out="input_scaling.add")


def to_onnx(net: ResNet, dtype: Any = "float32", noise_input: bool = False,
            annotations: dict[str, Any] | None = None) -> onnx.ModelProto:
    """The net as an ONNX model (opset ``OPSET``) that passes ``onnx.checker``.

    Args:
        net: The net.
        dtype: ``"float32"`` or ``"float64"`` (or the numpy types): the input, output and
            parameter type.
        noise_input: for a noisy net (``net.noise`` > 0), take ξ as a second input ``xi`` of
            shape (N, n, d) instead of drawing it with RandomNormalLike (for tests).
        annotations: what the run knows beyond the net (``run_annotations``: the class names,
            the certification), added to the JSON metadata (JSON values).

    Returns:
        The model: input ``x`` shape=(n, d) in data coordinates; outputs ``output`` shape=(n, K)
        (f(x_N): logits, probabilities or x_N) and ``flow`` shape=(n, d) (x_N in Ω).
    """
    g = OnnxGraph(f"transport_resnet_{net.scheme}_{net.depth}", float_dtype(dtype), batch="n")
    x = _input(g, net)
    xi = None
    if net.noise > 0 and noise_input:
        xi = g.input_shape("xi", [net.depth, "n", net.dim])
    for k in range(net.depth):
        x = _block(g, net, k, x)
        if net.noise > 0:
            x = _noise(g, net, k, x, xi)
    out = net.output
    logits = g.node("Gemm", x, g.constant(out.weights, name="output.A"),
                    g.constant(out.bias, name="output.b"), transB=1)
    link, attributes = LINKS[out.kind]
    g.output(g.node(link, logits, out="output", **attributes), "output", out.num_components)
    g.output(x, "flow", net.dim)
    meta = {**net.metadata(), **(annotations or {})}
    meta["onnx_dtype"] = g.dtype.name
    return g.model(
        doc_string=(
            f"ResNet of {net.depth} {net.scheme} blocks of the flow model (Li & Shi, eq. 17) on "
            f"[0, {net.T}]. Input x in data coordinates; x_domain = scale * x + shift (metadata "
            f"'{METADATA_KEY}'). Outputs: 'output' = f(x_N) ({out.kind}), 'flow' = x_N."
            + (f" Stochastic (viscosity {net.noise:g}): every block adds sqrt(2 * viscosity * "
               f"s_k) * N(0, I) (RandomNormalLike) and reflects into the domain; every run is one "
               f"sample: average 'output' over M runs (standard error ~ M^-1/2)."
               if net.noise > 0 else "")
        ),
        metadata={METADATA_KEY: json.dumps(meta)},
    )


def run_annotations(classes: list, metrics: dict | None) -> dict[str, Any]:
    """The metadata a trained model adds to its net: ``classes`` (the label of output k, as text)
    and ``certification`` (whether the PDE and the characteristics agreed at the end of training,
    with the worst numbers of the final check and its tolerances; null without metrics)."""
    certification = None
    if metrics and "check" in metrics:
        sets = [metrics["check"][name] for name in ("train", "test") if metrics["check"][name].get("points")]
        certification = dict(
            certified=bool(metrics["certified"]), reference=metrics["check"].get("reference", "characteristics"),
            max_logit_difference=max((a["max_logit_difference"] for a in sets), default=None),
            label_agreement=min((a["label_agreement"] for a in sets), default=None),
            tolerance=metrics.get("tolerance"), agreement=metrics.get("agreement"))
    return {"classes": [str(c) for c in classes], "certification": certification}


def save_onnx(net: ResNet, path: str | Path, dtype: Any = "float32", annotations: dict[str, Any] | None = None) -> Path:
    """Write ``to_onnx(net, dtype, annotations=annotations)`` to ``path``; returns the path."""
    path = Path(path)
    model = to_onnx(net, dtype, annotations=annotations)
    with atomic_file(path) as f:
        f.write(model.SerializeToString())
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
        self.dim = int(metadata.get("input_dim", metadata["dim"]))  # the features it takes
        self.dtype = np.dtype(metadata["onnx_dtype"])
        self.source = source

    def run(self, x_data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f(x_N) (shape=(n, K)) and x_N (shape=(n, d)) for ``x_data`` (shape=(n, d))."""
        x = check_input(x_data, self.dim, self.source, self.dtype)
        output, flow = self.session.run(["output", "flow"], {"x": x})
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

    src = str(path)
    data, meta = _read_exported(Path(path))
    takes = meta.get("input_dim", meta["dim"])
    if dim is not None and dim != takes:
        raise InputError(f"the net takes {takes}-dimensional input, expected {dim}-dimensional", src)
    try:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise InputError(f"onnxruntime cannot load the exported ResNet: {err}", src) from None
    return OnnxResNet(session, meta, src)


def _read_exported(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The bytes of an exported ResNet's ONNX file and its checked metadata (InputError else)."""
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
    meta = parse_metadata(props[METADATA_KEY], src)
    if meta.get("onnx_dtype") not in DTYPES or not isinstance(meta.get("dim"), int):
        raise InputError(f"exported ResNet metadata has a bad dtype or dim: {meta!r:.200}", src)
    inputs = [i for i in model.graph.input if i.name == "x"]
    shape = [] if not inputs else inputs[0].type.tensor_type.shape.dim
    takes = meta.get("input_dim", meta["dim"])
    if len(shape) != 2 or shape[1].dim_value != takes:
        raise InputError(
            f"exported ResNet graph input 'x' does not have shape (n, {takes}) as its "
            f"metadata says", src
        )
    return data, meta
