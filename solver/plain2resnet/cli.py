"""``python -m solver plain2resnet NET --substeps l --out NEW.onnx``: a plain MLP as a ResNet.

NET is an MLP in npz or ONNX (``solver.plain2resnet.plainnet_io``); pickle/joblib files are refused (loading
one runs its code). The plain net's flow model (section 3) is re-discretized with l Euler
substeps per unit of time (section 4) and written as ONNX and/or npz next to ``--out``.
Rank 0 does the work; an ``InputError`` is raised alike on every rank.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.errors import InputError
from solver.guards import MAX_PLAIN_WIDTH
from solver.plain2resnet.time_scaling import DEFAULT_SCALING, TIME_SCALINGS
from solver.resnet.formats import FORMATS, ONNX_DTYPES, parse_formats

log = logging.getLogger("solver")
CHECK_POINTS = 256  # standard-normal inputs for the logged ResNet-vs-plain-net error


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``plain2resnet`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser(
        "plain2resnet",
        help="construct the ResNet of a plain MLP from its flow model (sections 3-4)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "net",
        type=Path,
        help="plain MLP: .npz (keys W0, b0, …, activations) or .onnx (Gemm + activations)",
    )
    p.add_argument(
        "--substeps",
        type=int,
        required=True,
        metavar="L",
        help="Euler substeps per unit of time (l of eq. 52)",
    )
    p.add_argument(
        "--beta",
        type=float,
        default=10.0,
        help="β of the stretch flow, zero singular values → e^-β (eq. 21; default 10)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output path, e.g. NEW.onnx; npz output goes to NEW.npz",
    )
    p.add_argument(
        "--format",
        default="onnx,npz",
        metavar=",".join(FORMATS),
        help="comma-separated output formats (default onnx,npz)",
    )
    p.add_argument(
        "--dtype",
        choices=ONNX_DTYPES,
        default="float32",
        help="ONNX element type (default float32)",
    )
    p.add_argument(
        "--anchor",
        choices=("input", "zero"),
        default="input",
        help="where tanh/sigmoid flows are linearized (eq. 66): the stage input z_k (paper) "
        "or 0 (constant weights)",
    )
    p.add_argument(
        "--time-scaling",
        choices=TIME_SCALINGS,
        default=DEFAULT_SCALING,
        help=f"the time scaling h(τ) of section 3 (default {DEFAULT_SCALING}; see solver/plain2resnet/time_scaling.py)",
    )
    p.add_argument(
        "--max-width",
        type=int,
        default=MAX_PLAIN_WIDTH,
        metavar="D",
        help=f"refuse a net wider than D, whose d x d decompositions take long (default {MAX_PLAIN_WIDTH}: "
        f"minutes; the time grows as D³)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(run=run)
    return p


def output_paths(out: Path, formats: list[str]) -> dict[str, Path]:
    """The file each format writes: NEW.onnx, NEW.npz."""
    return {f: out.with_suffix(f".{f}") for f in formats}


def run(comm: MPI.Comm, args: argparse.Namespace) -> int:
    """The ``plain2resnet`` command (collective: rank 0 works, the others wait for its verdict).

    The arguments are checked and the net's size estimated before the ResNet is built: more
    memory than the machine has, or an ONNX file over 2 GiB, is refused (``solver.guards``).
    """
    from solver import guards
    from solver.parallel import on_rank0

    check_arguments(args)  # alike on every rank: only the arguments and the file system
    width, layers = on_rank0(comm, net_size, args)
    guards.check_plain_cost(str(args.net), width, layers, args.max_width)  # before the d x d SVDs of estimate
    guards.check_plain_width(comm, str(args.net), width, layers)
    blocks, block_bytes = on_rank0(comm, estimate, args)
    guards.check_flow_resnet(comm, str(args.net), args.substeps, blocks, block_bytes,
                             "onnx" in parse_formats(args.format))
    on_rank0(comm, convert, args)
    return 0


def net_size(args: argparse.Namespace) -> tuple[int, int]:
    """The widest layer of the net (the flow model's d is at least that) and its number of
    layers. Rank-local."""
    from solver.plain2resnet.plainnet_io import load_plain_net

    net = load_plain_net(args.net)
    return max(max(layer.n_in, layer.n_out) for layer in net.layers), len(net.layers)


def estimate(args: argparse.Namespace) -> tuple[float, float]:
    """The blocks of the ResNet of ``args.substeps`` substeps and the bytes of arrays per block,
    from those of 4 and 8 substeps (the count grows linearly in l). Rank-local."""
    from solver.plain2resnet.flow import discretize, flow_model
    from solver.plain2resnet.plainnet_io import load_plain_net

    flow = flow_model(load_plain_net(args.net))
    counts = []
    for substeps in (4, 8):
        resnet = discretize(flow, substeps, args.beta, anchor=args.anchor, scaling=args.time_scaling)
        blocks = [block for stage in resnet.stages for block in stage.blocks]
        arrays = sum(value.nbytes for block in blocks for value in vars(block).values()
                     if isinstance(value, np.ndarray))
        counts.append((len(blocks), arrays))
    (four, arrays), (eight, _) = counts
    return four + (eight - four) / 4 * (args.substeps - 4), arrays / max(four, 1)


def convert(args: argparse.Namespace) -> None:
    """Read NET, build the ResNet, check it against the plain net, write it. Rank-local."""
    from solver.plain2resnet.flow import discretize, flow_model
    from solver.plain2resnet.plainnet_io import load_plain_net
    from solver.plain2resnet.resnet_export import save_npz, save_onnx

    paths = check_arguments(args)
    net = load_plain_net(args.net)
    flow = flow_model(net)
    log.info(
        "plain net %s: widths %s, activations %s, output %s; ambient dimension d = %d",
        args.net,
        net.widths,
        [layer.activation for layer in net.layers],
        net.output,
        flow.dim,
    )
    if args.substeps <= 2 * args.beta:
        # α ḣ β < 1 needs l > max ḣ · β = 2β (eq. 29 with Euler): else the e^{-β} directions
        # oscillate and grow.
        log.warning(
            "warning: l = %d <= 2β = %g: Euler on the compressed directions (eq. 29) is not "
            "monotone and may amplify them; use more substeps or a smaller --beta",
            args.substeps,
            2 * args.beta,
        )
    resnet = discretize(
        flow, args.substeps, args.beta, anchor=args.anchor, scaling=args.time_scaling
    )
    x = np.random.default_rng(0).standard_normal((CHECK_POINTS, flow.n_in))
    error = np.max(np.abs(resnet.forward(x) - net.forward(x)))
    log.info(
        "ResNet: %d blocks in %d stages (l = %d, β = %g, anchor %s, h %s); "
        "max |ResNet − plain net| = %.3e at %d standard-normal inputs",
        resnet.num_blocks,
        len(resnet.stages),
        args.substeps,
        args.beta,
        args.anchor,
        args.time_scaling,
        error,
        CHECK_POINTS,
    )
    if "onnx" in paths:
        save_onnx(resnet, paths["onnx"], args.dtype)
    if "npz" in paths:
        save_npz(resnet, paths["npz"])
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))


def check_arguments(args: argparse.Namespace) -> dict[str, Path]:
    """The output file of each format, after checking the arguments (InputError)."""
    formats = parse_formats(args.format)
    if args.substeps < 1:
        raise InputError(f"--substeps must be >= 1, got {args.substeps}")
    if args.max_width < 1:
        raise InputError(f"--max-width must be >= 1, got {args.max_width}")
    if not np.isfinite(args.beta) or args.beta <= 0:
        raise InputError(f"--beta must be a positive number, got {args.beta}")
    paths = output_paths(args.out, formats)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.force:
        raise InputError(
            f"output files exist: {', '.join(existing)}; pass --force to overwrite them"
        )
    if not args.out.parent.is_dir():
        raise InputError(f"output directory {args.out.parent} does not exist")
    return paths
