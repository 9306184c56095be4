"""``solver.fit``: the command line's ``train`` as one call (1 and 2 ranks).

The command line calls it, so the same problem trained by ``python -m solver train`` and by
``solver.fit`` ends with the same parameters, bit for bit; without a run directory it writes
nothing and trains the same.
"""

from mpi4py import MPI

import signal

import numpy as np
import pytest

import solver
from cli_harness import PROBLEM, toml
from solver.errors import InputError
from solver.rundir import files, store


@pytest.fixture(scope="module")
def problem_file(shared_directory):
    """The small problem of cli_harness as a problem file, the same path on every rank."""
    folder = shared_directory(MPI.COMM_WORLD)
    if MPI.COMM_WORLD.rank == 0:
        (folder / "p.toml").write_text(toml())
    MPI.COMM_WORLD.Barrier()
    return folder / "p.toml"


def test_fit_is_the_command_line_train(comm, problem_file):
    from solver.__main__ import main

    runs = problem_file.parent
    assert main(["train", str(problem_file), "--out", str(runs / "cli")]) == 0
    before = signal.getsignal(signal.SIGINT)
    outcome = solver.fit(problem_file, runs / "api", comm=comm)
    assert signal.getsignal(signal.SIGINT) is before  # the handlers of the run put back

    cli, api = (store.read_parameters(runs / name / store.THETA).p for name in ("cli", "api"))
    np.testing.assert_array_equal(api, cli)
    np.testing.assert_array_equal(outcome.parameters, api)
    assert outcome.out == runs / "api"
    assert outcome.state.iteration == PROBLEM["train"]["iterations"] == len(outcome.history) - 1
    assert outcome.certified == outcome.check.passed
    assert outcome.metrics["ranks"] == comm.size
    run = solver.Run.open(runs / "api")
    assert run.config == outcome.config and run.resolution == outcome.resolution

    with pytest.raises(InputError, match="pass force=True to replace it"):  # the API's wording
        solver.fit(problem_file, runs / "api", comm=comm)
    assert solver.fit(problem_file, runs / "api", comm=comm, force=True).out == runs / "api"


def test_fit_without_a_run_directory_writes_nothing(comm, problem_file, shared_directory, monkeypatch):
    folder = shared_directory(comm)
    monkeypatch.chdir(folder)
    outcome = solver.fit(PROBLEM, comm=comm)  # a dict of sections, as the TOML file holds them
    assert outcome.out is None and list(folder.iterdir()) == []
    written = solver.fit(problem_file, folder / "run", comm=comm)
    np.testing.assert_array_equal(outcome.parameters, written.parameters)
    assert outcome.metrics["certified"] == written.metrics["certified"]


def test_fit_refuses_what_it_cannot_train(comm):
    with pytest.raises(InputError, match="fit needs a problem"):
        solver.fit(None, comm=comm)
    with pytest.raises(InputError, match="resume needs the run directory"):
        solver.fit(PROBLEM, resume=True, comm=comm)
    with pytest.raises(InputError, match="got int"):
        solver.fit(3, comm=comm)
    with pytest.raises(InputError, match="mesh.cells"):  # the config's own checks
        solver.fit({**PROBLEM, "mesh": {"cells": 0}}, comm=comm)


def test_fit_resumes_a_run_with_more_iterations(comm, problem_file, shared_directory):
    run = shared_directory(comm) / "run"
    solver.fit(problem_file, run, comm=comm)
    more = {**PROBLEM, "train": {**PROBLEM["train"], "iterations": 4}}
    resumed = solver.fit(more, run, comm=comm, resume=True)
    whole = solver.fit(more, run.parent / "whole", comm=comm)
    assert resumed.state.iteration == 4 and len(resumed.history) == 5
    np.testing.assert_array_equal(resumed.parameters, whole.parameters)
    assert store.read_parameters(run / store.THETA).p.tolist() == resumed.parameters.tolist()
    with pytest.raises(InputError, match="field.width"):  # only how far and what it writes may change
        solver.fit({**PROBLEM, "field": {"width": 4, "slabs": 2}}, run, comm=comm, resume=True)


def test_fit_names_its_arguments_and_the_command_line_its_flags(comm, shared_directory):
    """Each refusal of ``out``, ``force`` and ``resume`` in ``fit``'s words (``out=``,
    ``force=True``, ``resume=True``), and in the command line's (``--out``, ``--force``,
    ``--resume``) with ``wording="cli"``, as ``python -m solver train`` passes it."""
    folder = shared_directory(comm)
    run, link, empty = folder / "run", folder / "link", folder / "empty"
    if comm.rank == 0:
        run.mkdir()
        (run / files.MARKER).write_text(files.MARKER_TEXT)
        (run / store.CONFIG).write_text(toml())
        link.symlink_to(run)
        empty.mkdir()
    comm.Barrier()
    other = {**PROBLEM, "mesh": {**PROBLEM["mesh"], "cells": PROBLEM["mesh"]["cells"] + 1}}
    calls = {  # the message's own words, then fit's and the command line's
        "exists": (lambda w: solver.fit(PROBLEM, run, comm=comm, wording=w), ["exists: "],
                   ["pass force=True to replace it, or resume=True to continue its training"],
                   ["pass --force to replace it, or --resume to continue its training"]),
        "a link": (lambda w: solver.fit(None, link, comm=comm, resume=True, wording=w),
                   ["is a symbolic link; "], ["resume=True continues a run directory given as itself"],
                   ["--resume continues a run directory given as itself"]),
        "no run": (lambda w: solver.fit(None, empty, comm=comm, resume=True, wording=w), [str(empty)],
                   ["resume=True needs a run directory with config.toml"],
                   ["--resume needs a run directory with config.toml"]),
        "differs": (lambda w: solver.fit(other, run, comm=comm, resume=True, wording=w),
                    ["differs from the config of the run", "mesh.cells"],
                    ["; resume=True continues that run as it was", "may change): pass config=None, or start "
                     "a new run in another directory (out=)"],
                    ["; --resume continues that run as it was", "may change): drop CONFIG, or start a new "
                     "run with another --out"]),
    }
    for name, (call, common, api, cli) in calls.items():
        for wording, words in (("api", api), ("cli", cli)):
            with pytest.raises(InputError) as error:
                call(wording)
            message = str(error.value)
            assert all(w in message for w in common + words), (name, wording, message)
            assert ("--" in message) == (wording == "cli"), (name, wording, message)
    with pytest.raises(InputError) as error:  # the default: fit's own words
        solver.fit(None, empty, comm=comm, resume=True)
    assert "resume=True needs" in str(error.value)
    with pytest.raises(ValueError, match="wording"):
        solver.fit(PROBLEM, comm=comm, wording="estimator")
