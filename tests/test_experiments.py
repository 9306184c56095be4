"""scripts/experiments.py (the paper's section 5 as experiments, issue #13): the quick run
writes every file, and what must hold whatever the optimizer does holds: a one-layer relu
field's velocity is componentwise >= 0 where χ > 0 and its flow monotone in each coordinate, and
the export depth tables are monotone. Nothing about speed or accuracy."""

from mpi4py import MPI  # noqa: F401

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts.experiments_lib import depth, layers
from scripts.experiments_lib.common import Trained, export_depth
from solver.model.domain import Box
from solver.model.velocity import VelocityModel

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.serial  # a script in its own process (it starts the torch peer too)


def random_trained(layers_: int, act: str, seed: int = 0) -> Trained:
    """An untrained field as if trained: the properties below hold for any θ."""
    box = Box((-1.0, -1.0), (1.0, 1.0))
    model = VelocityModel(2, 2 if layers_ == 1 else 6, 4, 1.0, act, box, layers=layers_)
    theta = model.init(seed, scale=2.0)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-0.9, 0.9, (50, 2))
    return Trained({}, model, theta, rng.normal(size=(2, 2)), rng.normal(size=2), X, (X[:, 0] > 0).astype(int))


@pytest.mark.parametrize("seed", [0, 1])
def test_one_layer_relu_flow_is_monotone_in_each_coordinate(seed):
    found = layers.monotonicity(random_trained(1, "relu", seed))
    assert found["velocity_min"] >= 0.0
    assert found["coordinate_increase_min"] >= -1e-8
    # the measure can fail: a two-layer relu field moves points both ways
    assert layers.monotonicity(random_trained(2, "relu", seed))["coordinate_increase_min"] < 0


def test_export_depth_table_of_a_field():
    row = export_depth(random_trained(2, "tanh"), max_points=50)
    row["slabs"] = 4
    assert depth.errors_monotone(row), row["max_error"]
    n = row["smallest_depth"]
    assert n is not None and all(a == 1.0 for d, a in zip(row["depths"], row["label_agreement"]) if d >= n)
    assert row["deformation"] > 0


@pytest.mark.slow  # 92-123 s wall on the shared 2-core machine at load ~13 (~17 s of CPU): ~10 small fields
def test_quick_run_writes_the_report(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.experiments", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for heading in ("## 1.", "## 2.", "### (a)", "### (b)", "## 3.", "## 4.", "## 5."):
        assert heading in report
    assert report.count("**Claim.**") == 6 and report.count("**Verdict**") == 6
    for figure in ("hyperplanes.png", "slabs.png", "export_depth.png", "trainability.png",
                   "viscosity_accuracy.png", "viscosity_maps.png"):
        assert (tmp_path / figure).stat().st_size > 0 and f"({figure})" in report
    results = json.loads((tmp_path / "results.json").read_text())

    one_layer_relu = [run for r in results["section1"].values() if r["layers"] == 1 and r["activation"] == "relu"
                      for run in r["runs"]]
    assert one_layer_relu
    for run in one_layer_relu:  # whatever the optimizer did
        assert run["velocity_min"] >= 0.0
        assert run["coordinate_increase_min"] >= -1e-8
    assert results["section2b"]
    for row in results["section2b"]:
        assert depth.errors_monotone(row), (row["label"], row["max_error"])
        if row["smallest_depth"] is not None:
            assert all(a == 1.0 for d, a in zip(row["depths"], row["label_agreement"]) if d >= row["smallest_depth"])
    for r in results["section3"].values():
        assert [row["blocks"] for row in r["rows"]] == sorted(row["blocks"] for row in r["rows"])
    assert {r["kind"] for r in results["section4"]["results"].values()} == {"plain", "resnet"}


def test_smoothness_of_a_sharp_and_a_smooth_map():
    """TV of a sharp two-class map is the length of its decision boundary in the box; a gentler
    map of the same boundary has a smaller TV and slope; the slope never exceeds √2/h."""
    from scripts.experiments_lib import viscosity
    from solver.config import config_from_dict

    n = 81
    grid, h = viscosity.map_grid(config_from_dict({}), n)
    assert grid.min() == pytest.approx(-0.8) and grid.max() == pytest.approx(0.8) and h == pytest.approx(0.02)
    boundary = grid[:, 0] + 0.5 * grid[:, 1] - 0.013  # a line crossing the box, off the grid points
    found = []
    for sharpness in (1e4, 2.0):
        logits = np.stack([np.zeros(len(grid)), sharpness * boundary], axis=1)
        found.append(viscosity.smoothness(logits, n, h))
    length = 1.6 * np.hypot(1.0, 0.5)  # the line x1 = 0.013 − x2/2 across x2 ∈ [-0.8, 0.8]
    assert found[0]["total_variation"] == pytest.approx(length, rel=0.1)
    assert found[1]["total_variation"] < 0.6 * found[0]["total_variation"]
    assert found[1]["lipschitz"] < 0.1 * found[0]["lipschitz"] <= 0.1 * np.sqrt(2) / h


@pytest.mark.slow  # 19 s wall at load ~5, 106-170 s at load ~13 (the torch peer starts)
def test_quick_viscosity_section(tmp_path):
    """Section 5 alone (`--only viscosity --quick`): the sweep, the Monte Carlo check of every
    viscous model, the smoothness measures and the peer with dropout and noise."""
    done = subprocess.run([sys.executable, "-m", "scripts.experiments", "--quick", "--only", "viscosity",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    assert "## 5." in report and "## 1." not in report and report.count("**Verdict**") == 1
    for figure in ("viscosity_accuracy.png", "viscosity_maps.png"):
        assert (tmp_path / figure).stat().st_size > 0 and f"({figure})" in report
    s = json.loads((tmp_path / "results.json").read_text())["section5"]
    assert {r["epsilon"] for r in s["results"].values()} == set(s["epsilons"]) and 0.0 in s["epsilons"]
    for r in s["results"].values():
        for run in r["runs"]:
            check = run["model"]
            assert check["reference"] == ("characteristics" if r["epsilon"] == 0 else "Monte Carlo")
            assert 0.0 <= check["label_agreement"] <= 1.0 and 0.0 <= check["test_accuracy"] <= 1.0
            if r["epsilon"] > 0:
                assert check["max_bound"] > 0 and 0.0 <= check["within_bound"] <= 1.0
            assert 0 < run["total_variation"] and 0 < run["lipschitz"] <= np.sqrt(2) * (s["grid"] - 1) / 1.6
    # more time steps with ε (the diffusion bound), none fewer
    steps = [s["results"][f"moons/eps={e:g}"]["steps"]["mean"] for e in s["epsilons"]]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    kinds = {(r["kind"], r["value"] > 0) for r in s["peer"]["results"].values()}
    assert kinds == {("dropout", False), ("dropout", True), ("noise", True)}
    for r in s["peer"]["results"].values():
        assert all((run["test_accuracy_sample_mean"] is not None) == (r["kind"] == "noise") for run in r["runs"])
