"""Training: the loss goes down on 1 and 2 ranks, checkpoints resume to the same iterates, a run
killed with SIGKILL and resumed ends where an uninterrupted run ends, and bad configs fail."""

from mpi4py import MPI

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from solver.config import config_from_dict
from solver.errors import InputError
from solver.fem.transport import AUTO_STAGE_SHARE
from solver.guards import available_memory
from solver.learn.train import Problem, first_stage, initial_parameters, train
from solver import stopping

MPIRUN = Path(sys.executable).parent / "mpirun"

SMALL = dict(
    mesh=dict(cells=16),
    field=dict(width=6, slabs=3),
    data=dict(kind="moons", points=200, test_fraction=0.2),
    train=dict(iterations=8, save_every=2, max_step=2.0),
    output=dict(png=False, vtx=False, animation=False),
)


def test_training_reduces_the_loss(comm, shared_directory):
    config = config_from_dict(SMALL)
    out = shared_directory(comm)
    problem = Problem.build(comm, config)
    outcome = train(comm, problem, out)
    history, problem = outcome.history, outcome.problem
    first, last = history[0]["loss"], history[-1]["loss"]
    print(f"\nloss {first:.4f} -> {last:.4f}, train accuracy {history[-1]['train_accuracy']:.3f}")
    assert last < first / 3, (first, last)
    assert history[-1]["train_accuracy"] >= 0.9
    assert [h["iteration"] for h in history] == list(range(9))
    problem.destroy()


def test_resume_reaches_the_same_iterates(comm, shared_directory):
    """6 iterations in one go, or 4 then resumed to 6: the same θ to round-off."""
    whole = shared_directory(comm)
    parts = shared_directory(comm)
    six = config_from_dict({**SMALL, "train": dict(SMALL["train"], iterations=6)})
    four = config_from_dict({**SMALL, "train": dict(SMALL["train"], iterations=4)})
    state_whole = train(comm, Problem.build(comm, six), whole).state
    train(comm, Problem.build(comm, four), parts)
    resumed = train(comm, Problem.build(comm, six), parts, resume=True)
    state_parts, history = resumed.state, resumed.history
    assert state_parts.iteration == 6 and len(history) == 7
    np.testing.assert_allclose(state_parts.p, state_whole.p, rtol=0, atol=1e-12)


def test_training_ends_at_a_certified_target_accuracy(comm, shared_directory):
    """train.target_accuracy: the first iterate whose PDE test accuracy reaches it is checked (off
    the check_every schedule), the run ends at the first check that passes with the
    characteristics' test accuracy at the target, its iterates are those of a run without a
    target, and a run resumed before the stop ends at the same iterate."""
    target = 0.99
    # 24 cells: on 16 the logits at the first iterates at the target differ by 0.6-0.8 from
    # the characteristics' (tolerance 0.5) and the run goes on to its end (measured).
    base = {**SMALL, "mesh": dict(cells=24)}
    targeted = dict(SMALL["train"], iterations=30, target_accuracy=target)
    outcome = train(comm, Problem.build(comm, config_from_dict({**base, "train": targeted})), None)
    history, stop = outcome.history, outcome.history[-1]["iteration"]
    assert 0 < stop < 30
    assert outcome.check.passed and outcome.check.test.accuracy_characteristics >= target
    first = next(h for h in history if h["test_accuracy"] >= target)
    assert np.isfinite(first["check_seconds"]), first
    assert any(np.isfinite(h["check_seconds"]) and h["iteration"] % 10 for h in history), history
    assert np.isnan(history[0]["check_seconds"])  # the start is not checked
    checks = [h for h in history if np.isfinite(h["check_seconds"])]
    assert all(h["accuracy_characteristics"] < target or h["max_logit_difference"] > 0.5
               or h["label_agreement"] < 0.995 for h in checks[:-1])

    plain = dict(SMALL["train"], iterations=stop)
    without = train(comm, Problem.build(comm, config_from_dict({**base, "train": plain})), None)
    np.testing.assert_allclose(outcome.state.p, without.state.p, rtol=0, atol=1e-12)

    parts = shared_directory(comm)
    early = dict(targeted, iterations=first["iteration"] - 1)
    train(comm, Problem.build(comm, config_from_dict({**base, "train": early})), parts)
    resumed = train(comm, Problem.build(comm, config_from_dict({**base, "train": targeted})), parts, resume=True)
    assert resumed.state.iteration == stop
    np.testing.assert_allclose(resumed.state.p, outcome.state.p, rtol=0, atol=1e-12)


