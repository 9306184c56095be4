"""``predict RUN`` on a tiny trained run (in-process through the command line, collective: 1 or 2
ranks): the labels ``compare RUN`` finds, the other methods, the grid map, and bad input."""

from mpi4py import MPI  # noqa: F401

import csv
import gc

import numpy as np
import pytest

from solver.__main__ import main
from solver.check.compare_run import run_agreement
from solver.check.predict import read_points, read_run, to_omega
from solver.config import load_config
from solver.errors import InputError
from solver.learn.certify import Resolution
from solver.learn.train import Problem
from solver.model.activations import softmax
from solver.rundir import store


def read_csv(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def compared(trained_run):
    """The run's test points in data coordinates and the PDE logits ``compare RUN`` computes there."""
    comm = MPI.COMM_WORLD
    config = load_config(trained_run / store.CONFIG)
    parameters = store.read_parameters(trained_run / store.THETA)
    ended = parameters.meta["resolution"]
    with Problem.build(comm, config, Resolution(ended["cells"], ended["degree"])) as problem:
        _, fe_test = run_agreement(comm, problem, parameters.p)
        X = problem.dataset.scaling.inverse(problem.dataset.X_test)
    gc.collect()
    comm.Barrier()
    return X, fe_test


def points_file(comm, work, X):
    """work/points.csv of the points X (rank 0 writes, every rank waits); its path."""
    if comm.rank == 0:
        with open(work / "points.csv", "w") as f:
            f.write("x1,x2\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in X))
    comm.Barrier()
    return work / "points.csv"


def test_predict_gives_the_labels_of_compare(comm, trained_run, compared, shared_directory):
    X, fe_test = compared
    work = points_file(comm, shared_directory(comm), X).parent
    assert main(["predict", str(trained_run), str(work / "points.csv"), "--out", str(work / "out.csv"),
                 "--proba", "--method", "pde"]) == 0
    comm.Barrier()
    header, rows = read_csv(work / "out.csv")
    assert header == ["x1", "x2", "label", "p_0", "p_1"]
    labels = np.array([int(r[2]) for r in rows])
    np.testing.assert_array_equal(labels, fe_test.argmax(axis=1))
    np.testing.assert_allclose(np.array([[float(v) for v in r[3:]] for r in rows]), softmax(fe_test), atol=1e-8)
    np.testing.assert_array_equal(np.array([[float(v) for v in r[:2]] for r in rows]), X)


def test_the_three_methods_and_the_grid(comm, trained_run, shared_directory):
    """The characteristics and the ResNet agree with the PDE on most of a grid map; the map's
    npz holds the grid, its labels and probabilities."""
    work = shared_directory(comm)
    labels = {}
    for method in ("pde", "characteristics", "resnet"):
        stem = work / f"map-{method}"
        assert main(["predict", str(trained_run), "--grid", "16", "--method", method, "--map", str(stem)]) == 0
        comm.Barrier()
        with np.load(f"{stem}.npz") as data:
            assert data["points"].shape == (16 * 16, 2) and np.all(data["inside"])
            np.testing.assert_allclose(data["probabilities"].sum(axis=1), 1.0)
            labels[method] = data["labels"]
        assert (work / f"map-{method}.png").stat().st_size > 0
    assert np.mean(labels["pde"] == labels["characteristics"]) >= 0.95
    assert np.mean(labels["resnet"] == labels["characteristics"]) >= 0.95


@pytest.mark.parametrize("text, fragments", [
    ("x1,x2,x3\n0.1,0.2,0.3\n", ["3 feature column(s)", "expected 2"]),
    ("0.1,0.2\n0.3\n", ["line 2 has 1 values, expected 2"]),
    ("x1,x2,label\n0.1,0.2,a\n0.1,nan,b\n", ["line 3, column 2", "not a finite number"]),
    ("x1,x2\n0.1,zero\n", ["line 2, column 2", "not a number"]),
    ("x1,x2\n", ["no points after the header"]),
    ("", ["no points"]),
    ("x1,x2\n0.1,0.2\n1e3,0.0\n", ["1 of 2 points lie outside Ω", "lines [3]", "Ω holds the data coordinates"]),
], ids=["columns", "short row", "nan", "word", "header only", "empty", "outside"])
def test_bad_points_are_one_input_error(trained_run, tmp_path, text, fragments):
    """Rank-local reading: every rank raises alike, naming the file."""
    path = tmp_path / "bad.csv"
    path.write_text(text)
    run = read_run(trained_run)
    with pytest.raises(InputError) as error:
        X, _, lines = read_points(path, run)
        to_omega(run, X, str(path), lines)
    assert error.value.source == str(path)
    for fragment in fragments:
        assert fragment in error.value.message, error.value.message


def test_the_default_prediction_is_the_characteristics_as_the_estimator_gives(comm, trained_run, compared,
                                                                             shared_directory):
    """predict RUN without --method gives the characteristics' probabilities, the model's own
    prediction (FlowClassifier's and ONNX's), not the PDE's."""
    from solver.check import predict

    X, fe_test = compared
    work = points_file(comm, shared_directory(comm), X).parent
    assert main(["predict", str(trained_run), str(work / "points.csv"), "--out", str(work / "default.csv"),
                 "--proba", "--force"]) == 0
    comm.Barrier()
    run = read_run(trained_run)
    assert predict.default_method(run) == "characteristics"
    expected = predict.probabilities(predict.logits(comm, run, to_omega(run, X, "points"), "characteristics")[0])
    rows = read_csv(work / "default.csv")[1]
    written = np.array([[float(v) for v in r[3:]] for r in rows])
    np.testing.assert_allclose(written, expected, atol=1e-8)
    assert not np.array_equal(written, softmax(fe_test))  # a different method


def test_points_outside_omega_the_flow_predicts_and_the_pde_refuses(comm, trained_run, compared, shared_directory):
    """Outside Ω the flow (χ·v continued by zero) leaves a point in place: --method
    characteristics and resnet give it the output layer's logits A x + b, as
    FlowClassifier.load(RUN).predict does (one warning); --method pde, whose u_h lives on Ω's mesh,
    refuses it and writes nothing."""
    from solver import FlowClassifier
    from solver.check import predict

    X, _ = compared
    far = np.vstack([X[:6], [[40.0, -30.0], [-25.0, 60.0]]])  # lines 8 and 9 of points.csv
    work = points_file(comm, shared_directory(comm), far).parent
    run = read_run(trained_run)
    x = to_omega(run, far, "points", outside="warn")
    inside = run.config.domain_object().contains(x)
    assert inside.tolist() == [True] * 6 + [False] * 2
    A, b = run.parameters.A, run.parameters.b
    estimator = FlowClassifier.load(trained_run)
    for method in ("characteristics", "resnet"):
        out = work / f"{method}.csv"
        assert main(["predict", str(trained_run), str(work / "points.csv"), "--out", str(out), "--proba",
                     "--method", method, "--force"]) == 0
        comm.Barrier()
        rows = read_csv(out)[1]
        written = np.array([[float(v) for v in r[3:]] for r in rows])
        np.testing.assert_allclose(written[6:], predict.probabilities(x[6:] @ A.T + b), atol=1e-12)
        expected = predict.probabilities(predict.logits(comm, run, x[:6], method)[0])
        np.testing.assert_allclose(written[:6], expected, atol=1e-12)
        if method == "characteristics":  # the model's own prediction, the estimator's too
            labels = np.array([int(r[2]) for r in rows])
            with pytest.warns(Warning, match="2 of 8 points lie outside Ω"):
                np.testing.assert_array_equal(labels, estimator.predict(far))
    refused = work / "pde.csv"
    with pytest.raises(InputError, match=r"2 of 8 points lie outside Ω .* lines \[8, 9\].* the PDE's solution lives "
                                         r"on Ω's mesh only"):
        predict.check_method(run, "pde")
        to_omega(run, far, str(work / "points.csv"), np.arange(2, 10), outside="refuse")
    assert main(["predict", str(trained_run), str(work / "points.csv"), "--out", str(refused),
                 "--method", "pde"]) == 2
    assert not refused.exists()


def test_a_run_with_p_only_is_refused(trained_run, tmp_path):
    (tmp_path / store.CONFIG).write_bytes((trained_run / store.CONFIG).read_bytes())
    np.savez(tmp_path / store.THETA, p=store.read_parameters(trained_run / store.THETA).p)
    with pytest.raises(InputError, match="holds p only"):
        read_run(tmp_path)


@pytest.mark.serial  # starts its own process
def test_the_prediction_map_benchmark_runs(trained_run):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "scripts" / "bench_prediction_map.py"), str(trained_run),
                           "--grid", "16", "--depth", "4", "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "| PDE (solve + locate + evaluate) |" in done.stdout and "labels agree" in done.stdout


def test_predict_replaces_a_users_file_only_with_force_and_its_own_map_freely(comm, trained_run,
                                                                             shared_directory):
    work = shared_directory(comm)
    if comm.rank == 0:
        (work / "points.csv").write_text("x1,x2\n0.1,0.2\n")
        (work / "out.csv").write_text("my results\n")
    comm.Barrier()
    argv = ["predict", str(trained_run), str(work / "points.csv"), "--out", str(work / "out.csv")]
    assert main(argv) == 2
    assert (work / "out.csv").read_text() == "my results\n"
    comm.Barrier()
    assert main([*argv, "--force"]) == 0
    comm.Barrier()
    assert read_csv(work / "out.csv")[0] == ["x1", "x2", "label"]
    # The default map goes into the run (predict's own file there); replaced only with --force too.
    if comm.rank == 0:
        for suffix in ("npz", "png"):
            (trained_run / f"map-characteristics-4.{suffix}").unlink(missing_ok=True)
    comm.Barrier()
    argv = ["predict", str(trained_run), "--grid", "4", "--method", "characteristics"]
    assert main(argv) == 0
    comm.Barrier()
    assert main(argv) == 2
    assert main([*argv, "--force"]) == 0
    comm.Barrier()
    assert (trained_run / "map-characteristics-4.npz").is_file()
    gc.collect()
    comm.Barrier()


def test_a_run_opens_from_the_public_api(trained_run):
    """``solver.Run.open(path)``: the run directory's config, parameters, classes and resolution,
    as predict reads them (rank-local)."""
    import solver

    run = solver.Run.open(trained_run)
    assert run.config.data.kind == "moons" and run.classes == ("0", "1") and run.input_dim == 2
    assert run.parameters.theta.size + run.parameters.A.size + run.parameters.b.size == run.parameters.p.size
    assert run.resolution.cells >= 12 and run.input_layer is None
