"""The documentation (README.md and docs/*.md) against the code it describes.

The README stays a short front page whose two commands are the Makefile's; every relative link
resolves to a file of the repository (and an anchor to a heading of its page); every command
line of a page parses with the real argument parser, and every command and option of that parser
is documented in docs/cli.md; every entry of the layout in docs/architecture.md exists; the CSV
example of docs/problem-files.md is a problem the solver accepts; and the prose copies no
measured number (those live in the generated reports under docs/benchmarks/ and
docs/experiments/). The table of keys is tested in test_config.py. Rank-local: nothing here is
collective, and every rank checks the same files.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
GENERATED_TABLE = re.compile(r"<!-- config table: generated.*?<!-- end of config table -->", re.S)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown text (of one ``language``, or all)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    return [body for lang, body in blocks if language is None or lang == language]


def prose(text: str) -> str:
    """The text without fenced code, inline code, the generated table and link targets."""
    text = GENERATED_TABLE.sub("", text)
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@functools.cache
def repository_files() -> frozenset[Path]:
    """Tracked and untracked-but-not-ignored files: what a fresh clone of this commit holds
    (once committed), so a link to a generated or ignored file does not count."""
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:  # not a git checkout: the files that exist
        return frozenset(p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file())
    return frozenset(Path(line) for line in done.stdout.splitlines())


def links(text: str) -> list[str]:
    """The targets of the Markdown links and images outside code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)


def test_readme_is_at_most_200_lines():
    lines = read(README).splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move details into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    files = repository_files()
    bad = []
    for target in links(read(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        try:
            relative = resolved.relative_to(ROOT)
        except ValueError:
            bad.append(f"{target}: outside the repository")
            continue
        if path and relative not in files:
            bad.append(f"{target}: no such file in the repository")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            bad.append(f"{target}: no heading with the anchor #{fragment} in {relative}")
    assert not bad, f"{page.name}: " + "; ".join(bad)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(read(README))}
    assert not [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]


def test_the_readme_commands_are_make_demo_and_make_test():
    commands = [line.split("#")[0].strip() for block in code_blocks(read(README), "sh")
                for line in block.splitlines() if line.startswith("make")]
    assert commands == ["make demo", "make test"]
    makefile = read(ROOT / "Makefile")
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"no Makefile target {target}"
    ci = [line.strip() for line in read(ROOT / ".ci" / "run").splitlines() if line.strip()]
    assert ci[-1] == "make test", "CI must run the README's test command"


def solver_command_lines() -> list[tuple[str, list[str]]]:
    """(page, argv) of every ``python -m solver ...`` line of the pages' sh blocks."""
    found = []
    for page in PAGES:
        for block in code_blocks(read(page), "sh"):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if "solver" in words and words[words.index("solver") - 1] == "-m":
                    found.append((page.name, words[words.index("solver") + 1:]))
    return found


def test_every_documented_command_line_parses():
    from solver.__main__ import build_parser

    lines = solver_command_lines()
    commands = {argv[0] for _, argv in lines if argv}
    assert {"train", "compare", "predict", "export"} <= commands, commands
    for page, argv in lines:
        try:
            build_parser().parse_args(argv)
        except Exception as error:  # UsageError: the bad argument
            raise AssertionError(f"{page}: python -m solver {shlex.join(argv)}: {error}") from None


def subcommands():
    from solver.__main__ import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return parser, sub.choices


def test_every_command_and_option_is_documented():
    text = read(DOCS / "cli.md")
    parser, choices = subcommands()
    missing = []
    for name, sub in [("", parser), *choices.items()]:
        if name and not re.search(rf"^## {name}\b", text, re.M):
            missing.append(f"the section '## {name}'")
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and not re.search(re.escape(option) + r"(?![\w-])", text):
                    missing.append(f"{name or 'python -m solver'} {option}")
    assert not missing, "docs/cli.md does not document " + ", ".join(missing)


def test_the_console_scripts_are_documented():
    scripts = tomllib.loads(read(ROOT / "pyproject.toml"))["project"].get("scripts", {})
    text = read(DOCS / "cli.md")
    assert all(f"`{name}`" in text for name in scripts), scripts


def layout_entries() -> list[Path]:
    """The paths the layout block of docs/architecture.md names: an entry is a line indented
    by 0, 2 or 4 spaces whose first word ends in ``/`` or ``.py``, under the entry above it
    with less indentation (deeper lines continue a description)."""
    (block,) = [b for b in code_blocks(read(DOCS / "architecture.md"), "") if b.startswith("solver/")]
    entries, parents = [], {}
    for line in block.splitlines():
        match = re.match(r"( *)(\S+)", line)
        if not match or len(match.group(1)) not in (0, 2, 4):
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        if not name.endswith(("/", ".py")):
            continue
        path = (parents[depth - 1] if depth else Path()) / name
        parents[depth] = path
        entries.append(path)
    return entries


def test_every_layout_entry_exists():
    entries = layout_entries()
    assert len(entries) > 40, entries
    assert not [str(p) for p in entries if not (ROOT / p).exists()]


def test_every_subpackage_is_in_the_layout():
    listed = {str(p).rstrip("/") for p in layout_entries()}
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "solver").glob("*/__init__.py")}
    assert packages and packages <= listed, packages - listed


