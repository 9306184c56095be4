from mpi4py import MPI  # first: mpi4py before anything that may load dolfinx


import numpy as np
import pytest

from solver.model.data import (
    DATASET_KINDS,
    PEAKS_LEVELS,
    Scaling,
    outside_domain,
    describe,
    load_csv,
    make_dataset,
    min_cutoff,
    peaks,
    write_csv,
)
from solver.model.domain import Ball, Box
from solver.errors import InputError

GENERATED = [k for k in DATASET_KINDS if k != "csv"]
BALANCED = {"moons", "circles", "spirals", "xor", "checkerboard", "blobs"}
# Off-centre and non-square on purpose: the scaling must handle shifts and aspect ratios.
DOMAINS = {
    "box": Box((0.0, -1.0), (3.0, 1.0)),
    "disk": Ball((0.5, -0.25), 2.0),
}


@pytest.mark.parametrize("kind", GENERATED)
def test_shapes_classes_and_determinism(kind):
    a = make_dataset(kind, 300, seed=3, test_fraction=0.2)
    b = make_dataset(kind, 300, seed=3, test_fraction=0.2)
    c = make_dataset(kind, 300, seed=4, test_fraction=0.2)
    assert a.X_train.shape == (240, 2) and a.X_test.shape == (60, 2)
    assert a.y_train.shape == (240,) and a.y_test.shape == (60,)
    assert a.y_train.dtype == np.int64 and a.feature_names == ("x1", "x2")
    assert a.num_classes == len(a.class_names) == {"blobs": 3, "peaks": 5}.get(kind, 2)
    y = np.concatenate([a.y_train, a.y_test])
    counts = np.bincount(y, minlength=a.num_classes)
    if kind in BALANCED:
        assert counts.max() - counts.min() <= 1, counts
    # The split is stratified: each class keeps its share in the test set (to rounding).
    test_counts = np.bincount(a.y_test, minlength=a.num_classes)
    assert np.all(np.abs(test_counts - 0.2 * counts) <= 1), (test_counts, counts)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.scaling == Scaling.identity(2)


@pytest.mark.parametrize("domain", DOMAINS.values(), ids=DOMAINS.keys())
@pytest.mark.parametrize("kind", GENERATED)
def test_scaled_points_inside_with_cutoff_bound(kind, domain):
    d = make_dataset(kind, 400, seed=1, domain=domain)
    bound = min_cutoff(domain)
    assert bound == pytest.approx(0.1296 if isinstance(domain, Box) else 0.36)
    assert np.all(domain.cutoff(d.X_train) >= bound - 1e-12)
    assert np.all(domain.contains(d.X_test))
    assert np.allclose(d.scaling.scale, d.scaling.scale[0]), "uniform scaling by default"
    # The bound is attained (the data fill the allowed region): the margin is not wasted.
    assert domain.cutoff(d.X_train).min() < 3 * bound


def test_checkerboard_and_blobs_in_3d():
    ball = Ball((0.0, 0.0, 0.0), 1.0)
    for kind, k in (("checkerboard", 2), ("blobs", 4)):
        d = make_dataset(kind, 200, dim=3, num_classes=k, domain=ball)
        assert d.X_train.shape == (160, 3) and d.num_classes == k
        assert np.all(ball.cutoff(d.X_train) >= min_cutoff(ball) - 1e-12)


