"""How points are dealt out over MPI ranks and gathered back, and how rank 0's work reaches every
rank (mpi4py and numpy only).

A set of n items known on every rank is split into contiguous, balanced shares
(:func:`rank_share`); each rank works on its share, and :func:`gather_rows` concatenates the
ranks' results in rank order, i.e. in the original order of the items, on every rank.
Work that only rank 0 does (writing a file, reading one that may be broken) goes through
:func:`on_rank0`, so that its result, or its ``InputError``, reaches every rank; checks that
every rank does on its own go through :func:`agreed`, so that one rank's error raises on all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from mpi4py import MPI

from solver.errors import InputError, UnstableSolve


def rank_share(comm: MPI.Comm, n: int) -> slice:
    """This rank's share of n items: contiguous, the first n mod size ranks one item more."""
    base, extra = divmod(int(n), comm.size)
    start = comm.rank * base + min(comm.rank, extra)
    return slice(start, start + base + (comm.rank < extra))


def gather_rows(comm: MPI.Comm, local_rows: np.ndarray) -> np.ndarray:
    """The ranks' row blocks concatenated in rank order, on every rank (collective).

    Args:
        local_rows: this rank's rows, shape=(m, ...) with the same trailing shape on every
            rank (m may differ, and be 0); converted to float64.

    Returns:
        shape=(Σ m, ...).
    """
    local = np.ascontiguousarray(local_rows, dtype=np.float64)
    counts = np.asarray(comm.allgather(local.shape[0]), dtype=np.int64)
    row_size = int(np.prod(local.shape[1:], dtype=np.int64))
    out = np.empty((int(counts.sum()), *local.shape[1:]))
    sizes = counts * row_size
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    comm.Allgatherv(local, [out, sizes, offsets, MPI.DOUBLE])
    return out


def on_rank0(comm: MPI.Comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 only; every rank gets its result, or raises its
    InputError (collective). Any other exception on rank 0 is raised there only (the command
    line then aborts the job, so that no rank waits).
    """
    verdict = None
    if comm.rank == 0:
        try:
            verdict = ("result", fn(*args, **kwargs))
        except InputError as error:
            verdict = ("error", (error.message, error.source, type(error).__name__))
    kind, value = comm.bcast(verdict, root=0)
    if kind == "error":
        message, source, name = value
        raise (UnstableSolve if name == "UnstableSolve" else InputError)(message, source)
    return value


@contextlib.contextmanager
def agreed(comm: MPI.Comm) -> Iterator[None]:
    """Rank-local checks whose failure on any rank raises on every rank (collective: one
    allgather when the block ends, also when it raised).

    The failing rank re-raises its own exception; the others raise an ``InputError`` with its
    message (the first failing rank's), so that no rank goes on into a collective that the
    failing one never reaches (the Python API has no exit watchdog: that would hang).
    """
    failure = None
    try:
        yield
    except Exception as error:  # noqa: BLE001 (agreed on, then raised again below)
        failure = error
    verdicts = comm.allgather(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    for rank, message in enumerate(verdicts):
        if message is not None:
            raise InputError(f"rank {rank} refused its input: {message}")
