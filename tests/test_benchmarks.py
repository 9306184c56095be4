"""The benchmark suite's quick mode writes the whole report: every section, finite numbers.

Nothing about speed. On a fresh machine the peer venv is created first (scripts/peer/setup.sh,
about 30 s); then the reduced suite takes a minute or two.
"""

from mpi4py import MPI  # noqa: F401

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Starts its own mpirun processes; the quick suite takes minutes.
pytestmark = [pytest.mark.serial, pytest.mark.slow]

HEADINGS = ("## Machine and software", "## 1. Learning", "## 2. Scaling in the data size",
            "## 3. Whole-domain prediction", "## 4. Parallel scaling", "## 5. Memory", "## 6. Millions of points",
            "## 7. The gradient's cost")
PLOTS = ("learning.png", "scaling.png", "prediction.png", "memory.png")


def assert_finite(value, where: str) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value), (where, value)


@pytest.fixture(scope="module")
def quick_suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "scripts.benchmarks", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def test_report_has_every_section_and_plot(quick_suite):
    out, results, report = quick_suite
    for heading in HEADINGS:
        assert heading in report
    assert "failed" not in report and "not run" not in report
    for plot in PLOTS:
        assert (out / plot).stat().st_size > 0
    for key in ("learning", "scaling", "prediction", "parallel", "memory", "millions", "gradient"):
        assert key in results and "error" not in results[key], key
    versions = {**results["machine"]["versions"], **results["peer_versions"]}
    for package in ("python", "dolfinx", "petsc4py", "numpy", "scipy", "sklearn", "onnxruntime", "torch",
                    "torchdiffeq"):
        assert versions[package] != "not installed", package


def test_learning_numbers(quick_suite):
    problems = quick_suite[1]["learning"]["problems"]
    assert len(problems) >= 2
    for name, p in problems.items():
        routes = {"pde": p["pde"], "mlp": p["mlp"], **{f"peer {m}": r for m, r in p["peer"].items()}}
        assert set(p["peer"]) == {"dopri5-adjoint", "euler"}
        for route, r in routes.items():
            for key in ("test_accuracy", "seconds", "parameters", "iterations", "cores"):
                assert_finite(r[key], f"{name} {route} {key}")
            assert r["time_to_target"] is None or math.isfinite(r["time_to_target"])
        # the same velocity model: the peer has exactly the PDE route's parameters
        assert p["peer"]["euler"]["parameters"] == p["pde"]["parameters"]


def test_scaling_numbers(quick_suite):
    s = quick_suite[1]["scaling"]
    for times in [*s["pde"].values(), *s["peer"].values()]:
        assert len(times) == len(s["sizes"])
        for t in times:
            assert_finite(t, "time per iteration")
    for name, c in s["crossover"].items():
        assert c["where"] in ("at", "below", "above")
        assert_finite(c["N"], name)
    for name, ratio in s["ratio_at_largest_N"].items():
        assert_finite(ratio, name)


def test_prediction_numbers(quick_suite):
    s = quick_suite[1]["prediction"]
    for route in ("PDE", "characteristics", "ResNet"):
        assert_finite(s["seconds"][route], route)
    for name, d in s["differences"].items():
        assert_finite(d["max_logit_difference"], name)
        assert 0.0 <= d["label_agreement"] <= 1.0
    for name, ratio in s["ratios"].items():
        assert_finite(ratio, name)


def test_parallel_numbers(quick_suite):
    cases = quick_suite[1]["parallel"]["cases"]
    assert {c["dim"] for c in cases.values()} == {2, 3}
    for name, c in cases.items():
        for kind in ("forward", "gradient"):
            for t in c[kind]["seconds"].values():
                assert_finite(t, f"{name} {kind}")
            assert_finite(c[kind]["speedup"], name)
            for projected in c[kind]["projection"]["fixed_total_dofs"].values():
                assert_finite(projected, name)
        for peaks in c["peak_rss_bytes_per_rank"].values():
            for peak in peaks:
                assert_finite(peak, name)


def test_memory_numbers(quick_suite):
    rows = quick_suite[1]["memory"]["rows"]
    assert {r["operation"] for r in rows} == {"value", "forward", "gradient"}
    for r in rows:
        assert_finite(r["peak_increase"], r["name"])
        assert_finite(r["seconds"], r["name"])
    # with unbounded stage memory every stage state is kept; with none, none is
    for r in rows:
        if r["operation"] == "forward":
            expected = r["steps"] if r["stage_memory_unbounded"] else 0 if r["stage_memory"] == 0 else None
            assert expected is None or r["stages_kept"] == expected, r


def test_millions_numbers(quick_suite):
    cases = quick_suite[1]["millions"]["cases"]
    assert cases
    for name, c in cases.items():
        assert set(c["peer"]) == {"dopri5-adjoint", "euler", "euler, batch 1024"}, name
        for route, r in {"pde": c["pde"], **c["peer"]}.items():
            assert_finite(r["test_accuracy"], f"{name} {route}")
            assert_finite(r["peak_rss_bytes"], f"{name} {route} memory")
            assert r["time_to_target"] is None or math.isfinite(r["time_to_target"])
        for r in c["peer"].values():  # each stops at its budget or at the target
            assert r["time_to_target"] is not None or r["seconds"] >= r["budget"]


def test_gradient_numbers(quick_suite):
    """Section 7: every case at both stage-memory settings; 256 MiB holds a tiny case whole, so
    both keep every stage state there (the budget is what was asked, or half the available)."""
    settings = quick_suite[1]["gradient"]["settings"]
    assert set(settings) == {"auto (the default)", "256 MiB"}
    assert settings["256 MiB"]["rows"][0]["stage_memory"] == 256 * 2**20
    assert settings["auto (the default)"]["rows"][0]["stage_memory"] > 0
    for setting, r in settings.items():
        assert [row["case"] for row in r["rows"]] == ["box48", "peaks13-dg1", "peaks13-dg2"], setting
        for row in r["rows"]:
            for key in ("forward_s", "value_and_gradient_s", "ratio", "peak_rss_bytes"):
                assert_finite(row[key], f"{setting} {row['case']} {key}")
            assert row["ratio"] > 1  # value + gradient includes the forward


def test_parallel_projection_columns_follow_the_ranks():
    """The projection's columns are in rank order though results.json keys are strings ("16" <
    "4" as text: the 2026-11-27 report put the 16-rank time under "4 ranks")."""
    from scripts.bench_lib.report import section_parallel

    projection = dict(seconds_per_dof_step_per_rank=1e-7, fixed_total_dofs={"4": 4.0, "8": 2.0, "16": 1.0},
                      fixed_dofs_per_rank={"4": 5.0, "8": 6.0, "16": 7.0})
    kind = dict(seconds={"1": 1.0, "2": 0.5}, speedup=2.0, efficiency=1.0, projection=projection)
    case = dict(cells=8, dofs=100, classes=2, steps=10, forward=kind, gradient=kind,
                peak_rss_bytes_per_rank={"1": [2**20], "2": [2**20, 2**20]})
    text = section_parallel(dict(points=10, repeats=1, cases={"box": case}))
    row = next(line for line in text.splitlines() if line.startswith("| box | forward | 1e-07"))
    assert row.rstrip(" |").split(" | ")[3:9] == ["4 s", "2 s", "1 s", "5 s", "6 s", "7 s"], row
