"""Export a trained run as an explicit ResNet (eq. 17, or midpoint/RK4 blocks): ONNX and npz.

The net takes data coordinates: its first step is the run's input scaling x_Ω = scale ⊙ x + shift
(``data.Scaling``) or its learned input layer (``model/input_layer.py``), then N residual blocks of the learned flow, then the learned output layer
(logits A x + b).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from solver.config import Config, load_config
from solver.errors import InputError
from solver.resnet.formats import ONNX_DTYPES, parse_formats
from solver.resnet.net import OutputLayer, ResNet, resnet_from_velocity, save_npz
from solver.resnet.onnx_net import run_annotations, save_onnx
from solver.model.from_config import velocity_model
from solver.model.input_layer import InputLayer
from solver.rundir import store

log = logging.getLogger("solver")


def learned_net(run: Path, depth: int, scheme: str = "euler", output: str = "linear",
                noise: float | str | None = None) -> ResNet:
    """The run's learned flow as an explicit ResNet of ``depth`` blocks (rank-local); with
    ``noise`` the stochastic ResNet of viscosity ε = ``noise`` ("run": the run's
    ``field.viscosity``), each block adding √(2ε s)·ξ (``resnet.net.ResNet.noise``)."""
    config = load_config(run / store.CONFIG)
    return net_of_parameters(config, store.read_parameters(run / store.THETA), depth, scheme, output,
                             str(run / store.THETA), noise_value(noise, config, str(run / store.CONFIG)))


def noise_value(noise: float | str | None, config: Config, source: str) -> float | None:
    """``--noise``: None, "run" (the run's ``field.viscosity``) or ε > 0 whose spread √(2εT) over
    the flow's time stays within Ω's diameter (beyond, the blocks' noise, reflected into Ω,
    forgets where a point started: every input gets the same output). Returns ε or None."""
    if noise is None:
        return None
    if noise == "run":
        if config.field.viscosity == 0:
            raise InputError("--noise without a value takes the run's field.viscosity, which is 0: "
                             "give one (--noise 0.01)", source)
        return config.field.viscosity
    try:
        eps = float(noise)
    except (TypeError, ValueError):
        eps = math.nan
    if not (math.isfinite(eps) and eps > 0):
        raise InputError(f"--noise must be a number > 0 (the viscosity ε), got {noise!r}")
    diameter, T = config.domain_object().diameter, config.field.T
    if math.sqrt(2 * eps * T) > diameter:
        raise InputError(f"--noise {noise}: the noise spreads a point by √(2εT) = {math.sqrt(2 * eps * T):.3g}, "
                         f"more than Ω's diameter {diameter:.3g} (field.T = {T:g}), so the output forgets the "
                         f"input; expected ε <= diameter²/(2T) = {diameter**2 / (2 * T):.3g}")
    return eps


def net_of_parameters(config: Config, params: store.Parameters, depth: int, scheme: str = "euler",
                      output: str = "linear", source: str | None = None, noise: float | None = None) -> ResNet:
    """The learned flow of ``params`` (theta.npz's contents: θ, A, b and the data scaling in
    ``meta``) under ``config``'s field and domain, as an explicit ResNet of ``depth`` blocks
    (with ``noise`` > 0 the stochastic one); ``source`` names where the parameters came from,
    for messages."""
    if params.theta is None or params.A is None or params.b is None or params.meta is None:
        raise InputError("holds p only; export needs θ, A, b and the data scaling (meta) "
                         "that training writes", source)
    try:
        scaling = params.meta["scaling"]
        scale, shift = np.asarray(scaling["scale"], dtype=float), np.asarray(scaling["shift"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise InputError('meta has no data scaling {"scale": [...], "shift": [...]}', source) from None
    layer = None
    if "input" in params.meta:
        try:
            layer = InputLayer.from_dict(params.meta["input"])
        except InputError as error:
            raise InputError(error.message, source) from None
        if params.input is None or params.input.shape != (layer.n_params,):
            raise InputError(f"meta records an input layer of {layer.n_params} parameters, the file holds "
                             f"{0 if params.input is None else params.input.size}", source)
    model = velocity_model(config, config.domain_object())
    return resnet_from_velocity(model, params.theta, depth, scheme, output=OutputLayer(output, params.A, params.b),
                                input_scale=scale, input_shift=shift, noise=noise or 0.0,
                                input_layer=layer, input_q=params.input)


def export(run: Path, depth: int, scheme: str, formats: str | list[str], output: str = "linear",
           noise: float | str | None = None, out: Path | None = None) -> list[Path]:
    """Write resnet-<scheme>-<depth>.{onnx,npz} (ONNX in float32 and float64) into the directory
    ``out`` (made if missing; default the run directory); ``formats`` is a ``--format`` text
    ("onnx,npz") or a list of names (``solver.resnet.formats.FORMATS``).
    With ``noise`` (see ``learned_net``) the stochastic ResNet, resnet-<scheme>-<depth>-noise.*:
    every ONNX run (and every numpy ``forward``) is one sample; average M of them
    (``resnet.net.sample_mean``). The ONNX metadata carry the run's class names and its
    certification (``onnx_net.run_annotations``) beside the net's input scaling."""
    formats = parse_formats(formats if isinstance(formats, str) else ",".join(formats))
    if depth < 1:
        raise InputError(f"--depth must be >= 1, got {depth}")
    net = learned_net(run, depth, scheme, output, noise)
    out = run if out is None else Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a directory (the exported files go into it)", str(out))
    out.mkdir(parents=True, exist_ok=True)
    meta = store.read_parameters(run / store.THETA).meta or {}
    metrics = store.read_json(run / store.METRICS) if (run / store.METRICS).is_file() else None
    classes = meta.get("classes") or [str(k) for k in range(net.output.num_components)]
    annotations = run_annotations(classes, metrics)
    stem = out / f"resnet-{scheme}-{depth}{'-noise' if net.noise > 0 else ''}"
    written = []
    if "npz" in formats:
        written.append(save_npz(net, stem.with_suffix(".npz")))
    if "onnx" in formats:
        for dtype in ONNX_DTYPES:
            path = Path(f"{stem}-{dtype}.onnx")
            save_onnx(net, path, dtype, annotations)
            written.append(path)
    return written
