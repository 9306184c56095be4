"""Command line (also under ``mpirun -n P``)::

    python -m solver compare CONFIG | RUN     PDE against the characteristics (a field, or a trained run)
    python -m solver train CONFIG             learn the velocity field; --resume --out RUN continues
    python -m solver export RUN               a trained run as an explicit ResNet (ONNX, npz)
    python -m solver predict RUN POINTS.csv   the learned flow's labels at new points (or --grid N)
    python -m solver plain2resnet NET ...     a plain MLP as a ResNet (``solver.plain2resnet.cli``)

The only place that reads ``MPI.COMM_WORLD``. Bad input (an ``InputError``, raised on every rank
alike, or found on rank 0 and handed to all by ``on_rank0``) prints one message on rank 0 and
exits with status 2 on every rank; a rank whose peers do not also stop within ``EXIT_WAIT``
seconds aborts the job. Any other exception prints its traceback and aborts the MPI job, so that
no rank waits forever in a collective. Training stops on SIGINT/SIGTERM at the next safe point
(``solver.stopping``); elsewhere they stop at once (exit 128 + the signal's number).
"""

from __future__ import annotations

import sys

# mpi4py before dolfinx: dolfinx's extension modules need the MPI library that mpi4py loads
# (imported the other way round, libmpi.so.12 is not found).
from mpi4py import MPI  # noqa: E402

# PETSc's own signal handlers would print a debugger banner on SIGTERM and kill the process:
# the command line handles SIGINT and SIGTERM itself. The option goes in through petsc4py.init's
# argv (read by each rank), not PETSC_OPTIONS: PETSc broadcasts a non-empty PETSC_OPTIONS at
# start-up, and under load that broadcast failed now and then ("MPI error 1 Invalid buffer
# pointer" in PetscOptionsInsert on rank 1, seen twice in a few hundred 2-rank starts).
import petsc4py  # noqa: E402

petsc4py.init([sys.argv[0], "-no_signal_handler"])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from solver import stopping  # noqa: E402
from solver.errors import InputError  # noqa: E402
from solver.parallel import await_peers, on_rank0, one_blas_thread  # noqa: E402 (on_rank0: also this module's name for it)
from solver.rundir import store  # noqa: E402

log = logging.getLogger("solver")

COMPARE_ANIMATION = "compare-flow.gif"  # `compare RUN`'s animation, beside training's flow.gif


