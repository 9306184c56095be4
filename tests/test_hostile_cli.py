"""The command line under hostile input, table-driven, each case a ``mpirun -n 2`` of its own
under a timeout: exit status 2 on both ranks, one message naming the file or key, no traceback,
no hang, and the user's files where they were.

The cases are those of issue 12 (221 hostile cases were tried, these are the ones that failed and
their neighbours) for every verb: train, compare, export, predict, plain2resnet. A run directory that a
case needs is made by hand (config.toml, theta.npz, checkpoint.npz): no case trains.
"""

from mpi4py import MPI  # noqa: F401 (before anything that loads dolfinx)

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cli_harness import PROBLEM, assert_one_clear_error, both, damage, files, run_at, snapshot, solver, toml
from solver.rundir import store

pytestmark = [pytest.mark.serial, pytest.mark.slow]  # each case starts its own mpirun


def plain_net(path: Path) -> Path:
    from solver.plain2resnet.plainnet import random_plain_net
    from solver.plain2resnet.plainnet_io import save_npz

    return save_npz(random_plain_net("tanh", slope=0.1), path)


def csv_file(path: Path, rows: list[str]) -> None:
    path.write_text("x1,x2,label\n" + "\n".join(rows) + "\n")


WIDE = [f"{0.1 * i},{0.1 * (i % 3)},{i % 2}" for i in range(29)] + ["1e300,1e300,0", "-1e300,-1e300,1"]
MOONS = [f"{np.cos(0.3 * i):.3f},{np.sin(0.3 * i):.3f},{i % 2}" for i in range(30)]


def net_at(name: str, how: str = "good"):
    def setup(tmp: Path, plain_onnx) -> None:
        path = plain_net(tmp / "net.npz")
        if name.endswith(".onnx"):
            from solver.plain2resnet.plainnet_io import load_npz

            plain_onnx(load_npz(path), tmp / name)
        elif name != "net.npz":
            path.rename(tmp / name)
        damage(tmp / name, how)

    return setup


# --- the cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    argv: list[str]
    setup: object = None  # setup(tmp, plain_onnx) writes the case's files (plain_onnx: the conftest fixture)
    fragments: list[str] = field(default_factory=list)  # in the one "error:" line
    survive: list[str] = field(default_factory=list)  # files that must still be there
    absent: list[str] = field(default_factory=list)  # paths that must not have been made