def test_circles_augmented_to_3d_sit_on_x3_zero():
    raw = make_dataset("circles", 200, augment_dim=3)
    assert raw.X_train.shape == (160, 3) and raw.augmented == 1
    assert raw.feature_names == ("x1", "x2", "x3")
    assert np.all(raw.X_train[:, 2] == 0) and np.all(raw.X_test[:, 2] == 0)
    box = Box((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    d = make_dataset("circles", 200, augment_dim=3, domain=box)
    assert np.all(d.X_train[:, 2] == 0) and np.all(d.X_test[:, 2] == 0)
    assert np.all(box.cutoff(d.X_train) >= min_cutoff(box) - 1e-12)
    assert "3D (2D data + 1 zero coordinate(s))" in describe(d)


def test_peaks_has_five_sizeable_classes():
    d = make_dataset("peaks", 2000, seed=0)
    y = np.concatenate([d.y_train, d.y_test])
    share = np.bincount(y, minlength=5) / len(y)
    assert d.num_classes == 5 and share.size == 5
    assert share.min() >= 0.05, share
    # The labels are the level bands of f in the original coordinates.
    x = d.scaling.inverse(d.X_train)
    np.testing.assert_array_equal(d.y_train, np.digitize(peaks(x), PEAKS_LEVELS, right=True))


def test_peaks_function_closed_forms():
    # f(0, 0) = 3/e − 1/(3e) = 8/(3e); f(1, −1) = −10·(1/5)·e⁻² − e⁻⁵/3.
    f = peaks(np.array([[0.0, 0.0], [1.0, -1.0]]))
    np.testing.assert_allclose(f, [8 / (3 * np.e), -2 * np.exp(-2) - np.exp(-5) / 3], rtol=1e-14)


def test_scaling_round_trips_and_refusals():
    box = DOMAINS["box"]
    x = np.random.default_rng(0).normal(size=(50, 2)) * [1.0, 5.0]
    s = Scaling.fit(x, box)
    np.testing.assert_allclose(s.inverse(s.apply(x)), x)
    assert Scaling.from_dict(s.to_dict()) == s
    assert s.scale[0] == s.scale[1]
    assert np.all(box.cutoff(s.apply(x)) >= min_cutoff(box) - 1e-12)
    with pytest.raises(InputError, match="augment_dim = 3"):
        Scaling.fit(x, Box((0, 0, 0), (1, 1, 1)))
    with pytest.raises(InputError, match="coincide"):
        Scaling.fit(np.ones((4, 2)), box)
    with pytest.raises(InputError, match="margin"):
        Scaling.fit(x, box, margin=1.0)
    with pytest.raises(InputError, match="scale"):
        Scaling.from_dict({"scale": [1.0]})


def test_test_points_outside_omega_are_reported():
    from solver.errors import OutsideDomainWarning

    box = Box((-1.0, -1.0), (1.0, 1.0))
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.5, 0.5], [0.0, -3.0]])
    with pytest.warns(OutsideDomainWarning, match=r"2 of 4 test points .* points \[11, 13\]"):
        inside = outside_domain(box, x, np.array([10, 11, 12, 13]))
    np.testing.assert_array_equal(inside, [True, False, True, False])


def test_csv_outlier_in_test_set_warns_and_is_counted(tmp_path):
    """An outlier in the held-out part of a CSV file does not abort the run: it is left out of
    the test set with an OutsideDomainWarning and counted (metrics.json's test_outside)."""
    from solver.errors import OutsideDomainWarning

    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(40, 2)), np.repeat([0, 1], 20)
    write_csv(tmp_path / "clean.csv", x, y)
    clean = make_dataset("csv", None, path=str(tmp_path / "clean.csv"), test_fraction=0.2)
    test_index = clean.test_index
    # The split depends only on the labels and the seed: the same rows go to the test set.
    x[test_index[:2]] = [[50.0, 50.0], [-40.0, 3.0]]
    write_csv(tmp_path / "outliers.csv", x, y)
    with pytest.warns(OutsideDomainWarning, match=rf"outliers.csv: 2 of 8 test points .*{test_index[:2].tolist()}"):
        d = make_dataset("csv", None, path=str(tmp_path / "outliers.csv"), domain=DOMAINS["box"],
                         test_fraction=0.2)
    assert d.test_outside == 2 and len(d.X_test) == 6 and len(d.X_train) == 32
    np.testing.assert_array_equal(d.test_index, test_index[2:])
    assert np.all(DOMAINS["box"].contains(d.X_test))