@contextlib.contextmanager
def cli_logging(comm: MPI.Comm, verbose: bool):
    """One logger, on rank 0 only: no duplicated lines under mpirun. Warnings (``solver.FacetWarning``
    and the others of docs/warnings.md) are its lines too, without Python's file:line and source.
    On exit the logger and ``warnings.showwarning`` are as they were: ``main`` called in-process
    (tests, a notebook) leaves no handler behind to swallow the estimator's own output."""
    saved = log.handlers[:], log.level, log.propagate, warnings.showwarning
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler] if comm.rank == 0 else [logging.NullHandler()]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    warnings.showwarning = show_warning
    try:
        yield
    finally:
        log.handlers[:], log.level, log.propagate, warnings.showwarning = saved


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command line: a log line ``warning: ...``."""
    log.warning("warning: %s", message)


def parse_cells(text: str) -> list[int]:
    """``--refine 8,16,32`` as increasing cell counts >= 1 ('' is none)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--refine takes comma-separated integers like 8,16,32, got {text!r}") from None
    if any(v < 1 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise InputError(f"--refine takes increasing cell counts >= 1 like 8,16,32, got {text!r}")
    return values


def command_compare(comm: MPI.Comm, args) -> int:
    """Solve the PDE and the characteristics for the configured field and compare them; for a
    trained run directory, check the learned field's predictions against the characteristics."""
    if args.config.is_dir():
        from solver.check.compare_run import compare_run
        from solver.config import load_config
        from solver.rundir.outputs import write_animation

        animate = None
        if load_config(args.config / store.CONFIG).output.animation:
            def animate(comm, problem, p):  # its own name: the training run's flow.gif stays
                write_animation(comm, problem, p, args.config / COMPARE_ANIMATION)
        compare_run(comm, args.config, animate)
        return 0
    # Imported here so that a bad config fails before dolfinx is loaded.
    from solver.config import COMPARE_SECTIONS, load_config

    config = load_config(args.config)
    from solver.check import compare_field as cmp
    from solver.rundir.files import prepare_run_directory
    from solver.rundir.outputs import write_comparison_outputs

    points, grid = cmp.sample_points(config)  # compare.points_file read before the run directory is made
    out = prepare_run_directory(comm, args.out, force=args.force, wording="compare")
    on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml(COMPARE_SECTIONS))
    refine = parse_cells(args.refine) if args.refine is not None else list(config.compare.refine)

    started = time.perf_counter()
    log.info(
        "compare %s: %s, mesh %d cells/direction, DG%d, %d ranks",
        args.config, config.field.kind, config.mesh.cells, config.mesh.degree, comm.size,
    )
    run = cmp.solve_and_compare(comm, config, config.mesh.cells, points, grid)
    metrics = comparison_metrics(comm, args, config, run, len(points), len(grid))
    if config.field.viscosity > 0:
        metrics["monte_carlo"] = cmp.monte_carlo_agreement(run.fe_points, cmp.monte_carlo(comm, config, points))
        m = metrics["monte_carlo"]
        log.info(
            "  viscosity %g: the characteristics above are the inviscid limit. PDE vs Monte Carlo "
            "of the reflected SDE (%d points, %d paths, %d steps, bias by halving dt): max "
            "difference %.3e, max 3 SE + bias %.3e (SE %.2e, bias %.2e); within on %.1f%%%s",
            config.field.viscosity, m["points"], m["paths"], m["sde_steps"], m["max_difference"],
            m["max_bound"], m["max_standard_error"], m["max_bias"], 100 * m["within"],
            "" if m["agree"] else " (NOT all)",
        )
    on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    write_comparison_outputs(comm, config, out, grid, run)
    if refine:
        metrics["refinement"] = refinement(comm, args, config, refine, out)
        on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    run.destroy()
    metrics["seconds"] = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
    on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    log.info("wrote %s (metrics.json%s)", out, ", PNG, VTX" if config.output.png else "")
    return 0


def comparison_metrics(comm: MPI.Comm, args, config, run, num_points: int, num_grid: int) -> dict:
    """metrics.json of ``compare CONFIG`` on the configured mesh (``run``: compare_field's
    MeshComparison); logs its summary."""
    comparison = run.comparison
    log.info(
        "  dofs %d x %d components, %d time steps, solve %.2f s",
        comparison.dofs, run.terminal.num_components, comparison.steps, comparison.seconds_solve,
    )
    log.info(
        "  PDE vs characteristics: L2 %.3e (relative %.3e), max at %d points %.3e, "
        "max on the %d-point grid %.3e",
        comparison.l2, comparison.l2_relative, num_points, comparison.max_points,
        num_grid, comparison.max_grid,
    )
    return dict(
        config=str(args.config),
        ranks=comm.size,
        degree=config.mesh.degree,
        comparison=comparison.row(),
        steps_per_piece=run.result.steps_per_piece,
        dt_per_piece=run.result.dt_per_piece,
    )


def refinement(comm: MPI.Comm, args, config, cells: list[int], out: Path) -> dict:
    """The refinement study over ``cells`` (collective); logs its table, draws convergence.png."""
    from solver.check import compare_field as cmp

    log.info("refinement study over cells = %s", cells)
    study = cmp.refinement_study(comm, config, cells)
    log.info("%s", cmp.format_table(study))
    if config.output.png:
        from solver.rundir.plots import convergence_figure

        on_rank0(comm, convergence_figure, out / "convergence.png", study, f"DG{config.mesh.degree}: {args.config}")
    return study


def command_train(comm: MPI.Comm, args) -> int:
    """Learn the velocity field for the configured data; write a run directory
    (``solver.fit``: the guards, the run directory, the signals and the outputs are there)."""
    from solver.fitting import fit

    fit(args.config, args.out, comm=comm, force=args.force, resume=args.resume, wording="cli")
    return 0


