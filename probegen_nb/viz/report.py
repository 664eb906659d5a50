"""One offline `index.html` over a folder of executed notebooks: every figure, metric and training run on one page.

Relative links only, so the folder can be moved or zipped; no scripts and no CDN, so it opens anywhere, offline.
Layout read: `<out_root>/<stem>.ipynb`, figures and `metrics.json` in `<out_root>/<stem>/`, one sub-folder with its own
`metrics.json` per training run.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from probegen_nb.core.jobs import write_text_atomic
from probegen_nb.experiment.run_folder import METRICS_FILE, read_json, run_labels

Scalar = int | float | str | bool | None
MAX_LIST = 8  # lists up to this long are shown inline; longer ones (per-epoch `history`) are only counted

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { font-size: 1.05em; }
nav a, .links a { margin-right: 1.2em; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; white-space: nowrap; } th { background: #f4f4f4; }
.scroll { overflow-x: auto; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: min(100%, 900px); border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; } iframe { width: 100%; height: 460px; border: 1px solid #eee; }
.note { color: #777; font-size: 12px; }
"""


def write_index(out_root: str | Path, notebooks: Sequence[str] | None = None) -> Path:
    """Write `<out_root>/index.html` for the given notebook stems (default: every `<stem>.ipynb` there)."""
    out_root = Path(out_root)
    stems = list(notebooks) if notebooks is not None else sorted(p.stem for p in out_root.glob("*.ipynb"))
    toc = " ".join(f'<a href="#nb-{i}">{escape(stem)}</a>' for i, stem in enumerate(stems))
    body = "\n".join(_notebook_section(out_root, stem, i) for i, stem in enumerate(stems))
    title = f"probegen-nb results: {escape(out_root.name)}"
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<nav>{toc or 'no notebooks found'}</nav>\n"
            f"{body}\n</body>\n</html>\n")
    index = out_root / "index.html"
    out_root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(index, page)
    return index


def _href(*parts: str) -> str:
    """A relative URL, percent-encoded and attribute-escaped."""
    return escape(quote("/".join(parts)))


def _notebook_section(out_root: Path, stem: str, i: int) -> str:
    folder = out_root / stem
    links = []
    if (out_root / f"{stem}.ipynb").is_file():
        links.append(f'<a href="{_href(stem + ".ipynb")}">executed notebook</a>')
    if folder.is_dir():
        links.append(f'<a href="{_href(stem)}/">folder</a>')
    parts = [f'<section>\n<h2 id="nb-{i}">{escape(stem)}</h2>\n<div class="links">{" ".join(links)}</div>']
    if not folder.is_dir():
        parts.append('<p class="note">no output folder</p>')
        return "\n".join(parts) + "\n</section>"
    if (folder / METRICS_FILE).is_file():
        parts.append("<h3>metrics.json</h3>")
        parts.append(_metrics_tables(_load_json(folder / METRICS_FILE)))
    runs = sorted(d for d in folder.iterdir() if d.is_dir() and (d / METRICS_FILE).is_file())
    if runs:
        parts.append("<h3>training runs</h3>")
        try:
            labels = run_labels(folder)
        except (OSError, ValueError):  # an unreadable sweep.json: the runs keep their folder names
            labels = {}
        parts.append(_runs_table(stem, runs, labels))
    parts.extend(_figures(stem, folder))
    return "\n".join(parts) + "\n</section>"