def test_a_csv_file_trains_whole_unless_test_fraction_is_set(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(40, 2)), np.repeat([0, 1], 20)
    write_csv(tmp_path / "d.csv", x, y)
    whole = make_dataset("csv", None, path=str(tmp_path / "d.csv"))
    assert len(whole.X_train) == 40 and len(whole.X_test) == 0 and whole.test_outside == 0
    assert len(make_dataset("csv", None, path=str(tmp_path / "d.csv"), test_fraction=0.25).X_test) == 10
    # the generated kinds keep their default split
    assert len(make_dataset("moons", 100).X_test) == 20


def test_a_separate_test_file(tmp_path):
    """data.test_path: held-out points in the training file's format (columns in any order,
    labels by name), scaled by the training points' scaling; outliers warn and are counted."""
    from solver.errors import OutsideDomainWarning

    rng = np.random.default_rng(0)
    x, labels = rng.uniform(size=(30, 2)), np.array(["cat", "dog"] * 15)
    (tmp_path / "train.csv").write_text("a,b,label\n" + "".join(f"{p},{q},{c}\n" for (p, q), c in zip(x, labels)))
    t = np.array([[0.5, 0.25], [0.1, 0.9], [90.0, 0.5]])
    (tmp_path / "test.csv").write_text("label,b,a\ndog,0.25,0.5\ncat,0.9,0.1\ncat,0.5,90.0\n")
    box = Box((-1.0, -1.0), (1.0, 1.0))
    with pytest.warns(OutsideDomainWarning, match=r"test.csv: 1 of 3 test points .*points \[2\]"):
        d = make_dataset("csv", None, path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"),
                         domain=box)
    assert len(d.X_train) == 30 and d.test_outside == 1 and d.class_names == ("cat", "dog")
    np.testing.assert_allclose(d.scaling.inverse(d.X_test), t[:2], atol=1e-12)
    np.testing.assert_array_equal(d.y_test, [1, 0])
    np.testing.assert_array_equal(d.test_index, [0, 1])
    (tmp_path / "bad.csv").write_text("a,b,label\n0.1,0.2,bird\n")
    with pytest.raises(InputError, match=r"line 2: a label the training file does not have; its classes are \['cat', 'dog'\]"):
        make_dataset("csv", None, path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "bad.csv"))
    (tmp_path / "cols.csv").write_text("a,c,label\n0.1,0.2,cat\n")
    with pytest.raises(InputError, match=r"a test file needs those of the training file: \['a', 'b', 'label'\]"):
        make_dataset("csv", None, path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "cols.csv"))
    with pytest.raises(InputError, match=r"data\.test_fraction: data\.test_path names the test points"):
        make_dataset("csv", None, path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"),
                     test_fraction=0.2)


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 3)), np.arange(30) % 3
    path = tmp_path / "points.csv"
    write_csv(path, x, y, feature_names=["a", "b", "c"])
    points = load_csv(path)
    np.testing.assert_array_equal(points.X, x)
    np.testing.assert_array_equal(points.y, y)
    assert points.feature_names == ("a", "b", "c") and points.class_names == ("0", "1", "2")
    ball = Ball((0.0, 0.0, 0.0), 1.0)
    d = make_dataset("csv", None, path=str(path), test_fraction=0.2, domain=ball)
    assert d.num_classes == 3 and d.X_train.shape == (24, 3) and d.feature_names == ("a", "b", "c")
    back = np.empty_like(x)
    back[d.train_index], back[d.test_index] = (d.scaling.inverse(d.X_train),
                                               d.scaling.inverse(d.X_test))
    np.testing.assert_allclose(back, x, atol=1e-12)
    sub = make_dataset("csv", 15, path=str(path), test_fraction=0.2, seed=2)
    assert len(sub.X_train) + len(sub.X_test) == 15
    # errors name the config keys, data.points and data.classes
    with pytest.raises(InputError, match=r"data\.points: the file has 30 rows, cannot take 40"):
        make_dataset("csv", 40, path=str(path))
    with pytest.raises(InputError, match=r"data\.classes = 2, but the file has 3 classes"):
        make_dataset("csv", None, path=str(path), num_classes=2)