def test_a_first_stage_on_a_subset_of_the_points(comm, shared_directory, monkeypatch):
    """train.subsample: with a target and more training points than it, training starts on a
    seeded subset of that many (and all the test points) until a check certifies the target
    there, and goes on from those parameters and that resolution on all the points, whose check
    at the start certifies it too: the run ends there, its history the first stage's rows with
    the last one evaluated on all the points. Without a target, or with subsample = 0, there is
    no first stage."""
    target = 0.95
    base = {**SMALL, "mesh": dict(cells=24)}
    staged = dict(SMALL["train"], iterations=30, target_accuracy=target, subsample=100)
    with Problem.build(comm, config_from_dict({**base, "train": staged})) as problem:
        first = first_stage(comm, problem)
        with first.problem:
            assert len(first.problem.dataset.y_train) == 100 and len(problem.dataset.y_train) == 160
            assert np.array_equal(first.problem.dataset.X_test, problem.dataset.X_test)
            assert first.check.passed and first.check.test.accuracy_characteristics >= target
        outcome = train(comm, problem, None)
    with outcome.problem:
        assert outcome.state.iteration == first.state.iteration > 0
        np.testing.assert_array_equal(outcome.state.p, first.state.p)
        assert [h["iteration"] for h in outcome.history] == list(range(first.state.iteration + 1))
        assert [h["loss"] for h in outcome.history[:-1]] == [h["loss"] for h in first.history[:-1]]
        # The last row is the same iterate on all 160 points: its loss is theirs, not the subset's.
        assert outcome.history[-1]["loss"] != first.history[-1]["loss"]
        assert outcome.check.passed and outcome.check.test.accuracy_characteristics >= target
        assert outcome.problem.resolution == first.problem.resolution
    # A stop asked during the first stage ends it; the run saves where the second starts and stops
    # there, resumably (on all the points).
    out = shared_directory(comm)
    monkeypatch.setattr(stopping, "_received", signal.SIGINT)
    with pytest.raises(stopping.Stopped) as stopped:
        train(comm, Problem.build(comm, config_from_dict({**base, "train": staged})), out)
    assert stopped.value.iteration == 1 and (out / "checkpoint.npz").exists()
    monkeypatch.setattr(stopping, "_received", 0)
    resumed = train(comm, Problem.build(comm, config_from_dict({**base, "train": staged})), out, resume=True)
    with resumed.problem:
        assert len(resumed.problem.dataset.y_train) == 160 and resumed.history[0]["iteration"] == 0
        assert resumed.check.passed and resumed.check.test.accuracy_characteristics >= target
    for train_keys in (dict(staged, subsample=0), dict(staged, target_accuracy=None), dict(staged, subsample=160)):
        with Problem.build(comm, config_from_dict({**base, "train": train_keys})) as problem:
            assert first_stage(comm, problem) is None


def test_stage_memory_reaches_the_solver(comm):
    """solver.stage_memory (MiB per rank) bounds what the solver keeps for the adjoint: stage
    states and the slabs' Lᵀ; it keeps stage states while one more still fits."""
    with Problem.build(comm, config_from_dict({**SMALL, "solver": dict(stage_memory=1, scheme="rk3")})) as problem:
        solver = problem.solver
        assert solver.stage_memory == 2**20
        problem.J.value_and_gradient(problem.J.initial(seed=0))
        step_bytes = 3 * problem.dataset.num_classes * solver._max_owned * 8
        kept, steps = len(solver._stage_pool), sum(problem.J.last.steps)  # 1 rank: 11 of 25 steps
        assert 0 < kept <= steps
        assert kept * step_bytes + solver._kept_bytes <= 2**20
        assert kept == steps or (kept + 1) * step_bytes + solver._kept_bytes > 2**20


