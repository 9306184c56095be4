"""Command line (also under ``mpirun -n P``)::

    python -m solver compare CONFIG | RUN     PDE against the characteristics (a field, or a trained run)
    python -m solver train CONFIG             learn the velocity field; --resume --out RUN continues
    python -m solver export RUN               a trained run as an explicit ResNet (ONNX, npz)
    python -m solver plain2resnet NET ...     a plain MLP as a ResNet (``solver.plain2resnet.cli``)

The only place that reads ``MPI.COMM_WORLD``. Bad input (an ``InputError``, raised on every rank
alike, or found on rank 0 and handed to all by ``on_rank0``) prints one message on rank 0 and
exits with status 2 on every rank; any other exception prints its traceback and aborts the MPI
job, so that no rank waits forever in a collective.
"""

from __future__ import annotations

# mpi4py before dolfinx: dolfinx's extension modules need the MPI library that mpi4py loads
# (imported the other way round, libmpi.so.12 is not found).
from mpi4py import MPI

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

from solver.errors import InputError
from solver.rundir import store

log = logging.getLogger("solver")


def setup_logging(comm: MPI.Comm, verbose: bool) -> None:
    """One logger, on rank 0 only: no duplicated lines under mpirun."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler] if comm.rank == 0 else [logging.NullHandler()]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def parse_cells(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--refine takes comma-separated integers like 8,16,32, got {text!r}") from None
    return values


def on_rank0(comm: MPI.Comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 only; every rank gets its result, or raises its InputError
    (collective). Any other exception on rank 0 is raised there only (``main`` then aborts the job).
    """
    verdict = None
    if comm.rank == 0:
        try:
            verdict = ("result", fn(*args, **kwargs))
        except InputError as error:
            message = str(error).removeprefix(f"{error.source}: ") if error.source else str(error)
            verdict = ("error", (message, error.source))
    kind, value = comm.bcast(verdict, root=0)
    if kind == "error":
        raise InputError(*value)
    return value


def command_compare(comm: MPI.Comm, args) -> int:
    """Solve the PDE and the characteristics for the configured field and compare them; for a
    trained run directory, check the learned field's predictions against the characteristics."""
    if args.config.is_dir():
        from solver.check.compare_run import compare_run

        compare_run(comm, args.config)
        return 0
    # Imported here so that a bad config fails before dolfinx is loaded.
    from solver.config import load_config

    config = load_config(args.config)
    from solver.check import compare_field as cmp
    from solver.rundir.files import prepare_run_directory
    from solver.rundir.outputs import write_comparison_outputs

    out = prepare_run_directory(comm, args.out, force=args.force)
    on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml())
    refine = parse_cells(args.refine) if args.refine is not None else list(config.compare.refine)

    started = time.perf_counter()
    points, grid = cmp.sample_points(config)
    log.info(
        "compare %s: %s, mesh %d cells/direction, DG%d, %d ranks",
        args.config, config.field.kind, config.mesh.cells, config.mesh.degree, comm.size,
    )
    run = cmp.solve_and_compare(comm, config, config.mesh.cells, points, grid)
    # comparison_metrics and write_comparison_outputs take the run's parts by name, as a dict:
    # vars(run) is that dict (its fields), until they take the MeshComparison itself.
    metrics = comparison_metrics(comm, args, config, run.comparison, vars(run), len(points), len(grid))
    on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    write_comparison_outputs(comm, config, out, grid, vars(run))
    if refine:
        metrics["refinement"] = refinement(comm, args, config, refine, out)
        on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    run.destroy()
    metrics["seconds"] = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
    on_rank0(comm, store.write_json, out / store.METRICS, metrics)
    log.info("wrote %s (metrics.json%s)", out, ", PNG, VTX" if config.output.png else "")
    return 0


def comparison_metrics(comm: MPI.Comm, args, config, comparison, state: dict, num_points: int,
                       num_grid: int) -> dict:
    """metrics.json of ``compare CONFIG`` on the configured mesh; logs its summary."""
    log.info(
        "  dofs %d x %d components, %d time steps, solve %.2f s",
        comparison.dofs, state["terminal"].num_components, comparison.steps, comparison.seconds_solve,
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
        steps_per_piece=state["result"].steps_per_piece,
        dt_per_piece=state["result"].dt_per_piece,
    )


def refinement(comm: MPI.Comm, args, config, cells: list[int], out: Path) -> dict:
    """The refinement study over ``cells`` (collective); logs its table, draws convergence.png."""
    from solver.check import compare_field as cmp

    log.info("refinement study over cells = %s", cells)
    study = cmp.refinement_study(comm, config, cells)
    log.info("%s", cmp.format_table(study))
    if config.output.png and comm.rank == 0:
        from solver.rundir.plots import convergence_figure

        convergence_figure(out / "convergence.png", study, f"DG{config.mesh.degree}: {args.config}")
    return study


