"""Benchmark of the forward transport solver (SSP-RK3): time per step, dof-steps per second,
the cost of a step in matrix-vector products with the same operator, and the speedup 1 → 2 ranks.

    .venv/bin/python -m scripts.bench_forward            # driver: runs the cases on 1 and 2 ranks
    .venv/bin/python -m scripts.bench_forward --quick    # small meshes (what the tests run)
    .venv/bin/python -m scripts.bench_forward --components 5 --cases peaks-dg1,peaks-dg2

With K components a step advances all K together (three MatMatMults with a dense n × K block);
``step/matvec`` is then a step's time over K single-vector MatMults, the cost of the products
alone had each component been stepped on its own (as before the block form).

The driver starts one ``mpirun -n P`` worker per (case, P), alternating 1 and 2 ranks over the
repeats so that both see the same machine load, and reports medians. A worker
(``--worker``) builds the mesh and operator once, then times steps and products.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from scripts.harness import ROOT, mpirun, subprocess_env

CASES = {
    "box2d-128": dict(dim=2, cells=128),
    "box2d-256": dict(dim=2, cells=256),
    "box3d-24": dict(dim=3, cells=24),
    # problems/peaks.toml's mesh (13³ box), DG1 and DG2
    "peaks-dg1": dict(dim=3, cells=13, degree=1),
    "peaks-dg2": dict(dim=3, cells=13, degree=2),
}
DEFAULT = ("box2d-128", "box2d-256", "box3d-24")
QUICK = {"box2d-32": dict(dim=2, cells=32), "box3d-6": dict(dim=3, cells=6)}


def worker(case: dict, steps: int, products: int, K: int) -> dict:
    from mpi4py import MPI

    import numpy as np

    from solver.model.domain import Box
    from solver.fem.transport import TransportSolver
    from solver.fem.mesh import create_mesh
    from solver.model.velocity import VelocityModel

    comm = MPI.COMM_WORLD
    d = case["dim"]
    domain = Box((-2.0,) * d, (2.0,) * d)
    mesh = create_mesh(comm, domain, case["cells"])
    model = VelocityModel(dim=d, width=8, slabs=1, T=1.0, activation="tanh", domain=domain)
    field = model.field(model.init(seed=0, scale=1.0))
    with TransportSolver(mesh, degree=case.get("degree", 1), num_components=K) as solver:

        comm.Barrier()
        t0 = time.perf_counter()
        speed = solver.set_velocity(field, 0.5)
        solver.assemble_operator()
        comm.Barrier()
        assemble = time.perf_counter() - t0

        u = solver.block("bench", K)
        u.rows[:] = np.random.default_rng(comm.rank).random(u.rows.shape)
        x, y = solver.L.createVecRight(), solver.L.createVecLeft()
        x.array[:] = u.rows[0]
        dt = 0.5 * solver.max_dt(speed)
        for _ in range(3):  # warm up
            solver.rk3_step(u, dt)
            solver.L.mult(x, y)

        def timed(fn, n):
            comm.Barrier()
            t = time.perf_counter()
            for _ in range(n):
                fn()
            comm.Barrier()
            return (time.perf_counter() - t) / n

        step = timed(lambda: solver.rk3_step(u, dt), steps)
        matvec = timed(lambda: solver.L.mult(x, y), products)
        dofs = solver.num_dofs_global
        x.destroy()
        y.destroy()
    return dict(
        ranks=comm.size,
        dofs=dofs,
        assemble_s=assemble,
        step_ms=1e3 * step,
        matvec_ms=1e3 * matvec,
        step_over_matvec=step / (K * matvec),
        dof_steps_per_s=K * dofs / step,
    )


def run_worker(name: str, case: dict, ranks: int, steps: int, products: int, K: int) -> dict:
    cmd = mpirun(ranks, ["-m", "scripts.bench_forward", "--worker", json.dumps(case), "--steps", steps,
                         "--products", products, "--components", K])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=subprocess_env())
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def driver(cases: dict, repeats: int, steps: int, products: int, out: Path | None, K: int = 1) -> list[dict]:
    rows = []
    for name, case in cases.items():
        runs = {1: [], 2: []}
        for r in range(repeats):
            for ranks in ((1, 2) if r % 2 == 0 else (2, 1)):
                runs[ranks].append(run_worker(name, case, ranks, steps, products, K))
        row = dict(case=name, dofs=runs[1][0]["dofs"], components=K)
        for ranks in (1, 2):
            for key in ("step_ms", "matvec_ms", "step_over_matvec", "dof_steps_per_s", "assemble_s"):
                row[f"{key}@{ranks}"] = median([x[key] for x in runs[ranks]])
        row["speedup_step"] = row["step_ms@1"] / row["step_ms@2"]
        rows.append(row)
        print_row(row, header=len(rows) == 1)
    if out:
        out.write_text(json.dumps(dict(date=time.strftime("%Y-%m-%d"), rows=rows), indent=2))
    return rows


def print_row(row: dict, header: bool) -> None:
    if header:
        print(f"{'case':>10} {'dofs':>9} | {'step ms':>8} {'Mdof-steps/s':>12} {'step/matvec':>11} "
              f"| {'step ms':>8} {'step/matvec':>11} | {'speedup':>7}")
        print(f"{'':>10} {'':>9} | {'1 rank':^33} | {'2 ranks':^20} |")
    print(f"{row['case']:>10} {row['dofs']:9d} | {row['step_ms@1']:8.2f} "
          f"{row['dof_steps_per_s@1'] / 1e6:12.1f} {row['step_over_matvec@1']:11.2f} | "
          f"{row['step_ms@2']:8.2f} {row['step_over_matvec@2']:11.2f} | {row['speedup_step']:7.2f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small meshes, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--products", type=int, default=120)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--components", type=int, default=1, help="K, components stepped together")
    parser.add_argument("--cases", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    if args.worker:
        result = worker(json.loads(args.worker), args.steps, args.products, args.components)
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(result), flush=True)
        return
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown and not args.quick:
        parser.error(f"unknown cases {sorted(unknown)}; known: {', '.join(CASES)}")
    cases = QUICK if args.quick else {name: CASES[name] for name in args.cases.split(",")}
    repeats = 1 if args.quick else args.repeats
    driver(cases, repeats, args.steps if not args.quick else 5, args.products if not args.quick else 10,
           args.out, args.components)


if __name__ == "__main__":
    main()
