"""Notebook hygiene, and every notebook executed headlessly by papermill in fast mode."""

import ast
import json
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

from probegen_nb.app.runner import NOTEBOOKS, lab_metadata, run_notebook, widget_problems, write_canonical

NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
REQUIRED_PARAMETERS = {"fast", "device", "seed", "out_dir"}


def test_there_are_notebooks() -> None:
    assert {p.stem for p in NOTEBOOK_FILES} >= {"00_quickstart", "01_inr_zoo", "02_train_probegen",
                                                "03_cnn_generalization", "04_explore_probes", "05_ablations",
                                                "06_baselines"}


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_hygiene(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb["metadata"], "saved widget state must be stripped"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "outputs must be stripped"
    first = code[0]
    assert "parameters" in first["metadata"].get("tags", []), "first code cell must be tagged 'parameters'"
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1
    src = "".join(first["source"])
    tree = ast.parse(src)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), f"parameters cell: only typed assignments, got {ast.dump(node)[:60]}"
        assert isinstance(node.value, ast.Constant), f"{ast.unparse(node.target)} must be a literal"
        annotation = ast.unparse(node.annotation)
        assert type(node.value.value).__name__ == annotation, f"{ast.unparse(node.target)}: literal is not {annotation}"
        names.add(ast.unparse(node.target))
    for lineno, line in enumerate(src.splitlines(), 1):
        assert "  # " in line, f"parameters cell line {lineno} needs a comment: {line!r}"
    assert REQUIRED_PARAMETERS <= names
    assert 'device: str = "auto"' in src
    # papermill must read every parameter (its parser gives up on a line whose comment holds "="), or `--set` and
    # `papermill -p` warn "unknown parameter" and the help text is lost
    parsed = {p.name: p for p in PythonTranslator.inspect({"source": src})}
    assert set(parsed) == names, f"papermill cannot parse {sorted(names - set(parsed))}"
    assert all(p.help for p in parsed.values())


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_is_as_jupyterlab_saves_it(path: Path, tmp_path: Path) -> None:
    """Opening a committed notebook in JupyterLab and autosaving is a git no-op: its metadata is what JupyterLab
    writes once the kernel has started (`lab_metadata`), and jupyter_server's save of the model its `get` reads
    (autosave's path) gives the same bytes. Python's patch version is in `language_info`: another one is a
    one-line diff (`write_canonical` rewrites it)."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    model = FileContentsManager(root_dir=str(path.parent)).get(path.name, content=True)
    FileContentsManager(root_dir=str(tmp_path)).save({"type": "notebook", "format": "json",
                                                      "content": model["content"]}, path.name)
    assert (tmp_path / path.name).read_bytes() == path.read_bytes()
    metadata, lab = json.loads(path.read_text())["metadata"], lab_metadata()
    assert metadata["kernelspec"] == lab["kernelspec"]
    version = lab["language_info"].pop("version")
    assert metadata["language_info"].pop("version").split(".")[:2] == version.split(".")[:2]
    assert metadata["language_info"] == lab["language_info"]


def test_negative_control_a_minimal_language_info_is_not_what_jupyterlab_saves(tmp_path: Path) -> None:
    nb = json.loads(NOTEBOOK_FILES[0].read_text())
    nb["metadata"]["language_info"] = {"name": "python"}
    assert nb["metadata"]["language_info"] != lab_metadata()["language_info"]
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    write_canonical(tmp_path / "nb.ipynb")
    assert (tmp_path / "nb.ipynb").read_bytes() == NOTEBOOK_FILES[0].read_bytes()


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # where the executed copy is signed
    out_nb = run_notebook(path.stem, tmp_path, {"fast": True, "seed": 0})
    executed = json.loads(out_nb.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # the executed copy renders in JupyterLab: every widget shown has its state stored, no raw `VBox(...)` repr
    assert widget_problems(nbformat.reads(out_nb.read_text(), as_version=4)) == []
    metrics = json.loads((tmp_path / path.stem / "metrics.json").read_text())
    assert metrics["fast"] is True
    assert list((tmp_path / path.stem).glob("*.png")), "key figures are saved as files"
