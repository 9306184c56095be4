"""Writing a ``FlowResNet`` as ONNX (float32 or float64) and as npz, and reading the npz back.

ONNX (``solver.resnet.onnx_builder``): input ``x`` of shape (N, n_0), output ``y`` = x_L of
shape (N, n_L), and, if the plain net has an output function, ``probabilities`` = f(x_L)
(Softmax or Sigmoid). Every block is a residual ``Add`` of the state and its increment, so the
graph is a ResNet block by block.

npz (the convention of ``solver.resnet.formats``): the JSON entry ``meta`` lists the stages and
blocks in order (kinds and scalars, see ``save_npz``), the other entries are the arrays it
names. ``load_npz`` reads it back, and also version 1: NAME.npz with the arrays and the same
listing (``"format": "flow-resnet/1"``) in NAME.json beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from solver.errors import InputError
from solver.plain2resnet.resnet import (
    SATURATED,
    ActivationBlock,
    Block,
    FlowResNet,
    LinearBlock,
    ReluBlock,
    Stage,
)
from solver.resnet.formats import load_net_npz, save_net_npz
from solver.resnet.onnx_builder import OnnxGraph

FORMAT = "flow-resnet"
FORMAT_VERSION = 2  # 1: the listing in a .json file beside the .npz
WHAT = "a ResNet written by plain2resnet"
ONNX_OUTPUTS = {"softmax": ("Softmax", {"axis": -1}), "logistic": ("Sigmoid", {})}


def to_onnx(resnet: FlowResNet, dtype: Any = np.float32) -> OnnxGraph:
    """The ONNX graph of ``resnet`` in ``dtype`` (float32 or float64); ``.save(path)`` writes it."""
    g = OnnxGraph("flow_resnet", dtype)
    y = g.input("x", resnet.n_in)
    if resnet.dim > resnet.n_in:  # embedding in R^d (section 3.1.1)
        y = g.node(
            "Pad",
            y,
            g.constant(np.array([0, 0, 0, resnet.dim - resnet.n_in], dtype=np.int64), "pads"),
        )
    for stage in resnet.stages:
        y = _stage_onnx(g, stage, y, resnet.dim)
    if resnet.dim > resnet.n_out:
        ints = lambda *v: g.constant(np.array(v, dtype=np.int64), "index")  # noqa: E731
        y = g.node("Slice", y, ints(0), ints(resnet.n_out), ints(1))
    g.output(y, "y", resnet.n_out)
    if resnet.output in ONNX_OUTPUTS:
        op, attributes = ONNX_OUTPUTS[resnet.output]
        probabilities = g.node(op, "y", out="probabilities", **attributes)
        g.output(probabilities, "probabilities", resnet.n_out)
    return g


def _stage_onnx(g: OnnxGraph, stage: Stage, y: str, width: int) -> str:
    """The blocks of one stage; scalar factors are (width,) vectors (``OnnxGraph.vector``)."""
    stage_input = y
    cache: dict[str, str] = {}  # a(z_k) and a'(z_k), computed once per activation stage
    for block in stage.blocks:
        if isinstance(block, LinearBlock):
            increment = None
            if block.matrix is not None:
                m = block.matrix
                increment = (
                    g.node("Mul", y, g.constant(m, "m"))
                    if m.ndim == 1
                    else g.node("MatMul", y, g.constant(m.T, "m"))
                )
            if block.shift is not None:
                c = g.constant(block.shift, "c")
                increment = c if increment is None else g.node("Add", increment, c)
            y = y if increment is None else g.node("Add", y, increment)
        elif isinstance(block, ReluBlock):  # eq. 58
            y = g.node(
                "Add", y, g.node("Relu", g.node("Mul", y, g.vector(block.weight, width, "w")))
            )
        elif isinstance(block, ActivationBlock):
            y = _activation_block_onnx(g, block, y, stage_input, cache, width)
        else:
            raise TypeError(f"unknown block type {type(block).__name__}")
    return y


def _activation_block_onnx(
    g: OnnxGraph, block: ActivationBlock, y: str, zk: str, cache: dict[str, str], width: int
) -> str:
    """y + step · (a(Ẑ) − Ẑ), Ẑ = W⁽¹⁾ y + b⁽¹⁾ (eq. 68, 69), as ``ActivationBlock`` evaluates it."""
    scalar = lambda value, stem: g.vector(value, width, stem)  # noqa: E731
    step = scalar(block.step, "step")
    if block.anchor is not None:  # constant weights: the literal 2-layer block of eq. 69
        w1_value, b1_value = block.weights(block.anchor)
        z = g.node("Add", g.node("Mul", y, g.constant(w1_value, "w1")), g.constant(b1_value, "b1"))
        a_z = g.activation(block.activation, z)
        return g.node("Add", y, g.node("Mul", step, g.node("Sub", a_z, z)))
    # Eq. 66, 67 at the stage input z_k: W⁽¹⁾ and b⁽¹⁾ are elementwise functions of z_k.
    if not cache:
        cache["a"] = g.activation(block.activation, zk)
        # a' from Exp, accurate to rounding where tiny: tanh' = 4t/(1+t)², t = e^{-2|z|}, and
        # σ' = t/(1+t)², t = e^{-|z|}. onnxruntime's Sigmoid is only absolutely accurate in its
        # tails (float32: 3% off at −15, 0 below −20), and q = 1/(1 + ratio·a') needs a' to
        # relative accuracy where ratio = h/(1 − h) is huge.
        scale = 2.0 if block.activation == "tanh" else 1.0
        t = g.node("Exp", g.node("Mul", scalar(-scale, "minus"), g.node("Abs", zk)))
        one_plus = g.node("Add", scalar(1.0, "one"), t)
        cache["da"] = g.node(
            "Div",
            g.node("Mul", scalar(scale**2, "coefficient"), t),
            g.node("Mul", one_plus, one_plus),
        )
    # Constants capped to the float type's range; see ActivationBlock for the formulas.
    ratio, inv_keep = block.coefficients(cap=float(np.finfo(g.dtype).max) / 16)
    q = g.node(
        "Reciprocal",
        g.node("Add", scalar(1.0, "one"), g.node("Mul", scalar(ratio, "ratio"), cache["da"])),
    )
    flow = g.node(
        "Add",
        g.node("Mul", scalar(block.keep, "keep"), zk),
        g.node("Mul", scalar(block.h, "h"), cache["a"]),
    )  # eq. 36
    residual = g.node("Sub", y, flow)
    shift = g.node("Mul", g.node("Mul", residual, q), scalar(inv_keep, "inv_keep"))
    low, high = g.constant(np.array(-SATURATED), "low"), g.constant(
        np.array(SATURATED), "high"
    )  # Clip needs scalars
    z = g.node("Clip", g.node("Add", zk, shift), low, high)  # ≈ φ⁻¹(τ_r, y), eq. 68
    increment = g.node(
        "Sub",
        g.node("Mul", step, g.node("Sub", g.activation(block.activation, z), zk)),
        g.node("Mul", g.node("Mul", scalar(block.rate, "rate"), q), residual),
    )
    return g.node("Add", y, increment)


def save_onnx(resnet: FlowResNet, path: str | Path, dtype: Any = np.float32) -> Path:
    """Write ``resnet`` as a checked ONNX model; returns the path."""
    return to_onnx(resnet, dtype).save(path)


# What each block kind computes, for a reader of the file without this code.
BLOCK_FORMULAS = {
    "linear": "y + matrix @ y + shift (matrix of shape (d,) is a diagonal)",
    "relu": "y + relu(weight * y)",
    "activation": "y + step*(a(Z) - Z) with Z = w1*y + b1, w1 = 1/J, "
    "J = keep + h a'(anchor), keep = 1 - h, b1 = anchor - w1*phi, "
    "phi = keep*anchor + h*a(anchor); anchor 'stage_input' = the stage's input z_k. "
    "Evaluated as y + step*(a(Z) - anchor) - rate*q*(y - phi), "
    "q = 1/(1 + ratio*a'(anchor)), Z = clip(anchor + q*(y - phi)/keep, -100, 100), "
    "ratio = h/keep, rate = step/keep (eq. 69; finite where J underflows)",
}
SIZES = ("dim", "n_in", "n_out", "substeps")


def save_npz(resnet: FlowResNet, path: str | Path) -> Path:
    """Write ``resnet`` to ``path`` (suffix made .npz); returns the path.

    The JSON ``meta`` holds the sizes, ``output``, ``beta``, ``scaling``, ``BLOCK_FORMULAS`` and
    ``stages``: per stage its ``label`` and ``blocks``, each a dict with ``kind`` (linear, relu,
    activation), its scalars, and for arrays the name of their npz entry (``null``: none).
    """
    arrays: dict[str, np.ndarray] = {}
    stages = [
        {
            "label": stage.label,
            "blocks": [
                _block_entry(block, f"s{i:03d}_b{j:04d}", arrays)
                for j, block in enumerate(stage.blocks)
            ],
        }
        for i, stage in enumerate(resnet.stages)
    ]
    meta = {
        "equations": "Li & Shi, A Flow Model of Neural Networks: "
        "eq. 52 (linear), 58 (relu), 69-70 (activation)",
        **{key: getattr(resnet, key) for key in SIZES},
        "output": resnet.output,
        "beta": resnet.beta,
        "scaling": resnet.scaling,
        "blocks": BLOCK_FORMULAS,
        "stages": stages,
    }
    return save_net_npz(Path(path).with_suffix(".npz"), FORMAT, FORMAT_VERSION, meta, arrays)


def _block_entry(block: Block, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The JSON entry of ``block``; its arrays go into ``arrays`` under names starting ``key``."""
    if isinstance(block, LinearBlock):
        entry: dict[str, Any] = {"kind": "linear", "matrix": None, "shift": None}
        for field in ("matrix", "shift"):
            value = getattr(block, field)
            if value is not None:
                entry[field] = f"{key}_{field}"
                arrays[entry[field]] = value
        return entry
    if isinstance(block, ReluBlock):
        return {"kind": "relu", "weight": block.weight}
    entry = {
        "kind": "activation",
        "activation": block.activation,
        **{name: getattr(block, name) for name in ("step", "h", "keep", "rate")},
        "anchor": "stage_input",
    }
    if block.anchor is not None:
        entry["anchor"] = f"{key}_anchor"
        arrays[entry["anchor"]] = block.anchor
    return entry


