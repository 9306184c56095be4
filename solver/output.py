"""What a comparison run writes besides metrics.json: a PNG and fields for ParaView (VTX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi4py import MPI

from dolfinx import fem
from dolfinx.io import VTXWriter

from solver import characteristics
from solver.config import Config


def nodal_copies(functions: list[fem.Function], degree: int) -> list[fem.Function]:
    """Interpolate DG functions of the orthonormal basis into nodal DG (VTX needs nodal)."""
    mesh = functions[0].function_space.mesh
    V = fem.functionspace(mesh, ("DG", degree))
    copies = []
    for f in functions:
        g = fem.Function(V, name=f.name)
        g.interpolate(f)
        copies.append(g)
    return copies


def write_fields(comm: MPI.Comm, path: Path, functions: list[fem.Function], t: float = 0.0) -> None:
    """Write functions to one VTX (ADIOS2) file for ParaView (collective)."""
    with VTXWriter(comm, path, functions, engine="BP4") as writer:
        writer.write(t)


def write_comparison_outputs(comm: MPI.Comm, config: Config, out: Path, grid: np.ndarray, state: dict) -> None:
    """The comparison picture (rank 0) and u_h(0, ·) for ParaView (collective)."""
    if config.output.png:
        field, terminal = state["field"], state["terminal"]
        rng = np.random.default_rng(0)
        inside = grid[config.domain_object().cutoff(grid) > 0.05]
        starts = inside[rng.choice(len(inside), size=min(16, len(inside)), replace=False)]
        traj = characteristics.solve(comm, field, terminal, starts, num_trajectory_times=60).trajectories
        if comm.rank == 0:
            from solver.plots import comparison_figure

            comparison_figure(
                out / "compare.png",
                grid,
                state["fe_grid"][:, 0],
                state["ref_grid"][:, 0],
                traj,
                f"{config.source}: PDE (DG{config.mesh.degree}) vs characteristics",
            )
    if config.output.vtx:
        solver = state["solver"]
        write_fields(comm, out / "u0.bp", nodal_copies(state["result"].u0, solver.degree))
