"""The pictures and the animation of a training run (tiny runs, in-process, collective: 1 or 2
ranks): flow.gif has its frames, a 3D run shows every point (projections on the principal
axes) and slices through the data, the pictures are in data coordinates with the user's class
names; every picture is opened, and its figure has axis labels and a title."""

from mpi4py import MPI  # noqa: F401


import numpy as np
import pytest

from solver.rundir import plots

from pathlib import Path

from solver.config import config_from_dict
from solver.learn.train import Problem, initial_parameters, train
from solver.rundir import store
from solver.rundir.outputs import write_training_outputs

FRAMES = 6
# RK3: the animation's frames are its step states (the semi-Lagrangian scheme has one per slab).
TINY_2D = dict(solver=dict(scheme="rk3"), mesh=dict(cells=12), field=dict(width=4, slabs=2),
               data=dict(kind="moons", points=80, test_fraction=0.25),
               train=dict(iterations=3, max_step=2.0, adapt=False),
               output=dict(vtx=False, frames=FRAMES))
# circles on the plane x3 = 0 of a 3D box: an odd cell count keeps the data off facets
TINY_3D = dict(solver=dict(scheme="rk3"), domain=dict(kind="box", lower=[-1, -1, -1], upper=[1, 1, 1]), mesh=dict(cells=5),
               field=dict(width=4, slabs=2),
               data=dict(kind="circles", points=60, test_fraction=0.25, augment_dim=3, factor=0.5),
               train=dict(iterations=1, max_step=2.0, adapt=False), output=dict(vtx=False, frames=4))


# Every picture a 2-class training run writes (output.png).
PICTURES = ("prediction.png", "velocity.png", "characteristics.png", "loss.png", "certification.png",
            "confusion.png", "reliability.png", "roc.png")


@pytest.fixture
def drawn(monkeypatch):
    """What each figure saved through ``plots.save_figure`` held, by file name: per axes (colorbars
    left out) its x label, y label, title and whether another axes shares its x axis with a
    label; the suptitle; every legend text."""
    record = {}
    save = plots.save_figure

    def recording(fig, path):
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        shown = []
        for ax in axes:
            siblings = ax.get_shared_x_axes().get_siblings(ax) + [a for a in axes if a is not ax and
                                                                 a.bbox.bounds == ax.bbox.bounds]
            # a twin (twinx) or a shared-x axes takes its sibling's x label and title
            shown.append(dict(x=ax.get_xlabel() or next((a.get_xlabel() for a in siblings if a.get_xlabel()), ""),
                              y=ax.get_ylabel(),
                              title=ax.get_title() or next((a.get_title() for a in siblings if a.get_title()), "")))
        legends = [t.get_text() for legend in [*fig.legends, *(ax.get_legend() for ax in axes)] if legend
                   for t in legend.get_texts()]
        record[Path(path).name] = dict(axes=shown, suptitle=fig._suptitle.get_text() if fig._suptitle else "",
                                       legends=legends)
        save(fig, path)

    monkeypatch.setattr(plots, "save_figure", recording)
    return record


