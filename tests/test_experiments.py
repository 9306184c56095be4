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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from experiments_lib import depth, layers  # noqa: E402
from experiments_lib.common import Trained, export_depth  # noqa: E402
from solver.model.domain import Box  # noqa: E402
from solver.model.velocity import VelocityModel  # noqa: E402

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
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "experiments.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for heading in ("## 1.", "## 2.", "### (a)", "### (b)", "## 3.", "## 4."):
        assert heading in report
    assert report.count("**Claim.**") == 5 and report.count("**Verdict**") == 5
    for figure in ("hyperplanes.png", "slabs.png", "export_depth.png", "trainability.png"):
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
