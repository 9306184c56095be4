"""The pieces behind the command line's promises, rank-local or collective: the size and time
estimates against real meshes and solves, run directories that refuse to cost a user's files,
temporaries, data sanity, config bounds, the signal flag."""

from mpi4py import MPI

import os
import signal

import pytest

from solver import guards, stopping
from solver.config import config_from_dict
from solver.errors import InputError
from solver.model.data import load_csv, make_dataset
from solver.model.domain import make_domain
from solver.rundir import files, store


# --- estimates against what is built ------------------------------------------------------------


@pytest.mark.parametrize("domain, cells, degree", [
    (dict(kind="box", lower=[-1.0, -1.0], upper=[1.0, 1.0]), 8, 1),
    (dict(kind="box", lower=[-1.0, -2.0], upper=[3.0, 1.0]), 5, 2),
    (dict(kind="box", lower=[0.0, 0.0, 0.0], upper=[1.0, 2.0, 3.0]), 4, 1),
    (dict(kind="disk", center=[0.0, 0.0], radius=1.0), 16, 1),
    (dict(kind="ball", center=[0.0, 0.0, 0.0], radius=1.0), 6, 1),
])
def test_mesh_and_step_estimates(comm, domain, cells, degree):
    """Boxes: cells, dofs, h_min, the speed at the velocity nodes and the steps exact. Disks and
    balls: within a factor 1.5, h_min not below the mesh's."""
    from solver.fem.mesh import create_mesh
    from solver.fem.transport import TransportSolver
    from solver.check.compare_field import build_field

    config = config_from_dict(dict(domain=domain, mesh=dict(cells=cells, degree=degree),
                                   terminal=dict(kind="gaussian")))
    omega = config.domain_object()
    estimate = guards.mesh_estimate(omega, cells, degree)
    with TransportSolver(create_mesh(comm, omega, cells), degree=degree) as solver:
        num_cells = solver.mesh.topology.index_map(omega.dim).size_global
        if domain["kind"] == "box":
            assert estimate.cells == num_cells and estimate.dofs == solver.num_dofs_global
            assert estimate.h_min == pytest.approx(solver.h_min, rel=1e-12)
        else:
            assert 1 / 1.5 <= estimate.cells / num_cells <= 1.5
            assert 1.0 <= estimate.h_min / solver.h_min <= 1.3
        result = solver.solve(build_field(config, omega), config.terminal_object(), keep=False)
        speeds = guards.initial_speed(config, cells=cells, degree=degree)
        steps = guards.time_steps(config, estimate, degree, speeds)
        if domain["kind"] == "box":  # at the solver's velocity nodes: the same speeds, the same steps
            assert speeds == pytest.approx(result.max_speed, rel=1e-12)
            assert steps == sum(result.steps_per_piece)
        else:
            assert 0.7 <= max(speeds) / max(result.max_speed) <= 1.3
            assert 0.5 * sum(result.steps_per_piece) <= steps <= 1.5 * sum(result.steps_per_piece)


def test_memory_estimate_matches_a_measured_run():
    """3D 24³ DG1, 2 classes, 46 steps, 1 rank, solver.stage_memory = 256: 1632 MiB measured for
    the mesh, one solve and its gradient (peak RSS over the process's start); the estimate is
    within 20 %. ("auto" counts no stage states: it takes a share of what is left.)"""
    config = config_from_dict(dict(domain=dict(kind="box", lower=[-1.0] * 3, upper=[1.0] * 3),
                                   mesh=dict(cells=24), solver=dict(stage_memory=256)))
    mesh = guards.mesh_estimate(config.domain_object(), 24, 1)
    estimate = guards.solve_memory(config, mesh, 2, 46, 1) / 2**20
    assert 0.8 * 1632 <= estimate <= 1.2 * 1632, estimate


def test_available_memory_is_the_same_on_every_rank(comm):
    shared = guards.available_memory(comm)
    assert 0 < shared <= guards.available_memory(comm, shared=False)
    assert comm.allgather(shared) == [shared] * comm.size


def test_the_forced_dt_and_step_limits(comm):
    config = config_from_dict(dict(mesh=dict(cells=8), solver=dict(dt=1e-6),
                                   data=dict(points=40), output=dict(png=False, vtx=False)))
    with pytest.raises(InputError, match=r"train: an estimated 1e\+06 time steps per solve exceed "
                                         r"solver.max_steps = 10000 \(field.T = 1 with the forced solver.dt"):
        guards.check_train(comm, config, 2)
    raised = config_from_dict(dict(config.to_dict(), solver=dict(dt=1e-6, max_steps=10**6)))
    assert guards.check_train(comm, raised, 2)["steps"] == 10**6
    breaking = config_from_dict(dict(config.to_dict(), solver=dict(dt=0.5)))
    with pytest.raises(InputError, match="forced solver.dt = 0.5 breaks the CFL bound"):
        guards.check_train(comm, breaking, 2)


