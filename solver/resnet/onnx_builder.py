"""Building ONNX graphs from numpy arrays: the one builder of the ONNX exporters.

    g = OnnxGraph("resnet", dtype="float32")
    x = g.input("x", width=4)                      # shape ("N", 4), N dynamic
    y = g.node("MatMul", x, g.constant(w.T))       # returns the output's name
    g.output(y, "y", width=3)
    g.save(path)                                   # onnx.checker-checked, opset ``OPSET``

Constants are cast to the graph's dtype (float32 or float64), so one builder writes both.
Integer constants (``Pad`` pads, ``Slice`` starts/ends) stay int64. A constant whose value is
already in the graph is not stored twice: stages that share parameters share initializers.

Every model is opset ``OPSET`` with IR version ``IR_VERSION``: 8 is the oldest IR that carries
opset 17, so the files load in onnxruntime >= 1.14 too (newer onnx releases default higher).

onnxruntime (1.32, measured) has a trap for float64 graphs: its NoopElimination checks a
one-element constant against 0 (Add, Sub) or 1 (Mul, Div) after rounding it to float32, so
``Add(x, 1e-111)`` becomes x and ``Mul(x, 1 − 1e-9)`` becomes x (a disk of radius 1 + 1e-9
once cost an error of 1.6e-9). Use ``vector`` for factors that may be close to 0 or 1: a
constant with d >= 2 equal entries is left alone. A one-element constant is safe only when it
is far from 0 and 1 in float32, or exactly the neutral value (then dropping it changes nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from solver import __version__
from solver.errors import InputError
from solver.model.activations import ONNX_OPS
from solver.resnet.formats import ONNX_DTYPES
from solver.rundir.files import atomic_file

OPSET = 17
IR_VERSION = 8
PRODUCER = "solver"
DTYPES: dict[str, int] = dict(zip(ONNX_DTYPES, (TensorProto.FLOAT, TensorProto.DOUBLE)))


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` ("float32", "float64" or a numpy type) as a numpy dtype; InputError otherwise."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise InputError(f'Invalid ONNX dtype "{dtype}". Must be one of {list(DTYPES)}')
    return np.dtype(name)


class OnnxGraph:
    """An ONNX graph under construction, nodes in topological (insertion) order.

    Args:
        name: the graph's name.
        dtype: float32 or float64 (see ``float_dtype``): the element type of inputs, outputs
            and float constants.
        batch: the name of the dynamic first dimension of inputs and outputs.
    """

    def __init__(self, name: str, dtype: Any = np.float32, batch: str = "N"):
        self.name = name
        self.dtype = float_dtype(dtype)
        self.elem_type = DTYPES[self.dtype.name]
        self.batch = batch
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._by_value: dict[tuple, str] = {}
        self._count = 0

    def fresh(self, stem: str) -> str:
        """A new, unused tensor name starting with ``stem``."""
        while True:
            self._count += 1
            name = f"{stem}_{self._count}"
            if name not in self._names:
                return self._claim(name)

    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"tensor name {name!r} is already used in graph {self.name!r}")
        self._names.add(name)
        return name

    def _value_info(self, name: str, width: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, self.elem_type, [self.batch, width])

    def input(self, name: str, width: int) -> str:
        """Declare a graph input of shape (N, width), N dynamic; returns its name."""
        self.inputs.append(self._value_info(self._claim(name), width))
        return name

    def input_shape(self, name: str, shape: list) -> str:
        """Declare a graph input of the graph's dtype and any ``shape`` (ints, or names for
        dynamic axes); returns its name."""
        self.inputs.append(helper.make_tensor_value_info(self._claim(name), self.elem_type, shape))
        return name

    def output(self, tensor: str, name: str, width: int) -> None:
        """Expose ``tensor`` as the graph output ``name`` of shape (N, width)."""
        if tensor != name:
            tensor = self.node("Identity", tensor, out=name)
        self.outputs.append(self._value_info(name, width))

    def constant(self, value: np.ndarray | float, stem: str = "c", name: str | None = None) -> str:
        """An initializer holding ``value`` (floats cast to the graph's dtype); returns its name:
        ``name`` if given, else a fresh one from ``stem``, or the earlier name of an equal value
        already stored."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        array = np.ascontiguousarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._by_value:
            self._by_value[key] = self._claim(name) if name else self.fresh(stem)
            self.initializers.append(numpy_helper.from_array(array, self._by_value[key]))
        return self._by_value[key]

    def vector(self, value: float, width: int, stem: str = "c", name: str | None = None) -> str:
        """A constant of shape (width,), every entry ``value``: a scalar factor broadcast over the
        features that onnxruntime's NoopElimination cannot mistake for 0 or 1 (module docstring)."""
        return self.constant(np.full(width, float(value)), stem, name)

    def node(self, op: str, *inputs: str, out: str | None = None, **attributes: Any) -> str:
        """Append a node ``op(inputs)`` with one output (also the node's name); returns it."""
        out = self._claim(out) if out else self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attributes))
        return out

    def activation(self, name: str, z: str) -> str:
        """a(z) for an activation with an ONNX operator (``model.activations.ONNX_OPS``; LeakyRelu at
        its default slope) or softplus; InputError for another."""
        if name in ONNX_OPS:
            return self.node(ONNX_OPS[name], z)
        if name == "softplus":
            # onnxruntime has no float64 Softplus; max(z, 0) + log(1 + e^{−|z|}) is the stable
            # form of log(1 + e^z) (numpy's logaddexp) in both dtypes.
            tail = self.node("Exp", self.node("Neg", self.node("Abs", z)))
            log = self.node("Log", self.node("Add", self.constant(1.0, name="one"), tail))
            return self.node("Add", self.node("Relu", z), log)
        raise InputError(f'activation "{name}" has no ONNX export')

    def model(
        self, doc_string: str = "", metadata: dict[str, str] | None = None
    ) -> onnx.ModelProto:
        """The model, checked by ``onnx.checker`` (raises ``onnx.checker.ValidationError``).

        Args:
            doc_string: the model's description.
            metadata: the model's metadata_props (string keys and values).
        """
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            producer_version=__version__,
            doc_string=doc_string,
        )
        model.ir_version = IR_VERSION
        if metadata:
            helper.set_model_props(model, metadata)
        onnx.checker.check_model(model, full_check=True)
        return model

    def save(
        self, path: str | Path, doc_string: str = "", metadata: dict[str, str] | None = None
    ) -> Path:
        """Write the checked model (``model``'s arguments) to ``path``; returns the path."""
        path = Path(path)
        model = self.model(doc_string, metadata)
        with atomic_file(path) as f:
            f.write(model.SerializeToString())
        return path