def run_inputs(args, config) -> list[Path]:
    """The files a run reads: its problem file, data file, ``train.init`` and points file."""
    paths = [args.config] if args.config is not None else []
    paths += [config.data.params.get("path"), config.train.init, config.compare.points_file]
    return [Path(p) for p in paths if p]


def preflight_compare(comm: MPI.Comm, args) -> None:
    """``compare CONFIG``: the config, ``--refine``, the size and time guards and the run directory
    checked before anything is written (collective)."""
    from solver import guards
    from solver.config import load_config

    config = load_config(args.config)
    refine = parse_cells(args.refine) if args.refine is not None else list(config.compare.refine)
    guards.check_compare(comm, config, refine)
    refuse_run_directory(comm, args, config)


def refuse_run_directory(comm: MPI.Comm, args, config) -> None:
    """InputError if ``--out`` may not become this run's directory (``rundir.files``), checked
    before the inputs are read in full (collective)."""
    from solver.rundir.files import refuse_run_directory as refusal

    reason = on_rank0(comm, refusal, args.out, args.force, tuple(run_inputs(args, config)))
    if reason:
        raise InputError(reason, str(args.out))


def preflight_compare_run(comm: MPI.Comm, run: Path) -> None:
    """``compare RUN``: its config and theta.npz read (every rank alike) before dolfinx is
    loaded; the temporary files of killed writes removed."""
    from solver import guards
    from solver.config import load_config
    from solver.rundir.files import remove_temporaries

    config = load_config(run / store.CONFIG)
    parameters = store.read_parameters(run / store.THETA)
    on_rank0(comm, remove_temporaries, run)
    n_theta, dim = guards.n_theta(config), config.dim
    n_input = 0 if parameters.input is None else parameters.input.size  # a learned input layer's
    K = (parameters.p.size - n_input - n_theta) // (dim + 1)
    if parameters.p.size <= n_theta or parameters.p.size != n_theta + K * (dim + 1) + n_input:
        raise InputError(f"holds {parameters.p.size} parameters, the run's config.toml needs "
                         f"{n_theta} + K·{dim + 1}{f' + {n_input}' if n_input else ''}", str(run / store.THETA))
    ended = (parameters.meta or {}).get("resolution") or dict(cells=config.mesh.cells, degree=config.mesh.degree)
    if not isinstance(ended, dict):
        raise InputError("a damaged resolution in its meta (not a JSON object)", str(run / store.THETA))
    cells, degree = store.check_resolution(ended.get("cells"), ended.get("degree"), str(run / store.THETA))
    wanted = (config.compare.cells or cells, config.compare.degree or degree)
    guards.check_compare_run(comm, config, parameters.p[:n_theta], K, sorted({(cells, degree), wanted}))
    dc, tc = config.data, config.train
    guards.check_monte_carlo(comm, config, "compare RUN", min(dc.points, tc.check_points) if dc.points else 1,
                             tc.paths, tc.sde_steps, "train.paths, train.sde_steps or train.check_points")


def command_export(comm: MPI.Comm, args) -> int:
    """Export a trained run as an explicit ResNet (rank 0 works; numpy and ONNX only)."""
    from solver import guards
    from solver.config import load_config
    from solver.resnet.export import export, noise_value
    from solver.resnet.formats import parse_formats
    from solver.rundir.files import remove_temporaries

    formats = parse_formats(args.format)
    if args.depth < 1:
        raise InputError(f"--depth must be >= 1, got {args.depth}")
    config = load_config(args.run_dir / store.CONFIG)  # every rank reads it: alike
    noise_value(args.noise, config, str(args.run_dir / store.CONFIG))  # refused before any work
    if config.field.kind in ("mlp", "mlp1"):
        guards.check_export(comm, str(args.run_dir), args.depth, guards.export_block_bytes(config, args.scheme),
                            "onnx" in formats)
    on_rank0(comm, remove_temporaries, args.run_dir)
    for path in on_rank0(comm, export, args.run_dir, args.depth, args.scheme, formats, args.output, args.noise,
                         args.directory):
        log.info("wrote %s", path)
    return 0