def load_npz(path: str | Path) -> FlowResNet:
    """Read a ResNet written by ``save_npz`` (or the .npz + .json pair of version 1).

    Raises:
        InputError: naming the file, if it is missing, not an npz, or not such a ResNet.
    """
    path = Path(path).with_suffix(".npz")
    meta, arrays = load_net_npz(
        path, FORMAT, FORMAT_VERSION, WHAT, lambda _: _listing_version_1(path.with_suffix(".json"))
    )
    try:
        stages = tuple(
            Stage(stage["label"], tuple(_block_from_entry(b, arrays) for b in stage["blocks"]))
            for stage in meta["stages"]
        )
        return FlowResNet(
            **{key: int(meta[key]) for key in SIZES},
            stages=stages,
            output=meta["output"],
            beta=float(meta["beta"]),
            scaling=meta["scaling"],
        )
    except InputError as error:  # before ValueError: InputError is one
        if error.source:
            raise
        raise InputError(str(error), str(path)) from None
    except KeyError as error:
        raise InputError(f"not {WHAT}: no entry or key {error}", str(path)) from None
    except (TypeError, ValueError) as error:
        raise InputError(f"not {WHAT}: malformed listing ({error})", str(path)) from None


def _block_from_entry(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Block:
    """The block of a JSON entry written by ``_block_entry``."""
    if entry["kind"] == "linear":
        matrix, shift = (arrays[entry[f]] if entry.get(f) else None for f in ("matrix", "shift"))
        return LinearBlock(matrix, shift)
    if entry["kind"] == "relu":
        return ReluBlock(float(entry["weight"]))
    if entry["kind"] != "activation":
        raise ValueError(f"unknown block kind {entry['kind']!r}")
    anchor = None if entry["anchor"] == "stage_input" else arrays[entry["anchor"]]
    scalars = (float(entry[k]) for k in ("step", "h", "keep", "rate"))
    return ActivationBlock(entry["activation"], *scalars, anchor)


def _listing_version_1(json_path: Path) -> str | None:
    """The ``meta`` text of a version-1 file from the NAME.json beside it; None without one."""
    if not json_path.is_file():
        return None
    try:
        listing = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the ResNet listing ({error})", str(json_path)) from None
    if not isinstance(listing, dict) or listing.get("format") != f"{FORMAT}/1":
        found = listing.get("format") if isinstance(listing, dict) else listing
        raise InputError(f"format {found!r}, expected '{FORMAT}/1'", str(json_path))
    return json.dumps(listing | {"format": FORMAT, "version": 1})
