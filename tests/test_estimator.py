"""FlowClassifier and FlowRegressor (solver/estimator.py): scikit-learn's estimator checks, cross-validation, grid
search and pipelines; save/load through the run-directory format (no pickle), ONNX export; the
same predictions on 1 and 2 ranks, and on every rank.

The API tests are serial (marked): under mpirun every rank runs the same code, which the
non-serial ones (grid search, save/load, 1 against 2 ranks, bad parameters) show.
"""

from mpi4py import MPI

import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_moons
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from solver import FlowClassifier, FlowRegressor
from solver.estimator import OutsideDomainWarning, UncertifiedWarning
from solver.errors import InputError

# The API checks fit dozens of times: the smallest problem that is still the whole pipeline (a
# 4² mesh, 2 iterations, certification at the start and the end, no refinement). 34 s for all
# checks here, under load (`pytest tests/test_estimator.py -k sklearn_check --durations=5`).
TINY = dict(cells=4, iterations=2, adapt=False, check_every=100)
# Enough to learn moons: 8² mesh, 10 iterations (about 1 s a fit).
SMALL = dict(cells=8, iterations=10)

# The checks that do not apply, each with its reason. (Data of more than 3 features go through
# the learned input layer: the four checks that fit them pass.)
EXPECTED_FAILED_CHECKS = {
    "check_classifiers_train": ("2 iterations on a 4² mesh (TINY, a check of the API) do not reach "
                                "scikit-learn's accuracy bar of 0.83; "
                                "test_classifiers_train_with_more_iterations runs it with 10"),
}


def moons(n=120, seed=0):
    return make_moons(n, noise=0.1, random_state=seed)


def same_on_every_rank(comm, values) -> bool:
    return all(np.array_equal(values, other) for other in comm.allgather(values))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertifiedWarning)
        yield


@pytest.mark.serial  # all ranks would repeat the same 50 checks
@parametrize_with_checks([FlowClassifier(**TINY)], expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS,
                         xfail_strict=True)
def test_sklearn_check(estimator, check):
    check(estimator)


@pytest.mark.serial  # all ranks would repeat the same checks; every one passes (none expected to fail)
@parametrize_with_checks([FlowRegressor(**TINY)], xfail_strict=True)
def test_sklearn_regressor_check(estimator, check):
    check(estimator)


@pytest.mark.serial
def test_classifiers_train_with_more_iterations():
    estimator_checks.check_classifiers_train("FlowClassifier", FlowClassifier(**SMALL))


@pytest.mark.serial  # under MPI: test_grid_search
def test_cross_val_score(comm):
    X, y = moons(150)
    scores = cross_val_score(FlowClassifier(**SMALL), X, y, cv=3)
    print(f"\ncross-validated accuracy {scores.round(3)}")
    assert scores.shape == (3,) and scores.min() > 0.8
    assert same_on_every_rank(comm, scores)


def test_grid_search(comm):
    X, y = moons(120)
    search = GridSearchCV(FlowClassifier(**SMALL), {"kinetic": [0.0, 0.05]}, cv=2).fit(X, y)
    print(f"\nbest {search.best_params_}: {search.best_score_:.3f}")
    assert search.best_params_ in search.cv_results_["params"]
    assert search.best_estimator_.kinetic == search.best_params_["kinetic"]
    assert search.best_score_ == np.max(search.cv_results_["mean_test_score"]) > 0.8
    assert same_on_every_rank(comm, search.cv_results_["mean_test_score"])
    assert search.score(X, y) > 0.8


@pytest.mark.serial
def test_pipeline_with_standard_scaler(comm):
    X, y = moons(120)
    pipe = make_pipeline(StandardScaler(), FlowClassifier(**SMALL)).fit(10.0 * X + 5.0, y)
    assert pipe.score(10.0 * X + 5.0, y) > 0.9
    assert same_on_every_rank(comm, pipe.predict_proba(X))


