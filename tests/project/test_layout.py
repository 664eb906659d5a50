"""The package's house rules, read from the code: imports run one way between subpackages, with no circle."""

import ast
from pathlib import Path

import pytest

from paths import REPO

PACKAGE = REPO / "probegen_nb"

# What each part of the package may import (besides itself): app → explore/viz → experiment → methods → probes → core,
# experiment → baselines → methods, and zoos → core. `cli` is the top: it may import anything, and nothing imports it.
ALLOWED = {
    "core": set(),
    "zoos": {"core"},
    "probes": {"core"},
    "methods": {"probes", "core"},
    "baselines": {"methods", "core"},
    "experiment": {"baselines", "methods", "probes", "core"},
    "viz": {"experiment", "core"},  # the report reads run folders through experiment.run_folder
    "explore": {"viz", "experiment", "baselines", "methods", "probes", "core"},
    "app": {"explore", "viz", "experiment", "baselines", "methods", "probes", "zoos", "core"},
    "cli": {"app", "explore", "viz", "experiment", "baselines", "methods", "probes", "zoos", "core"},
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path) -> set[str]:
    """Every probegen_nb module this file imports, at any depth of the file (TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; imports are written one way, absolute")
    return {m for m in found if m == "probegen_nb" or m.startswith("probegen_nb.")}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "probegen_nb"


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        here = part_of(mod)
        for dep in deps:
            there = part_of(dep)
            if there != here and there not in ALLOWED.get(here, set()):
                bad.append(f"{mod} imports {dep} ({here} may import {sorted(ALLOWED.get(here, set()))})")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(g.get(u, ())):
            if v not in g:
                continue
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def test_every_module_belongs_to_a_known_part() -> None:
    parts = {part_of(m) for m in graph()} - {"probegen_nb"}
    assert parts == set(ALLOWED), f"parts on disk {sorted(parts)} vs the rule's {sorted(ALLOWED)}"


def test_imports_run_one_way() -> None:
    assert upward_imports(graph()) == []


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_no_module_imports_a_notebook_path() -> None:
    for path in PACKAGE.rglob("*.py"):
        if module_name(path) in ("probegen_nb.app.runner", "probegen_nb.cli"):
            continue
        text = path.read_text()
        assert "NOTEBOOKS" not in text and '"notebooks"' not in text, f"{path}: notebooks/ paths belong to the runner"


@pytest.mark.parametrize("check", ["upward", "circle"])
def test_negative_controls(check: str) -> None:
    """The checkers find what they look for: an upward import and a circle planted in a copy of the real graph."""
    g = {k: set(v) for k, v in graph().items()}
    if check == "upward":
        g["probegen_nb.core.zoo"].add("probegen_nb.experiment.train")
        assert [b for b in upward_imports(g) if b.startswith("probegen_nb.core.zoo imports probegen_nb.experiment")]
    else:
        g["probegen_nb.core.arch.siren"].add("probegen_nb.core.zoo")
        assert any("probegen_nb.core.zoo" in c and "probegen_nb.core.arch.siren" in c for c in cycles(g))


TESTS = REPO / "tests"
HELPERS = {"conftest.py", "paths.py", "devicesim.py", "__init__.py"}  # tests/README.md names them


def misplaced_tests(root: Path) -> list[str]:
    """Test files that break tests/README.md's layout: one at the top level, or in a folder that is neither a
    package part nor `project/`."""
    folders = set(ALLOWED) - {"cli"} | {"project"}
    bad = [p.name for p in root.glob("*.py") if p.name not in HELPERS]
    bad += [str(p.relative_to(root)) for p in root.glob("*/test_*.py") if p.parent.name not in folders]
    return sorted(bad)


def test_test_tree_mirrors_the_package(tmp_path: Path) -> None:
    """Every test file sits in the folder of the part it tests (tests/README.md), and names stay unique (pytest
    imports each by its bare name). Negative control: a planted top-level test and a stray folder are found."""
    assert misplaced_tests(TESTS) == []
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) > 50 and len(names) == len(set(names))
    (tmp_path / "conftest.py").touch()
    (tmp_path / "test_new.py").touch()
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc" / "test_stray.py").touch()
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "test_fine.py").touch()
    assert misplaced_tests(tmp_path) == ["misc/test_stray.py", "test_new.py"]