def check_picture(path, record, min_size=(300, 250)):
    """The PNG opens, is at least ``min_size`` pixels, and its figure has axis labels on every
    axes and a title (its own or the figure's)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= min_size[0] and image.size[1] >= min_size[1], \
            (path.name, image.size)
    assert record["axes"], path.name
    for ax in record["axes"]:
        assert ax["x"] and ax["y"], (path.name, ax)
        assert ax["title"] or record["suptitle"], (path.name, ax)


def run_directory(comm, shared_directory, settings):
    run = shared_directory(comm)
    config = config_from_dict(settings, source=str(run / "tiny.toml"))
    if comm.rank == 0:
        store.write_config(run / store.CONFIG, config.to_toml())
    outcome = train(comm, Problem.build(comm, config), run)
    write_training_outputs(comm, outcome, run)
    problem = outcome.problem
    return run, problem


def gif_frames(path) -> tuple[int, tuple[int, int]]:
    from PIL import Image

    with Image.open(path) as image:
        return image.n_frames, image.size


def test_training_writes_the_animation_and_labelled_pictures(comm, shared_directory, drawn):
    run, problem = run_directory(comm, shared_directory, TINY_2D)
    if comm.rank == 0:
        for name in PICTURES:
            check_picture(run / name, drawn[name])
        n_test = len(problem.dataset.y_test)
        assert f"{n_test} points" in drawn["confusion.png"]["axes"][0]["title"]  # the test points
        assert "ROC, AUC" in drawn["roc.png"]["axes"][0]["title"]
        assert drawn["confusion.png"]["axes"][0]["x"] == "predicted class"
        assert "data units" in drawn["velocity.png"]["axes"][0]["title"]
    frames, size = gif_frames(run / "flow.gif")
    assert frames == FRAMES and min(size) > 100
    problem.destroy()


def test_frames_are_states_of_the_solve_from_0_to_T(comm):
    """The frames are states the solve kept, at increasing t from 0 to T, at most ``frames``."""
    from solver.rundir.animation import frame_states
    from solver.rundir.outputs import solve_with_states

    with Problem.build(comm, config_from_dict(TINY_2D)) as problem:
        p = initial_parameters(problem)
        problem.J.evaluate(p)
        result = solve_with_states(problem, p, FRAMES)
        chosen = frame_states(result, FRAMES)
        times = [t for t, _ in chosen]
        assert len(chosen) == FRAMES and times[0] == 0.0 and chosen[0][1] is None
        assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx(problem.model.T)
        assert all(step in result.trajectory.states for _, step in chosen[1:])
        # fewer states than frames: one frame per state
        assert len(frame_states(result, 10**6)) == len(result.trajectory.states) + 1


def test_a_3d_run_shows_slices_through_its_data(comm, shared_directory):
    """3D: prediction.png slices x3 = const (the data's plane among them) and the animation is a
    3D scatter with its frames."""
    from solver.rundir.outputs import Raster, slice_levels

    run, problem = run_directory(comm, shared_directory, TINY_3D)
    levels = slice_levels(problem.domain, problem.dataset)
    assert len(levels) == 3 and problem.dataset.X_train[0, 2] in levels  # the data's plane
    raster = Raster.of(problem.domain, 9, levels)
    assert raster.plane_points(problem.domain).shape == (3 * 81, 3) and raster.slab > 0
    assert (run / "flow.gif").stat().st_size > 0
    assert gif_frames(run / "flow.gif")[0] == 4
    problem.destroy()


def test_a_3d_csv_run_shows_every_point_with_the_users_class_names(comm, shared_directory, drawn, tmp_path_factory):
    """3 features in a CSV file with named labels, nothing held out: prediction.png shows all
    points, start and end, on the data's principal axes, beside slices that say what they hold;
    the legends name the classes by the file's labels; the quality pictures judge the training
    points."""
    from solver.model.data import write_csv

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1.0, 0.6, (25, 3)), rng.normal(1.0, 0.6, (25, 3))])
    y = np.repeat([0, 1], 25)
    folder = tmp_path_factory.mktemp("csv") if comm.rank == 0 else None
    folder = Path(comm.bcast(str(folder) if folder else None, root=0))
    if comm.rank == 0:
        write_csv(folder / "points.csv", X, y)
        text = (folder / "points.csv").read_text().splitlines()
        rows = [line.rsplit(",", 1) for line in text[1:]]
        (folder / "named.csv").write_text("\n".join([text[0], *(f"{a},{'benign' if k == '0' else 'malignant'}"
                                                                for a, k in rows)]) + "\n")
    comm.Barrier()
    settings = dict(mesh=dict(cells=5), field=dict(width=4, slabs=2),
                    data=dict(kind="csv", path=str(folder / "named.csv")),
                    train=dict(iterations=1, max_step=2.0, adapt=False), output=dict(vtx=False, frames=3))
    run, problem = run_directory(comm, shared_directory, settings)
    assert problem.domain.dim == 3 and len(problem.dataset.y_test) == 0
    if comm.rank == 0:
        for name in PICTURES:
            check_picture(run / name, drawn[name])
        prediction = drawn["prediction.png"]
        titles = [ax["title"] for ax in prediction["axes"]]
        assert sum("all 50 points" in t for t in titles) == 2  # start and end positions
        assert sum(t.startswith("slice x3 = ") and "of 50 train" in t for t in titles) == 3
        assert any("principal axis 1" in ax["x"] for ax in prediction["axes"])
        for name in ("prediction.png", "characteristics.png"):
            assert {"benign", "malignant"} <= set(drawn[name]["legends"]), (name, drawn[name]["legends"])
        assert "50 points" in drawn["confusion.png"]["axes"][0]["title"]  # the training points
        assert "training points" in drawn["confusion.png"]["axes"][0]["title"]
        assert "malignant" in drawn["roc.png"]["axes"][0]["x"]
    assert gif_frames(run / "flow.gif")[0] == 3
    problem.destroy()


def test_certification_marks_each_change_of_resolution(tmp_path, drawn):
    """certification.png: one point per check, a dashed line per raise of the resolution."""
    nan = float("nan")
    history = [dict(iteration=i, cells=8 if i < 4 else 12, degree=1 if i < 2 else 2, refinements=0,
                    max_logit_difference=0.8 / (i + 1) if i % 2 == 0 else nan,
                    label_agreement=0.97 + 0.005 * i if i % 2 == 0 else nan) for i in range(7)]
    plots.certification_figure(tmp_path / "certification.png", history, 0.5, 0.995, "test")
    check_picture(tmp_path / "certification.png", drawn["certification.png"])
    assert "resolution raised (2)" in drawn["certification.png"]["legends"]
    assert "4 checks" in drawn["certification.png"]["axes"][0]["title"]


def test_reliability_of_a_perfectly_calibrated_model(tmp_path, drawn):
    """Labels drawn with the stated probabilities: the curve follows the diagonal (ECE small)."""
    rng = np.random.default_rng(0)
    p1 = rng.uniform(size=20000)
    y = (rng.uniform(size=p1.size) < p1).astype(int)
    plots.reliability_figure(tmp_path / "reliability.png", y, np.c_[1 - p1, p1], "calibrated")
    check_picture(tmp_path / "reliability.png", drawn["reliability.png"])
    ece = float(drawn["reliability.png"]["axes"][0]["title"].rsplit(" ", 1)[1])
    assert ece < 0.02
    plots.reliability_figure(tmp_path / "over.png", y, np.c_[1 - p1, p1] ** 0.2 / (
        (1 - p1) ** 0.2 + p1 ** 0.2)[:, None], "overconfident?")
    assert float(drawn["over.png"]["axes"][0]["title"].rsplit(" ", 1)[1]) > 0.05


@pytest.mark.serial  # fits an estimator on one rank
def test_decision_boundary_display_works_with_the_estimator(tmp_path, drawn):
    """scikit-learn's DecisionBoundaryDisplay draws a 2D FlowClassifier (docs/python-api.md)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import make_moons
    from sklearn.inspection import DecisionBoundaryDisplay

    from solver import FlowClassifier, OutsideDomainWarning

    X, y = make_moons(100, noise=0.1, random_state=0)
    clf = FlowClassifier(cells=8, iterations=5, comm=MPI.COMM_SELF).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideDomainWarning)  # eps = 0.2: the grid stays in Ω
        display = DecisionBoundaryDisplay.from_estimator(clf, X, response_method="predict_proba", eps=0.2,
                                                         alpha=0.6, grid_resolution=40, xlabel="x1", ylabel="x2")
    display.ax_.scatter(X[:, 0], X[:, 1], c=y, edgecolor="k", s=12)
    display.ax_.set_title("FlowClassifier on moons: P(class 1)")
    probability = display.response
    assert probability.shape == (40, 40) and 0.0 <= probability.min() < 0.2 and 0.8 < probability.max() <= 1.0
    plots.save_figure(display.figure_, tmp_path / "boundary.png")
    plt.close(display.figure_)  # scikit-learn drew it through pyplot
    check_picture(tmp_path / "boundary.png", drawn["boundary.png"])


