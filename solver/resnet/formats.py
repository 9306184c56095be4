"""The file formats of saved nets: the ``--format`` list, and the one npz convention.

``FORMATS`` are the names ``--format`` takes (``parse_formats`` reads the list); ONNX files
are written in one of ``ONNX_DTYPES`` (``solver.resnet.onnx_builder``).

A saved net is one ``.npz``: its arrays under their own names, plus the string entry ``meta``,
a JSON object with at least ``format`` (which kind of net) and ``version`` (an integer, raised
when the layout changes; readers accept 1 up to their own). ``save_net_npz`` writes it (atomically),
``load_net_npz`` reads it back; ``read_npz`` reads any npz (also a user's input file) with the
same errors. Pickled entries are never loaded: unpickling runs code from the file.

numpy only.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from solver.errors import InputError
from solver.rundir.files import atomic_file

FORMATS = ("onnx", "npz")
ONNX_DTYPES = ("float32", "float64")  # the element types of exported ONNX graphs
META = "meta"


def parse_formats(text: str) -> list[str]:
    """``"onnx,npz"`` → ["onnx", "npz"] (case and spaces ignored, repeats dropped).

    Raises:
        InputError: For an empty list or a name not in ``FORMATS``.
    """
    formats = list(dict.fromkeys(f.strip().lower() for f in str(text).split(",") if f.strip()))
    if not formats or any(f not in FORMATS for f in formats):
        raise InputError(f"--format takes a comma-separated list of {list(FORMATS)}, got {text!r}")
    return formats


def save_net_npz(
    path: str | Path, fmt: str, version: int, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    """Write ``arrays``, and ``meta`` headed by ``"format": fmt, "version": version`` (which
    replace any of its own) as the JSON entry ``meta``, to ``path`` (``.npz`` appended if
    missing, as numpy does); returns the path."""
    if META in arrays:
        raise ValueError(f"an array may not be called {META!r}: that is the JSON entry")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    header = {"format": fmt, "version": version}
    text = json.dumps(header | {k: v for k, v in meta.items() if k not in header}, indent=1)
    with atomic_file(path) as f:
        np.savez(f, **{META: np.array(text)}, **arrays)
    return path


def read_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every entry of the npz file ``path``, never unpickling.

    Args:
        path: the file.
        what: what the file should be, for messages, e.g. "an exported ResNet".

    Raises:
        InputError: naming the file, if it is missing, empty, truncated, not an npz or holds
            pickled (object) arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file (expected {what} .npz)", str(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        # ValueError also for object arrays, which need pickle
        raise InputError(f"not {what}: cannot read it as .npz ({err})", str(path)) from None


def parse_meta(text: str, fmt: str, newest: int, source: str, what: str) -> dict[str, Any]:
    """The JSON ``meta`` of a saved net, checked: ``format`` is ``fmt`` and ``version`` an
    integer from 1 to ``newest`` (``format_version``: its name in version 1 of the
    transport ResNet, whose ONNX files carry the same JSON).

    Raises:
        InputError: naming ``source``, for text that is not a JSON object of that format.
    """
    try:
        meta = json.loads(text)
    except (TypeError, ValueError) as err:
        raise InputError(f"not {what}: its metadata is not JSON ({err})", source) from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f'not {what}: metadata format is {found!r}, expected "{fmt}"', source)
    version = meta.get("version", meta.get("format_version"))
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= newest:
        raise InputError(
            f"unsupported {fmt} format version {version!r}; this solver reads 1 to {newest}",
            source,
        )
    return meta


def load_net_npz(
    path: str | Path,
    fmt: str,
    newest: int,
    what: str,
    version_1: Callable[[dict[str, np.ndarray]], str | None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked ``meta`` and the arrays of a file written by ``save_net_npz``.

    Args:
        path: the file.
        fmt, newest: the expected ``format`` and the newest ``version`` this reader knows.
        what: what the file should be, for messages.
        version_1: for files written before this convention: given the entries of an npz that
            has no ``meta``, returns (and removes from them) the JSON text of their metadata,
            with ``format`` ``fmt`` and version 1; None if they have none either.

    Raises:
        InputError: naming the file (see ``read_npz``, ``parse_meta``).
    """
    source = str(path)
    entries = read_npz(path, what)
    if META in entries:
        text = str(entries.pop(META))
    else:
        text = None if version_1 is None else version_1(entries)
    if text is None:
        raise InputError(f"not {what}: the npz has no '{META}' entry", source)
    return parse_meta(text, fmt, newest, source, what), entries
