"""Issue 25, "nothing lost, round two": the command line refuses, table-driven, each case a
``mpirun -n P`` of its own (P = 1 and 2) under a timeout: exit status 2 on every rank, one
"error:" line holding the fragments, no traceback, no hang, and every file that existed before
byte-identical after (symbolic links still pointing where they did), nothing new made.

A run directory a case needs is made by hand (``test_hostile_cli.make_run``): no case trains.
"""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli_harness import assert_one_clear_error, both, files, make_run, run_at, snapshot, solver, toml

from solver.rundir import store

pytestmark = [pytest.mark.serial, pytest.mark.slow]  # each case starts its own mpirun (slow: the quick lane skips them)

PTS = "0.1,0.2,0\n0.3,0.1,1\n"  # two points of the run's data coordinates, with a label column


def link(name: str, target: str):
    """A setup making the symbolic link ``name`` -> ``target`` (relative to the case's directory)."""

    def setup(tmp: Path, plain_onnx=None) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).symlink_to(target)

    return setup


def directory(name: str):
    return lambda tmp, plain_onnx=None: (tmp / name).mkdir(parents=True, exist_ok=True)


def old_run(name: str, *extra: str, header: str | None = None):
    """A run written before the marker existed (no .solver-run), plus ``extra`` empty files."""

    def setup(tmp: Path, plain_onnx=None) -> None:
        make_run(tmp / name, marker=False)
        columns = header if header is not None else ",".join(store.HISTORY_COLUMNS)
        (tmp / name / store.HISTORY).write_text(columns + "\n")
        for other in extra:
            (tmp / name / other).write_text("")

    return setup


@dataclass
class Case:
    name: str
    argv: list[str]
    setup: object = None
    fragments: list[str] = field(default_factory=list)  # in the one "error:" line
    unsaid: list[str] = field(default_factory=list)  # not in the output (the files' text)


P = "p.toml"
PREDICT = ["predict", "run", "pts.csv"]
CASES = [
    # ---- predict never writes over its inputs, and over other files only with --force
    Case("predict --out RUN/theta.npz --force", [*PREDICT, "--out", "run/theta.npz", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS})), ["--out run/theta.npz", "inside the run directory"]),
    Case("predict --out RUN/config.toml --force", [*PREDICT, "--out", "run/config.toml", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS})), ["--out run/config.toml", "inside the run directory"]),
    Case("predict --out RUN/new.csv", [*PREDICT, "--out", "run/new.csv"],
         both(run_at("run"), files(**{"pts.csv": PTS})), ["run/new.csv", "inside the run directory"]),
    Case("predict --grid --map RUN/theta --force", ["predict", "run", "--grid", "8", "--map", "run/theta",
                                                   "--force"],
         run_at("run"), ["--map run/theta.npz", "inside the run directory"]),
    Case("predict --out the points file --force", [*PREDICT, "--out", "pts.csv", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS})), ["--out pts.csv", "points file"]),
    Case("predict --out ./sub/../pts.csv --force", [*PREDICT, "--out", "sub/../pts.csv", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS}), directory("sub")), ["points file"]),
    Case("predict --out a link to the points file --force", [*PREDICT, "--out", "l.csv", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS}), link("l.csv", "pts.csv")), ["points file"]),
    Case("predict --out a link into the run --force", [*PREDICT, "--out", "l.npz", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS}), link("l.npz", "run/theta.npz")),
         ["inside the run directory"]),
    Case("predict --out an existing file", [*PREDICT, "--out", "mine.csv"],
         both(run_at("run"), files(**{"pts.csv": PTS, "mine.csv": "my results\n"})),
         ["--out mine.csv exists", "--force"]),
    Case("predict --map over an existing PNG", ["predict", "run", "--grid", "4", "--map", "fig"],
         both(run_at("run"), files(**{"fig.png": "my picture"})), ["--map fig.png exists", "--force"]),
    Case("predict --out a directory --force", [*PREDICT, "--out", "adir", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS, "adir/x": "mine"})), ["adir is a directory"]),
    Case("predict --out a link to the run directory --force", [*PREDICT, "--out", "l", "--force"],
         both(run_at("run"), files(**{"pts.csv": PTS}), link("l", "run")), ["inside the run directory"]),
    # ---- one rule for run directories: only .solver-run marks a run
    Case("train --force: config.toml, logo.png, history.csv of a user", ["train", P, "--out", "site", "--force"],
         files(**{P: toml(), "site/config.toml": "title = 'me'\n", "site/logo.png": "png",
                  "site/history.csv": "date,event\n"}), ["site", "not a run directory"]),
    Case("train: a folder holding only config.toml", ["train", P, "--out", "site"],
         files(**{P: toml(), "site/config.toml": "title = 'me'\n"}), ["site", "not a run directory"]),
    Case("train: a marked run holding config.toml, no --force", ["train", P, "--out", "run"],
         both(files(**{P: toml()}), lambda tmp, plain_onnx=None: (tmp / "run").mkdir(),
              files(**{"run/.solver-run": "run\n", "run/config.toml": "x"})), ["run", "exists", "--force"]),
    Case("train: a run before the marker, no --force", ["train", P, "--out", "old"],
         both(files(**{P: toml()}), old_run("old")), ["old", "exists", "--force"]),
    Case("train --force: a run before the marker plus a user's file", ["train", P, "--out", "old", "--force"],
         both(files(**{P: toml()}), old_run("old", "notes.txt")), ["old", "not a run directory"]),
    Case("train --force: a run before the marker, foreign history.csv", ["train", P, "--out", "old", "--force"],
         both(files(**{P: toml()}), old_run("old", header="date,amount")), ["old", "not a run directory"]),
    Case("train --force: --out a link to a run", ["train", P, "--out", "l", "--force"],
         both(files(**{P: toml()}), run_at("run"), link("l", "run")), ["l", "symbolic link"]),
    Case("train --resume: --out a link to a run", ["train", "--resume", "--out", "l"],
         both(run_at("run"), link("l", "run")), ["l", "symbolic link", "--resume continues a run directory"]),
    Case("compare --force: --out a link to a directory", ["compare", P, "--out", "l", "--force"],
         both(files(**{P: toml(), "elsewhere/keep.txt": "mine"}), link("l", "elsewhere")), ["l", "symbolic link"]),
]


