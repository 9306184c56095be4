"""Files a reader never sees half-written, and run directories that never cost a user's files.

Every write goes to a temporary file ``.NAME.XXXXXXXX.tmp`` in the target's directory, is flushed
and fsync'ed, then renamed over the target (``os.replace`` is atomic within one file system); on
any failure the temporary file is removed, and those a killed process left are removed when the
next command starts on the run directory (``remove_temporaries``).

A run directory is marked as one (``MARKER``, its first file). ``--force`` replaces only a
marked directory (or a run written before the marker existed, recognized by its exact files),
never one that holds an input of the run, the current directory or a parent of it, nor a
symbolic link (``prepare_run_directory``). What the files of a run directory hold is
``solver.rundir.store``'s business; this module only writes bytes safely.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from solver.errors import InputError
from solver.rundir.columns import EARLIER_HISTORY_COLUMNS, HISTORY_COLUMNS

if TYPE_CHECKING:
    from mpi4py import MPI


# A run directory holds this file, written first: only such a directory is replaced by --force.
MARKER = ".solver-run"
MARKER_TEXT = ("A run directory of `python -m solver`: `--force` may replace this directory and "
               "everything in it.\n")
# A run written before the marker existed is recognized by its files only: it holds all of
# OLD_RUN_FILES (history.csv with the project's header), and nothing that is not a run's file.
OLD_RUN_FILES = ("config.toml", "theta.npz", "history.csv")
RUN_ENTRY = re.compile(r"config\.toml|theta\.npz|checkpoint\.npz|history\.csv|metrics\.json|"
                       r"compare\.json|[\w.-]+\.png|[\w.-]+\.bp|flow\.gif|resnet-[\w.-]+\.(npz|onnx)")
# How the messages name the options, per caller: "cli" the command line's flags (train),
# "compare" those of compare CONFIG (which cannot resume), "api" the arguments of ``solver.fit(config, out, force=, resume=)``, "estimator" those of
# ``FlowClassifier.fit(X, y, run_dir=, force=)`` and ``save(path, force=)`` (which cannot resume).
# The run directory's refusals use other, force, resume and new; a refused resume of ``fit``
# (``solver.fitting``) resuming, keep and new_run.
WORDING = {
    "cli": dict(other="choose another --out", force="pass --force to replace it",
                resume=", or --resume to continue its training", new="e.g. --out runs/NAME",
                resuming="--resume", keep="drop CONFIG", new_run="start a new run with another --out"),
    "api": dict(other="choose another directory", force="pass force=True to replace it",
                resume=", or resume=True to continue its training", new="e.g. runs/NAME",
                resuming="resume=True", keep="pass config=None",
                new_run="start a new run in another directory (out=)"),
    "estimator": dict(other="choose another directory", force="pass force=True to replace it",
                      resume="", new="e.g. runs/NAME"),
    "compare": dict(other="choose another --out", force="pass --force to replace it", resume="",
                    new="e.g. --out runs/NAME"),
}
# atomic_file's temporaries ".NAME.XXXXXXXX.tmp", and those of earlier versions:
# ".NAME.XXXXXXXX" and ".checkpoint.XXXXXXXX.npz".
TEMPORARY = re.compile(r"\.[^/]+\.[a-z0-9_]{8}\.tmp|\.(config\.toml|theta\.npz|checkpoint\.npz|"
                       r"history\.csv|metrics\.json|compare\.json)\.[a-z0-9_]{8}|\.checkpoint\.[a-z0-9_]{8}\.npz")

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file to write that appears at ``path`` whole, or not at all (rank-local).

    Args:
        path: the target; its directory must exist.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Raises:
        InputError: naming ``path``, if it cannot be written (a missing or read-only directory,
            a full disk).
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it (mkstemp: 0600)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(error, OSError):
            raise InputError(f"cannot write the file: {_reason(error)}", str(path)) from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (rank-local)."""
    with atomic_file(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | Path, data) -> None:
    """Write ``data`` as JSON atomically; numpy values become Python values, non-finite floats
    null (rank-local)."""
    write_text_atomic(path, json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")


def prepare_run_directory(comm: MPI.Comm, path: str | Path, force: bool = False,
                          inputs: Iterable[str | Path] = (), wording: str = "cli") -> Path:
    """Create the run directory ``path`` on rank 0, marked as one (collective).

    An existing directory is replaced only if it is a run directory (``is_run_directory``), with
    ``force``, or without it if it holds nothing but the ``MARKER`` (a run that failed at the
    start). It is never replaced if it holds one of ``inputs`` (the problem file, the data file,
    ``train.init``), is the current directory or contains it, or is a symbolic link. ``wording``:
    a key of ``WORDING`` (the caller: "cli", "compare", "api" or "estimator"), how the messages name the
    options.

    Raises:
        InputError: on every rank: the directory is refused (the message says why and what to
            do), or cannot be created.
    """
    from solver.parallel import on_rank0

    return Path(on_rank0(comm, _prepare, Path(path), force, tuple(Path(i) for i in inputs), wording))


def _prepare(path: Path, force: bool, inputs: tuple[Path, ...], wording: str) -> Path:
    refusal = refuse_run_directory(path, force, inputs, wording)
    if refusal:
        raise InputError(refusal, str(path))
    try:
        if path.is_dir() and any(path.iterdir()):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the run directory: {_reason(error)}", str(path)) from None
    write_text_atomic(path / MARKER, MARKER_TEXT)
    return path


def refuse_run_directory(path: Path, force: bool, inputs: tuple[Path, ...] = (),
                         wording: str = "cli") -> str | None:
    """Why ``path`` may not become a (new) run directory, or None (rank-local, reads only)."""
    say = WORDING[wording]
    here = _resolved(path)
    cwd = Path.cwd().resolve()
    if here == cwd or here in cwd.parents:
        which = "the current directory" if here == cwd else f"a parent of the current directory {cwd}"
        return f"is {which}; a run needs a directory of its own, {say['new']}"
    if path.is_symlink():  # replacing it would follow it, or cost the user's link
        return f"is a symbolic link; a run directory is never reached through one: {say['other']}"
    if not path.exists():
        return None
    if not path.is_dir():
        return f"exists and is not a directory; {say['other']}"
    held = [str(i) for i in inputs if _resolved(i) == here or here in _resolved(i).parents]
    if held:
        return (f"holds {', '.join(held)}, an input of this run; a run directory is replaced "
                f"as a whole, so {say['other']}")
    entries = sorted(e.name for e in path.iterdir())
    if not entries:
        return None
    if not is_run_directory(path):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        return (f"exists and is not a run directory (no {MARKER}; it holds {shown}); "
                f"only a run directory is replaced: {say['other']}")
    if force or entries == [MARKER]:
        return None
    return f"exists: {say['force']}{say['resume']}"


def is_run_directory(path: Path) -> bool:
    """``path`` is a directory that a command of the solver made: it holds the ``MARKER``, or it
    is a run written before the marker existed: all of ``OLD_RUN_FILES`` (history.csv beginning
    with the project's header), besides them only files that runs write (rank-local, reads only)."""
    if path.is_symlink() or not path.is_dir():
        return False
    if (path / MARKER).is_file() and not (path / MARKER).is_symlink():
        return True
    names = {e.name for e in path.iterdir()}
    if not set(OLD_RUN_FILES) <= names or not all(RUN_ENTRY.fullmatch(n) or is_temporary(n) for n in names):
        return False
    history = path / "history.csv"
    if history.is_symlink() or not history.is_file():
        return False
    try:
        with open(history, encoding="utf-8") as f:
            first = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError):
        return False
    return first in {",".join(c) for c in (HISTORY_COLUMNS, *EARLIER_HISTORY_COLUMNS)}