def test_csv_string_labels_map_to_sorted_indices(tmp_path):
    path = tmp_path / "animals.csv"
    path.write_text("x1,label,x2\n0,dog,1\n1,cat,2\n\n2,dog,3\n3,emu,4\n")
    points = load_csv(path)
    assert points.class_names == ("cat", "dog", "emu")
    np.testing.assert_array_equal(points.y, [1, 0, 1, 2])
    np.testing.assert_array_equal(points.X, [[0, 1], [1, 2], [2, 3], [3, 4]])
    assert points.feature_names == ("x1", "x2")


BAD_CSV = {
    "no_label": ("x1,x2,y\n0,0,0\n1,1,1\n", r'no column named "label" in the header \(line 1, 3 columns\)'),
    "no_header": ("0,0,0\n1,1,1\n", r"line 1 is not a header: 3 of its 3 fields are numbers"),
    "header_typo": ("0.1,O.2,label\n0,0,0\n1,1,1\n", r"line 1 is not a header: 1 of its 3 fields are numbers"),
    "non_numeric": ("x1,x2,label\n0,0,0\n1,abc,1\n", r"line 3, column 2 \(a feature\): not a number$"),
    "non_finite": ("x1,x2,label\n0,0,0\n1,nan,1\n2,inf,0\n3,3,1\n", r"2 row\(s\) .* lines \[3, 4\]"),
    "one_class": ("x1,x2,label\n0,0,a\n1,1,a\n", r"found 1 class \(one label\) in 2 rows"),
    "gap_in_labels": ("x1,x2,label\n0,0,0\n1,1,2\n", r"\[1\] never occur"),
    "negative_label": ("x1,x2,label\n0,0,-1\n1,1,1\n", r"line 2: a negative label"),
    "ragged": ("x1,x2,label\n0,0,0\n1,1\n", r"line 3 has 2 fields, expected 3 \(as the header\)$"),
    "empty": ("", r"empty"),
    "header_only": ("x1,x2,label\n", r"no data rows"),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_bad_csv_raises_naming_the_file(tmp_path, case):
    text, message = BAD_CSV[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_csv(path)
    assert str(path) in str(info.value) and info.value.source == str(path)
    for word in ("abc", "'a'", "label -1", "O.2", "\"x2\""):  # the file's text is never quoted
        assert word not in info.value.message


def test_an_unrelated_file_as_data_is_not_quoted(tmp_path):
    path = tmp_path / "secrets.txt"
    path.write_text("root:x:0:0:secret-token-123\nmore text\n")
    with pytest.raises(InputError) as info:
        load_csv(path)
    assert "secret" not in info.value.message and "root" not in info.value.message
    assert 'no column named "label"' in info.value.message


@pytest.mark.parametrize("kind, k, bound", [("moons", 2, 0.5), ("spirals", 3, 2 / 3)])
def test_label_noise_below_the_share_that_erases_the_labels(kind, k, bound):
    kw = {"num_classes": k} if kind == "spirals" else {}
    for share in (bound, 1.0):
        with pytest.raises(InputError, match=rf"data.label_noise: expected a share below \(K-1\)/K = {bound:.4g} "
                                             rf"for {k} classes.*got {share}"):
            make_dataset(kind, 100, label_noise=share, **kw)
    make_dataset(kind, 100, label_noise=bound - 0.01, **kw)


@pytest.mark.parametrize("X, message", [
    (np.linspace(0, 1, 20)[:, None], r"the data have 1 feature column but Ω is 2-dimensional .* data.augment_dim = 2"),
    (np.random.default_rng(0).normal(size=(20, 3)), r"the data have 3 feature columns but Ω is 2-dimensional: "
                                                    r"give a 3D domain.*input.kind = \"learned\""),
    (np.ones((20, 2)), r"all 16 training points coincide \(duplicates of one point\)"),
    (np.array([[-1e308, 0.0], [1e308, 1.0]] * 10), r"too wide to scale into Ω \(a span beyond 1.8e308\)"),
], ids=["one feature", "three features", "duplicates", "overflow"])
def test_the_scaling_names_the_real_cause(X, message):
    from solver.model.data import place_in_domain

    y = np.arange(len(X)) % 2
    with pytest.raises(InputError, match=message) as info:
        place_in_domain("csv", X, y, 2, tuple(f"x{j + 1}" for j in range(X.shape[1])), ("0", "1"), seed=0,
                        test_fraction=0.2, augment_dim=None, domain=DOMAINS["box"], margin=0.2, source="d.csv",
                        input_kind="scaling")  # the fixed map (more features: the learned layer's default)
    assert info.value.source == "d.csv"
    if "too wide" not in message:
        assert "too wide" not in info.value.message


def test_an_outlier_that_squeezes_the_data_is_named(caplog):
    from solver.model.data import place_in_domain

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(60, 2)), [[1e6, 1e6]]])
    y = np.arange(len(X)) % 2
    args = dict(seed=0, test_fraction=0.0, augment_dim=None, domain=DOMAINS["box"], margin=0.2)
    with caplog.at_level("WARNING", logger="solver"):
        place_in_domain("csv", X, y, 2, ("x1", "x2"), ("0", "1"), source="d.csv", **args)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "d.csv: 1 training point(s) lie far from the others (rows [60]" in warnings[0]
    assert "1e+06" not in warnings[0]  # the file's values are not quoted
    caplog.clear()
    with caplog.at_level("WARNING", logger="solver"):
        place_in_domain("csv", X[:60], y[:60], 2, ("x1", "x2"), ("0", "1"), source="d.csv", **args)
        make_dataset("moons", 400, domain=DOMAINS["box"])
        make_dataset("blobs", 400, domain=DOMAINS["box"])
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # the usual data: no warning


