"""VTX outputs (u0.bp, u_t.bp) are directories written under a temporary name and renamed: a
symbolic link in their place is replaced, never followed (collective: 1 or 2 ranks)."""

from mpi4py import MPI

import numpy as np
from dolfinx import fem, mesh

from solver.rundir.fields import write_fields
from solver.rundir.files import MARKER, remove_temporaries


def a_function(comm):
    square = mesh.create_unit_square(comm, 3, 3)
    u = fem.Function(fem.functionspace(square, ("DG", 1)), name="u0")
    u.x.array[:] = np.arange(len(u.x.array), dtype=float)
    return u


def test_a_symlinked_vtx_entry_is_replaced_not_followed(comm, shared_directory):
    work = shared_directory(comm)
    run, elsewhere = work / "run", work / "elsewhere"
    if comm.rank == 0:
        run.mkdir()
        (run / MARKER).write_text("run\n")
        elsewhere.mkdir()
        (elsewhere / "thesis.tex").write_text("mine")
        (run / "u0.bp").symlink_to(elsewhere, target_is_directory=True)
    comm.Barrier()
    u = a_function(comm)
    write_fields(comm, run / "u0.bp", [u])
    comm.Barrier()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["thesis.tex"]
    assert (elsewhere / "thesis.tex").read_text() == "mine"
    assert (run / "u0.bp").is_dir() and not (run / "u0.bp").is_symlink()
    first = sorted(p.name for p in (run / "u0.bp").iterdir())
    assert first  # ADIOS2 wrote its files there
    write_fields(comm, run / "u0.bp", [u])  # over the solver's own directory: replaced
    comm.Barrier()
    assert sorted(p.name for p in (run / "u0.bp").iterdir()) == first
    assert sorted(p.name for p in run.iterdir()) == sorted([MARKER, "u0.bp"])  # no temporary left
    comm.Barrier()


def test_a_killed_vtx_write_leaves_a_temporary_directory_that_is_removed(tmp_path):
    (tmp_path / MARKER).write_text("run\n")
    (tmp_path / ".u_t.bp.ab12cd34.tmp").mkdir()
    (tmp_path / ".u_t.bp.ab12cd34.tmp" / "data.0").write_text("half")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".u0.bp.ab12cd35.tmp").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "keep").write_text("mine")
    assert remove_temporaries(tmp_path) == [".u0.bp.ab12cd35.tmp", ".u_t.bp.ab12cd34.tmp"]
    assert (tmp_path / "elsewhere" / "keep").read_text() == "mine"
