"""Reading a plain net (``solver.plain2resnet.plainnet.PlainNet``) from npz, ONNX or a fitted scikit-learn MLP.

npz keys (``save_npz`` writes them, ``load_npz`` reads them):

    W0, b0, W1, b1, …, W{L-1}, b{L-1}   W_k shape (n_{k+1}, n_k), b_k shape (n_{k+1},)
    activations                         str array, shape (L,): identity | relu | leaky_relu | tanh | sigmoid
    slopes        (optional)            float, shape () or (L,): leaky_relu's negative slope (0.01)
    output        (optional)            str: identity | softmax | logistic (default identity)

ONNX: a chain of ``Gemm`` (or ``MatMul`` [+ ``Add``]) nodes with constant weights, each
optionally followed by one of ``Relu``, ``LeakyRelu``, ``Tanh``, ``Sigmoid``; ``Identity`` nodes
are skipped and a final ``Softmax`` becomes the output function. Any other op is refused.

Pickle and joblib files are never read: unpickling runs code from the file. A fitted
``MLPClassifier``/``MLPRegressor`` is converted in Python with ``from_sklearn``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from solver.errors import InputError
from solver.resnet.formats import read_npz
from solver.model.activations import DEFAULT_LEAKY_SLOPE, ONNX_OPS
from solver.plain2resnet.plainnet import Layer, PlainNet

ONNX_ACTIVATIONS = {op: name for name, op in ONNX_OPS.items()}  # ONNX operator -> activation
SKLEARN_ACTIVATIONS = {
    "identity": "identity",
    "relu": "relu",
    "tanh": "tanh",
    "logistic": "sigmoid",
}


def load_plain_net(path: str | Path) -> PlainNet:
    """Read a plain net from an ``.npz`` or ``.onnx`` file.

    Raises:
        InputError: naming the file, for any other suffix (pickle/joblib in particular), a
            missing file, or a file that is not a supported MLP.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle", ".joblib"):
        raise InputError(
            "pickle/joblib files are not loaded (loading one runs code from the file); convert a "
            "fitted scikit-learn MLP in Python with solver.plain2resnet.plainnet_io.from_sklearn and save_npz",
            str(path),
        )
    if suffix not in (".npz", ".onnx"):
        raise InputError(f"expected an .npz or .onnx plain net, got suffix {suffix!r}", str(path))
    if not path.is_file():
        raise InputError("no such file", str(path))
    if path.stat().st_size == 0:
        raise InputError(f"the file is empty: not a plain net ({suffix})", str(path))
    return load_npz(path) if suffix == ".npz" else load_onnx(path)


def from_sklearn(model) -> PlainNet:
    """The plain net of a fitted ``MLPClassifier`` or ``MLPRegressor`` (not a file: no unpickling).

    Hidden layers get ``model.activation``; the last layer is affine (identity) and
    ``model.out_activation_`` becomes the output function. For a multi-class classifier,
    ``PlainNet.predict`` equals ``predict_proba``; for a binary one it gives the probability of
    class 1, the second column of ``predict_proba``.
    """
    for attribute in ("coefs_", "intercepts_", "activation", "out_activation_"):
        if not hasattr(model, attribute):
            raise InputError(
                "expected a fitted scikit-learn MLPClassifier/MLPRegressor, got "
                f"{type(model).__name__} without {attribute}"
            )
    if model.activation not in SKLEARN_ACTIVATIONS:
        raise InputError(
            f'unsupported scikit-learn activation "{model.activation}"; '
            f"expected one of {list(SKLEARN_ACTIVATIONS)}"
        )
    hidden = SKLEARN_ACTIVATIONS[model.activation]
    count = len(model.coefs_)
    # scikit-learn stores coefs_[k] as (n_in, n_out): x @ coefs_[k]; W_k of eq. 18 is its transpose.
    layers = [
        Layer(
            np.asarray(w, dtype=float).T,
            np.asarray(b, dtype=float),
            hidden if k < count - 1 else "identity",
        )
        for k, (w, b) in enumerate(zip(model.coefs_, model.intercepts_))
    ]
    return PlainNet(tuple(layers), output=model.out_activation_)


