"""Files a reader never sees half-written, and run directories created once, never overwritten
without ``force``.

Every write goes to a temporary file ``.NAME.*`` in the target's directory, is flushed and
fsync'ed, then renamed over the target (``os.replace`` is atomic within one file system); on any
failure the temporary file is removed. What the files of a run directory hold is
``solver.rundir.store``'s business; this module only writes bytes safely.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from solver.errors import InputError

if TYPE_CHECKING:
    from mpi4py import MPI


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file to write that appears at ``path`` whole, or not at all (rank-local).

    Args:
        path: the target; its directory must exist.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (rank-local)."""
    with atomic_file(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | Path, data) -> None:
    """Write ``data`` as JSON atomically; numpy values become Python values, non-finite floats
    null (rank-local)."""
    write_text_atomic(path, json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")


def prepare_run_directory(comm: MPI.Comm, path: str | Path, force: bool = False) -> Path:
    """Create the run directory on rank 0 (collective); refuse an existing, non-empty one.

    Raises:
        InputError: on every rank, if ``path`` exists, is not empty and ``force`` is False.
    """
    path = Path(path)
    error = None
    if comm.rank == 0:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if force and path.is_dir():
                shutil.rmtree(path)
            else:
                error = f"run directory {path} exists and is not empty; pass --force to overwrite it"
        if error is None:
            path.mkdir(parents=True, exist_ok=True)
    error = comm.bcast(error, root=0)
    if error:
        raise InputError(error)
    return path


def _plain(value):
    """numpy scalars and arrays to JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