def test_views_draw_in_data_coordinates():
    """The pictures' coordinates are the inverse of the scaling into Ω."""
    from solver.model.data import make_dataset
    from solver.model.domain import Box
    from solver.rundir.plots import View

    box = Box((-1.0, -1.0), (1.0, 1.0))
    data = make_dataset("moons", 100, domain=box)
    view = View(box, data.scaling, data.feature_names)
    raw = make_dataset("moons", 100)
    np.testing.assert_allclose(view.data(data.X_train), raw.X_train, atol=1e-12)
    lo, hi = view.data(np.array([box.lower, box.upper]))
    assert view.extent() == pytest.approx([lo[0], hi[0], lo[1], hi[1]])
    assert view.label(0) == "x1 (data coordinates)"


# Draws every library picture (synthetic data, no solve) with the svg backend chosen first, as a
# notebook has its inline backend; prints what it finds afterwards.
DRAW_UNDER_ANOTHER_BACKEND = r"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("svg")
from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)
import numpy as np

from solver.model.data import Scaling
from solver.model.domain import Box
from solver.rundir import plots
from solver.rundir.animation import draw_flow_animation
from solver.rundir.outputs import Raster
from solver.rundir.predictions import _map_figure

out = Path(sys.argv[1])
rng = np.random.default_rng(0)
box = Box((-1.0, -1.0), (1.0, 1.0))
view = plots.View(box, Scaling((2.0, 2.0), (0.1, -0.2)), ("x1", "x2"), ("a", "b"))
X = rng.uniform(-0.9, 0.9, (40, 2))
y = (X[:, 0] * X[:, 1] > 0).astype(int)
times = np.linspace(0.0, 1.0, 3)
paths = X[None] * (1 - 0.2 * times)[:, None, None]  # (times, n, 2)
grid = np.stack([a.ravel() for a in np.meshgrid(*2 * [np.linspace(-1, 1, 9)], indexing="ij")], axis=1)
raster = Raster.of(box, 9)
raster.classify(np.column_stack([grid[:, 0], -grid[:, 0]]))
history = [dict(iteration=i, loss=1.0 / (i + 1), train_accuracy=0.5, test_accuracy=0.5, cells=8, degree=1,
                refinements=0, max_logit_difference=0.1, label_agreement=0.99) for i in range(3)]