def test_stage_memory_auto_is_a_share_of_the_available_memory(comm):
    """The default, solver.stage_memory = "auto": the solver takes AUTO_STAGE_SHARE of the memory
    available to each rank (the same on every rank) when its first gradient's forward starts,
    and keeps every stage state of a small problem."""
    with Problem.build(comm, config_from_dict({**SMALL, "solver": dict(scheme="rk3")})) as problem:
        solver = problem.solver
        assert problem.config.solver.stage_memory == "auto" and solver.stage_memory is None
        before = available_memory(comm)
        problem.J.value_and_gradient(problem.J.initial(seed=0))
        budget = solver.stage_memory
        assert comm.allgather(budget) == [budget] * comm.size
        after = available_memory(comm)  # other processes (and this one) move it a little
        assert 0.8 * AUTO_STAGE_SHARE * min(before, after) <= budget <= 1.2 * AUTO_STAGE_SHARE * max(before, after)
        assert len(solver._stage_pool) == sum(problem.J.last.steps)


def test_warm_start_from_a_run(comm, shared_directory):
    """train.init starts from a run's parameters (here on a finer mesh); a mismatch is an InputError."""
    first = shared_directory(comm)
    config = config_from_dict({**SMALL, "train": dict(SMALL["train"], iterations=2)})
    state = train(comm, Problem.build(comm, config), first).state
    if comm.rank == 0:
        np.savez(first / "theta.npz", p=state.p)
    comm.Barrier()
    finer = config_from_dict({**SMALL, "mesh": dict(cells=20), "train": dict(SMALL["train"], init=str(first))})
    np.testing.assert_array_equal(initial_parameters(Problem.build(comm, finer)), state.p)
    wider = config_from_dict({**SMALL, "field": dict(width=8, slabs=3),
                              "train": dict(SMALL["train"], init=str(first / "theta.npz"))})
    with pytest.raises(InputError, match="theta.npz: train.init has 102 parameters, this config.s field and classes need 132"):
        initial_parameters(Problem.build(comm, wider))
    missing = config_from_dict({**SMALL, "train": dict(SMALL["train"], init=str(first / "nothing"))})
    with pytest.raises(InputError, match="nothing does not exist"):
        initial_parameters(Problem.build(comm, missing))


def test_resume_from_a_missing_or_broken_checkpoint(comm, shared_directory):
    """No checkpoint, or one cut short by a crash of the file system: an InputError naming it."""
    out = shared_directory(comm)
    with Problem.build(comm, config_from_dict(SMALL)) as problem:
        with pytest.raises(InputError, match="checkpoint.npz: file not found"):
            train(comm, problem, out, resume=True)
        comm.Barrier()  # every rank has looked before rank 0 writes (else a slow rank finds the broken file)
        if comm.rank == 0:
            (out / "checkpoint.npz").write_bytes(b"PK\x03\x04 cut short")
        comm.Barrier()
        with pytest.raises(InputError, match="checkpoint.npz: cannot read the checkpoint: the file is empty or truncated"):
            train(comm, problem, out, resume=True)


def test_bad_training_configs(comm):
    with pytest.raises(InputError, match='"mlp"'):
        Problem.build(comm, config_from_dict({"domain": dict(kind="disk"), "field": dict(kind="rotation")}))
    with pytest.raises(InputError, match="augment_dim"):
        Problem.build(comm, config_from_dict({"domain": dict(kind="box", lower=[-1] * 3, upper=[1] * 3)}))
    with pytest.raises(InputError, match='Invalid data kind|data.kind'):
        config_from_dict({"data": dict(kind="mnist")})