def save_npz(net: PlainNet, path: str | Path) -> Path:
    """Write ``net`` with the npz keys of this module's docstring; returns the path."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for k, layer in enumerate(net.layers):
        arrays[f"W{k}"] = layer.weight
        arrays[f"b{k}"] = layer.bias
    arrays["activations"] = np.array([layer.activation for layer in net.layers])
    arrays["slopes"] = np.array([layer.slope for layer in net.layers])
    arrays["output"] = np.array(net.output)
    np.savez(path, **arrays)
    return path


def load_npz(path: str | Path) -> PlainNet:
    """Read a plain net from the npz keys of this module's docstring (never unpickles)."""
    source = str(path)
    arrays = read_npz(path, "a plain-net npz")
    count = 0
    while f"W{count}" in arrays:
        count += 1
    if count == 0:
        raise InputError(
            f"not a plain-net npz: no key W0 (keys: {sorted(arrays)}); expected W0, b0, …, activations",
            source,
        )
    missing = [f"b{k}" for k in range(count) if f"b{k}" not in arrays] + (
        ["activations"] if "activations" not in arrays else []
    )
    if missing:
        raise InputError(f"missing keys {missing}", source)
    activations = np.atleast_1d(arrays["activations"])
    if activations.dtype.kind != "U" or activations.shape != (count,):
        raise InputError(
            f"'activations' must be {count} strings, one per layer, got {activations!r}", source
        )
    slopes = np.broadcast_to(
        np.asarray(arrays.get("slopes", DEFAULT_LEAKY_SLOPE), dtype=float), (count,)
    )
    output = str(arrays.get("output", "identity"))
    try:
        layers = [
            Layer(
                _float_array(arrays, f"W{k}", source),
                _float_array(arrays, f"b{k}", source),
                str(activations[k]),
                float(slopes[k]),
            )
            for k in range(count)
        ]
        return PlainNet(tuple(layers), output=output)
    except InputError as error:
        if error.source:
            raise
        raise InputError(str(error), source) from None


def _float_array(arrays: dict[str, np.ndarray], key: str, source: str) -> np.ndarray:
    value = arrays[key]
    if value.dtype.kind not in "fiu":
        raise InputError(f"key {key} must be numeric, got dtype {value.dtype}", source)
    return value.astype(float)


def load_onnx(path: str | Path) -> PlainNet:
    """Read a plain net from an ONNX chain of Gemm/MatMul(+Add) and activation nodes.

    Raises:
        InputError: naming the file and, for an unsupported node, its op type and name.
    """
    source = str(path)
    graph, constants, current = _onnx_graph(source)
    layers: list[list] = []  # [W, b, activation, slope] per layer; the activation set later
    output = "identity"
    for node in graph.node:
        if node.op_type in ("Constant", "Identity"):
            if node.op_type == "Identity" and node.input and node.input[0] == current:
                current = node.output[0]
            continue
        where = f"node {node.name or '?'} ({node.op_type})"
        if not node.input or node.input[0] != current:
            raise InputError(
                f"{where} does not continue the chain from {current!r}: "
                "only a plain feed-forward chain is supported",
                source,
            )
        if output != "identity":
            raise InputError(f"{where} follows the final Softmax", source)
        output = _chain_node(node, layers, constants, where, source)
        current = node.output[0]
    if current != graph.output[0].name:
        raise InputError(
            f"the chain ends at {current!r}, not at the graph output {graph.output[0].name!r}",
            source,
        )
    if not layers:
        raise InputError("no Gemm or MatMul node: not an MLP", source)
    try:
        return PlainNet(tuple(Layer(w, b, a, s) for w, b, a, s in layers), output=output)
    except InputError as error:
        raise InputError(str(error), source) from None


