"""Finite-element fields for ParaView: VTX (ADIOS2, BP4) files of nodal DG functions (collective).

A VTX output is a directory (u0.bp, u_t.bp) that ADIOS2 empties and writes in place: it is
written under a temporary name (``rundir.files.temporary_name``) and then renamed over the
target, so that a killed write leaves the old output, and an entry that is a symbolic link is
replaced, never followed (ADIOS2 would write, and delete, where it points).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from mpi4py import MPI

from dolfinx import fem
from dolfinx.io import VTXWriter


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


@contextlib.contextmanager
def _vtx_target(comm: MPI.Comm, path: Path) -> Iterator[Path]:
    """A temporary directory name next to ``path`` (the same on every rank) to write the VTX
    output to; moved to ``path`` by rank 0 when the block ends (collective)."""
    from solver.parallel import on_rank0
    from solver.rundir.files import replace_directory, temporary_name

    path = Path(path)
    written = temporary_name(path, comm.bcast(secrets.token_hex(4) if comm.rank == 0 else None, root=0))
    yield written
    comm.barrier()  # every rank's part of the file is closed
    on_rank0(comm, replace_directory, written, path)


def write_fields(comm: MPI.Comm, path: Path, functions: list[fem.Function], t: float = 0.0) -> None:
    """Write functions to one VTX (ADIOS2) file for ParaView (collective)."""
    with _vtx_target(comm, path) as written, VTXWriter(comm, written, functions, engine="BP4") as writer:
        writer.write(t)


def write_trajectory(comm: MPI.Comm, path: Path, solver, result, every: int = 1) -> None:
    """u_h(t, ·) at the kept step starts (and t = 0) as one VTX time series for ParaView (collective).

    Written in t (not τ): the series runs from t = T (u = f) down to t = 0 (the prediction).
    """
    K = len(result.u0)  # the logits (the solver may have carried the coordinates: fem/affine.py)
    legendre = [fem.Function(solver.V, name=f"u{c}") for c in range(K)]
    V = fem.functionspace(solver.mesh, ("DG", solver.degree))
    nodal = [fem.Function(V, name=f"u{c}") for c in range(K)]
    traj = result.trajectory
    kept = sorted(traj.states)[::every]
    with _vtx_target(comm, path) as written, VTXWriter(comm, written, nodal, engine="BP4") as writer:
        for step in kept:
            logits = result.logit_rows(traj.states[step])
            for c, (f, g) in enumerate(zip(legendre, nodal)):
                f.x.array[: solver.num_owned] = logits[c]
                f.x.scatter_forward()
                g.interpolate(f)
            writer.write(float(traj.times[step]))
        for f, g in zip(result.u0, nodal):
            g.interpolate(f)
        writer.write(0.0)