@pytest.mark.serial
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_theta(tmp_path):
    config = tmp_path / "moons.toml"
    config.write_text(
        "[mesh]\ncells = 16\n[field]\nwidth = 6\nslabs = 3\n[data]\npoints = 200\n"
        "[train]\niterations = 12\nsave_every = 2\nmax_step = 2.0\n[output]\npng = false\nvtx = false\n"
    )

    def train_cmd(*args):
        return [str(MPIRUN), "-n", "2", sys.executable, "-m", "solver", "train", *map(str, args)]

    whole = subprocess.run(train_cmd(config, "--out", tmp_path / "whole"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    killed = subprocess.Popen(train_cmd(config, "--out", tmp_path / "killed"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    history = tmp_path / "killed" / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for a checkpoint past iteration 4, then SIGKILL everything
        if history.exists() and len(history.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "theta.npz").exists(), "the run finished before it was killed"
    resumed = subprocess.run(train_cmd("--resume", "--out", tmp_path / "killed"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at iteration" in resumed.stdout
    with np.load(tmp_path / "whole" / "theta.npz") as a, np.load(tmp_path / "killed" / "theta.npz") as b:
        np.testing.assert_allclose(b["p"], a["p"], rtol=0, atol=1e-12)
    lines = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + 13  # header + iterations 0..12, no duplicates after the resume


@pytest.mark.serial
@pytest.mark.slow
def test_compare_and_export_a_trained_run(tmp_path):
    """train → compare RUN → export RUN through the command line on 2 ranks."""
    config = tmp_path / "moons.toml"
    config.write_text("[mesh]\ncells = 16\n[field]\nwidth = 6\nslabs = 2\n[data]\npoints = 200\n"
                      "[train]\niterations = 15\nmax_step = 2.0\n[compare]\ncells = 61\n")
    run = tmp_path / "run"

    def solver(*args):
        cmd = [str(MPIRUN), "-n", "2", sys.executable, "-m", "solver", *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    solver("train", config, "--out", run)
    for name in ("theta.npz", "metrics.json", "history.csv", "prediction.png", "velocity.png",
                 "characteristics.png", "loss.png", "u0.bp", "u_t.bp", "config.toml", "flow.gif"):
        assert (run / name).exists(), name
    assert "[terminal]" not in (run / "config.toml").read_text()  # training reads no [terminal]
    trained = (run / "flow.gif").read_bytes()
    out = solver("compare", run)
    # compare RUN draws its own animation, and leaves training's flow.gif as it was
    assert (run / "compare-flow.gif").exists() and (run / "flow.gif").read_bytes() == trained
    import json

    result = json.loads((run / "compare.json").read_text())
    assert result["test"]["label_agreement"] >= 0.95, out
    # The check predicts on compare.cells (61); the mesh training ended on (16, or finer where
    # the certification refined it) is reported beside it.
    ended = json.loads((run / "metrics.json").read_text())["mesh_cells"]
    assert (result["mesh_cells"], result["training_mesh"]["mesh_cells"]) == (61, ended)
    assert ended >= 16
    assert result["dofs"] > result["training_mesh"]["dofs"]
    assert result["training_mesh"]["test"]["label_agreement"] >= 0.95, out
    euler = result["resnet"]["euler"]
    assert euler[-1]["order"] >= 0.9 and result["resnet"]["midpoint"][-1]["order"] >= 1.8
    assert all(r["label_agreement"] >= 0.95 for r in result["resnet_vs_pde"].values())
    solver("export", run, "--depth", "8", "--scheme", "midpoint")
    from solver.resnet.net import load_npz, forward
    from solver.resnet.onnx_net import load_onnx_session

    net = load_npz(run / "resnet-midpoint-8.npz")
    session = load_onnx_session(run / "resnet-midpoint-8-float64.onnx", dim=2)
    x = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(session(x), forward(net, x), rtol=0, atol=1e-12)


def test_log_lines_show_progress_and_the_final_raises(comm, caplog):
    """``iter 3/4``, elapsed and ETA on the iteration lines, no ``test nan`` without test points,
    and the final check says where it solves (with its dofs) before it solves there."""
    config = config_from_dict(dict(solver=dict(scheme="rk3"), mesh=dict(cells=6), field=dict(width=4, slabs=2),
                                   data=dict(kind="moons", points=60, test_fraction=0.0),
                                   train=dict(iterations=4, check_every=100, tolerance=0.05),
                                   output=dict(png=False, vtx=False, animation=False)))
    with caplog.at_level("INFO", logger="solver"):
        outcome = train(comm, Problem.build(comm, config), None)
    lines = [r.getMessage() for r in caplog.records]
    iterations = [line for line in lines if line.startswith("iter")]
    assert [line.split()[1] for line in iterations] == ["0/4", "1/4", "2/4", "3/4", "4/4"]
    assert all("elapsed" in line for line in iterations)
    assert all("ETA" in line for line in iterations[1:-1]) and "ETA" not in iterations[-1]
    assert not any("nan" in line for line in iterations)
    raises = [i for i, line in enumerate(lines) if line.startswith("final check: solving on")]
    print("\n" + "\n".join(lines[-6:]))
    assert raises and outcome.problem.resolution.degree == 2
    assert "DG2 on 6 cells/direction (432 dofs per component)" in lines[raises[0]]  # 6² · 2 · 6
    assert lines[raises[0] + 1].startswith("final check on DG2")  # the result comes after
    outcome.problem.destroy()