def _load_json(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        return {"error": f"could not read {path.name}: {e}"}


def _figures(stem: str, folder: Path) -> list[str]:
    """PNGs inline (linked to their interactive HTML twin if any); HTML-only figures embedded in an iframe."""
    files = sorted((p for p in folder.iterdir() if p.suffix in (".png", ".html") and p.is_file()),
                   key=lambda p: (p.stat().st_mtime, p.name))  # the notebook's order
    out = []
    for f in files:
        src, name = _href(stem, f.name), escape(f.name)
        html_twin = f.with_suffix(".html")
        if f.suffix == ".png":
            extra = ""
            if html_twin.is_file():
                extra = f' · <a href="{_href(stem, html_twin.name)}">interactive version</a>'
            out.append(f'<figure><img src="{src}" alt="{name}"><figcaption><a href="{src}">{name}</a>{extra}'
                       "</figcaption></figure>")
        elif not f.with_suffix(".png").is_file():
            out.append(f'<figure><iframe src="{src}" title="{name}"></iframe>'
                       f'<figcaption><a href="{src}">{name}</a> (interactive)</figcaption></figure>')
    return out


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _fmt(v: Scalar) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or isinstance(v, str):
        return escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}"


def flatten_metrics(metrics: Any) -> tuple[dict[str, Scalar], dict[str, dict[str, Scalar]], list[str]]:
    """Split a metrics.json into loose scalars, rows (dicts of scalars such as method → numbers; deeper dicts get
    dotted names) and the names of long lists left out (per-epoch `history`)."""
    scalars: dict[str, Scalar] = {}
    rows: dict[str, dict[str, Scalar]] = {}
    omitted: list[str] = []

    def walk(d: dict[str, Any], prefix: str) -> None:
        for key, v in d.items():
            name = f"{prefix}{key}"
            if isinstance(v, dict):
                if v and all(_is_scalar(x) for x in v.values()):
                    rows[name] = v
                else:
                    walk(v, name + ".")
            elif isinstance(v, list):
                if len(v) <= MAX_LIST and all(_is_scalar(x) for x in v):
                    scalars[name] = ", ".join(_fmt(x) for x in v)
                else:
                    omitted.append(f"{name} ({len(v)} items)")
            else:
                scalars[name] = v

    walk(metrics if isinstance(metrics, dict) else {"value": metrics}, "")
    return scalars, rows, omitted


def _table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """`header` is plain text (escaped here); row names and cells are HTML already."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr><th>{name}</th>{''.join(f'<td>{c}</td>' for c in cells)}</tr>" for name, cells in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _metrics_tables(metrics: Any) -> str:
    """Rows with the same keys (the methods, say) share one table; loose scalars form a name/value table."""
    scalars, rows, omitted = flatten_metrics(metrics)
    groups: dict[frozenset[str], list[str]] = {}
    for name, row in rows.items():
        groups.setdefault(frozenset(row), []).append(name)
    out = []
    for names in groups.values():
        columns = list(rows[names[0]])
        out.append(_table(["", *columns], [(escape(n), [_fmt(rows[n].get(c)) for c in columns]) for n in names]))
    if scalars:
        out.append(_table(["", "value"], [(escape(k), [_fmt(v)]) for k, v in scalars.items()]))
    if omitted:
        out.append(f'<p class="note">not shown: {escape(", ".join(omitted))}</p>')
    return "\n".join(out)


def _runs_table(stem: str, runs: Sequence[Path], labels: dict[str, str] | None = None) -> str:
    """One row per run folder: its headline numbers, linked to the folder, its metrics.json and config.json;
    named by `labels` where given (the folder name then follows as a note)."""
    per_run = {run: flatten_metrics(_load_json(run / "metrics.json"))[0] for run in runs}
    columns = list(dict.fromkeys(k for scalars in per_run.values() for k in scalars))
    rows = []
    for run, scalars in per_run.items():
        files = [f'<a href="{_href(stem, run.name, f)}">{f.removesuffix(".json")}</a>'
                 for f in ("metrics.json", "config.json") if (run / f).is_file()]
        label = (labels or {}).get(run.name)
        files = ([escape(run.name)] if label else []) + files
        name = (f'<a href="{_href(stem, run.name)}/">{escape(label or run.name)}</a> '
                f'<span class="note">{" ".join(files)}</span>')
        rows.append((name, [_fmt(scalars.get(c)) for c in columns]))
    return _table(["run", *columns], rows)
