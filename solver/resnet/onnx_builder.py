"""Building ONNX graphs from numpy arrays: a small builder shared by the ONNX exporters.

    g = OnnxGraph("resnet", dtype=np.float32)
    x = g.input("x", width=4)                      # shape ("N", 4), N dynamic
    y = g.node("MatMul", x, g.constant(w.T))       # returns the output's name
    g.output(y, "y", width=3)
    g.save(path)                                   # onnx.checker-checked, opset ``OPSET``

Constants are cast to the graph's dtype (float32 or float64), so one builder writes both.
Integer constants (``Pad`` pads, ``Slice`` starts/ends) stay int64.

onnxruntime (1.32, measured) has a trap for float64 graphs: its NoopElimination checks a
one-element constant against 0 (Add, Sub) or 1 (Mul, Div) after rounding it to float32, so
``Add(x, 1e-111)`` becomes x and ``Mul(x, 1 − 1e-9)`` becomes x. Use ``vector`` for scalar
factors that may be close to 0 or 1: a constant with d >= 2 equal entries is left alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
PRODUCER = "transport-inverse solver"


class OnnxGraph:
    """An ONNX graph under construction, nodes in topological (insertion) order.

    Args:
        name: the graph's name.
        dtype: float32 or float64: the element type of inputs, outputs and float constants.
    """

    def __init__(self, name: str, dtype: np.dtype | type = np.float32):
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in FLOAT_TYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.elem_type = FLOAT_TYPES[self.dtype]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        """A new, unused tensor name starting with ``stem``."""
        self._count += 1
        return f"{stem}_{self._count}"

    def input(self, name: str, width: int) -> str:
        """Declare a graph input of shape (N, width), N dynamic; returns its name."""
        self.inputs.append(helper.make_tensor_value_info(name, self.elem_type, ["N", width]))
        return name

    def output(self, tensor: str, name: str, width: int) -> None:
        """Expose ``tensor`` as the graph output ``name`` of shape (N, width)."""
        if tensor != name:
            tensor = self.node("Identity", tensor, out=name)
        self.outputs.append(helper.make_tensor_value_info(name, self.elem_type, ["N", width]))

    def constant(self, value: np.ndarray | float, stem: str = "c") -> str:
        """An initializer holding ``value`` (floats cast to the graph's dtype); returns its name."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def vector(self, value: float, width: int, stem: str = "c") -> str:
        """A constant of shape (width,), every entry ``value``: a scalar factor broadcast over the
        features that onnxruntime's NoopElimination cannot mistake for 0 or 1 (module docstring)."""
        return self.constant(np.full(width, float(value)), stem)

    def node(self, op: str, *inputs: str, out: str | None = None, **attributes) -> str:
        """Append a node ``op(inputs)`` with one output; returns the output's name."""
        out = out or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attributes))
        return out

    def model(self) -> onnx.ModelProto:
        """The model, checked by ``onnx.checker`` (raises ``onnx.checker.ValidationError``)."""
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, self.initializers
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER
        )
        # IR version 8 is what onnxruntime >= 1.14 accepts with opset 17; newer onnx defaults higher.
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model

    def save(self, path: str | Path) -> Path:
        """Write the checked model to ``path``; returns the path."""
        path = Path(path)
        onnx.save(self.model(), str(path))
        return path
