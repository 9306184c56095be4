"""``compare RUN`` on a tiny trained run (in-process, collective: 1 or 2 ranks): the PDE and the
characteristics agree, compare.json is written, and a broken run is one InputError on every rank."""

from mpi4py import MPI  # noqa: F401

import gc
from pathlib import Path

import numpy as np
import pytest

from solver.check.compare_run import compare_run
from solver.config import config_from_dict
from solver.errors import InputError
from solver.learn.train import Problem, train
from solver.rundir import store
from solver.rundir.outputs import write_training_outputs
from test_train import SMALL, shared_directory

TINY = {**SMALL, "mesh": dict(cells=12), "field": dict(width=4, slabs=2),
        "data": dict(SMALL["data"], points=80, test_fraction=0.25), "train": dict(SMALL["train"], iterations=4)}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run directory as ``train`` leaves it (shared by all ranks)."""
    comm = MPI.COMM_WORLD
    run = shared_directory(comm, tmp_path_factory)
    config = config_from_dict(TINY)
    if comm.rank == 0:
        store.write_config(run / store.CONFIG, config.to_toml())
    outcome = train(comm, Problem.build(comm, config), run)
    write_training_outputs(comm, outcome, run)
    outcome.problem.destroy()
    gc.collect()
    comm.Barrier()
    return run


def test_a_trained_run_is_what_the_store_reads(comm, trained_run):
    params = store.read_parameters(trained_run / store.THETA)
    arrays, history = store.read_checkpoint(trained_run / store.CHECKPOINT)
    np.testing.assert_array_equal(params.p, arrays["p"])
    assert [row["iteration"] for row in store.read_history(trained_run / store.HISTORY)] == list(range(5))
    assert [row["iteration"] for row in history] == list(range(5))
    metrics = store.read_json(trained_run / store.METRICS)
    assert metrics["iterations"] == 4 and metrics["ranks"] == comm.size
    assert params.meta["num_classes"] == 2 and params.meta["model"]["slabs"] == 2


def test_compare_a_trained_run(comm, trained_run):
    result = compare_run(comm, trained_run)
    comm.Barrier()
    ended = store.read_json(trained_run / store.METRICS)["mesh_cells"]  # 12, or finer if certification refined it
    assert (result["mesh_cells"], result["test"]["points"], result["train"]["points"]) == (ended, 20, 60)
    assert "training_mesh" not in result  # no [compare] cells: the training mesh only
    assert result["test"]["label_agreement"] >= 0.9
    assert result["train"]["max_logit_difference"] < 0.5
    assert set(result["resnet"]) == {"euler", "midpoint"}
    assert result["resnet"]["midpoint"][-1]["order"] >= 1.8
    written = store.read_json(trained_run / store.COMPARISON)
    assert written["test"]["label_agreement"] == result["test"]["label_agreement"]


def test_a_broken_run_is_one_input_error(comm, trained_run, tmp_path_factory):
    broken = shared_directory(comm, tmp_path_factory)
    if comm.rank == 0:
        (broken / store.CONFIG).write_bytes((trained_run / store.CONFIG).read_bytes())
    comm.Barrier()
    with pytest.raises(InputError, match="theta.npz: file not found"):
        compare_run(comm, broken)
    comm.Barrier()
    if comm.rank == 0:
        data = (trained_run / store.THETA).read_bytes()
        (broken / store.THETA).write_bytes(data[: len(data) // 2])
    comm.Barrier()
    with pytest.raises(InputError, match="theta.npz: cannot read learned parameters: the file is empty or truncated"):
        compare_run(comm, broken)
