"""The benchmark scripts run (small sizes), so that they cannot rot; nothing about speed."""

from mpi4py import MPI  # noqa: F401

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.serial  # each starts its own processes


@pytest.mark.parametrize("script", ["bench_forward.py", "bench_gradient.py"])
def test_benchmark_runs(script):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "ratio" in done.stdout or "step/matvec" in done.stdout