def command_predict(comm: MPI.Comm, args) -> int:
    """Labels (and probabilities) of the run at the points of a CSV file and/or on a grid of Ω."""
    import numpy as np

    from solver import guards
    from solver.check import predict
    from solver.rundir.predictions import map_files, refuse_outputs, write_map, write_predictions

    if args.input is None and args.grid is None:
        raise InputError("predict needs a CSV file of points, or --grid N")
    if args.input is not None and args.predictions is None:
        raise InputError("predict RUN POINTS.csv needs --out OUT.csv (where the predictions go)")
    if args.grid is not None and not 2 <= args.grid <= 4096:
        raise InputError(f"--grid takes 2 to 4096 points per direction, got {args.grid}")
    if args.depth is not None and args.depth < 1:
        raise InputError(f"--depth must be >= 1, got {args.depth}")
    run = predict.read_run(args.run_dir)
    args.method = args.method or predict.default_method(run)  # the model's own prediction
    stem = args.map or args.run_dir / f"map-{args.method}-{args.grid}"
    outputs = [("--out", args.predictions)] if args.input is not None else []
    outputs += [("--map", path) for path in map_files(stem)] if args.grid is not None else []
    reason = on_rank0(comm, refuse_outputs, outputs, args.force, args.run_dir,
                      [args.input] if args.input is not None else [])
    if reason:
        raise InputError(reason)
    predict.check_method(run, args.method)
    if args.method == "pde":
        guards.check_compare_run(comm, run.config, run.parameters.theta, len(run.classes),
                                 [(run.resolution.cells, run.resolution.degree)])
    if args.grid is not None and args.grid ** run.config.dim > 2**27:
        raise InputError(f"--grid {args.grid} in {run.config.dim}D is {args.grid ** run.config.dim:.3g} points; "
                         f"at most 2^27 (e.g. --grid 512 in 3D)")
    guards.check_predict(comm, str(args.run_dir), run.config, float(args.grid or 0) ** run.config.dim,
                         len(run.classes), args.method, args.depth)
    batches = []
    if args.input is not None:
        X, names, lines = on_rank0(comm, predict.read_points, args.input, run)
        outside = "refuse" if args.method == "pde" else "warn"  # u_h lives on Ω's mesh; the flow everywhere
        batches.append(("points", predict.to_omega(run, X, str(args.input), lines, outside)))
    if args.grid is not None:
        grid, inside = predict.grid_points(run, args.grid)
        batches.append(("grid", grid[inside]))
    x = np.concatenate([b for _, b in batches])
    log.info("predict %s: %d point(s) by %s%s, %d ranks", args.run_dir, len(x), args.method,
             f" ({run.resolution})" if args.method == "pde" else "", comm.size)
    logits, seconds = predict.logits(comm, run, x, args.method, depth=args.depth, scheme=args.scheme,
                                     source=str(args.input or "grid"))
    log.info("  %s", ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()))
    probabilities = predict.probabilities(logits)
    start = 0
    for name, points in batches:
        part = slice(start, start + len(points))
        start += len(points)
        if name == "points":
            on_rank0(comm, write_predictions, args.predictions, X, names, logits[part].argmax(axis=1),
                     run.classes, probabilities[part] if args.proba else None)
            log.info("wrote %s", args.predictions)
        else:
            full_logits = np.full((len(grid), len(run.classes)), np.nan)
            full_logits[inside] = logits[part]
            full_probabilities = np.full_like(full_logits, np.nan)
            full_probabilities[inside] = probabilities[part]
            title = f"{args.run_dir.name}: {args.method} on a {args.grid}^{run.config.dim} grid"
            data_points = run.scaling.inverse(grid)
            for path in on_rank0(comm, write_map, stem, grid, data_points, inside, args.grid, full_logits,
                                 full_probabilities, run.classes, title):
                log.info("wrote %s", path)
    return 0


