# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI

import gc
import os
import sys

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under mpirun, only rank 0 reports to the terminal; the others write to PYTEST_RANK_LOG."""
    comm = MPI.COMM_WORLD
    if comm.size > 1 and comm.rank > 0:
        path = os.environ.get("PYTEST_RANK_LOG", os.devnull)
        path = path if comm.rank == 1 else os.devnull
        sys.stdout = open(path, "w")


def pytest_collection_modifyitems(config, items):
    if MPI.COMM_WORLD.size > 1:
        skip = pytest.mark.skip(reason="serial test (runs on one rank only)")
        for item in items:
            if "serial" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.fixture(autouse=True)
def _collect_and_synchronise():
    """After every test (as DOLFINx's conftest does): collect its garbage, then wait for all ranks.

    PETSc/dolfinx objects of a parallel mesh must be destroyed on all ranks together; collecting
    here, at the same point on every rank, keeps a later automatic collection from destroying
    them on one rank inside another test's collective. The barrier keeps a fast rank from
    starting the next test (and its files) while another still finishes this one.
    """
    yield
    gc.collect()
    MPI.COMM_WORLD.Barrier()
