"""``compare RUN`` on a tiny trained run (in-process, collective: 1 or 2 ranks): the PDE and the
characteristics agree, compare.json is written, and a broken run is one InputError on every rank."""

from mpi4py import MPI  # noqa: F401

import numpy as np
import pytest

from solver.check.compare_run import compare_run
from solver.errors import InputError
from solver.rundir import store


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


def test_a_broken_run_is_one_input_error(comm, trained_run, shared_directory):
    broken = shared_directory(comm)
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


def _copy_run(comm, trained_run, folder, **changes):
    """``trained_run``'s config.toml, with ``changes`` ({section: {key: value}}), and theta.npz in
    ``folder`` (collective: rank 0 writes)."""
    from solver.config import TRAIN_SECTIONS, config_from_dict, load_config

    sections = load_config(trained_run / store.CONFIG).to_dict(TRAIN_SECTIONS)
    for section, values in changes.items():
        sections[section] = {**sections.get(section, {}), **values}
    if comm.rank == 0:
        store.write_config(folder / store.CONFIG, config_from_dict(sections).to_toml(TRAIN_SECTIONS))
        (folder / store.THETA).write_bytes((trained_run / store.THETA).read_bytes())
    comm.Barrier()
    return folder


@pytest.fixture
def freed(monkeypatch):
    """The Problems destroyed, in order (``Problem.destroy`` counted)."""
    from solver.learn.train import Problem

    freed, destroy = [], Problem.destroy

    def counted(self):
        freed.append(self)
        destroy(self)

    monkeypatch.setattr(Problem, "destroy", counted)
    return freed


def test_compare_on_another_mesh_frees_each_problem_once(comm, trained_run, shared_directory, freed):
    run = _copy_run(comm, trained_run, shared_directory(comm), compare=dict(cells=8))
    seen = []

    def with_problem(comm, problem, p):
        seen.append((problem, problem.resolution.cells, any(f is problem for f in freed)))

    result = compare_run(comm, run, with_problem)
    ended = store.read_json(trained_run / store.METRICS)["mesh_cells"]
    assert result["mesh_cells"] == 8 and result["training_mesh"]["mesh_cells"] == ended
    [(checked, cells, already_freed)] = seen
    assert cells == 8 and not already_freed  # the check's problem, before it is freed
    # the training mesh's problem, then the check's: each once
    assert len(freed) == 2 and freed[1] is checked and freed[0] is not checked


def test_a_run_of_another_field_frees_its_problem(comm, trained_run, shared_directory, freed):
    run = _copy_run(comm, trained_run, shared_directory(comm), field=dict(width=5))
    with pytest.raises(InputError, match="theta.npz has .* parameters, the config needs"):
        compare_run(comm, run)
    assert len(freed) == 1


def test_an_error_during_the_check_frees_its_problem(comm, trained_run, freed, monkeypatch):
    from solver.check import compare_run as module

    def failing(comm, problem, p):
        raise RuntimeError("the check failed")

    monkeypatch.setattr(module, "run_agreement", failing)
    with pytest.raises(RuntimeError, match="the check failed"):
        compare_run(comm, trained_run)
    assert len(freed) == 1