def _onnx_graph(source: str):
    """The graph of the ONNX file ``source``, its constants by name, and its one input's name."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(source)
    except Exception as error:  # onnx raises DecodeError, ValueError … for a non-ONNX file
        raise InputError(f"not an ONNX model ({type(error).__name__}: {error})", source) from None
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(
                onnx.helper.get_attribute_value(node.attribute[0])
            )
    inputs = [i.name for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InputError(
            f"expected one input and one output, got inputs {inputs} and {len(graph.output)} outputs",
            source,
        )
    return graph, constants, inputs[0]


def _chain_node(node, layers: list[list], constants: dict, where: str, source: str) -> str:
    """Take one node of the chain into ``layers``; returns the output function it sets
    ("softmax" for a Softmax, else "identity")."""
    import onnx

    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        layers.append([*_gemm(node, attributes, constants, where, source), "identity",
                       DEFAULT_LEAKY_SLOPE])
    elif node.op_type == "MatMul":
        weight = _matrix(constants, node.input[1], where, source)
        layers.append([weight.T, np.zeros(weight.shape[1]), "identity", DEFAULT_LEAKY_SLOPE])
    elif node.op_type == "Add":
        bias = _constant(constants, node.input[1], where, source)
        if not layers or layers[-1][2] != "identity" or np.any(layers[-1][1]):
            raise InputError(
                f"{where}: an Add is supported only as the bias right after a MatMul", source
            )
        layers[-1][1] = _bias(bias, layers[-1][0].shape[0], where, source)
    elif node.op_type in ONNX_ACTIVATIONS:
        if not layers or layers[-1][2] != "identity":
            raise InputError(f"{where}: an activation must follow a Gemm or MatMul", source)
        layers[-1][2] = ONNX_ACTIVATIONS[node.op_type]
        layers[-1][3] = float(attributes.get("alpha", DEFAULT_LEAKY_SLOPE))
    elif node.op_type == "Softmax":
        if attributes.get("axis", -1) not in (-1, 1):
            raise InputError(
                f"{where}: Softmax over axis {attributes['axis']}, expected the feature axis -1",
                source,
            )
        return "softmax"
    else:
        raise InputError(
            f"unsupported ONNX op {node.op_type} ({where}); a plain net is made of Gemm, MatMul, "
            f"Add, {', '.join(ONNX_ACTIVATIONS)}, a final Softmax and Identity",
            source,
        )
    return "identity"


def _constant(constants: dict[str, np.ndarray], name: str, where: str, source: str) -> np.ndarray:
    if name not in constants:
        raise InputError(
            f"{where}: {name!r} is not a constant initializer; only constant weights are supported",
            source,
        )
    return np.asarray(constants[name], dtype=float)


def _matrix(constants: dict[str, np.ndarray], name: str, where: str, source: str) -> np.ndarray:
    """The constant weight ``name``, which must be 2-D."""
    weight = _constant(constants, name, where, source)
    if weight.ndim != 2:
        raise InputError(f"{where}: weight {name} has shape {weight.shape}, expected 2-D", source)
    return weight


def _bias(value: np.ndarray, width: int, where: str, source: str) -> np.ndarray:
    if value.size == 1:
        return np.full(width, float(value.reshape(-1)[0]))
    if value.size != width or value.ndim > 2:
        raise InputError(f"{where}: bias of shape {value.shape}, expected ({width},)", source)
    return value.reshape(width)


def _gemm(
    node, attributes: dict, constants: dict, where: str, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """W, b of Y = alpha·A·B' + beta·C with A the chain (transA = 0)."""
    if attributes.get("transA", 0):
        raise InputError(
            f"{where}: transA=1 is not supported (the batch must be the first axis)", source
        )
    b_matrix = _matrix(constants, node.input[1], where, source)
    # Y = A B' with B' = B^T if transB: then W = B, else W = B^T (W acts on columns, eq. 18).
    weight = attributes.get("alpha", 1.0) * (
        b_matrix if attributes.get("transB", 0) else b_matrix.T
    )
    bias = np.zeros(weight.shape[0])
    if len(node.input) > 2 and node.input[2]:
        bias = attributes.get("beta", 1.0) * _bias(
            _constant(constants, node.input[2], where, source), weight.shape[0], where, source
        )
    return weight, bias