@pytest.mark.serial
def test_four_features_through_the_learned_input_layer(tmp_path):
    """Iris (4 features) fits through the learned input layer into the 3D box, or into a disk
    with input_dim=2; the fitted layer maps every point inside Ω; save/load keeps it; the ONNX
    export takes the 4 features and gives the characteristics' labels."""
    X, y = load_iris(return_X_y=True)
    clf = FlowClassifier(**SMALL).fit(X, y)
    print(f"\niris, learned input layer into 3D: training accuracy {clf.score(X, y):.3f}")
    assert clf.input_layer_ is not None and clf.n_features_in_ == 4 and clf.score(X, y) > 0.9
    assert len(clf.config_["domain"]["lower"]) == 3
    disk = FlowClassifier(**SMALL, domain="disk", input_dim=2, input_init="lda").fit(X, y)
    assert disk.score(X, y) > 0.9
    z = disk._to_omega(X, 2)
    assert np.linalg.norm(z, axis=1).max() < 0.8 + 1e-12  # (1 − margin) of the unit disk
    loaded = FlowClassifier.load(clf.save(tmp_path / "run"))
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    onnx = pytest.importorskip("onnxruntime")  # noqa: F841
    from solver.resnet.onnx_net import load_onnx_session

    path = clf.export_onnx(tmp_path / "iris.onnx", depth=64, scheme="rk4", dtype="float64")
    session = load_onnx_session(path)
    assert np.mean(session(X).argmax(axis=1) == clf.classes_.searchsorted(clf.predict(X))) >= 0.99
    with pytest.raises(ValueError, match="augment_dim"):
        FlowClassifier(**SMALL, augment_dim=3).fit(X, y)


@pytest.mark.serial
def test_input_decay_defaults_and_shrinks_E():
    """input_decay (input.decay, the weight of |E|²) left at None is the estimator's own (a
    classifier's 1e-3, a regressor's 1) and a given value is used; a larger one ends with a
    smaller E on the same data."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.3 * rng.normal(size=80)
    small = dict(cells=4, iterations=15, adapt=False, check_every=100)
    fits = {decay: FlowRegressor(**small, input_decay=decay).fit(X, y) for decay in (None, 0.0)}
    assert fits[None].config_["input"]["decay"] == 1.0 and fits[0.0].config_["input"]["decay"] == 0.0
    E = {decay: np.linalg.norm(reg._input_q()[: 3 * 6]) for decay, reg in fits.items()}
    print(f"\n|E| with the default decay {E[None]:.3f}, without {E[0.0]:.3f}")
    assert E[None] < 0.9 * E[0.0], E
    clf = FlowClassifier(**small).fit(X, (y > 0).astype(int))
    assert clf.config_["input"]["decay"] == 1e-3


def test_training_starts_where_the_pretrained_layers_end(comm):
    """input_pretrain > 0: the first row of the history (the start of training, before any flow
    iteration) already classifies wine as the pretrained layers do; without it, the random
    output layer's start does not. Every rank starts from rank 0's pretrained layers."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    small = dict(cells=4, iterations=1, adapt=False, check_every=100)
    fits = {n: FlowClassifier(**small, input_pretrain=n).fit(X, y) for n in (0, 200)}
    start = {n: clf.history_[0]["train_accuracy"] for n, clf in fits.items()}
    print(f"\nwine, training accuracy at the start: {start}")
    assert start[200] > 0.95 and start[0] < 0.9
    assert same_on_every_rank(comm, fits[200].parameters_)
    # Restarts, dealt out over the ranks: the same choice on every rank (and on 1 and 2 ranks).
    restarted = FlowClassifier(**small, input_pretrain=200, input_restarts=3).fit(X, y)
    assert restarted.config_["input"]["restarts"] == 3
    assert same_on_every_rank(comm, restarted.parameters_)
    assert restarted.history_[0]["train_accuracy"] > 0.95


