"""Run directories: created once, written atomically, never overwritten without ``force``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.errors import InputError


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


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON so that a reader never sees a partial file (write, fsync, rename). Rank-local."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_plain(data), f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _plain(value):
    """numpy scalars and arrays to JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