def test_the_solver_refuses_a_solve_beyond_max_steps(comm):
    from solver.check.compare_field import build_field
    from solver.errors import UnstableSolve
    from solver.fem.mesh import create_mesh
    from solver.fem.transport import TransportSolver

    config = config_from_dict(dict(mesh=dict(cells=4), solver=dict(dt=0.01)))
    with TransportSolver(create_mesh(comm, config.domain_object(), 4), dt=0.01) as solver:
        solver.max_steps = 50
        field = build_field(config, config.domain_object())
        with pytest.raises(UnstableSolve, match="more than solver.max_steps = 50"):
            solver.solve(field, config.terminal_object())
        solver.max_steps = 100
        assert sum(solver.solve(field, config.terminal_object(), keep=False).steps_per_piece) == 100


# --- run directories ----------------------------------------------------------------------------


@pytest.mark.serial
def test_run_directories_refuse_to_cost_a_users_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refuse = files.refuse_run_directory
    assert refuse(tmp_path / "new", False) is None
    assert "current directory" in refuse(tmp_path, True)
    assert "parent of the current directory" in refuse(tmp_path.parent, True)
    (tmp_path / "empty").mkdir()
    assert refuse(tmp_path / "empty", False) is None
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "thesis.tex").write_text("x")
    assert "not a run directory" in refuse(user, True) and "thesis.tex" in refuse(user, True)
    run = tmp_path / "run"
    run.mkdir()
    (run / files.MARKER).write_text("")
    assert refuse(run, False) is None  # a stub: nothing but the marker
    (run / "config.toml").write_text("")
    assert "--force" in refuse(run, False) and refuse(run, True) is None  # anything more needs --force
    (run / "data.csv").write_text("x")
    assert "holds" in refuse(run, True, (run / "data.csv",))
    assert "holds" in refuse(run, True, (run,))  # train.init = the run itself
    old = tmp_path / "old"  # a run written before the marker existed: recognized by its exact files
    old.mkdir()
    for name in ("config.toml", "theta.npz", "loss.png", ".checkpoint.npz.ab12cd34"):
        (old / name).write_text("")
    (old / "history.csv").write_text(",".join(store.HISTORY_COLUMNS[:9]) + "\n0,1,1,0.5,0.5,1,3,0.1,1\n")
    assert files.is_run_directory(old) and refuse(old, True) is None
    assert "--force" in refuse(old, False)
    (old / "notes.txt").write_text("")
    assert not files.is_run_directory(old)
    (old / "notes.txt").unlink()
    (old / "history.csv").write_text("date,amount\n")  # a user's history.csv
    assert not files.is_run_directory(old) and "not a run directory" in refuse(old, True)
    look_alike = tmp_path / "website"  # config.toml and names runs write, no marker: not a run
    look_alike.mkdir()
    for name in ("config.toml", "logo.png", "history.csv"):
        (look_alike / name).write_text("")
    assert "not a run directory" in refuse(look_alike, True)
    only_config = tmp_path / "only"
    only_config.mkdir()
    (only_config / "config.toml").write_text("")
    assert "not a run directory" in refuse(only_config, False) and "not a run directory" in refuse(only_config, True)
    (tmp_path / "link").symlink_to(run, target_is_directory=True)  # never replaced through a link
    assert "symbolic link" in refuse(tmp_path / "link", True) and not files.is_run_directory(tmp_path / "link")
    (tmp_path / "afile").write_text("")
    assert "not a directory" in refuse(tmp_path / "afile", True)


@pytest.mark.serial
def test_prepare_writes_the_marker_and_removes_temporaries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = files.prepare_run_directory(MPI.COMM_SELF, tmp_path / "run")
    assert (run / files.MARKER).is_file()
    names = [".theta.npz.abcd1234.tmp", ".checkpoint.npz.x1y2z3w4", ".checkpoint.abcd_123.npz",
             ".loss.png.abcdefgh.tmp"]
    for name in [*names, "keep.txt", ".hidden"]:
        (run / name).write_text("")
    assert files.remove_temporaries(run) == sorted(names)
    assert sorted(p.name for p in run.iterdir()) == sorted([files.MARKER, ".hidden", "keep.txt"])
    with pytest.raises(InputError, match="cannot create the run directory"):
        files.prepare_run_directory(MPI.COMM_SELF, run / "keep.txt" / "x")  # under a file


