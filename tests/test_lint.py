"""`ruff check` passes on the tree, with pyproject.toml's rule set ([tool.ruff.lint])."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.serial
def test_ruff_check_is_clean():
    # ruff comes with the test extra (pip install -e ".[test]", scripts/bootstrap.sh).
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
