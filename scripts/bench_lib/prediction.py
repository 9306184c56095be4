"""Section 3, whole-domain prediction: the trained moons run on an n × n grid of Ω, three ways.

(i) the PDE: one forward solve gives u_h(0, ·) everywhere, then point evaluation at the grid
points (``PointEvaluator``: locating the points in the mesh, then one sparse product per
class); (ii) the characteristics (DOP853 per point, ``characteristics.solve``); (iii) the run
exported by the project's exporter as an explicit ResNet, in onnxruntime. All three on one core.

The driver (:func:`run`) exports the run and starts the worker, this module as a script:

    python -m scripts.bench_lib.prediction RUN --grid 512 --onnx NET.onnx --repeats 3 --out MAPS.npz --json TIMES.json
"""

from __future__ import annotations

# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scripts.bench_lib.common import PYTHON, Bench, median

SECTION = "3 prediction"
DEPTH, QUICK_DEPTH = 128, 16  # Euler blocks of the exported net
GRID, QUICK_GRID = 512, 128


def timed(fn, repeats: int) -> tuple[list[float], object]:
    """The times of ``repeats`` calls of ``fn`` and the last call's value."""
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return times, value


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Max logit difference and label agreement of two predictions (shape=(n, K))."""
    return dict(max_logit_difference=float(np.max(np.abs(a - b))),
                label_agreement=float(np.mean(a.argmax(1) == b.argmax(1))))


def worker(run: Path, n: int, onnx: Path, repeats: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Time the three routes on the n × n grid (serial); returns the numbers and the logits."""
    from solver.model import characteristics
    from solver.config import load_config
    from solver.rundir.outputs import plane_grid
    from solver.fem.pointeval import PointEvaluator
    from solver.resnet.onnx_net import load_onnx_session
    from solver.check.compare_run import load_parameters
    from solver.learn.train import Problem

    comm = MPI.COMM_WORLD
    with Problem.build(comm, load_config(run / "config.toml")) as problem:
        theta, A, b = problem.J.split(load_parameters(run))
        field = problem.model.field(theta)
        terminal = lambda x: x @ A.T + b  # noqa: E731 (the output layer f of eq. 13)
        grid = plane_grid(problem.domain, n)

        solve_times, result = timed(lambda: problem.solver.solve(field, terminal, keep=False), repeats)
        locate_times, evaluator = timed(lambda: PointEvaluator(problem.solver.V, grid, "grid"), repeats)
        apply_times, pde = timed(lambda: np.stack([evaluator(u) for u in result.u0], axis=1), repeats)
        char_times, char = timed(lambda: characteristics.solve(comm, field, terminal, grid).u0, repeats)
        net = load_onnx_session(onnx, threads=1)
        x_data = problem.dataset.scaling.inverse(grid)  # the net takes data coordinates
        net(x_data[:16])  # onnxruntime allocates its buffers on the first run
        resnet_times, resnet = timed(lambda: net(x_data).astype(np.float64), repeats)

        seconds = {"PDE": median(solve_times) + median(locate_times) + median(apply_times),
                   "characteristics": median(char_times), "ResNet": median(resnet_times)}
        numbers = dict(
            grid=n, points=len(grid), dofs=problem.solver.num_dofs_global, steps=int(sum(result.steps_per_piece)),
            seconds=seconds, pde_parts=dict(solve=median(solve_times), locate=median(locate_times),
                                             evaluate=median(apply_times)),
            ratios={f"{a} / {b}": seconds[a] / seconds[b] for a, b in
                    (("characteristics", "PDE"), ("PDE", "ResNet"), ("characteristics", "ResNet"))},
            differences={"PDE vs characteristics": compare(pde, char), "PDE vs ResNet": compare(pde, resnet),
                         "characteristics vs ResNet": compare(char, resnet)},
        )
    maps = dict(grid=grid, PDE=pde, characteristics=char, ResNet=resnet,
                X_train=problem.dataset.X_train, y_train=problem.dataset.y_train)
    return numbers, maps


def run(bench: Bench, run_dir: Path) -> dict:
    """Section 3: export the run, time the three routes in one worker, keep the maps for the plot."""
    depth, n = (QUICK_DEPTH, QUICK_GRID) if bench.quick else (DEPTH, GRID)
    bench.progress(SECTION, run_dir.name, f"export: {depth} Euler blocks (python -m solver export)")
    bench.run([PYTHON, "-m", "solver", "export", run_dir, "--depth", str(depth), "--scheme", "euler",
               "--format", "onnx"], "export")
    onnx = run_dir / f"resnet-euler-{depth}-float32.onnx"
    maps, out = bench.out / "work" / "prediction-maps.npz", bench.out / "work" / "prediction.json"
    bench.progress(SECTION, run_dir.name, f"PDE, characteristics and ResNet on the {n}² grid, 1 core each")
    bench.run([PYTHON, "-m", "scripts.bench_lib.prediction", run_dir, "--grid", str(n), "--onnx", onnx,
               "--repeats", str(bench.repeats), "--maps", maps, "--json", out], "prediction")
    section = bench.results["prediction"] = dict(json.loads(out.read_text()), run=str(run_dir.relative_to(bench.out)),
                                                 resnet=dict(depth=depth, scheme="euler", onnx=onnx.name, threads=1),
                                                 repeats=bench.repeats, maps=str(maps.relative_to(bench.out)))
    bench.save()
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description="section 3 worker: time the three routes on a grid")
    parser.add_argument("run", type=Path)
    parser.add_argument("--grid", type=int, required=True)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--maps", type=Path, required=True, help="npz of the grid and the three logit maps")
    parser.add_argument("--json", type=Path, required=True, help="the timings and differences")
    args = parser.parse_args()
    numbers, maps = worker(args.run, args.grid, args.onnx, args.repeats)
    np.savez_compressed(args.maps, **maps)
    args.json.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