plots.comparison_figure(out / "comparison.png", grid, grid[:, 0], grid[:, 0] + 1e-3, paths, "comparison")
plots.convergence_figure(out / "convergence.png", dict(rows=[dict(h_min=h, l2=h**2, max_points=h) for h in (0.5, 0.25)],
                                                       fitted_order_l2=2.0, fitted_order_max=1.0), "convergence")
plots.prediction_figure(out / "prediction.png", view, raster, X, y, X, y, y, "prediction")
plots.velocity_figure(out / "velocity.png", view, grid, np.stack(2 * [grid[:, ::-1]]), [0.0, 1.0],
                      1 - np.max(grid**2, axis=1), "velocity")
plots.characteristics_figure(out / "characteristics.png", view, paths, y, "characteristics")
plots.loss_figure(out / "loss.png", history, "loss")
plots.confusion_figure(out / "confusion.png", y, 1 - y, ["a", "b"], "confusion")
plots.certification_figure(out / "certification.png", history, 0.5, 0.95, "certification")
plots.roc_figure(out / "roc.png", y, X[:, 0] * X[:, 1] + 0.5, ["a", "b"], "roc")
plots.reliability_figure(out / "reliability.png", y, np.column_stack([1 - y, y]) * 0.8 + 0.1, "reliability")
_map_figure(out / "map.png", grid.reshape(9, 9, 2), (grid[:, 0] > 0).astype(int).reshape(9, 9),
            np.full((9, 9), 0.9), ("a", "b"), "map")
draw_flow_animation(out / "flow.gif", view, times, paths, y, 2, [raster.slices[0][1]] * 3, "flow")
cube = Box((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
view3 = plots.View(cube, Scaling.identity(3), ("x1", "x2", "x3"))
paths3 = np.concatenate([paths, np.zeros((3, 40, 1))], axis=2)
plots.characteristics_figure(out / "characteristics3d.png", view3, paths3, y, "characteristics 3D")
draw_flow_animation(out / "flow3d.gif", view3, times, paths3, y, 2, None, "flow 3D")
print(json.dumps(dict(backend=matplotlib.get_backend(), pyplot="matplotlib.pyplot" in sys.modules)))
"""


@pytest.mark.serial  # a subprocess: under mpirun it would inherit the rank's MPI environment
def test_pictures_leave_the_users_backend_alone(tmp_path):
    """A user's backend (a notebook's inline one; here svg, chosen before pyplot is imported) is
    the same after the library drew every picture and both animations, and pyplot (its global
    figures) was never imported: the library draws on plain matplotlib Figures."""
    import json
    import subprocess
    import sys

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", DRAW_UNDER_ANOTHER_BACKEND, str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == dict(backend="svg", pyplot=False), seen
    pictures = ("comparison", "convergence", "prediction", "velocity", "characteristics", "loss", "confusion",
                "certification", "roc", "reliability", "map", "characteristics3d")
    for name in pictures:
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 200, (name, image.size)
    for name in ("flow", "flow3d"):
        assert gif_frames(tmp_path / f"{name}.gif") == (3, (358, 358)), name  # 5.6 in at 64 dpi