def command_train(comm: MPI.Comm, args) -> int:
    """Learn the velocity field for the configured data; write a run directory."""
    from solver.config import load_config

    if args.resume:
        config_path = args.out / store.CONFIG
        if not config_path.exists():
            raise InputError(f"--resume needs a run directory with {store.CONFIG}", str(args.out))
        config = load_config(config_path)
    else:
        config = load_config(args.config)
    from solver.rundir.files import prepare_run_directory
    from solver.rundir.outputs import write_training_outputs
    from solver.learn.train import Problem, train

    if not args.resume:
        out = prepare_run_directory(comm, args.out, force=args.force)
        on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml())
    else:
        out = args.out
    started = time.perf_counter()
    problem = Problem.build(comm, config)
    from solver.model.data import describe

    log.info("%s", describe(problem.dataset))
    log.info(
        "train: %d parameters (%d velocity, %d output), mesh %d cells/direction, DG%d, %d dofs x %d, "
        "%s, %d iterations, %d ranks",
        problem.J.n_params, problem.J.n_theta, problem.J.n_params - problem.J.n_theta,
        config.mesh.cells, config.mesh.degree, problem.solver.num_dofs_global,
        problem.dataset.num_classes, config.train.optimizer, config.train.iterations, comm.size,
    )
    outcome = train(comm, problem, out, resume=args.resume)
    metrics = write_training_outputs(comm, outcome, out)
    log.info(
        "trained: loss %.5f, train accuracy %.4f, test accuracy %.4f (PDE on %s; the flow: %.4f), "
        "%d iterations, %.1f s -> %s",
        metrics["final_loss"], metrics["train_accuracy"], metrics["test_accuracy"],
        outcome.problem.resolution, metrics["check"]["test"]["accuracy_characteristics"],
        metrics["iterations"], time.perf_counter() - started, out,
    )
    from solver.learn.train import describe_check

    if metrics["certified"]:
        log.info("certified: %s", describe_check(outcome.check))
    else:
        log.info("NOT CERTIFIED: %s (train.tolerance = %g, train.agreement = %g); the numbers above "
                 "are the PDE's on %s, not the learned flow's; see metrics.json 'check'",
                 describe_check(outcome.check), config.train.tolerance, config.train.agreement,
                 outcome.problem.resolution)
    outcome.problem.destroy()
    return 0


def command_export(comm: MPI.Comm, args) -> int:
    """Export a trained run as an explicit ResNet (rank 0 works; numpy and ONNX only)."""
    from solver.resnet.export import export

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    for path in on_rank0(comm, export, args.run_dir, args.depth, args.scheme, formats, args.output):
        log.info("wrote %s", path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m solver",
        description="Transport inverse problem solver (Li & Shi, 'A Flow Model of Neural Networks').",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="solve the PDE and the characteristics and compare them")
    p.add_argument("config", type=Path, help="problem file (TOML), e.g. problems/default.toml, or a trained run directory")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument(
        "--refine", default=None, metavar="N1,N2,...",
        help="refinement study over these mesh cell counts (default: compare.refine of the config; '' for none)",
    )
    p.set_defaults(run=command_compare)

    p = sub.add_parser("train", help="learn the velocity field (adjoint-based optimizer)")
    p.add_argument("config", type=Path, nargs="?", default=None, help="problem file (TOML)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(run=command_train)

    p = sub.add_parser("export", help="export a trained run as an explicit ResNet (ONNX, npz)")
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a trained run directory")
    p.add_argument("--depth", type=int, default=16, help="number of residual blocks N (default 16)")
    p.add_argument("--scheme", default="euler", choices=["euler", "midpoint", "rk4"],
                   help="block scheme: euler is eq. 17; midpoint/rk4 need fewer blocks")
    p.add_argument("--format", default="onnx,npz", help="comma-separated: onnx, npz")
    p.add_argument("--output", default="linear", choices=["linear", "softmax"], help="logits or probabilities")
    p.set_defaults(run=command_export)

    from solver.plain2resnet.cli import add_parser as add_plain2resnet

    add_plain2resnet(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    comm = MPI.COMM_WORLD
    args = build_parser().parse_args(argv)
    setup_logging(comm, args.verbose)
    if getattr(args, "config", "unset") is None and not getattr(args, "resume", False):
        build_parser().error("a problem file is needed (or --resume with --out RUN)")
    if getattr(args, "out", "unset") is None:
        if args.config is None:
            build_parser().error("--resume needs --out RUN")
        args.out = Path("runs") / Path(args.config).stem
    try:
        return args.run(comm, args)
    except InputError as error:
        # Raised alike on every rank (inputs are read and checked collectively): one message.
        if comm.rank == 0:
            print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if comm.size > 1:
            comm.Abort(130)
        return 130
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        if comm.size > 1:
            comm.Abort(1)  # the other ranks may be waiting in a collective
        return 1


if __name__ == "__main__":
    sys.exit(main())