def test_the_estimators_parameters_are_documented():
    """docs/python-api.md's table maps every FlowClassifier parameter to its problem-file key,
    and names no other."""
    from solver.estimator import PARAMETERS

    text = read(DOCS / "python-api.md")
    documented = dict(re.findall(r"\| `(\w+)` \| `(\w+\.\w+)` ", text))
    assert documented == {name: f"{section}.{key}" for name, (section, key) in PARAMETERS.items()}


def test_the_run_directory_files_and_history_columns_are_documented():
    from solver.rundir import store
    from solver.rundir.files import MARKER

    text = read(DOCS / "outputs.md")
    names = [MARKER, store.CONFIG, store.THETA, store.CHECKPOINT, store.HISTORY, store.METRICS,
             store.COMPARISON, *store.HISTORY_COLUMNS]
    assert not [name for name in names if f"`{name}`" not in text]


def test_the_csv_example_is_a_problem_the_solver_accepts(tmp_path):
    """The worked example of docs/problem-files.md, written to files: the config loads and the
    data set is built from the CSV file (what ``train`` does before it builds a mesh)."""
    from solver.config import load_config
    from solver.model.data import configured_dataset

    text = read(DOCS / "problem-files.md")
    (csv_text,) = code_blocks(text, "csv")
    problem = next(b for b in code_blocks(text, "toml") if 'kind = "csv"' in b)
    path = re.search(r'path = "([^"]+)"', problem).group(1)
    (tmp_path / path).write_text(csv_text)
    (tmp_path / "problem.toml").write_text(problem)
    dataset = configured_dataset(load_config(tmp_path / "problem.toml"))
    rows = csv_text.strip().splitlines()
    labels = sorted({row.split(",")[rows[0].split(",").index("label")] for row in rows[1:]})
    assert dataset.class_names == tuple(labels)
    assert len(dataset.y_train) + len(dataset.y_test) == len(rows) - 1
    assert dataset.feature_names == tuple(n for n in rows[0].split(",") if n != "label")


# A number with a unit of time, memory or speed-up, or a percentage: what a measurement reports.
MEASURED = re.compile(r"\d(?:[\d.,]*\d)?\s?(?:s|ms|µs|min|h|kB|MB|GB|MiB|GiB|×|%)(?![\w])")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_prose_copies_no_measured_number(page):
    found = MEASURED.findall(prose(read(page)))
    assert not found, (f"{page.name} quotes measured numbers {found}: link to the generated report "
                       f"(docs/benchmarks/, docs/experiments/) and name the command that measures them")


@pytest.mark.serial  # its relative paths are each rank's own working directory
def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python block, as written, in an empty working directory."""
    (block,) = code_blocks(read(README), "python")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    score, certified, resolution = capsys.readouterr().out.split(" ", 2)
    assert 0.5 < float(score) <= 1.0 and certified in ("True", "False") and "cells" in resolution
    assert (tmp_path / "runs" / "moons-sklearn" / "theta.npz").is_file()
    assert (tmp_path / "moons.onnx").is_file()