P = "p.toml"
CASES = [
    # ---- train: the problem file
    Case("train: no problem file", ["train"], None, ["a problem file is needed"]),
    Case("train: missing problem file", ["train", "missing.toml"], None,
         ["missing.toml", "config file not found"], absent=["runs"]),
    Case("train: problem file is a directory", ["train", "adir"], files(**{"adir/x": ""}),
         ["adir", "not a regular file"]),
    Case("train: problem file /dev/zero", ["train", "/dev/zero", "--out", "r"], None,
         ["/dev/zero", "not a regular file"]),
    Case("train: TOML syntax", ["train", P], files(**{P: "[mesh]\ncells = = 3\n"}), ["invalid TOML", "p.toml:2"]),
    Case("train: unknown key", ["train", P], files(**{P: "[field]\nwidht = 3\n"}), ["field.widht", "p.toml:2"]),
    Case("train: ..toml names runs/.", ["train", "..toml", "--force"],
         both(files(**{"..toml": toml(), "runs/other/keep.txt": "mine"})),
         ["cannot name a run directory"], survive=["runs/other/keep.txt"]),
    Case("train: --resume without --out", ["train", "--resume"], None, ["--resume needs --out"]),
    # ---- train: values
    Case("train: data.seed 2^32", ["train", P], files(**{P: toml("[data]\nseed = 4294967296")}),
         ["p.toml:", "data.seed", "4294967295"], absent=["runs"]),
    Case("train: domain.upper 1e-300", ["train", P],
         files(**{P: toml("[domain]\nlower = [0.0, 0.0]\nupper = [1e-300, 1e-300]")}),
         ["p.toml:", "domain.upper", "1e-06"]),
    Case("train: forced dt breaks the CFL bound at the start", ["train", P],
         files(**{P: toml("[solver]\ndt = 0.5")}), ["p.toml", "solver.dt = 0.5", "CFL"], absent=["runs"]),
    Case("train: solver.dt 1e-12", ["train", P], files(**{P: toml("[solver]\ndt = 1e-12")}),
         ["p.toml", "time steps", "solver.max_steps", "solver.dt"], absent=["runs"]),
    Case("train: field.T 1e12", ["train", P], files(**{P: toml("[field]\nT = 1e12")}),
         ["p.toml", "solver.max_steps", "field.T"]),
    Case("train: field.scale 1e6", ["train", P], files(**{P: toml("[field]\nscale = 1e6")}),
         ["p.toml", "solver.max_steps", "field.scale"]),
    Case("train: field.slabs 1e8", ["train", P], files(**{P: toml("[field]\nslabs = 100000000")}),
         ["p.toml", "needs an estimated", "field.slabs"]),
    Case("train: field.width 1e8", ["train", P], files(**{P: toml("[field]\nwidth = 100000000")}),
         ["p.toml", "needs an estimated", "field.width"]),
    Case("train: data.points 1e9", ["train", P], files(**{P: toml("[data]\npoints = 1000000000")}),
         ["p.toml", "needs an estimated", "data.points"]),
    Case("train: mesh.cells 2000 in 3D", ["train", P],
         files(**{P: toml("[domain]\nlower = [-1.0, -1.0, -1.0]\nupper = [1.0, 1.0, 1.0]\n[mesh]\ncells = 2000\n"
                          "[data]\naugment_dim = 3")}),
         ["p.toml", "mesh.cells = 2000", "train.max_dofs"]),
    Case("train: mesh.cells 120 in 3D, max_dofs raised", ["train", P],
         files(**{P: toml("[domain]\nlower = [-1.0, -1.0, -1.0]\nupper = [1.0, 1.0, 1.0]\n[mesh]\ncells = 120\n"
                          "[data]\naugment_dim = 3\n[train]\nmax_dofs = 1000000000000")}),
         ["p.toml", "needs an estimated", "per rank", "mesh.cells = 120"]),
    Case("train: terminal.num_components 1e9", ["train", P],
         files(**{P: toml('[terminal]\nkind = "softmax"\nnum_components = 1000000000')}),
         ["p.toml:", "terminal.num_components"]),
    # ---- train: the data file
    Case("train: data.path missing", ["train", P],
         files(**{P: toml('[data]\nkind = "csv"\npath = "missing.csv"\npoints = 10')}),
         ["missing.csv", "data file not found"], absent=["runs"]),
    Case("train: data.path /dev/zero", ["train", P],
         files(**{P: toml('[data]\nkind = "csv"\npath = "/dev/zero"\npoints = 10')}),
         ["/dev/zero", "not a regular file"], absent=["runs"]),
    Case("train: CSV rows at ±1e300", ["train", P],
         both(files(**{P: toml('[data]\nkind = "csv"\npath = "wide.csv"\npoints = 31\ntest_fraction = 0.0')}),
              lambda tmp, plain_onnx: csv_file(tmp / "wide.csv", WIDE)),
         ["wide.csv", "stay apart", "outliers"], absent=["runs"]),
    Case("train: CSV label 0.5", ["train", P],
         both(files(**{P: toml('[data]\nkind = "csv"\npath = "frac.csv"\npoints = 4')}),
              lambda tmp, plain_onnx: csv_file(tmp / "frac.csv", ["0,0,0", "1,0,1", "0,1,0.5", "1,1,1"])),
         ["frac.csv", "line 4", "not an integer"]),
    # ---- train: train.init
    *[Case(f"train: train.init {how}", ["train", P],
           both(files(**{P: toml('[train]\ninit = "init"')}), run_at("init", theta=how)),
           ["init/theta.npz", fragment], absent=["runs"])
      for how, fragment in (("truncated", "truncated"), ("empty", "empty"), ("nan", "non-finite"),
                            ("none", "file not found"))],
    Case("train: train.init of another shape", ["train", P],
         both(files(**{P: toml('[train]\ninit = "init"\n[field]\nwidth = 4')}), run_at("init")),
         ["init/theta.npz", "train.init has"]),
    # ---- train --resume
    Case("train: --resume of no run", ["train", "--resume", "--out", "nothing"], None,
         ["nothing", "--resume needs a run directory"]),
    *[Case(f"train: --resume, checkpoint {how}", ["train", "--resume", "--out", "run"],
           run_at("run", checkpoint=how), ["run/checkpoint.npz", fragment], survive=["run/theta.npz"])
      for how, fragment in (("truncated", "truncated"), ("empty", "empty"), ("nan", "non-finite"),
                            ("none", "file not found"))],
    Case("train: --resume with a CONFIG that differs", ["train", P, "--resume", "--out", "run"],
         both(files(**{P: toml("[mesh]\ncells = 7")}), run_at("run")),
         ["p.toml", "differs from the config of the run", "mesh.cells = 6 in the run, 7 here",
          "--resume continues that run", "drop CONFIG, or start a new run with another --out"],
         survive=["run/theta.npz"]),
    # ---- train --out and --force: the user's files survive
    Case("train --force: the CSV inside the run directory", ["train", P, "--out", "run", "--force"],
         both(run_at("run"), files(**{P: toml('[data]\nkind = "csv"\npath = "run/data.csv"\npoints = 20')}),
              lambda tmp, plain_onnx: csv_file(tmp / "run" / "data.csv", MOONS)),
         ["run", "holds", "data.csv", "input"], survive=["run/data.csv", "run/theta.npz"]),
    Case("train --force: train.init is the run replaced", ["train", P, "--out", "run", "--force"],
         both(run_at("run"), files(**{P: toml('[train]\ninit = "run"')})),
         ["run", "holds", "input"], survive=["run/theta.npz"]),
    Case("train --force: a directory of the user's", ["train", P, "--out", "thesis", "--force"],
         files(**{P: toml(), "thesis/thesis.tex": "\\documentclass{book}"}),
         ["thesis", "not a run directory", "thesis.tex"], survive=["thesis/thesis.tex"]),
    Case("train --force: the directory of the problem file", ["train", "problems/p.toml", "--out", "problems",
                                                              "--force"],
         files(**{"problems/p.toml": toml(), "problems/README": "notes"}),
         ["problems", "holds", "p.toml"], survive=["problems/p.toml", "problems/README"]),
    Case("train --force: the current directory", ["train", P, "--out", ".", "--force"],
         files(**{P: toml(), "notes.txt": "mine"}), ["current directory"], survive=[P, "notes.txt"]),
    Case("train --force: a parent of the current directory", ["train", P, "--out", "..", "--force"],
         files(**{P: toml()}), ["parent of the current directory"], survive=[P]),
    Case("train: an existing run without --force", ["train", P, "--out", "run"],
         both(run_at("run"), files(**{P: toml()})), ["run", "--force"], survive=["run/theta.npz"]),
    Case("train: --out is a file", ["train", P, "--out", "afile"], files(**{P: toml(), "afile": "x"}),
         ["afile", "not a directory"], survive=["afile"]),
    Case("train: --out under a file", ["train", P, "--out", "afile/run"], files(**{P: toml(), "afile": "x"}),
         ["afile/run", "cannot create the run directory"], survive=["afile"]),
    Case("train: --out under a read-only directory", ["train", P, "--out", "/proc/run"], files(**{P: toml()}),
         ["/proc/run", "cannot create the run directory"]),
    # ---- compare CONFIG
    Case("compare: missing problem file", ["compare", "missing.toml"], None, ["missing.toml", "not found"]),
    Case("compare: --refine 0,4", ["compare", P, "--refine", "0,4"], files(**{P: toml()}),
         ["--refine", "'0,4'"], absent=["runs"]),
    Case("compare: --refine 8,4", ["compare", P, "--refine", "8,4"], files(**{P: toml()}), ["--refine"],
         absent=["runs"]),
    Case("compare: --refine 100000", ["compare", P, "--refine", "100000"], files(**{P: toml()}),
         ["p.toml", "compare --refine 100000", "solver.max_steps", "--refine/compare.refine cells"], absent=["runs"]),
    Case("compare: compare.grid 1e6", ["compare", P], files(**{P: toml("[compare]\ngrid = 1000000")}),
         ["p.toml", "needs an estimated", "compare.grid"], absent=["runs"]),
    Case("compare: compare.points 1e11", ["compare", P], files(**{P: toml("[compare]\npoints = 100000000000")}),
         ["p.toml", "needs an estimated", "compare.points"]),
    Case("compare: field.omega 1e12", ["compare", P],
         files(**{P: toml('[domain]\nkind = "disk"\n[field]\nkind = "rotation"\nomega = 1e12',
                          base={k: v for k, v in PROBLEM.items() if k not in ("field", "data")})}),
         ["p.toml", "solver.max_steps", "field.omega"]),
    Case("compare: solver.dt 1e-12", ["compare", P], files(**{P: toml("[solver]\ndt = 1e-12")}),
         ["p.toml", "solver.max_steps", "solver.dt"]),
    Case("compare: field.T 1e12", ["compare", P], files(**{P: toml("[field]\nT = 1e12")}),
         ["p.toml", "solver.max_steps", "field.T"]),
    Case("compare: mesh.cells 2000 in 3D", ["compare", P],
         files(**{P: toml("[domain]\nlower = [-1.0, -1.0, -1.0]\nupper = [1.0, 1.0, 1.0]\n[mesh]\ncells = 2000",
                          base={k: v for k, v in PROBLEM.items() if k != "data"})}),
         ["p.toml", "needs an estimated", "mesh.cells = 2000"]),
    Case("compare --force: a directory of the user's", ["compare", P, "--out", "thesis", "--force"],
         files(**{P: toml(), "thesis/thesis.tex": "x"}), ["thesis", "not a run directory"],
         survive=["thesis/thesis.tex"]),
    Case("compare --force: the current directory", ["compare", P, "--out", ".", "--force"],
         files(**{P: toml()}), ["current directory"], survive=[P]),
    Case("compare: points file outside Ω", ["compare", P],
         files(**{P: toml('[compare]\npoints_file = "pts.csv"'), "pts.csv": "x1,x2\n0.1,0.2\n1.5,0.0\n"}),
         ["pts.csv", "outside"]),
    # ---- compare RUN
    *[Case(f"compare RUN: theta.npz {how}", ["compare", "run"], run_at("run", theta=how),
           ["run/theta.npz", fragment]) for how, fragment in (("truncated", "truncated"), ("empty", "empty"),
                                                               ("nan", "non-finite"), ("none", "not found"))],
    Case("compare RUN: compare.cells 1e5", ["compare", "run"],
         both(run_at("run"), lambda tmp, plain_onnx: (tmp / "run" / store.CONFIG).write_text(
             (tmp / "run" / store.CONFIG).read_text().replace("[compare]\n", "[compare]\ncells = 100000\n"))),
         ["run/config.toml", "compare RUN on 100000 cells", "compare.cells"]),
    Case("compare RUN: no config.toml", ["compare", "run"],
         both(run_at("run"), lambda tmp, plain_onnx: (tmp / "run" / store.CONFIG).unlink()), ["run/config.toml", "not found"]),
    # ---- export
    Case("export: --depth 0", ["export", "run", "--depth", "0"], run_at("run"), ["--depth must be >= 1"]),
    Case("export: --depth 1e8", ["export", "run", "--depth", "100000000"], run_at("run"),
         ["run", "export --depth 100000000", "2 GiB"]),
    Case("export: --depth 1e7, npz", ["export", "run", "--depth", "10000000", "--format", "npz"], run_at("run"),
         ["run", "needs an estimated", "--depth"]),
    Case('export: --format ""', ["export", "run", "--format", ""], run_at("run"), ["--format", "''"]),
    Case("export: --format pdf", ["export", "run", "--format", "onnx,pdf"], run_at("run"), ["--format", "pdf"]),
    Case("export: --scheme bad", ["export", "run", "--scheme", "heun"], run_at("run"), ["--scheme", "heun"]),
    Case("export: --depth 1e8 (not an integer)", ["export", "run", "--depth", "1e8"], run_at("run"),
         ["--depth", "1e8"]),
    *[Case(f"export: theta.npz {how}", ["export", "run"], run_at("run", theta=how), ["run/theta.npz", fragment])
      for how, fragment in (("truncated", "truncated"), ("empty", "empty"), ("nan", "non-finite"),
                            ("none", "not found"))],
    Case("export: RUN is a file", ["export", "afile"], files(afile="x"), ["afile/config.toml"]),
    # ---- predict
    Case("predict: wrong number of columns", ["predict", "run", "pts.csv", "--out", "out.csv"],
         both(run_at("run"), files(**{"pts.csv": "x1,x2,x3\n0.1,0.2,0.3\n"})),
         ["pts.csv", "3 feature column(s)", "expected 2"], absent=["out.csv"]),
    Case("predict: NaN", ["predict", "run", "pts.csv", "--out", "out.csv"],
         both(run_at("run"), files(**{"pts.csv": "x1,x2\n0.1,0.2\n0.3,nan\n"})),
         ["pts.csv", "line 3, column 2", "not a finite number"], absent=["out.csv"]),
    Case("predict --method pde: a point outside Ω", ["predict", "run", "pts.csv", "--out", "out.csv", "--method", "pde"],
         both(run_at("run"), files(**{"pts.csv": "0.1,0.2\n5.0,0.0\n"})),
         ["pts.csv", "outside Ω", "lines [2]", "the PDE's solution lives on Ω's mesh only"], absent=["out.csv"]),
    Case("predict: a run without parameters", ["predict", "run", "pts.csv", "--out", "out.csv"],
         both(run_at("run", theta="none"), files(**{"pts.csv": "0.1,0.2\n"})), ["run/theta.npz", "not found"]),
    Case("predict: theta.npz holds p only", ["predict", "run", "--grid", "8"],
         both(run_at("run"), lambda tmp, plain_onnx: np.savez(tmp / "run" / store.THETA, p=np.zeros(3))),
         ["run/theta.npz", "holds p only"]),
    Case("predict: no --out", ["predict", "run", "pts.csv"],
         both(run_at("run"), files(**{"pts.csv": "0.1,0.2\n"})), ["--out"]),
    # ---- plain2resnet
    Case("plain2resnet: missing net", ["plain2resnet", "none.npz", "--substeps", "4", "--out", "new.onnx"],
         None, ["none.npz", "no such file"]),
    Case("plain2resnet: a pickle", ["plain2resnet", "net.pkl", "--substeps", "4", "--out", "new.onnx"],
         files(**{"net.pkl": "x"}), ["net.pkl", "pickle"]),
    *[Case(f"plain2resnet: npz {how}", ["plain2resnet", "net.npz", "--substeps", "4", "--out", "new.onnx"],
           net_at("net.npz", how), ["net.npz", fragment])
      for how, fragment in (("truncated", "cannot read it as .npz"), ("empty", "the file is empty"))],
    *[Case(f"plain2resnet: ONNX {how}", ["plain2resnet", "net.onnx", "--substeps", "4", "--out", "new.onnx"],
           net_at("net.onnx", how), ["net.onnx", fragment])
      for how, fragment in (("truncated", "not an ONNX model"), ("empty", "the file is empty"))],
    Case("plain2resnet: --substeps 0", ["plain2resnet", "net.npz", "--substeps", "0", "--out", "new.onnx"],
         net_at("net.npz"), ["--substeps"]),
    Case("plain2resnet: --substeps 1e9", ["plain2resnet", "net.npz", "--substeps", "1000000000", "--out",
                                          "new.onnx"], net_at("net.npz"), ["net.npz", "--substeps 1000000000"]),
    Case('plain2resnet: --format ""', ["plain2resnet", "net.npz", "--substeps", "4", "--out", "new.onnx",
                                       "--format", ""], net_at("net.npz"), ["--format"]),
    Case("plain2resnet: no output directory", ["plain2resnet", "net.npz", "--substeps", "4", "--out",
                                               "nowhere/new.onnx"], net_at("net.npz"), ["nowhere"]),
    Case("plain2resnet: output exists", ["plain2resnet", "net.npz", "--substeps", "4", "--out", "new.onnx"],
         both(net_at("net.npz"), files(**{"new.onnx": "mine"})), ["new.onnx", "--force"], survive=["new.onnx"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path, plain_onnx):
    if case.setup:
        case.setup(tmp_path, plain_onnx)
    before = snapshot(tmp_path)
    done = solver(case.argv, tmp_path)
    assert_one_clear_error(done, case.fragments)
    assert snapshot(tmp_path) == before  # every file byte-identical, nothing made
    for name in case.survive:
        assert (tmp_path / name).exists(), f"{name} was lost"
    for name in case.absent:
        assert not (tmp_path / name).exists(), f"{name} was made"