class UsageError(InputError):
    """A command line argparse refuses; ``usage`` is the usage text of the (sub)command."""

    def __init__(self, message: str, usage: str):
        self.usage = usage
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting, and prints help on rank 0 only."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}", self.format_usage())

    def _print_message(self, message: str, file=None) -> None:
        if MPI.COMM_WORLD.rank == 0:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m solver",
        description="Transport inverse problem solver (Li & Shi, 'A Flow Model of Neural Networks').",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    force = "replace an existing run directory (only one this solver made, never one holding an input)"
    p = sub.add_parser("compare", help="solve the PDE and the characteristics and compare them")
    p.add_argument("config", type=Path, help="problem file (TOML), e.g. problems/default.toml, or a trained run directory")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--force", action="store_true", help=force)
    p.add_argument(
        "--refine", default=None, metavar="N1,N2,...",
        help="refinement study over these mesh cell counts (default: compare.refine of the config; '' for none)",
    )
    p.set_defaults(run=command_compare)

    p = sub.add_parser("train", help="learn the velocity field (adjoint-based optimizer)")
    p.add_argument("config", type=Path, nargs="?", default=None,
                   help="problem file (TOML); with --resume, the run's own (only train.iterations, "
                        "train.save_every and [output] may differ)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--force", action="store_true", help=force)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(run=command_train)

    p = sub.add_parser("export", help="export a trained run as an explicit ResNet (ONNX, npz)")
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a trained run directory")
    p.add_argument("--depth", type=int, default=16, help="number of residual blocks N (default 16)")
    p.add_argument("--scheme", default="euler", choices=["euler", "midpoint", "rk4"],
                   help="block scheme: euler is eq. 17; midpoint/rk4 need fewer blocks")
    p.add_argument("--format", default="onnx,npz", help="comma-separated: onnx, npz")
    p.add_argument("--output", default="linear", choices=["linear", "softmax"], help="logits or probabilities")
    p.add_argument("--noise", nargs="?", const="run", default=None, metavar="EPS",
                   help="the stochastic ResNet: each block adds sqrt(2 EPS s) N(0, I) and reflects "
                        "into the domain (default EPS: the run's field.viscosity); average M runs")
    p.add_argument("--out", dest="directory", type=Path, default=None, metavar="DIR",
                   help="the directory the files go into (made if missing; default RUN)")
    p.set_defaults(run=command_export)

    p = sub.add_parser("predict", help="the learned flow's labels (and probabilities) at new points")
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a trained run directory")
    p.add_argument("input", type=Path, nargs="?", default=None, metavar="POINTS.csv",
                   help="points in data coordinates, one per line (a header line and a label column are "
                        "optional)")
    p.add_argument("--out", dest="predictions", type=Path, default=None, metavar="OUT.csv",
                   help="the points with their predicted labels (and probabilities with --proba)")
    p.add_argument("--method", default=None, choices=["pde", "characteristics", "resnet"],
                   help="characteristics (default; a viscous run: pde): DOP853 per point, the model's "
                        "prediction as FlowClassifier and ONNX compute it; pde: one solve on the run's "
                        "final mesh; resnet: the exported explicit ResNet (numpy)")
    p.add_argument("--proba", action="store_true", help="write the class probabilities too")
    p.add_argument("--grid", type=int, default=None, metavar="N",
                   help="also the whole-domain map on an N^d grid of Ω's bounding box (npz + PNG)")
    p.add_argument("--map", type=Path, default=None, metavar="STEM",
                   help="where --grid writes STEM.npz and STEM.png (default RUN/map-METHOD-N)")
    p.add_argument("--force", action="store_true",
                   help="replace existing --out and --map files (never the run's files or the points file)")
    p.add_argument("--depth", type=int, default=None, help="ResNet blocks for --method resnet (default 16 per slab)")
    p.add_argument("--scheme", default="midpoint", choices=["euler", "midpoint", "rk4"],
                   help="ResNet block scheme for --method resnet")
    p.set_defaults(run=command_predict)

    from solver.plain2resnet.cli import add_parser as add_plain2resnet

    add_plain2resnet(sub)
    return parser


def default_out(parser: argparse.ArgumentParser, args) -> None:
    """``--out`` checked and defaulted to runs/<config name>."""
    if getattr(args, "config", "unset") is None and not getattr(args, "resume", False):
        parser.error("a problem file is needed (or --resume with --out RUN)")
    if getattr(args, "out", "unset") is None:
        if args.config is None:
            parser.error("--resume needs --out RUN")
        stem = Path(args.config).stem
        if stem in ("", ".", "..") or not Path(args.config).name:
            parser.error(f"cannot name a run directory after {str(args.config)!r}; pass --out RUN")
        args.out = Path("runs") / stem


