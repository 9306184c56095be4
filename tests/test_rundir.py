"""The run directory's files (solver.rundir.store): round trips, atomic writes, and every broken
file read as an InputError that names it. Rank-local: runs alike on every rank."""

import json
import os

import numpy as np
import pytest

from solver.errors import InputError
from solver.learn.optimize import OptimizerState
from solver.model.domain import make_domain
from solver.model.velocity import VelocityModel
from solver.rundir import columns, files, store

ROW = dict(iteration=3, loss=0.25, data_loss=0.125, train_accuracy=0.9, test_accuracy=float("nan"),
           gradient_norm=1.5e-3, steps=42, seconds=0.75, evaluations=5, cells=13, degree=1,
           max_logit_difference=0.25, label_agreement=1.0, accuracy_characteristics=0.875,
           check_seconds=0.0625, refinements=1, monte_carlo_bound=0.125)


def model_and_parameters(K=3):
    model = VelocityModel(dim=2, width=4, slabs=2, T=1.0, activation="tanh",
                          domain=make_domain("box", lower=[-1, -1], upper=[1, 1]))
    rng = np.random.default_rng(1)
    return model, rng.normal(size=model.n_params), rng.normal(size=(K, 2)), rng.normal(size=K)


def write_theta(path):
    model, theta, A, b = model_and_parameters()
    store.write_parameters(path, model, theta, A, b, domain=dict(kind="box"),
                           scaling=dict(scale=[1.0, 2.0], shift=[0.0, 0.5]))
    return model, theta, A, b


def history(n=3):
    return [dict(ROW, iteration=i, loss=1.0 / (i + 1)) for i in range(n)]


def test_parameters_round_trip(tmp_path):
    model, theta, A, b = write_theta(tmp_path / store.THETA)
    params = store.read_parameters(tmp_path / store.THETA)
    np.testing.assert_array_equal(params.p, np.concatenate([theta, A.ravel(), b]))
    np.testing.assert_array_equal(params.theta, theta)
    np.testing.assert_array_equal(params.A, A)
    np.testing.assert_array_equal(params.b, b)
    assert params.meta["format"] == store.PARAMETERS_FORMAT and params.meta["version"] == store.PARAMETERS_VERSION
    assert params.meta["model"] == dict(dim=2, width=4, slabs=2, T=1.0, activation="tanh", layers=2)
    assert params.meta["scaling"] == dict(scale=[1.0, 2.0], shift=[0.0, 0.5])
    assert params.meta["num_classes"] == 3
    blocks = params.meta["blocks"]
    assert min(s for s, _ in blocks.values()) == 0 and max(e for _, e in blocks.values()) == model.n_params


def test_parameters_as_written_before_the_store(tmp_path):
    """theta.npz as the code before solver.rundir.store wrote it (np.savez to a path), and the
    p-only file a warm start accepts, still read."""
    model, theta, A, b = model_and_parameters()
    p = np.concatenate([theta, A.ravel(), b])
    meta = dict(format="transport-inverse parameters", version=1, model=dict(dim=2), domain={},
                scaling=dict(scale=[1, 1], shift=[0, 0]), num_classes=3, blocks={})
    np.savez(tmp_path / "old.npz", p=p, theta=theta, A=A, b=b, meta=json.dumps(meta))
    old = store.read_parameters(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.p, p)
    np.testing.assert_array_equal(old.A, A)
    assert old.meta == meta
    np.savez(tmp_path / "p.npz", p=p)
    bare = store.read_parameters(tmp_path / "p.npz")
    np.testing.assert_array_equal(bare.p, p)
    assert bare.theta is None and bare.meta is None


def test_checkpoint_and_history_round_trip(tmp_path):
    state = OptimizerState(4, np.arange(5.0), 0.5, np.ones(5), s=[np.ones(5)], y=[np.zeros(5)],
                           evaluations=7)
    rows = history()
    store.write_checkpoint(tmp_path / store.CHECKPOINT, state.to_arrays(), rows)
    arrays, back = store.read_checkpoint(tmp_path / store.CHECKPOINT)
    restored = OptimizerState.from_arrays(arrays)
    assert (restored.iteration, restored.value, restored.evaluations) == (4, 0.5, 7)
    np.testing.assert_array_equal(restored.p, state.p)
    np.testing.assert_array_equal(restored.s[0], state.s[0])
    assert restored.m is None
    assert [r["iteration"] for r in back] == [0, 1, 2]
    assert all(isinstance(r[k], int) for r in back for k in store.INTEGER_COLUMNS)
    np.testing.assert_array_equal([r["loss"] for r in back], [r["loss"] for r in rows])
    assert np.isnan(back[0]["test_accuracy"])

    store.write_history(tmp_path / store.HISTORY, rows)
    lines = (tmp_path / store.HISTORY).read_text().splitlines()
    assert lines[0] == ",".join(store.HISTORY_COLUMNS) and len(lines) == 4
    csv_rows = store.read_history(tmp_path / store.HISTORY)
    assert [r["iteration"] for r in csv_rows] == [0, 1, 2] and csv_rows[2]["steps"] == 42
    np.testing.assert_allclose([r["loss"] for r in csv_rows], [r["loss"] for r in rows], rtol=1e-9)


def test_metrics_round_trip(tmp_path):
    metrics = dict(final_loss=np.float64(0.5), iterations=np.int64(3), test_accuracy=float("nan"),
                   sizes=np.arange(3), nested=dict(inf=np.float64(np.inf)))
    store.write_json(tmp_path / store.METRICS, metrics)
    back = store.read_json(tmp_path / store.METRICS)
    assert back == dict(final_loss=0.5, iterations=3, test_accuracy=None, sizes=[0, 1, 2],
                        nested=dict(inf=None))


