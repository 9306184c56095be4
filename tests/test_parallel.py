"""``solver.parallel``'s dealing out of work over the ranks (1 and 2 ranks)."""

from mpi4py import MPI

import pytest

from solver.errors import InputError
from solver.parallel import shared_out


def test_shared_out_makes_each_call_once_and_gives_every_rank_all_results(comm):
    """n calls, each made on one rank only, their results in call order on every rank, whatever
    the number of ranks (also for fewer calls than ranks)."""
    for n in (0, 1, 5):
        made = []
        results = shared_out(comm, lambda i: made.append(i) or (i, i * i), n)
        assert results == [(i, i * i) for i in range(n)]
        assert comm.allreduce(len(made), op=MPI.SUM) == n
        assert sorted(sum(comm.allgather(made), [])) == list(range(n))


def test_shared_out_raises_a_calls_input_error_on_every_rank(comm):
    """A call's InputError, made on one rank, raises on every rank (no rank left waiting)."""
    def call(i):
        if i == 2:
            raise InputError(f"restart {i} failed", "p.toml")
        return i

    with pytest.raises(InputError, match="restart 2 failed") as error:
        shared_out(comm, call, 3)
    assert error.value.source == "p.toml"
