"""Section 5, memory: peak resident memory of a forward solve and of a gradient (3D problem),
keeping the RK stage states for the adjoint or recomputing them from checkpoints.

ru_maxrss is a process-wide high-water mark, so every (configuration, operation) runs in its own
process, on one rank: build the problem, solve once for the value alone (so that one-time costs
of a first solve, such as the BLAS buffers, are not counted), reset the high-water mark to the
current RSS (Linux:
``echo 5 > /proc/self/clear_refs``; where that fails the mark includes the set-up, and the
result says so), run the operation once, and report ru_maxrss minus the RSS before it. The
operation is then repeated and its median time reported, so that the memory/time trade shows.

The driver (:func:`run`) starts the worker, this module as a script:

    python -m scripts.bench_lib.memory CONFIG --operation gradient --checkpoint-every 8 --stage-memory 0 --json OUT
"""

from __future__ import annotations

# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI

import argparse
import gc
import json
import resource
import time
from pathlib import Path

from scripts.bench_lib.common import PROBLEMS, PYTHON, Bench, median, write_config

SECTION = "5 memory"
CELLS, QUICK_CELLS = 16, 4
KEEP_ALL = 2**40  # a stage-memory bound no run reaches: every stage state is kept
# name: (checkpoint_every, stage_memory in bytes or None for TransportSolver's default)
TRAJECTORIES = {
    "default (checkpoints every 4, stage memory \"auto\")": (4, None),
    "stage memory 64 MiB (checkpoints every 4)": (4, 64 * 2**20),
    "all stages kept (checkpoints every 4)": (4, KEEP_ALL),
    "recomputed, checkpoint every step": (1, 0),
    "recomputed, checkpoint every 8 steps": (8, 0),
}
OPERATIONS = ("forward", "gradient")  # the forward keeps what the adjoint needs


def status(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: peak), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset the high-water mark of the RSS (and with it ru_maxrss) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(config_path: Path, operation: str, checkpoint_every: int, stage_memory: int | None, repeats: int) -> dict:
    """Peak memory of one operation (its first call after a value solve), then its median time
    over ``repeats`` more calls."""
    from solver.config import load_config
    from solver.learn.train import Problem

    comm = MPI.COMM_WORLD
    config = load_config(config_path)
    with Problem.build(comm, config) as problem:
        solver, J = problem.solver, problem.J
        # Read at solve time: the trajectory a forward keeps for the adjoint.
        solver.checkpoint_every = checkpoint_every
        if stage_memory is not None:
            solver.stage_memory = stage_memory
        p = J.initial(config.train.seed, config.field.scale)
        theta, A, b = J.split(p)
        field = problem.model.field(theta)
        operations = {
            "value": lambda: J(p),
            "forward": lambda: solver.solve(field, lambda x: x @ A.T + b, keep=True),
            "gradient": lambda: J.value_and_gradient(p),
        }
        run = operations[operation]
        # One value solve first: what any first solve allocates once (BLAS buffers, PETSc and
        # dolfinx internals) is not the operation's own memory.
        J(p)
        gc.collect()
        reset = reset_peak()
        before = status("VmRSS")
        started = time.perf_counter()
        value = run()
        first = time.perf_counter() - started
        peak = status("VmHWM")
        result = dict(operation=operation, checkpoint_every=checkpoint_every, stage_memory=solver.stage_memory,
                      dofs=solver.num_dofs_global, classes=solver.num_components, rss_before=before, peak_rss=peak,
                      peak_increase=peak - before, peak_reset=reset, first_seconds=first,
                      ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        if operation == "forward":
            trajectory = value.trajectory
            result.update(steps=trajectory.num_steps, checkpoints_kept=len(trajectory.states),
                          stages_kept=len(trajectory.stages), trajectory_bytes=trajectory.nbytes())
        del value
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        result["seconds"] = median(times) if times else first
    return result


def measure(bench: Bench, config_path: Path, name: str, operation: str, checkpoint_every: int,
            stage_memory: int | None) -> dict:
    """One worker process; its result."""
    out = bench.out / "work" / f"memory-{operation}-{checkpoint_every}-{stage_memory}.json"
    bench.progress(SECTION, "3D", f"{operation}: {name}")
    command = [PYTHON, "-m", "scripts.bench_lib.memory", config_path, "--operation", operation,
               "--checkpoint-every", str(checkpoint_every), "--repeats", str(bench.repeats), "--json", out]
    if stage_memory is not None:
        command += ["--stage-memory", str(stage_memory)]
    bench.run(command, out.stem)
    return json.loads(out.read_text())


def run(bench: Bench) -> dict:
    """Section 5: the value alone, then forward and gradient for every trajectory choice."""
    cells = QUICK_CELLS if bench.quick else CELLS
    config_path = write_config(PROBLEMS / "circles3d.toml", bench.out / "configs" / "memory-circles3d.toml",
                               {"mesh": {"cells": cells, "degree": 1}, "solver": {"scheme": "rk3"},  # RK3's trajectory
                                "output": {"vtx": False, "png": False, "animation": False}})
    section = bench.results["memory"] = dict(config=str(config_path.relative_to(bench.out)), cells=cells, ranks=1,
                                             repeats=bench.repeats, rows=[])
    section["rows"].append(dict(name="value only (no trajectory kept)", stage_memory_unbounded=False,
                                **measure(bench, config_path, "value only", "value", 4, None)))
    for name, (checkpoint_every, stage_memory) in TRAJECTORIES.items():
        for operation in OPERATIONS:
            result = measure(bench, config_path, name, operation, checkpoint_every, stage_memory)
            section["rows"].append(dict(name=name, stage_memory_unbounded=stage_memory == KEEP_ALL, **result))
        bench.save()
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description="section 5 worker: peak memory and time of one operation")
    parser.add_argument("config", type=Path)
    parser.add_argument("--operation", choices=("value", *OPERATIONS), required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    parser.add_argument("--stage-memory", type=int, default=None, help="bytes (default: the solver's default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    result = worker(args.config, args.operation, args.checkpoint_every, args.stage_memory, args.repeats)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