def csv_config(name: str, extra: str = "") -> str:
    return toml(f'[data]\nkind = "csv"\npath = "{name}"\npoints = 20\ntest_fraction = 0.0\n{extra}')


LINE = [f"{0.1 * i:.1f}" for i in range(20)]
SANITY = [
    # ---- input sanity: the header by rule, bounded label noise, the real cause, no file text
    Case("predict: a first row with a typo is not a header", [*PREDICT, "--out", "out.csv"],
         both(run_at("run"), files(**{"pts.csv": "0.1,O.2\n0.3,0.1\n"})),
         ["pts.csv", "line 1 is neither a header", "1 number(s)"], ["O.2"]),
    Case("train: a data row with a typo is not a header", ["train", P],
         files(**{P: csv_config("d.csv"), "d.csv": "0.1,O.2,0\n" + "".join(f"{v},{v},{i % 2}\n" for i, v in enumerate(LINE))}),
         ["d.csv", "line 1 is not a header"], ["O.2"]),
    Case("train: data.label_noise 1.0", ["train", P], files(**{P: toml("[data]\nlabel_noise = 1.0")}),
         ["p.toml", "data.label_noise", "below (K-1)/K = 0.5 for 2 classes"]),
    Case("train: data.label_noise 0.5", ["train", P], files(**{P: toml("[data]\nlabel_noise = 0.5")}),
         ["data.label_noise", "got 0.5"]),
    Case("train: one feature column", ["train", P],
         files(**{P: csv_config("d.csv"), "d.csv": "x1,label\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(LINE))}),
         ["d.csv", "1 feature column but Ω is 2-dimensional", "data.augment_dim = 2"], ["too wide"]),
    Case("train: three feature columns in 2D, fixed scaling", ["train", P],  # a 2D [domain] (without one, Ω is 3D)
         files(**{P: csv_config("d.csv", "[domain]\nlower = [-1.0, -1.0]\nupper = [1.0, 1.0]\n[input]\nkind = \"scaling\""), "d.csv": "x1,x2,x3,label\n" + "".join(f"{v},{v},0.5,{i % 2}\n" for i, v in enumerate(LINE))}),
         ["d.csv", "3 feature columns but Ω is 2-dimensional", "3D domain", "input.kind"], ["too wide"]),
    Case("train: three feature columns in 2D, one constant", ["train", P],  # the learned input layer's default
         files(**{P: csv_config("d.csv", "[domain]\nlower = [-1.0, -1.0]\nupper = [1.0, 1.0]"), "d.csv": "x1,x2,x3,label\n" + "".join(f"{v},{v},0.5,{i % 2}\n" for i, v in enumerate(LINE))}),
         ["d.csv", "constant", "'x3'"], ["too wide"]),
    Case("train: duplicate points", ["train", P],
         files(**{P: csv_config("d.csv"), "d.csv": "x1,x2,label\n" + "0.5,0.5,0\n0.5,0.5,1\n" * 10}),
         ["d.csv", "coincide"], ["too wide"]),
    Case("train: data.path an unrelated file", ["train", P],
         files(**{P: csv_config("notes.txt"), "notes.txt": "password: hunter2, token s3cr3t\nline two\n"}),
         ["notes.txt", 'no column named "label"'], ["hunter2", "s3cr3t", "password"]),
    Case("train: a non-number in the data", ["train", P],
         files(**{P: csv_config("d.csv"), "d.csv": "x1,x2,label\n0,0,0\n1,hunter2,1\n"}),
         ["d.csv", "line 3, column 2", "not a number"], ["hunter2"]),
    Case("compare: compare.points_file /dev/zero", ["compare", P],
         files(**{P: toml('[compare]\npoints_file = "/dev/zero"')}), ["/dev/zero", "not a regular file"]),
    Case("compare: an empty points file", ["compare", P],
         files(**{P: toml('[compare]\npoints_file = "pts.csv"'), "pts.csv": ""}),
         ["pts.csv", "no points: the file is empty"], ["UserWarning"]),
    Case("compare: a points file of three columns", ["compare", P],
         files(**{P: toml('[compare]\npoints_file = "pts.csv"'), "pts.csv": "0.1,0.2,0.3\n"}),
         ["pts.csv", "3 feature column(s), expected 2"]),
    Case("export: --noise 1e6", ["export", "run", "--noise", "1e6"], run_at("run"),
         ["--noise 1e6", "more than Ω's diameter", "expected ε <="]),
    Case("export: --noise -1", ["export", "run", "--noise=-1"], run_at("run"), ["--noise must be a number > 0"]),
]
CASES += SANITY


def viscous(name: str):
    """The run ``name`` made viscous (field.viscosity = 0.01 in its config.toml)."""

    def setup(tmp: Path, plain_onnx=None) -> None:
        path = tmp / name / store.CONFIG
        text = path.read_text()
        assert "\nviscosity = 0.0\n" in text
        text = text.replace("\nviscosity = 0.0\n", "\nviscosity = 0.01\n")
        path.write_text(text.replace('\nscheme = "sl"\n', '\nscheme = "rk3"\n'))  # the viscous scheme

    return setup


def wide_net(name: str, width: int = 20000):
    def setup(tmp: Path, plain_onnx=None) -> None:
        from solver.plain2resnet.plainnet import random_plain_net
        from solver.plain2resnet.plainnet_io import save_npz

        save_npz(random_plain_net("tanh", widths=(2, width, 2)), tmp / name)

    return setup


BOUNDED = [
    # ---- bounded work: the knobs that scale it are estimated and refused before it starts
    Case("train: train.paths 1e6, viscous", ["train", P], files(**{P: toml("[field]\nviscosity = 0.01\n[train]\npaths = 1000000")}),
         ["p.toml", "train: the Monte Carlo", "path-steps", "train.paths"]),
    Case("train: field.slabs 1e6", ["train", P], files(**{P: toml("[field]\nslabs = 1000000")}),
         ["p.toml", "field.slabs = 1000000 means at least one time step per slab", "solver.max_steps = 10000"]),
    Case("compare: field.slabs 1e6", ["compare", P], files(**{P: toml("[field]\nslabs = 1000000")}),
         ["p.toml", "field.slabs = 1000000", "lower field.slabs"]),
    Case("train: train.sde_steps 1e6, viscous", ["train", P],
         files(**{P: toml("[field]\nviscosity = 0.01\n[train]\nsde_steps = 1000000")}), ["p.toml", "train.sde_steps"]),
    Case("compare: compare.paths 1e6, viscous", ["compare", P],
         files(**{P: toml("[field]\nviscosity = 0.01\n[compare]\npaths = 1000000")}), ["p.toml", "compare.paths"]),
    Case("compare: compare.mc_points 1e5, viscous", ["compare", P],
         files(**{P: toml("[field]\nviscosity = 0.01\n[compare]\npoints = 100000\nmc_points = 100000\npaths = 100000")}),
         ["p.toml", "compare.mc_points"]),
    Case("compare RUN: train.paths 1e6 in a viscous run", ["compare", "run"],
         both(run_at("run"), viscous("run"), lambda tmp, plain_onnx=None: (tmp / "run" / store.CONFIG).write_text(
             (tmp / "run" / store.CONFIG).read_text().replace("\npaths = 512\n", "\npaths = 1000000\n"))),
         ["run/config.toml", "compare RUN: the Monte Carlo", "train.paths"]),
    Case("predict --method resnet --depth 1e9", ["predict", "run", "--grid", "4", "--method", "resnet",
                                                 "--depth", "1000000000", "--map", "m"],
         run_at("run"), ["run", "predict --depth 1000000000", "lower --depth"]),
    Case("plain2resnet: a 20000-wide layer", ["plain2resnet", "net.npz", "--substeps", "4", "--out", "new.onnx"],
         wide_net("net.npz"), ["net.npz", "width 20000", "--max-width 2000", "narrower net"]),
    Case("plain2resnet: a 20000-wide layer, --max-width 20000", ["plain2resnet", "net.npz", "--substeps", "4",
                                                                 "--out", "new.onnx", "--max-width", "20000"],
         wide_net("net.npz"), ["net.npz", "width 20000 needs an estimated", "narrower net"]),
    # ---- one model, one prediction: a viscous run is not predicted by the inviscid flow
    *[Case(f"predict --method {method} of a viscous run", ["predict", "run", "--grid", "4", "--method", method,
                                                           "--map", "m"],
           both(run_at("run"), viscous("run")), ["run/config.toml", f"--method {method} follows the inviscid flow",
                                                 "viscosity = 0.01", "--method pde"])
      for method in ("characteristics", "resnet")],
]
CASES += BOUNDED


def tampered_theta(name: str):
    """theta.npz of the run ``name`` with meta.resolution cells -5."""

    def setup(tmp: Path, plain_onnx=None) -> None:
        import json

        import numpy as np

        path = tmp / name / store.THETA
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"]))
        meta["resolution"] = dict(cells=-5, degree=1)
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)

    return setup


def tampered_checkpoint(name: str):
    """checkpoint.npz of the run ``name`` with L-BFGS pairs one column too wide."""

    def setup(tmp: Path, plain_onnx=None) -> None:
        import numpy as np

        path = tmp / name / store.CHECKPOINT
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        n = arrays["p"].size
        arrays["s"] = arrays["y"] = np.ones((2, n + 1))
        np.savez(path, **arrays)

    return setup


TAMPERED = [
    Case("compare RUN: theta.npz meta resolution cells -5", ["compare", "run"],
         both(run_at("run"), tampered_theta("run")), ["run/theta.npz", "a damaged resolution", "cells -5"]),
    Case("predict: theta.npz meta resolution cells -5", ["predict", "run", "--grid", "4", "--map", "m"],
         both(run_at("run"), tampered_theta("run")), ["run/theta.npz", "a damaged resolution"]),
    Case("train --resume: L-BFGS pairs of the wrong width", ["train", "--resume", "--out", "run"],
         both(run_at("run"), tampered_checkpoint("run")), ["run/checkpoint.npz", "L-BFGS pairs s", "expected (k, "]),
]
CASES += TAMPERED


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_and_nothing_changed(case: Case, ranks: int, tmp_path, plain_onnx):
    if case.setup:
        case.setup(tmp_path, plain_onnx)
    before = snapshot(tmp_path)
    done = solver(case.argv, tmp_path, ranks=ranks)
    assert_one_clear_error(done, case.fragments, ranks)
    for text in case.unsaid:
        assert text not in done.stdout + done.stderr, f"{text!r} was said:\n{done.stderr}"
    assert snapshot(tmp_path) == before
