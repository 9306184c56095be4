"""The literate demos of docs/demos/ run, in their reduced sizes (``--quick``), on 1 and 2 ranks:
each must finish and reach what its prose promises."""

from mpi4py import MPI

import importlib.util
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parents[1] / "docs" / "demos"


def run_demo(name: str, *argv: str) -> dict:
    """``main(["--quick", *argv])`` of docs/demos/<name>.py, imported from its file."""
    spec = importlib.util.spec_from_file_location(f"demo_{name}", DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--quick", *argv])


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