# How long a rank that stops with an error waits for the others before it aborts the job.
EXIT_WAIT = 30.0


def finish(comm: MPI.Comm, exits: MPI.Comm, code: int, message: str | None = None) -> int:
    """``code``, once every rank has finished; a rank that stops with an error and whose peers do
    not finish within ``EXIT_WAIT`` seconds (they wait for it in a collective) aborts the job.
    ``message``: this rank's error line (an error found on some ranks only), printed once, by the
    lowest rank that has one; every rank then exits with the highest code."""
    if comm.size == 1:
        if message:
            print(message, file=sys.stderr, flush=True)
        return code
    await_peers(exits, code, EXIT_WAIT, f"{message + chr(10) if message else ''}error: rank {comm.rank} stopped "
                f"(exit {code}) but the other ranks did not; aborting the job")
    verdicts = exits.allgather((code, message))
    first = next((rank for rank, (_, said) in enumerate(verdicts) if said), None)
    if first == comm.rank:
        print(message, file=sys.stderr, flush=True)
    return max(c for c, _ in verdicts)


def out_of_memory(comm: MPI.Comm, args, error: BaseException) -> str:
    """The one line for a MemoryError that the guards did not foresee (rank-local)."""
    advice = "lower the resolution or the number of points, or run with more memory per rank"
    if args.command in ("train", "compare"):
        advice = ('lower mesh.cells or mesh.degree, or set solver.stage_memory to a number of MiB (the '
                  'default "auto" keeps up to half of the memory available at the first gradient), '
                  'or run with more memory per rank')
    return (f"error: rank {comm.rank} ran out of memory ({error or 'an allocation failed'}) although the "
            f"estimates before the run allowed it; {advice}")


def interrupt(signum, frame):
    """SIGTERM outside training: stop as on SIGINT (KeyboardInterrupt, exit 128 + 15)."""
    raise KeyboardInterrupt(int(signum))


def main(argv: list[str] | None = None) -> int:
    comm = MPI.COMM_WORLD
    exits = comm.Dup() if comm.size > 1 else comm  # for finish(): no other traffic on it
    # SIGTERM like SIGINT (the default would kill without a word); training installs its own.
    signal.signal(signal.SIGTERM, interrupt)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        default_out(parser, args)
    except UsageError as error:
        if comm.rank == 0:
            print(f"{error.usage}error: {error}", file=sys.stderr, flush=True)
        return finish(comm, exits, 2)
    with cli_logging(comm, args.verbose), one_blas_thread():
        return _run(comm, exits, args)


def _run(comm: MPI.Comm, exits: MPI.Comm, args) -> int:
    """The command of ``args``, its errors turned into one message and an exit status."""
    try:
        if args.command == "compare" and args.config.is_dir():
            preflight_compare_run(comm, args.config)
        elif args.command == "compare":
            preflight_compare(comm, args)
        code = args.run(comm, args)
    except InputError as error:
        # Raised alike on every rank (inputs are read and checked collectively): one message.
        if comm.rank == 0:
            print(f"error: {error}", file=sys.stderr, flush=True)
        code = 2
    except stopping.Stopped as stop:
        if comm.rank == 0:
            print(f"stopped at iteration {stop.iteration} ({signal.Signals(stop.signum).name}); "
                  f"checkpoint written: continue with `python -m solver train --resume --out "
                  f"{stop.checkpoint.parent}`", file=sys.stderr, flush=True)
        code = stop.exit_code
    except KeyboardInterrupt as interrupted:
        code = 128 + (interrupted.args[0] if interrupted.args else signal.SIGINT)
        if comm.rank == 0:
            print(f"interrupted (exit {code})", file=sys.stderr, flush=True)
        if comm.size > 1:
            comm.Abort(code)  # the other ranks may be waiting in a collective
        return code
    except MemoryError as error:  # on some ranks only, maybe: every rank exits 2, one message
        return finish(comm, exits, 2, out_of_memory(comm, args, error))
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        if comm.size > 1:
            comm.Abort(1)  # the other ranks may be waiting in a collective
        return 1
    return finish(comm, exits, code)


if __name__ == "__main__":
    sys.exit(main())
