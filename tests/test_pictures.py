"""The pictures and the animation of a training run (tiny runs, in-process, collective: 1 or 2
ranks): flow.gif has its frames, a 3D run shows slices through the data and a 3D scatter, the
pictures are in data coordinates."""

from mpi4py import MPI  # noqa: F401


import numpy as np
import pytest

from solver.config import config_from_dict
from solver.learn.train import Problem, initial_parameters, train
from solver.rundir import store
from solver.rundir.outputs import write_training_outputs

FRAMES = 6
TINY_2D = dict(mesh=dict(cells=12), field=dict(width=4, slabs=2),
               data=dict(kind="moons", points=80, test_fraction=0.25),
               train=dict(iterations=3, max_step=2.0, adapt=False),
               output=dict(vtx=False, frames=FRAMES))
# circles on the plane x3 = 0 of a 3D box: an odd cell count keeps the data off facets
TINY_3D = dict(domain=dict(kind="box", lower=[-1, -1, -1], upper=[1, 1, 1]), mesh=dict(cells=5),
               field=dict(width=4, slabs=2),
               data=dict(kind="circles", points=60, test_fraction=0.25, augment_dim=3, factor=0.5),
               train=dict(iterations=1, max_step=2.0, adapt=False), output=dict(vtx=False, frames=4))


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


def test_training_writes_the_animation_and_labelled_pictures(comm, shared_directory):
    run, problem = run_directory(comm, shared_directory, TINY_2D)
    for name in ("prediction.png", "velocity.png", "characteristics.png", "loss.png", "flow.gif"):
        assert (run / name).stat().st_size > 0, name
    frames, size = gif_frames(run / "flow.gif")
    assert frames == FRAMES and min(size) > 100
    problem.destroy()


def test_frames_are_states_of_the_solve_from_0_to_T(comm):
    """The frames are states the solve kept, at increasing t from 0 to T, at most ``frames``."""
    from solver.rundir.animation import frame_states
    from solver.rundir.outputs import solve_with_states

    problem = Problem.build(comm, config_from_dict(TINY_2D))
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
    problem.destroy()


def test_a_3d_run_shows_slices_through_its_data(comm, shared_directory):
    """3D: prediction.png slices x3 = const (the data's plane among them) and the animation is a
    3D scatter with its frames."""
    from solver.rundir.outputs import Raster, slice_levels

    run, problem = run_directory(comm, shared_directory, TINY_3D)
    levels = slice_levels(problem.domain, problem.dataset)
    assert len(levels) == 3 and problem.dataset.X_train[0, 2] in levels  # the data's plane
    raster = Raster.of(problem.domain, 9, levels)
    assert raster.plane_points(problem.domain).shape == (3 * 81, 3) and raster.slab > 0
    for name in ("prediction.png", "velocity.png", "characteristics.png", "flow.gif"):
        assert (run / name).stat().st_size > 0, name
    assert gif_frames(run / "flow.gif")[0] == 4
    problem.destroy()


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