@pytest.mark.serial
def test_atomic_file_is_created_as_open_would(tmp_path):
    files.write_text_atomic(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(InputError, match="nowhere/a.txt: cannot write the file"):
        files.write_text_atomic(tmp_path / "nowhere" / "a.txt", "x")


# --- data ----------------------------------------------------------------------------------------


@pytest.mark.serial
def test_labels_1_and_1_0_are_one_class(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x1,x2,label\n0,0,1\n1,0,1.0\n0,1,0\n1,1,0.0\n2,2,+1\n")
    points = load_csv(path)
    assert points.class_names == ("0", "1") and points.y.tolist() == [1, 1, 0, 0, 1]
    path.write_text("x1,x2,label\n0,0,1\n1,0,0.5\n")
    with pytest.raises(InputError, match=r"line 3: the label is not an integer"):
        load_csv(path)
    path.write_text("x1,x2,label\n0,0,cat\n1,0,1.0\n0,1,1\n")
    assert load_csv(path).class_names == ("1", "cat")


@pytest.mark.serial
def test_data_squeezed_together_by_the_scaling_are_refused(tmp_path):
    path = tmp_path / "wide.csv"
    rows = [f"{0.1 * i},{0.1 * (i % 3)},{i % 2}" for i in range(29)] + ["1e300,1e300,0", "-1e300,-1e300,1"]
    path.write_text("x1,x2,label\n" + "\n".join(rows) + "\n")
    box = make_domain("box", lower=[-1, -1], upper=[1, 1])
    with pytest.raises(InputError, match=r"wide.csv: of 31 distinct training points only 3 stay apart") as raised:
        make_dataset("csv", None, path=str(path), domain=box, test_fraction=0.0)
    assert raised.value.source == str(path)
    path.write_text("x1,x2,label\n" + "\n".join(rows[:29] + ["1e308,1e308,0", "-1e308,-1e308,1"]) + "\n")
    with pytest.raises(InputError, match="too wide to scale into Ω"):
        make_dataset("csv", None, path=str(path), domain=box, test_fraction=0.0)


# --- config bounds -------------------------------------------------------------------------------


@pytest.mark.serial
@pytest.mark.parametrize("section, values, message", [
    ("domain", dict(lower=[0.0, 0.0], upper=[1e-300, 1e-300]), "domain.upper: expected sides"),
    ("domain", dict(lower=[0.0, 0.0], upper=[1e7, 1.0]), "domain.upper: expected sides"),
    ("domain", dict(kind="disk", radius=1e-9), "domain.radius"),
    ("data", dict(seed=2**32), "data.seed: expected an integer in [0, 4294967295]"),
    ("data", dict(kind="blobs", points=10, classes=11), "data.classes: expected at most data.points = 10"),
    ("terminal", dict(kind="softmax", num_components=10**9), "terminal.num_components"),
    ("solver", dict(max_steps=0), "solver.max_steps"),
    ("field", dict(viscosity=-1e-3), "field.viscosity: expected a number >= 0"),
    ("field", dict(viscosity=float("nan")), "field.viscosity: expected a number >= 0"),
])
def test_config_bounds(section, values, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        config_from_dict({section: values})


@pytest.mark.serial
def test_a_problem_file_must_be_a_small_regular_file(tmp_path):
    from solver.config import load_config

    with pytest.raises(InputError, match="not a regular file"):
        load_config("/dev/zero")
    (tmp_path / "big.toml").write_text("# " + "x" * 2**20)
    with pytest.raises(InputError, match="not a problem file"):
        load_config(tmp_path / "big.toml")


# --- signals -------------------------------------------------------------------------------------


@pytest.mark.serial
def test_the_first_signal_asks_to_stop_and_the_second_stops_at_once():
    old = stopping.install()
    try:
        assert stopping.requested(MPI.COMM_SELF) == 0
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping.requested(MPI.COMM_SELF) == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert stopping.Stopped(signal.SIGTERM, 3, "c").exit_code == 143
    finally:
        stopping.uninstall(old)
    assert stopping.requested(MPI.COMM_SELF) == 0


# --- Monte Carlo, predict and plain2resnet guards (issue 25) -------------------------------------


@pytest.mark.serial
@pytest.mark.parametrize("section, values, command, keys", [
    ("train", dict(paths=10**6), "train", "train.paths"),
    ("train", dict(sde_steps=10**6), "train", "train.sde_steps"),
    ("compare", dict(paths=10**6), "compare", "compare.paths"),
    ("compare", dict(sde_steps=10**6), "compare", "compare.sde_steps"),
    ("compare", dict(mc_points=10**5, points=10**5, paths=20000), "compare", "compare.mc_points"),
])
def test_monte_carlo_work_is_refused_before_it_starts(section, values, command, keys):
    viscous = config_from_dict({"field": dict(viscosity=0.01), "data": dict(points=400), section: values})
    check = (lambda c: guards.check_train(MPI.COMM_SELF, c, 2)) if command == "train" else \
        (lambda c: guards.check_compare(MPI.COMM_SELF, c))
    with pytest.raises(InputError, match=rf"Monte Carlo .* path-steps .* over the limit of 1e\+08 per rank.*{keys}"):
        check(viscous)
    inviscid = config_from_dict({"data": dict(points=400), section: values})
    check(inviscid)  # no Monte Carlo without viscosity: nothing to refuse
    check(config_from_dict({"field": dict(viscosity=0.01), "data": dict(points=400)}))  # the defaults pass


def test_more_slabs_than_max_steps_are_refused_before_the_speeds():
    """field.slabs = 10⁶: the speed estimate (one evaluation per slab, each slower with more
    slabs) ran for minutes; at least one step per slab is over solver.max_steps at once."""
    config = config_from_dict(dict(field=dict(width=3, slabs=10**6), data=dict(points=40)))
    with pytest.raises(InputError, match=r"field.slabs = 1000000 means at least one time step per slab, 1000000 per "
                                         r"solve, over solver.max_steps = 10000"):
        guards.check_train(MPI.COMM_WORLD, config, 2)
    config = config_from_dict(dict(field=dict(width=3, slabs=10**6), solver=dict(max_steps=10**6), data=dict(points=40)))
    assert guards.pieces(config) == 10**6  # not refused by this rule when max_steps allows it


@pytest.mark.serial
def test_predict_grid_depth_and_plain_width_guards():
    config = config_from_dict(dict(field=dict(width=5, slabs=2)))
    with pytest.raises(InputError, match=r"run: predict --grid needs an estimated .*lower --grid"):
        guards.check_predict(MPI.COMM_SELF, "run", config, 4096.0**3, 2, "pde", None)
    with pytest.raises(InputError, match=r"run: predict --depth 1000000000 needs an estimated .*lower --depth"):
        guards.check_predict(MPI.COMM_SELF, "run", config, 0, 2, "resnet", 10**9)
    guards.check_predict(MPI.COMM_SELF, "run", config, 512.0**2, 2, "resnet", 1000)
    with pytest.raises(InputError, match=r"net.npz: plain2resnet of a net of width 20000 needs an estimated"):
        guards.check_plain_width(MPI.COMM_SELF, "net.npz", 20000, 2)
    guards.check_plain_width(MPI.COMM_SELF, "net.npz", 100, 4)
    # The time of the d x d decompositions: refused over --max-width, with the estimate.
    with pytest.raises(InputError, match=r"net.npz: plain2resnet of a net of width 20000 \(2 layers\): .* an "
                                         r"estimated 24 hours or more, over --max-width 2000; .* --max-width 20000"):
        guards.check_plain_cost("net.npz", 20000, 2, guards.MAX_PLAIN_WIDTH)
    guards.check_plain_cost("net.npz", 20000, 2, 20000)
    guards.check_plain_cost("net.npz", 2000, 2, 2000)


@pytest.mark.serial
def test_the_api_wording_names_no_command_line_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / files.MARKER).write_text("")
    (run / "theta.npz").write_text("")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("")
    (tmp_path / "link").symlink_to(run)
    for path in (run, user, tmp_path / "link", tmp_path / "link"):
        cli, api, estimator = (files.refuse_run_directory(path, False, (), wording)
                               for wording in ("cli", "api", "estimator"))
        assert "--" in cli or "symbolic link" in cli
        assert "--" not in api and "--" not in estimator, (api, estimator)
    assert "force=True to replace it, or resume=True" in files.refuse_run_directory(run, False, (), "api")
    # FlowClassifier.fit(run_dir=) and save(path) cannot resume: their message does not offer it
    assert files.refuse_run_directory(run, False, (), "estimator") == "exists: pass force=True to replace it"
    # compare CONFIG --out cannot resume either: its message offers --force only
    assert files.refuse_run_directory(run, False, (), "compare") == "exists: pass --force to replace it"
    with pytest.raises(InputError, match="choose another directory") as error:
        files.prepare_run_directory(MPI.COMM_SELF, user, force=True, wording="api")
    assert "--out" not in str(error.value) and "--force" not in str(error.value)