def is_temporary(name: str) -> bool:
    """A temporary file of ``atomic_file`` (also of earlier versions: ``.checkpoint.npz.XXXX``)."""
    return bool(TEMPORARY.fullmatch(name))


def remove_temporaries(directory: str | Path) -> list[str]:
    """Remove the temporary files that writes killed half-way left in a run directory (rank-local);
    returns their names. Nothing is removed from a directory that is not a run directory."""
    directory = Path(directory)
    if not directory.is_dir() or not is_run_directory(directory):
        return []
    removed = []
    for entry in directory.iterdir():
        if not is_temporary(entry.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_symlink() or entry.is_file():
                entry.unlink()  # a link itself, never what it points to
            elif entry.is_dir():  # a VTX directory being written (``replace_directory``)
                shutil.rmtree(entry)
            else:
                continue
            removed.append(entry.name)
    return sorted(removed)


def temporary_name(path: Path, token: str) -> Path:
    """The temporary name ``.NAME.TOKEN.tmp`` of ``path`` (token: 8 of [a-z0-9_]), which
    ``remove_temporaries`` removes if a killed process left it."""
    return path.with_name(f".{path.name}.{token}.tmp")


def replace_directory(written: Path, path: Path) -> None:
    """Move the directory ``written`` (complete) to ``path`` (rank-local): what was at ``path``
    goes first: a symbolic link is removed itself, never followed; a directory or file of the
    run is removed. ``path`` must be inside a run directory (a VTX output of the solver's)."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        os.rename(written, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            shutil.rmtree(written)
        raise InputError(f"cannot write the directory: {_reason(error)}", str(path)) from None


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _reason(error: OSError) -> str:
    return error.strerror or (str(error.args[0]) if error.args and error.args[0] else type(error).__name__)


def _plain(value):
    """numpy scalars and arrays to JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