def test_missing_csv_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(InputError, match="not found") as info:
        make_dataset("csv", None, path=str(path))
    assert str(path) in str(info.value)


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(InputError) as info:
        make_dataset("swissroll", 100)
    message = str(info.value)
    assert message.startswith('Invalid data kind "swissroll". Must be one of [')
    assert all(f"'{k}'" in message for k in DATASET_KINDS)


@pytest.mark.parametrize(
    "kind, kwargs, message",
    [
        ("moons", {"num_points": 1}, r"data\.points: expected an integer >= 2, got 1"),
        ("moons", {"num_points": 2.5}, r"data\.points"),
        ("moons", {"noise": -0.1}, r"data.noise: expected a number >= 0.0, got -0.1"),
        ("moons", {"test_fraction": 1.0}, r"data.test_fraction: expected a number in \[0.0, 1.0\)"),
        ("moons", {"num_classes": 3}, r'data\.classes: kind "moons" has 2 classes, got 3'),
        ("moons", {"num_classes": 1}, r"data\.classes: expected an integer >= 2, got 1"),
        ("moons", {"dim": 3}, r"data.dim: .* data.augment_dim"),
        ("moons", {"augment_dim": 2}, r"data.augment_dim: must exceed the data dimension 2"),
        ("moons", {"seed": -1}, r"data.seed"),
        ("moons", {"margin": 0.0}, r"data.margin"),
        ("moons", {"label_noise": 1.5}, r"data.label_noise: expected a number in \[0.0, 1.0\], got 1.5"),
        ("moons", {"radius": 1.0}, r'data.radius: unknown key for data kind "moons"'),
        ("checkerboard", {"cells": 3}, r"data.cells: expected an even integer"),
        ("blobs", {"noise": 0.0}, r"data.noise"),
        ("circles", {"factor": 1.5}, r"data.factor"),
        ("peaks", {"levels": [1.0, 0.0]}, r"data.levels: expected increasing"),
        ("spirals", {"num_points": 4, "num_classes": 3}, r"data.test_fraction: cannot split"),
        ("csv", {}, r"data.path"),
    ],
)
def test_bad_parameters(kind, kwargs, message):
    kwargs = {"num_points": 100, **kwargs}
    with pytest.raises(InputError, match=message):
        make_dataset(kind, **kwargs)


