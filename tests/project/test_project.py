"""Packaging and code hygiene: one owner of dependencies, the torch pin, lint clean."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

from paths import REPO


def test_environment_yml_defers_to_pyproject() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    conda = sorted(d.split("=")[0] for d in deps if isinstance(d, str))
    pip = [d for d in deps if isinstance(d, dict)]
    assert conda == ["pip", "python"], "conda brings only python and pip; pyproject.toml owns every package"
    assert pip == [{"pip": ['-e ".[notebooks,test]"']}] or pip == [{"pip": ["-e .[notebooks,test]"]}]
    py = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    minimum = pyproject["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, py.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_pyproject_pins_torch_and_has_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]
    assert {"notebooks", "test"} <= set(project["optional-dependencies"])
    extras = " ".join(project["optional-dependencies"]["notebooks"])
    for pkg in ("jupyterlab", "ipywidgets", "plotly", "seaborn", "papermill"):
        assert pkg in extras
    assert "nbval" in " ".join(project["optional-dependencies"]["test"])


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency"
    res = subprocess.run([ruff, "check", "probegen_nb", "tests", "benchmarks", "notebooks"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


DEVICE_NAME = re.compile(r"""["'](cuda|mps)(:\d+)?["']""")  # a device written as a string literal, either quote
PRINT_CALL = re.compile(r"(?<![\w.])print\(")  # the builtin, not a name that ends in "print" (zoo_fingerprint)


def test_library_code_does_not_name_devices_or_print() -> None:
    files = sorted((REPO / "probegen_nb").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        text, name = path.read_text(), path.relative_to(REPO).as_posix()
        if name != "probegen_nb/core/device.py":
            assert not DEVICE_NAME.search(text), f"{name}: resolve devices through probegen_nb.core.device"
        if name != "probegen_nb/cli.py":
            assert not PRINT_CALL.search(text), f"{name}: library code reports with tqdm or returns results"


def test_device_name_check_catches_both_quote_styles() -> None:
    """Negative control for the check above: each spelling of a device literal is caught, plain words are not."""
    for literal in ('"cuda"', "'cuda'", '"cuda:0"', "'mps'"):
        assert DEVICE_NAME.search(f"x = torch.device({literal})"), literal
    assert not DEVICE_NAME.search("# runs on cuda when there is one")


def test_print_check_catches_calls_not_names_ending_in_print() -> None:
    """Negative control for the print check: a call anywhere on a line is caught; a function named *print is not."""
    for line in ("print(x)", "    print('done')", "if x: print(x)", "y = [print(v) for v in x]"):
        assert PRINT_CALL.search(line), line
    for line in ("zoo_fingerprint(folder)", "console.print(x)", "def blueprint(x):"):
        assert not PRINT_CALL.search(line), line
