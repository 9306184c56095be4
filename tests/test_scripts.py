"""The benchmark scripts run (small sizes), so that they cannot rot; nothing about speed."""

from mpi4py import MPI  # noqa: F401

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.serial  # each starts its own processes


@pytest.mark.parametrize("command", [pytest.param(["-m", "scripts.bench_forward"], marks=pytest.mark.slow),  # ~14 s
                                     [str(ROOT / "scripts" / "bench_gradient.py")]])
def test_benchmark_runs(command):
    done = subprocess.run([sys.executable, *command, "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "grad/fwd" in done.stdout or "step/matvec" in done.stdout


@pytest.mark.slow  # trains twice: ~15 s here
def test_time_to_accuracy_runs(tmp_path):
    config = (ROOT / "problems" / "moons.toml").read_text()
    config = config.replace("cells = 32", "cells = 8").replace("iterations = 60", "iterations = 3")
    path = tmp_path / "tiny.toml"
    path.write_text(config)
    done = subprocess.run([sys.executable, "-m", "scripts.bench_time_to_accuracy", str(path),
                           "--target", "0.5"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines[-2:]] == ["1", "2"], done.stdout


@pytest.mark.slow  # a few seconds each
@pytest.mark.parametrize("args, expect", [
    (["bench_viscous.py", "--problems", "moons", "--eps", "0,0.001", "--repeat", "1"], "CG+ICC its"),
    (["bench_noisy_resnet.py", "--cells", "8", "--depth", "8", "--points", "4", "--max-samples", "64"],
     "blocks' bias estimate"),
])
def test_viscous_benchmarks_run(args, expect):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / args[0]), *args[1:]],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout, done.stdout


@pytest.mark.slow  # trains a tiny viscous run, then two Monte Carlo runs: ~20 s here
def test_monte_carlo_check_benchmark_runs(tmp_path):
    config = (ROOT / "problems" / "moons.toml").read_text()
    config = (config.replace("cells = 32", "cells = 8").replace("iterations = 60", "iterations = 2")
              .replace("points = 500", "points = 60").replace("scale = 1.0", "scale = 1.0\nviscosity = 0.01"))
    path = tmp_path / "tiny.toml"
    path.write_text(config + "\n[output]\nvtx = false\npng = false\nanimation = false\n")
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "solver", "train", str(path), "--out", str(run)],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert trained.returncode == 0, trained.stderr
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_mc_check.py"), str(run),
                           "--variants", "euler:16:8:independent,heun:16:8"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "heun:16:8" in done.stdout and "characteristics max" in done.stdout, done.stdout


@pytest.mark.slow  # trains three times and runs the peer: ~1 min here
def test_scheme_benchmark_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.bench_schemes", "--quick", "--problems",
                           "moons", "--estimator", "breast_cancer", "--estimator-iterations", "2", "--optimizers", "moons",
                           "--optimizer-seconds", "2", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for row in ("| moons | 0.98 | rk3 | 2 |", "| moons | 0.98 | sl | 2 |", "| moons | 0.98 | sl | 1 |",
                "| breast_cancer | FlowClassifier(scheme='sl'", "| breast_cancer | MLPClassifier(16)",
                "| moons | 0.98 | L-BFGS |", "| moons | 0.98 | Newton-Krylov (trust-ncg) |"):
        assert row in report, report


@pytest.mark.slow  # trains once and runs the three peers: ~30 s here
def test_hard_target_benchmark_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.bench_hard_target", "--quick", "--points", "2000",
                           "--budget", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for row in ("| 2,000 (1,600 / 400) | PDE, 2 ranks", "| 2,000 (1,600 / 400) | euler, batch 1024 |",
                "| 2,000 (1,600 / 400) | euler, full batch |", "| 2,000 (1,600 / 400) | dopri5-adjoint, full batch |"):
        assert row in report, report
    assert "at commit `" in report and "load average at start" in report


def test_semi_lagrangian_scripts_run(tmp_path, trained_run):
    """bench_substeps on a trained run, bench_gradient and bench_optimizers on the SL scheme."""
    config = (ROOT / "problems" / "moons.toml").read_text()
    config = config.replace("cells = 32", "cells = 6").replace("degree = 1", "degree = 2") + '\n[solver]\nscheme = "sl"\n'
    path = tmp_path / "tiny.toml"
    path.write_text(config)
    for args, expect in ([["bench_substeps.py", str(trained_run), "--cells", "6", "--rotations", "2,1"], "agreement"],
                         [["bench_gradient.py", "--quick", "--scheme", "sl"], "grad/fwd"],
                         [["bench_optimizers.py", str(path), "--target", "0.8", "--seconds", "3"], "Newton-Krylov"]):
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / args[0]), *args[1:]],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0 and expect in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
