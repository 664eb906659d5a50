"""The type checker runs with the tests: `mypy probegen_nb` (settings in pyproject.toml's [tool.mypy]) must pass."""

import subprocess
import sys

import pytest

from paths import REPO


def test_mypy_passes() -> None:
    pytest.importorskip("mypy", reason="mypy is in the `test` extra: pip install -e '.[test]'")
    run = subprocess.run([sys.executable, "-m", "mypy", "probegen_nb"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"mypy probegen_nb failed (exit {run.returncode}):\n{run.stdout}{run.stderr}"