@pytest.mark.serial
def test_regressor_learns(tmp_path):
    """A smooth function of 2 features, one and two outputs: R² > 0.9 on the training points,
    certified, predictions in y's units and shape; save/load keeps the target scaling."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (150, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 100.0
    reg = FlowRegressor(cells=8, iterations=30).fit(X, y)
    print(f"\nregression R² {reg.score(X, y):.3f}, check {reg.metrics_['check']['train']['max_logit_difference']:.3g}")
    assert reg.predict(X).shape == (150,) and reg.score(X, y) > 0.9 and reg.certified_
    Y = np.stack([y, -2.0 * y], axis=1)
    two = FlowRegressor(cells=8, iterations=30).fit(X, Y)
    assert two.predict(X).shape == (150, 2) and two.score(X, Y) > 0.9
    loaded = FlowRegressor.load(two.save(tmp_path / "run"))
    assert np.array_equal(loaded.predict(X), two.predict(X))
    with pytest.raises(ValueError, match="<FlowRegressor>: .*squared_error"):
        FlowRegressor(loss="cross_entropy", **SMALL).fit(X, y)


@pytest.mark.serial
def test_outputs_agree_and_labels_are_the_users():
    X, y = moons(100)
    labels = np.where(y == 1, "upper", "lower")
    clf = FlowClassifier(**SMALL).fit(X, labels)
    assert list(clf.classes_) == ["lower", "upper"] and clf.n_features_in_ == 2
    proba, margin = clf.predict_proba(X), clf.decision_function(X)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.predict(X), clf.classes_[(margin > 0).astype(int)])
    assert np.allclose(np.log(proba[:, 1] / proba[:, 0]), margin)
    assert clf.metrics_["train_accuracy"] > 0.9 and clf.n_iter_ == SMALL["iterations"]
    assert clf.resolution_["cells"] >= SMALL["cells"]


@pytest.mark.serial
def test_three_classes_in_a_3d_box():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(90, centers=3, n_features=2, random_state=1)
    clf = FlowClassifier(**{**SMALL, "cells": 4}, augment_dim=3).fit(X, y)  # 2D data at x3 = 0 of a 3D box
    assert clf.decision_function(X).shape == (90, 3)
    assert len(clf.scaling_["scale"]) == 3 and clf.score(X, y) > 0.9


@pytest.mark.serial
def test_fit_writes_nothing_without_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    FlowClassifier(**TINY).fit(*moons(40))
    assert list(tmp_path.iterdir()) == []


def test_bad_parameters_name_the_parameter():
    """scikit-learn's messages for a value out of range (iterations=0 too); the problem file's
    later checks in the estimator's names (``max_dofs``, not ``train.max_dofs``)."""
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = moons(40)
    with pytest.raises(InvalidParameterError, match="The 'cells' parameter of FlowClassifier must be"):
        FlowClassifier(cells=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'iterations' parameter of FlowClassifier must be "
                                                    r"an int in the range \[1, inf\)\. Got 0 instead"):
        FlowClassifier(iterations=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'activation' parameter"):
        FlowClassifier(activation="swish").fit(X, y)
    with pytest.raises(ValueError, match="cells = 8 .* over max_dofs = 10; lower cells or degree") as raised:
        FlowClassifier(**{**TINY, "cells": 8}, max_dofs=10).fit(X, y)
    assert "mesh." not in str(raised.value) and "train." not in str(raised.value)
    with pytest.raises(ValueError, match="at least 2 classes"):
        FlowClassifier(**TINY).fit(X, np.zeros(len(X)))


def test_a_target_accuracy_on_held_out_points_ends_the_fit(comm):
    """target_accuracy with validation_fraction: that share of X is held out (stratified), the
    history's test accuracy is theirs, and the fit ends at the first check that certifies the
    target on them, before its iterations; without a validation fraction, or for a regressor,
    the target is refused with both names."""
    X, y = moons(200)
    kw = dict(cells=24, iterations=40, random_state=0)
    clf = FlowClassifier(**kw, target_accuracy=0.95, validation_fraction=0.2).fit(X, y)
    last = clf.history_[-1]
    print(f"\nended at iteration {last['iteration']}: validation accuracy {last['test_accuracy']:.3f}")
    assert 0 < last["iteration"] < 40 and clf.certified_
    assert last["accuracy_characteristics"] >= 0.95
    assert clf.config_["data"]["test_fraction"] == 0.2 and clf.config_["train"]["target_accuracy"] == 0.95
    assert same_on_every_rank(comm, clf.parameters_)
    with pytest.raises(ValueError, match=r"target_accuracy=0\.9 .* set validation_fraction"):
        FlowClassifier(**kw, target_accuracy=0.9).fit(X, y)
    with pytest.raises(ValueError, match="a regressor has no accuracy"):
        FlowRegressor(**kw, target_accuracy=0.9, validation_fraction=0.2).fit(X, y.astype(float))


def test_random_state_and_the_deprecated_seed(comm):
    """random_state seeds the initial parameters; seed is its old name (a FutureWarning); a
    RandomState draws one seed, the same on every rank."""
    X, y = moons(40)
    by_state = FlowClassifier(**TINY, random_state=3).fit(X, y)
    with pytest.warns(FutureWarning, match="seed was renamed random_state"):
        by_seed = FlowClassifier(**TINY, seed=3).fit(X, y)
    other = FlowClassifier(**TINY, random_state=4).fit(X, y)
    assert np.array_equal(by_state.parameters_, by_seed.parameters_)
    assert not np.array_equal(by_state.parameters_, other.parameters_)
    assert by_state.config_["train"]["seed"] == 3
    drawn = FlowClassifier(**TINY, random_state=np.random.RandomState(0)).fit(X, y)
    assert same_on_every_rank(comm, drawn.parameters_)


@pytest.mark.serial
def test_resolution_summary_and_class_types():
    """resolution_ is a few numbers, the local refinements' midpoints are refinement_marks_;
    metrics_["classes"] holds the labels as classes_ does."""
    X, y = moons(100)
    # With the problem file's weight decay (1e-4, not the classifier's 1e-2) the field is rough
    # enough that moons on 8² is raised to DG2 and refined locally.
    clf = FlowClassifier(**SMALL, weight_decay=1e-4).fit(X, y)
    assert set(clf.resolution_) == {"cells", "degree", "refinements", "refined_cells", "dofs"}
    assert clf.resolution_["refinements"] == len(clf.refinement_marks_) >= 1
    assert clf.resolution_["refined_cells"] == sum(map(len, clf.refinement_marks_)) > 0
    assert all(len(point) == 2 for level in clf.refinement_marks_ for point in level)
    assert clf.metrics_["classes"] == clf.classes_.tolist() == [0, 1]
    assert type(clf.metrics_["classes"][0]) is type(clf.classes_.tolist()[0])


def test_facet_warning_once_per_fit_in_parameter_names(comm):
    """2D data at x3 = 0 of a 3D box of 4 cells lie on facets: under the DG scheme (rk3), whose
    u_h jumps there, one FacetWarning (rank 0) per fit, although the run is rebuilt on DG2
    (adapt), in the estimator's names; nothing on stdout. (The default scheme's u_h is
    continuous: a point on a facet has one value, and no warning is given.)"""
    from solver import FacetWarning

    X, y = moons(60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = FlowClassifier(cells=4, degree=1, iterations=2, check_every=1, tolerance=0.05, augment_dim=3,
                             scheme="rk3").fit(X, y)
    assert clf.resolution_["degree"] == 2  # rebuilt at least once
    with warnings.catch_warnings(record=True) as continuous:
        warnings.simplefilter("always")
        FlowClassifier(cells=4, iterations=2, augment_dim=3).fit(X, y)
    assert not [w for w in continuous if w.category is FacetWarning]
    facets = [str(w.message) for w in caught if w.category is FacetWarning]
    if comm.rank == 0:
        assert len(facets) == 1 and "60 of 60 points lie on mesh facets" in facets[0]
        assert "an odd cells or another margin" in facets[0] and "mesh.cells" not in facets[0]
    else:
        assert facets == []


@pytest.mark.serial
def test_points_outside_omega_keep_the_output_layer(comm):
    X, y = moons(60)
    clf = FlowClassifier(**TINY).fit(X, y)
    far = np.array([[50.0, -40.0], [0.5, 0.25]])
    with pytest.warns(OutsideDomainWarning, match="1 of 2 points"):
        logits = clf._logits(far)
    n_theta = clf.parameters_.size - 2 * 3
    A, b = clf.parameters_[n_theta:n_theta + 4].reshape(2, 2), clf.parameters_[n_theta + 4:]
    scale, shift = np.asarray(clf.scaling_["scale"]), np.asarray(clf.scaling_["shift"])
    assert np.allclose(logits[0], (far[0] * scale + shift) @ A.T + b)


def test_save_and_load_without_pickle(comm, shared_directory):
    X, y = moons(100)
    labels = np.where(y == 1, 7, -3)  # integer labels that are not 0..K-1
    clf = FlowClassifier(**SMALL).fit(X, labels)
    path = shared_directory(comm) / "saved"
    clf.save(path)
    assert {"config.toml", "theta.npz", "metrics.json"} <= {p.name for p in path.iterdir()}
    with zipfile.ZipFile(path / "theta.npz") as npz:  # arrays only: np.load(allow_pickle=False) reads it
        assert all(name.endswith(".npy") for name in npz.namelist())
    loaded = FlowClassifier.load(path)
    assert loaded.get_params() == {**clf.get_params(), "comm": None}
    assert loaded.classes_.dtype == clf.classes_.dtype and list(loaded.classes_) == [-3, 7]
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert np.array_equal(loaded.predict(X), clf.predict(X))
    assert loaded.certified_ == clf.certified_ and loaded.n_features_in_ == 2


@pytest.mark.slow
@pytest.mark.serial
def test_fit_run_dir_is_a_run(comm, shared_directory):
    """fit(run_dir=) writes what `train` writes; the command line's tools and load read it."""
    X, y = moons(100)
    run = shared_directory(comm) / "run"
    clf = FlowClassifier(**SMALL).fit(X, y, run_dir=run)
    names = {p.name for p in run.iterdir()}
    assert {"config.toml", "data.csv", "theta.npz", "history.csv", "metrics.json", "prediction.png"} <= names
    from solver.rundir import store

    assert store.read_json(run / "metrics.json")["iterations"] == SMALL["iterations"]
    assert np.array_equal(FlowClassifier.load(run).predict_proba(X), clf.predict_proba(X))
    from solver.check.compare_run import compare_run

    report = compare_run(comm, run)  # `python -m solver compare RUN`: reads data.csv through the CSV route
    assert report is not None


@pytest.mark.serial
def test_load_a_command_line_run(comm, shared_directory):
    """A `train` run loads as an estimator whose predictions are the run's characteristics."""
    import solver

    run = shared_directory(comm) / "cli"
    outcome = solver.fit(dict(mesh=dict(cells=8), data=dict(kind="moons", points=100),
                              train=dict(iterations=5), output=dict(png=False, vtx=False)), run, comm=comm)
    metrics, dataset = outcome.metrics, outcome.dataset
    clf = FlowClassifier.load(run)
    assert list(clf.classes_) == [0, 1] and clf.n_features_in_ == 2
    X_test = dataset.scaling.inverse(dataset.X_test)
    assert clf.score(X_test, dataset.y_test) == metrics["check"]["test"]["accuracy_characteristics"]


@pytest.mark.serial
def test_onnx_export_converges_to_the_characteristics(comm, shared_directory):
    """The exported ResNet (float64 ONNX, midpoint blocks) approaches the estimator's
    characteristics at order 2 in the depth."""
    from solver.resnet.onnx_net import load_onnx_session

    X, y = moons(100)
    clf = FlowClassifier(**SMALL).fit(X, y)
    exact = clf._logits(X)
    directory = shared_directory(comm)
    errors = []
    for depth in (32, 128):
        path = clf.export_onnx(directory / f"net-{depth}.onnx", depth=depth, scheme="midpoint", dtype="float64")
        session = load_onnx_session(path)
        assert session.metadata["classes"] == ["0", "1"]  # the metadata name the classes_
        assert session.metadata["certification"]["certified"] == clf.certified_
        logits = session(X)
        errors.append(np.max(np.abs(logits - exact)))
        assert np.array_equal(logits.argmax(axis=1), exact.argmax(axis=1))
    print(f"\nONNX (midpoint, 32 and 128 blocks) against the characteristics: max |Δ logit| "
          f"{errors[0]:.2e}, {errors[1]:.2e}")
    assert errors[1] < errors[0] / 10  # 16 at order 2


def test_onnx_export_depth_is_guarded_before_the_net_is_built(comm, shared_directory):
    """export_onnx(depth=10**9) ran unbounded (issue 25): refused with the estimate, naming the
    estimator's depth, not the command line's flags; a bad depth is one InputError; nothing written."""
    X, y = moons(60)
    clf = FlowClassifier(**TINY).fit(X, y)
    path = shared_directory(comm) / "net.onnx"
    with pytest.raises(InputError, match=r"export_onnx\(depth=1000000000\): an ONNX file of an estimated .* GiB "
                                         r"\(1e\+09 blocks\) exceeds protobuf's limit of 2 GiB; lower depth") as error:
        clf.export_onnx(path, depth=10**9)
    assert "--" not in str(error.value)
    for depth in (0, 2.5, True):
        with pytest.raises(InputError, match=f"depth must be an integer >= 1, got {depth!r}"):
            clf.export_onnx(path, depth=depth)
    assert not path.exists()


@pytest.mark.serial
def test_a_viscous_runs_monte_carlo_is_guarded_before_predict_starts(tmp_path):
    """FlowClassifier.load of a viscous run with train.paths = 10⁶ predicted for minutes with no
    output (issue 25's unbounded Monte Carlo, through the API): the same guard as train's."""
    X, y = moons(60)
    FlowClassifier(**TINY).fit(X, y).save(tmp_path / "run")
    config = tmp_path / "run" / "config.toml"
    text = config.read_text()
    assert "\nviscosity = 0.0\n" in text and "\npaths = 512\n" in text and '\nscheme = "sl"\n' in text
    config.write_text(text.replace("\nviscosity = 0.0\n", "\nviscosity = 0.01\n")
                      .replace("\npaths = 512\n", "\npaths = 1000000\n").replace('\nscheme = "sl"\n', '\nscheme = "rk3"\n'))
    loaded = FlowClassifier.load(tmp_path / "run")
    with pytest.raises(InputError, match=r"predict: the Monte Carlo of the viscous flow .* \(60 point\(s\) x "
                                         r"1000000 paths x 16 steps\).* lower the number of points"):
        loaded.predict(X)


def test_one_and_two_ranks_predict_the_same(comm):
    """Fitted on all ranks together and on each rank alone: the same predictions, on every rank."""
    X, y = moons(120)
    together = FlowClassifier(**SMALL, comm=comm).fit(X, y)
    alone = FlowClassifier(**SMALL, comm=MPI.COMM_SELF).fit(X, y)
    grid = np.stack(np.meshgrid(np.linspace(-1, 2, 15), np.linspace(-0.5, 1, 15)), axis=-1).reshape(-1, 2)
    a, b = together.predict_proba(grid), alone.predict_proba(grid)
    print(f"\n{comm.size} rank(s) against 1: max |Δ probability| {np.max(np.abs(a - b)):.1e}")
    assert np.allclose(a, b, rtol=0, atol=1e-8)
    assert np.array_equal(together.predict(grid), alone.predict(grid))
    assert same_on_every_rank(comm, a)


def test_uncertified_warning_says_what_applies():
    """With adapt off the advice is to turn it on, in the estimator's names, never "raise max_dofs"."""
    X, y = moons(60)
    with pytest.warns(UncertifiedWarning) as caught:
        clf = FlowClassifier(**{**TINY, "tolerance": 1e-9}).fit(X, y)
    assert not clf.certified_
    message = str([w for w in caught if w.category is UncertifiedWarning][0].message)
    assert "turn on adapt" in message and "max_dofs" not in message and "train." not in message


def test_grid_search_prints_no_facet_note(capsys):
    """Data on facets (2D at x3 = 0 of a 4³ box, DG: rk3) in a grid search: nothing about it on
    stdout (a FacetWarning, which the caller may filter), one warning per fit."""
    from solver import FacetWarning

    X, y = moons(40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GridSearchCV(FlowClassifier(**TINY, augment_dim=3, scheme="rk3"), {"kinetic": [0.0, 0.1]}, cv=2).fit(X, y)
    assert "facet" not in capsys.readouterr().out
    facets = sum(w.category is FacetWarning for w in caught)
    assert facets == (2 * 2 + 1 if MPI.COMM_WORLD.rank == 0 else 0)  # 2 × 2 folds and the refit


@pytest.mark.serial
@pytest.mark.slow  # ~60 s: 100 iterations on 5³ DG2
def test_breast_cancer_in_3d_with_the_defaults():
    """scikit-learn's breast cancer data reduced to 3 features: the defaults (Ω's dimension picks
    the coarse DG2 start 5³) train and certify."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X3 = make_pipeline(StandardScaler(), PCA(n_components=3)).fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncertifiedWarning)
        clf = FlowClassifier().fit(X3, y)
    print(f"\nbreast cancer, PCA(3), defaults: {clf.resolution_}, training accuracy {clf.score(X3, y):.3f}")
    assert clf.certified_ and clf.n_iter_ == 100
    assert (clf.config_["mesh"]["cells"], clf.config_["mesh"]["degree"]) == (5, 2) and len(clf.scaling_["scale"]) == 3
    assert clf.score(X3, y) > 0.9


def test_every_warning_class_has_a_row_in_docs():
    """docs/warnings.md: each warning class of solver.errors (importable from solver) has its row."""
    import inspect

    import solver
    from solver import errors

    text = (Path(__file__).resolve().parent.parent / "docs" / "warnings.md").read_text()
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Warning)]
    assert {c.__name__ for c in classes} == {"FacetWarning", "UncertifiedWarning", "OutsideDomainWarning"}
    for cls in classes:
        assert getattr(solver, cls.__name__) is cls
        assert f"| `{cls.__name__}`" in text, cls.__name__


@pytest.mark.serial  # rank 0 prints
def test_verbose_output_has_progress_and_no_nan_columns(capsys):
    FlowClassifier(**TINY, verbose=True).fit(*moons(40))
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("iter")]
    assert [line.split()[1] for line in lines] == ["0/2", "1/2", "2/2"] and "elapsed" in lines[-1]
    assert "nan" not in out and " test " not in out  # no test split in a fit
