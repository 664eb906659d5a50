"""Notebooks are chapters: code cells wire library calls (no function or class of their own, no state through
`globals()`), and they are committed stripped (no outputs, no execution counts) for the python3 kernel."""

import json
import re
from pathlib import Path

import pytest

from paths import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# a definition at a line's start (any indentation): logic belongs in probegen_nb/, where it is tested and typed
DEFINITION = re.compile(r"^\s*(async\s+def|def|class)\s+\w+|^\s*\w+\s*=\s*lambda\b", re.MULTILINE)
GLOBALS = re.compile(r"\bglobals\(\)")


def problems(nb: dict) -> list[str]:
    """What breaks the chapter rules in a notebook's JSON, one line per finding."""
    found = []
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        found.append("kernel is not python3")
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        found += [f"cell {i}: defines {m.group(0).strip()!r}" for m in DEFINITION.finditer(src)]
        found += [f"cell {i}: uses globals()" for _ in GLOBALS.finditer(src)]
        if cell.get("outputs") or cell.get("execution_count") is not None:
            found.append(f"cell {i}: not stripped (outputs or execution count)")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_a_chapter(path: Path) -> None:
    assert problems(json.loads(path.read_text())) == []


def code(src: str, **extra: object) -> dict:
    return {"cell_type": "code", "source": src, "outputs": [], "execution_count": None, "metadata": {}, **extra}


@pytest.mark.parametrize("cell, finding", [
    (code("def helper(x):\n    return x"), "defines 'def helper'"),
    (code("for k in ks:\n    class Row:\n        pass"), "defines 'class Row'"),
    (code("key = lambda r: r.seed"), "defines 'key = lambda'"),
    (code("by = globals().setdefault('by', {})"), "uses globals()"),
    (code("x = 1", outputs=[{"output_type": "stream"}]), "not stripped"),
    (code("x = 1", execution_count=3), "not stripped"),
])
def test_the_chapter_check_catches_each_rule(cell: dict, finding: str) -> None:
    """Negative controls: each rule fires on a cell that breaks it, and not on plain wiring or on prose."""
    nb = {"metadata": {"kernelspec": {"name": "python3"}},
          "cells": [cell, code("result = run(key)  # defines nothing"), {"cell_type": "markdown", "source": "def x"}]}
    found = problems(nb)
    assert len(found) == 1 and found[0].startswith("cell 0: ") and finding in found[0], found
    assert problems({"metadata": {"kernelspec": {"name": "python2"}}, "cells": []}) == ["kernel is not python3"]
