"""The demos as pages: each docs/demos/*.py (a jupytext percent file) executed as a notebook
from the repository root, then written with its output and figures as NAME.html and NAME.ipynb
into ``--out`` (default build/demo-pages/, git-ignored), with an index.html.

``make demo-pages`` runs it, after installing the ``demos`` extra (jupytext, nbconvert,
ipykernel) if it is missing. A demo that fails stops the build with the cell's error.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "docs" / "demos"


def render(source: Path, out: Path, timeout: float) -> str:
    """Execute ``source`` in a fresh kernel of this interpreter (cwd: the repository root); write
    out/NAME.ipynb and out/NAME.html; return the demo's title (its first heading)."""
    notebook = jupytext.read(source)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    nbformat.write(notebook, out / f"{source.stem}.ipynb")
    page, _ = HTMLExporter().from_notebook_node(notebook)
    (out / f"{source.stem}.html").write_text(page, encoding="utf-8")
    heading = next((line for cell in notebook.cells if cell.cell_type == "markdown"
                    for line in cell.source.splitlines() if line.startswith("# ")), f"# {source.stem}")
    return heading[2:].strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo-pages")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a cell may take")
    parser.add_argument("demos", nargs="*", help="demo names (default: all of docs/demos/)")
    args = parser.parse_args(argv)
    sources = [DEMOS / f"{name}.py" for name in args.demos] or sorted(DEMOS.glob("demo_*.py"))
    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for source in sources:
        print(f"demo-pages: {source.relative_to(ROOT)} ...", flush=True)
        title = render(source, args.out, args.timeout)
        entries.append(f'<li><a href="{source.stem}.html">{html.escape(title)}</a> '
                       f'(<a href="{source.stem}.ipynb">notebook</a>)</li>')
    index = args.out / "index.html"
    index.write_text("<!doctype html>\n<title>Demos</title>\n<h1>Demos</h1>\n<ul>\n" + "\n".join(entries)
                     + "\n</ul>\n", encoding="utf-8")
    print(f"demo-pages: wrote {index}")


if __name__ == "__main__":
    main()