def test_describe_is_one_line():
    d = make_dataset("moons", 100, domain=DOMAINS["box"])
    line = describe(d)
    assert "\n" not in line and line.startswith("data moons: 80 train + 20 test points in 2D")
    assert "2 classes (train counts [40, 40])" in line and "⊙x" in line


def test_same_data_on_every_rank(comm):
    d = make_dataset("spirals", 200, seed=5, domain=DOMAINS["disk"])
    mine = (d.X_train.tobytes(), d.y_train.tobytes(), d.X_test.tobytes(), d.scaling)
    assert all(other == mine for other in comm.allgather(mine))


@pytest.mark.parametrize("kind, k", [("moons", 2), ("spirals", 3)])
def test_label_noise_flips_that_share_of_the_training_labels_only(kind, k):
    kw = {"num_classes": k} if kind == "spirals" else {}
    clean = make_dataset(kind, 500, seed=2, test_fraction=0.8, **kw)
    noisy = make_dataset(kind, 500, seed=2, test_fraction=0.8, label_noise=0.3, **kw)
    np.testing.assert_array_equal(noisy.X_train, clean.X_train)  # the same points
    np.testing.assert_array_equal(noisy.y_test, clean.y_test)  # test labels clean
    changed = noisy.y_train != clean.y_train
    assert changed.sum() == round(0.3 * len(clean.y_train)) == 30
    assert noisy.y_train.min() >= 0 and noisy.y_train.max() < k
    again = make_dataset(kind, 500, seed=2, test_fraction=0.8, label_noise=0.3, **kw)
    np.testing.assert_array_equal(again.y_train, noisy.y_train)  # deterministic
    other = make_dataset(kind, 500, seed=3, test_fraction=0.8, label_noise=0.3, **kw)
    assert not np.array_equal(other.y_train != make_dataset(kind, 500, seed=3, test_fraction=0.8, **kw).y_train,
                              changed)  # another seed, other flips


def test_label_noise_from_a_config():
    from solver.config import config_from_dict
    from solver.learn.train import load_dataset

    config = config_from_dict({"data": {"kind": "moons", "points": 200, "label_noise": 0.25}})
    noisy = load_dataset(config, config.domain_object())
    clean = load_dataset(config_from_dict({"data": {"kind": "moons", "points": 200}}), config.domain_object())
    assert (noisy.y_train != clean.y_train).sum() == 40


def test_problem_file_held_out_keys(tmp_path):
    """A problem file's csv data train whole unless test_fraction is set; test_path is resolved
    beside the problem file and excludes test_fraction."""
    from solver.config import config_from_dict

    source = str(tmp_path / "p.toml")
    whole = config_from_dict({"data": {"kind": "csv", "path": "d.csv"}}, source=source)
    assert whole.data.test_fraction == 0.0
    assert config_from_dict({"data": {"kind": "csv", "path": "d.csv", "test_fraction": 0.3}},
                            source=source).data.test_fraction == 0.3
    assert config_from_dict({}).data.test_fraction == 0.2  # generated kinds keep their split
    given = config_from_dict({"data": {"kind": "csv", "path": "d.csv", "test_path": "t.csv"}}, source=source)
    assert given.data.params["test_path"] == str(tmp_path / "t.csv")
    with pytest.raises(InputError, match=r"data\.test_fraction: expected 0 .* with data\.test_path"):
        config_from_dict({"data": {"kind": "csv", "path": "d.csv", "test_path": "t.csv", "test_fraction": 0.2}},
                         source=source)
    with pytest.raises(InputError, match=r"data\.test_path"):
        config_from_dict({"data": {"kind": "moons", "test_path": "t.csv"}}, source=source)