def test_config_is_written_whole(tmp_path):
    store.write_config(tmp_path / store.CONFIG, "[mesh]\ncells = 8\n")
    assert (tmp_path / store.CONFIG).read_text() == "[mesh]\ncells = 8\n"


def broken(tmp_path, name, how):
    """An empty file, or the first half of a good one."""
    path = tmp_path / name
    if how == "empty":
        path.write_bytes(b"")
        return path
    if name == store.THETA:
        write_theta(path)
    elif name == store.CHECKPOINT:
        store.write_checkpoint(path, OptimizerState(1, np.ones(50), 0.5, np.ones(50)).to_arrays(), history())
    elif name == store.HISTORY:
        store.write_history(path, history())
    else:
        store.write_json(path, dict(a=1, b=[1, 2, 3]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


READERS = {store.THETA: store.read_parameters, store.CHECKPOINT: store.read_checkpoint,
           store.HISTORY: store.read_history, store.METRICS: store.read_json}


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize("name", list(READERS))
def test_broken_files_are_input_errors_naming_the_file(tmp_path, name, how):
    path = broken(tmp_path, name, how)
    with pytest.raises(InputError, match="cannot read .*: ") as raised:
        READERS[name](path)
    assert raised.value.source == str(path)
    assert str(raised.value).startswith(f"{path}: ")
    if how == "empty":
        assert "the file is empty" in str(raised.value)


@pytest.mark.parametrize("name", list(READERS))
def test_missing_files_are_input_errors_naming_the_file(tmp_path, name):
    with pytest.raises(InputError, match="file not found") as raised:
        READERS[name](tmp_path / name)
    assert raised.value.source == str(tmp_path / name)


def test_wrong_contents_are_input_errors(tmp_path):
    np.savez(tmp_path / "q.npz", q=np.ones(3))
    with pytest.raises(InputError, match="q.npz: cannot read learned parameters: the file has no 'p'"):
        store.read_parameters(tmp_path / "q.npz")
    np.save(tmp_path / "plain.npy", np.ones(3))
    with pytest.raises(InputError, match="not an npz archive"):
        store.read_parameters(tmp_path / "plain.npy")
    np.savez(tmp_path / "c.npz", p=np.ones(3), history=np.ones((2, 4)))
    with pytest.raises(InputError, match=r"c.npz: .*history must have shape \(n, 17\)"):
        store.read_checkpoint(tmp_path / "c.npz")
    (tmp_path / "h.csv").write_text("iteration,loss\n1,2\n")
    with pytest.raises(InputError, match="h.csv: .*header"):
        store.read_history(tmp_path / "h.csv")
    (tmp_path / "m.json").write_text("[1, 2]\n")
    with pytest.raises(InputError, match="m.json: .*not a JSON object"):
        store.read_json(tmp_path / "m.json")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / store.METRICS
    store.write_json(path, dict(a=1))
    with pytest.raises(TypeError):
        store.write_json(path, dict(a=object()))  # not JSON-able
    assert store.read_json(path) == dict(a=1)
    assert os.listdir(tmp_path) == [store.METRICS]
    with pytest.raises(RuntimeError):
        with files.atomic_file(tmp_path / "x.bin") as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == [store.METRICS]


def test_history_written_before_certification_reads_with_nan_checks(tmp_path):
    """Runs written before certified training have nine history columns: they still resume."""
    old = columns.FIRST_HISTORY_COLUMNS
    path = tmp_path / "history.csv"
    path.write_text(",".join(old) + "\n" + ",".join(str(ROW[c]) for c in old) + "\n")
    (row,) = store.read_history(path)
    assert row["steps"] == 42 and np.isnan(row["max_logit_difference"]) and np.isnan(row["cells"])
    earlier = store.EARLIER_HISTORY_COLUMNS[1]  # before local refinement: fifteen columns
    path.write_text(",".join(earlier) + "\n" + ",".join(str(ROW[c]) for c in earlier) + "\n")
    (row,) = store.read_history(path)
    assert row["cells"] == 13 and np.isnan(row["refinements"])
    earlier = store.EARLIER_HISTORY_COLUMNS[2]  # before the Monte Carlo check: sixteen columns
    path.write_text(",".join(earlier) + "\n" + ",".join(str(ROW[c]) for c in earlier) + "\n")
    (row,) = store.read_history(path)
    assert row["refinements"] == 1 and np.isnan(row["monte_carlo_bound"])


def test_a_prediction_figure_of_many_points_draws_a_fixed_subset(tmp_path, monkeypatch):
    from solver.model.data import Scaling
    from solver.rundir import outputs, plots

    drawn = []
    real = plots.scatter_classes
    monkeypatch.setattr(plots, "scatter_classes", lambda ax, X, y, *a, **k: (drawn.append(len(X)), real(ax, X, y, *a, **k)))
    box = make_domain("box", lower=[-1, -1], upper=[1, 1])
    raster = outputs.Raster.of(box, 16)
    raster.classify(np.random.default_rng(0).normal(size=(int(raster.inside.sum()), 2)))
    rng = np.random.default_rng(1)
    n = 3 * plots.SHOWN_POINTS
    X, y = rng.uniform(-1, 1, size=(n, 2)), rng.integers(0, 2, n)
    view = plots.View(box, Scaling.identity(2), ("x1", "x2"))
    plots.prediction_figure(tmp_path / "p.png", view, raster, X, y, X[:100], y[:100], y[:100], "many")
    assert drawn == [plots.SHOWN_POINTS, 100] and (tmp_path / "p.png").stat().st_size > 0
    assert np.array_equal(plots.shown_subset(n), plots.shown_subset(n)) and len(np.unique(plots.shown_subset(n))) == plots.SHOWN_POINTS
