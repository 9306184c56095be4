"""Viscous transport: time steps and seconds per forward solve against ε, explicit, on the meshes
of the shipped problems; beside it what an IMEX step (implicit diffusion) would cost.

    .venv/bin/python scripts/bench_viscous.py [--problems moons,spirals] [--eps 0,1e-3,1e-2,3e-2]
    .venv/bin/mpirun -n 2 .venv/bin/python scripts/bench_viscous.py

For each problem file: its mesh (cells, degree, domain) and its initial field (seeded θ), K = 2
components. "explicit" is the solver as it is (``fem/transport.py``: −εM⁻¹S added to L, the step
from the advective CFL bound and the diffusion bound together). "IMEX" is measured by its
ingredient: at the inviscid step dt_adv, each RK stage would solve (M + dt ε S) x = b for each of
the K components; the iterations and seconds of that solve with CG + block Jacobi/ICC and CG +
GAMG (rtol 1e-10, random b) are measured, and an IMEX solve is estimated as the inviscid solve
plus 3 · K · steps · (one KSP solve). Nothing is asserted; medians of ``--repeat`` solves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from solver.check.compare_field import build_field
from solver.config import load_config
from solver.fem.mesh import create_mesh
from solver.fem.transport import TransportSolver

ROOT = Path(__file__).resolve().parent.parent
REPEAT_KSP = 11


def terminal(x: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(np.pi * x[:, 0]), np.tanh(3 * x[:, 1])], axis=1)


def ksp_solve(solver: TransportSolver, dt: float, pc: str, comm) -> tuple[int, float]:
    """Iterations and seconds of one CG solve of (M + dt ε S) x = b (collective)."""
    K = solver.diffusion.copy()  # −ε M⁻¹S
    mass = solver.inverse_mass.copy()
    mass.reciprocal()
    K.diagonalScale(L=mass)  # −ε S
    K.scale(-dt)  # dt ε S
    K.setDiagonal(K.getDiagonal() + mass)  # the mass is diagonal
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(K)
    ksp.setType("cg")
    p = ksp.getPC()
    if pc == "icc":
        p.setType("bjacobi")
        ksp.setUp()
        for sub in p.getBJacobiSubKSP():
            sub.getPC().setType("icc")
    else:
        p.setType("gamg")
    ksp.setTolerances(rtol=1e-10)
    b = K.createVecLeft()
    b.setArray(np.random.default_rng(comm.rank).standard_normal(b.getLocalSize()))
    x = b.duplicate()
    ksp.setUp()
    ksp.solve(b, x)  # warm-up
    times = []
    for _ in range(REPEAT_KSP):
        comm.Barrier()
        t0 = time.perf_counter()
        ksp.solve(b, x)
        times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    seconds = float(np.median(times))
    its = ksp.getIterationNumber()
    for o in (ksp, b, x, K, mass):
        o.destroy()
    return its, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="moons,spirals,circles3d,peaks")
    parser.add_argument("--eps", default="0,1e-3,1e-2,3e-2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rows = []
    for name in args.problems.split(","):
        config = load_config(ROOT / "problems" / f"{name}.toml")
        domain = config.domain_object()
        mesh = create_mesh(comm, domain, config.mesh.cells)
        field = build_field(config, domain)
        base = None
        for eps in [float(e) for e in args.eps.split(",")]:
            with TransportSolver(mesh, degree=config.mesh.degree, num_components=2,
                                     viscosity=eps) as solver:
                times = []
                for _ in range(args.repeat):
                    comm.Barrier()
                    t0 = time.perf_counter()
                    result = solver.solve(field, terminal, keep=False)
                    times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
                steps, seconds = sum(result.steps_per_piece), float(np.median(times))
                row = dict(problem=name, cells=config.mesh.cells, k=config.mesh.degree,
                           dofs=solver.num_dofs_global, eps=eps, steps=steps, seconds=seconds)
                if eps == 0:
                    base = (steps, seconds, result.dt_per_piece)
                elif base is not None:
                    dt_adv = min(base[2])
                    for pc in ("icc", "gamg"):
                        its, ksp_seconds = ksp_solve(solver, dt_adv, pc, comm)
                        row[f"imex_{pc}_its"] = its
                        row[f"imex_{pc}_seconds"] = base[1] + 3 * 2 * base[0] * ksp_seconds
                rows.append(row)
    if comm.rank == 0:
        print(f"ranks: {comm.size}")
        print("| problem | mesh | dofs | ε | explicit steps | explicit s/solve | CG+ICC its | "
              "IMEX (ICC) s/solve | CG+GAMG its | IMEX (GAMG) s/solve |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            imex = [f"{r[k]}" if "its" in k else f"{r[k]:.3g}" for k in
                    ("imex_icc_its", "imex_icc_seconds", "imex_gamg_its", "imex_gamg_seconds")
                    if k in r] or ["–"] * 4
            print(f"| {r['problem']} | {r['cells']}, DG{r['k']} | {r['dofs']} | {r['eps']:g} | "
                  f"{r['steps']} | {r['seconds']:.3g} | " + " | ".join(imex) + " |")


if __name__ == "__main__":
    main()
