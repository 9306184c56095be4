"""How points are dealt out over MPI ranks and gathered back, and how rank 0's work reaches every
rank (mpi4py and numpy only).

A set of n items known on every rank is split into contiguous, balanced shares
(:func:`rank_share`); each rank works on its share, and :func:`gather_rows` concatenates the
ranks' results in rank order, i.e. in the original order of the items, on every rank.
Work that only rank 0 does (writing a file, reading one that may be broken) goes through
:func:`on_rank0`, so that its result, or its ``InputError``, reaches every rank (independent
calls dealt out over the ranks, through :func:`shared_out`); checks that
every rank does on its own go through :func:`agreed`, so that one rank's error raises on all.
What still escapes on one rank only (a fault, not an input: MemoryError, a bug, a full disk)
meets :func:`one_outcome`: the ranks that arrive at its end agree on one outcome, and a failed
rank whose peers never arrive (they wait for it in a collective) aborts the job after
``PEER_WAIT`` seconds instead of leaving them waiting forever.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sys
import time
import traceback
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


def shared_out(comm: MPI.Comm, fn, n: int) -> list:
    """``[fn(0), …, fn(n − 1)]`` on every rank, each call made on one rank only (the calls dealt
    out by :func:`rank_share`; collective: one allgather), or every rank raises the InputError of
    the first call that raised one. Like :func:`on_rank0`, for n independent calls whose results
    do not depend on where they ran (e.g. seeded restarts): the same list on any number of ranks.
    """
    verdict = None
    try:
        verdict = ("result", [fn(i) for i in range(n)[rank_share(comm, n)]])
    except InputError as error:
        verdict = ("error", (error.message, error.source, type(error).__name__))
    results = []
    for kind, value in comm.allgather(verdict):
        if kind == "error":
            message, source, name = value
            raise (UnstableSolve if name == "UnstableSolve" else InputError)(message, source)
        results.extend(value)
    return results


def check_same(comm: MPI.Comm, source: str, **arrays: np.ndarray) -> None:
    """InputError on every rank unless every rank holds the same ``arrays`` (name=array: shape,
    dtype and values compared through a digest; collective: one allgather). Where the ranks
    must pass the same data (the estimator's X and y), a difference would otherwise train each
    rank on its own data, or mismatch the ranks' shares of the points."""
    mine = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        data = (array.tobytes() if array.dtype.kind != "O"
                else "\x00".join(map(repr, array.ravel().tolist())).encode())
        mine[name] = (array.shape, array.dtype.str, hashlib.sha256(data).hexdigest())
    everyone = comm.allgather(mine)
    for name in arrays:
        differ = [rank for rank, theirs in enumerate(everyone) if theirs[name] != everyone[0][name]]
        if differ:
            first = differ[0]
            how = (f"rank 0's has shape {everyone[0][name][0]}, rank {first}'s {everyone[first][name][0]}"
                   if everyone[first][name][0] != everyone[0][name][0] else
                   f"rank {first}'s values or dtype are not rank 0's")
            raise InputError(f"{name} differs between the ranks ({how}); under MPI every rank passes the "
                             f"same {name}", source)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (OpenBLAS, MKL) on one thread inside the block, as before it after.

    The solver's products are many small ones ((n, d) @ (d, m) at the nodes of every RK4 stage):
    threads gain nothing there, and an MPI rank's BLAS threads compete with the other ranks
    and with any other job for the cores. Measured (peaks at 39,189 nodes, one value + gradient,
    2 cores under a load of ~3.8): 3.1-5.8 s with OpenBLAS's default threads, 0.84-0.97 s on one.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


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


# How long a rank that failed waits for its peers to arrive before it aborts the job (seconds;
# None: wait forever). Peers that can still arrive are at most rank-local work away from the
# end of the block (if a collective lies between, they wait there for the failed rank and never
# arrive), so the wait is short next to a fit; the command line's EXIT_WAIT is the same.
PEER_WAIT: float | None = 30.0


def await_peers(exits: MPI.Comm, code: int, wait: float | None, message: str) -> None:
    """Return once every rank of ``exits`` has called this (collective: a non-blocking barrier
    on ``exits``, which nothing else may use). A rank whose ``code`` is not 0 and whose peers
    have not all called it within ``wait`` seconds prints ``message`` to stderr and aborts the
    job with ``code``: its peers wait for it in a collective it will never reach.
    """
    request = exits.Ibarrier()
    started = time.monotonic()
    deadline = None if (code == 0 or wait is None) else started + wait
    while not request.Test():
        now = time.monotonic()
        if deadline is not None and now > deadline:
            print(message, file=sys.stderr, flush=True)
            # The launcher forwards a rank's stderr through its proxy, which MPI_Abort kills:
            # without a pause the message was lost in one CI run (exit 2, empty stderr).
            time.sleep(1.0)
            exits.Abort(code)
        if now - started > 0.01:  # peers that are not about to arrive: poll gently (2 cores shared)
            time.sleep(0.005)


@contextlib.contextmanager
def one_outcome(comm: MPI.Comm, wait: float | None = None) -> Iterator[None]:
    """A collective block whose outcome is the same on every rank, even if it fails on one rank
    only (collective: ``comm.Dup()`` on entry; on exit a non-blocking barrier and an allgather on
    the duplicate).

    A rank that raised waits for its peers (``await_peers``): if they arrive, it raises its own
    exception again, and a peer that had succeeded raises a RuntimeError naming it (the first
    failed rank's); if they do not arrive within ``wait`` seconds (default ``PEER_WAIT``) it
    prints its traceback and aborts the job (``comm.Abort``). On one rank the block is just run.
    """
    if comm.size == 1:
        yield
        return
    exits = comm.Dup()
    failure = None
    try:
        yield
    except BaseException as error:  # noqa: BLE001 (agreed on, then raised again below)
        failure = error
    verdict = None if failure is None else f"{type(failure).__name__}: {failure}"
    if failure is not None:
        details = "".join(traceback.format_exception(failure))
        message = (f"{details}error: rank {comm.rank} failed ({verdict}) and the other ranks did not "
                   f"arrive within {PEER_WAIT if wait is None else wait} s (they wait for it in a "
                   f"collective); aborting the job")
    await_peers(exits, int(failure is not None), PEER_WAIT if wait is None else wait,
                message if failure is not None else "")
    verdicts = exits.allgather(verdict)
    exits.Free()
    if failure is not None:
        raise failure
    for rank, failed in enumerate(verdicts):
        if failed is not None:
            raise RuntimeError(f"rank {rank} failed: {failed}")


def one_outcome_method(method):
    """``method`` of an object with a ``_comm()`` (the estimators) run inside :func:`one_outcome`
    on that communicator: a fault that escapes on one rank only raises on every rank, or aborts
    the job after ``PEER_WAIT`` seconds if the others wait for the failed rank in a collective
    (the Python API has no exit watchdog)."""

    @functools.wraps(method)
    def collective(self, *args, **kwargs):
        with one_outcome(self._comm()):
            return method(self, *args, **kwargs)

    return collective
