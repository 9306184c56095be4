"""The literate demos of docs/demos/ (jupytext percent files) run as scripts, in their reduced
sizes (``--quick``), on 1 and 2 ranks: each must finish and reach what its prose promises."""

from mpi4py import MPI

import runpy
import sys
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parents[1] / "docs" / "demos"


def run_demo(name: str, *argv: str) -> dict:
    """docs/demos/<name>.py run as ``python NAME.py --quick *argv`` (in this process): its
    ``result``."""
    path = DEMOS / f"{name}.py"
    saved, sys.argv = sys.argv, [str(path), "--quick", *argv]
    try:
        return runpy.run_path(str(path), run_name="__main__")["result"]
    finally:
        sys.argv = saved
        import matplotlib.pyplot as plt

        plt.close("all")  # the figures the page shows


def test_every_demo_is_a_percent_notebook():
    """Each demo opens with the jupytext header of the percent format and has markdown cells."""
    for path in DEMOS.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "format_name: percent" in text.split("# ---")[1], path
        assert "\n# %% [markdown]\n" in text and "\n# %%\n" in text, path


def test_every_demo_has_a_test():
    tested = {"demo_moons", "demo_rotation", "demo_plain2resnet", "demo_grid_search"}
    assert {p.stem for p in DEMOS.glob("*.py")} == tested


@pytest.mark.slow
def test_demo_moons(comm, shared_directory):
    result = run_demo("demo_moons", "--out", str(shared_directory(comm)))
    assert result["metrics"]["test_accuracy"] >= 0.9 and result["new_accuracy"] >= 0.9
    assert result["report"]["test"]["label_agreement"] >= 0.95
    assert result["onnx_agreement"] >= 0.95
    assert {"prediction.png", "velocity.png", "characteristics.png", "loss.png"} <= set(result["pictures"])


def test_demo_rotation():
    result = run_demo("demo_rotation")
    rows = result["study"]["rows"]
    assert len(rows) == 2 and rows[1]["order_l2"] >= 1.5, rows
    assert result["l2"] == pytest.approx(result["l2_exact"], rel=1e-3)  # the characteristics are exact


@pytest.mark.serial  # numpy and onnxruntime only: nothing that MPI changes
def test_demo_plain2resnet(comm, shared_directory):
    result = run_demo("demo_plain2resnet", "--out", str(shared_directory(comm)))
    assert 0.8 <= result["order"] <= 1.3
    assert result["agreement"] >= 0.95


@pytest.mark.serial  # under MPI: tests/test_estimator.py::test_grid_search
def test_demo_grid_search():
    result = run_demo("demo_grid_search")
    assert len(result["scores"]) == 2 and result["test_accuracy"] >= 0.85
