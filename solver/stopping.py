"""SIGINT and SIGTERM stop training at the next safe point instead of killing it.

While ``install()``'s handlers are in place, the first SIGINT or SIGTERM only sets a flag (and
says so once); training asks ``requested(comm)`` once per iteration, after its checkpoint logic,
and there writes the checkpoint and raises ``Stopped``: the command line prints how to resume and
exits with 128 + the signal's number on every rank. A second signal stops at once
(``KeyboardInterrupt`` carrying its number: exit 128 + it). A signal that reaches one rank only
(``kill`` of one process) stops every rank: ``requested`` is collective. Long loops inside an
iteration (the Monte Carlo of a viscous run's check, ``model.stochastic``) poll ``pending``
(rank-local) and, once they agree across ranks, raise ``Interrupted``; training then writes the
checkpoint of its last complete iteration and raises ``Stopped``.
"""

from __future__ import annotations

import signal
import sys

from mpi4py import MPI

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received = 0  # the first signal's number, 0 while none came


class Stopped(Exception):
    """Training stopped on a signal at ``iteration``, its checkpoint written to ``checkpoint``."""

    def __init__(self, signum: int, iteration: int, checkpoint):
        self.signum = signum
        self.iteration = iteration
        self.checkpoint = checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Interrupted(Exception):
    """A long computation gave up on a stop request (``signum``), alike on every rank."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _handler(signum, frame) -> None:
    global _received
    if _received:
        raise KeyboardInterrupt(int(signum))
    _received = signum
    if MPI.COMM_WORLD.rank == 0:
        print(f"{signal.Signals(signum).name}: stopping at the next safe point (after this "
              f"iteration's checkpoint); send it again to stop at once", file=sys.stderr, flush=True)


def install() -> dict:
    """Stop at the next safe point on SIGINT and SIGTERM (main thread only); returns the handlers
    it replaced, for ``uninstall``."""
    global _received
    _received = 0
    return {signum: signal.signal(signum, _handler) for signum in SIGNALS}


def uninstall(handlers: dict) -> None:
    """Put back the ``handlers`` ``install`` replaced and forget a signal received."""
    global _received
    _received = 0
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def pending() -> int:
    """The number of a signal this rank received, else 0 (rank-local: for polling in loops that
    then agree across ranks)."""
    return _received


def requested(comm: MPI.Comm) -> int:
    """The number of a signal that reached any rank, else 0 (collective)."""
    return int(comm.allreduce(_received, op=MPI.MAX))
