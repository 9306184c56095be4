"""The files of a run directory: their names, what they hold, and how they are written and read.

    config.toml      the problem file the run was made with (``Config.to_toml``)
    theta.npz        the learned parameters p = (θ, A, b) and what they mean (``meta``)
    checkpoint.npz   the optimizer state and the history, to resume a run
    history.csv      one row per iteration (``HISTORY_COLUMNS``)
    metrics.json     the run's summary; compare.json, the check of a trained run

This is the one module that knows these formats; training, comparison, export and the command
line go through it. numpy and json only (no MPI, no dolfinx): every function is rank-local, the
caller decides which rank writes. Every write is atomic (``solver.rundir.files.atomic_file``);
every read turns a missing, empty, truncated or malformed file into an ``InputError`` that names
the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import csv
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from solver.errors import InputError
from solver.rundir.files import atomic_file, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from solver.model.velocity import VelocityModel

CONFIG = "config.toml"
THETA = "theta.npz"
CHECKPOINT = "checkpoint.npz"
HISTORY = "history.csv"
METRICS = "metrics.json"
COMPARISON = "compare.json"

PARAMETERS_FORMAT = "transport-inverse parameters"
PARAMETERS_VERSION = 2  # 2: a learned input layer (meta "input", the array "input")

# history.csv's columns: rundir/columns.py (files.py recognizes old runs by them too).
from solver.rundir.columns import (  # noqa: E402
    EARLIER_HISTORY_COLUMNS,
    HISTORY_COLUMNS,
    INTEGER_COLUMNS,
)

# What a read catches: a missing or unreadable file (OSError), an empty one (EOFError), a
# truncated or corrupt zip (BadZipFile), a missing array (KeyError), bad contents (ValueError,
# which includes json.JSONDecodeError and UnicodeDecodeError), a short or long CSV row (TypeError).
READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, TypeError)


@contextlib.contextmanager
def _reading(path: Path, what: str, hint: str) -> Iterator[None]:
    """Turn every failure to read ``path`` into an InputError naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"file not found ({hint})", str(path)) from None
    except (EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"cannot read {what}: the file is empty or truncated "
                         f"({type(error).__name__}: {error})", str(path)) from None
    except KeyError as error:
        raise InputError(f"cannot read {what}: the file has no {error}", str(path)) from None
    except READ_ERRORS as error:
        raise InputError(f"cannot read {what}: {type(error).__name__}: {error}", str(path)) from None


def _nonempty(path: Path) -> Path:
    """``path``; EOFError if it is an empty file (call inside ``_reading``)."""
    if path.is_file() and path.stat().st_size == 0:
        raise EOFError("the file is empty")
    return path


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file, read into memory (call inside ``_reading``)."""
    data = np.load(_nonempty(path), allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("not an npz archive")
    with data:
        return {key: np.array(data[key]) for key in data.files}


# --- config.toml ----------------------------------------------------------------------------


def write_config(path: str | Path, toml: str) -> None:
    """config.toml: the problem file of the run (``Config.to_toml()``), which ``load_config`` reads."""
    write_text_atomic(path, toml)


# --- theta.npz ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameters:
    """The learned parameters of a run, as theta.npz holds them.

    Attributes:
        p: the flat vector (θ, A.ravel(), b), what the reduced functional takes.
        theta: the velocity parameters θ (None if the file holds p only).
        A: the output layer's matrix, shape=(K, d) (None if the file holds p only).
        b: the output layer's offset, shape=(K,) (None if the file holds p only).
        meta: the model, domain, data scaling, class count and θ's blocks (None if p only).
    """

    p: np.ndarray
    theta: np.ndarray | None = None
    A: np.ndarray | None = None
    b: np.ndarray | None = None
    meta: dict[str, Any] | None = None
    input: np.ndarray | None = None  # the learned input layer's q (E row by row, e), if any


def write_parameters(path: str | Path, model: VelocityModel, theta: np.ndarray, A: np.ndarray,
                     b: np.ndarray, *, domain: dict, scaling: dict, resolution: dict | None = None,
                     classes: list[str] | None = None, augmented: int | None = None,
                     estimator: dict | None = None, input_layer: dict | None = None,
                     q: np.ndarray | None = None) -> None:
    """theta.npz: p = (θ, A, b), its parts under their names, and ``meta`` (JSON text).

    Args:
        model: the velocity model θ parametrizes.
        domain: the config's ``[domain]`` table; scaling: the data's ``Scaling.to_dict()``.
        resolution: the mesh the run ended on, ``{"cells": n, "degree": k}`` (training raises it
            until the PDE is certified; ``compare RUN`` predicts there).
        classes: the data's label of each class k (a CSV file's labels, e.g. ["cat", "dog"]).
        augmented: how many zero coordinates ``data.augment_dim`` appended to the data's own
            (``predict`` appends them to new points).
        estimator: what ``solver.estimator.FlowClassifier`` needs beyond that to load the run
            (the labels' dtype, the number of features; JSON values).
        input_layer, q: a learned input layer's record (``InputLayer.to_dict()``, meta
            ``input``) and parameters (the array ``input``, the last entries of p).
    """
    theta, A, b = (np.asarray(a, dtype=np.float64) for a in (theta, A, b))
    meta = dict(
        format=PARAMETERS_FORMAT, version=PARAMETERS_VERSION,
        model=dict(dim=model.dim, width=model.width, slabs=model.slabs, T=model.T,
                   activation=model.activation, layers=model.layers),
        domain=domain,
        scaling=scaling,
        num_classes=len(b),
        blocks={k: [v.start, v.stop] for k, v in model.block_slices().items()},
    )
    if resolution is not None:
        meta["resolution"] = resolution
    if classes is not None:
        meta["classes"] = [str(c) for c in classes]
    if augmented is not None:
        meta["augmented"] = int(augmented)
    if estimator is not None:
        meta["estimator"] = estimator
    extra = {}
    if input_layer is not None:
        meta["input"] = input_layer
        extra["input"] = np.asarray(q, dtype=np.float64)
    p = np.concatenate([theta, A.ravel(), b, *extra.values()])
    with atomic_file(path) as f:
        np.savez(f, p=p, theta=theta, A=A, b=b, meta=json.dumps(meta), **extra)


def read_parameters(path: str | Path) -> Parameters:
    """The parameters in a theta.npz (also one holding only ``p``, as older tools wrote)."""
    path = Path(path)
    with _reading(path, "learned parameters", "is this a finished training run?"):
        arrays = _load_npz(path)
        p = np.asarray(arrays["p"], dtype=np.float64)
        if p.ndim != 1:
            raise ValueError(f"p must be a vector, got shape {p.shape}")
        meta = json.loads(str(arrays["meta"])) if "meta" in arrays else None
        if meta is not None and not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
        parts = [arrays.get(k) for k in ("theta", "A", "b")]
        q = arrays.get("input")
        if all(a is not None for a in parts) and np.concatenate(
                [parts[0], parts[1].ravel(), parts[2], np.ravel(q) if q is not None else []]).shape != p.shape:
            raise ValueError(f"theta, A, b{' and input' if q is not None else ''} do not make up p ({p.size} values)")
        if (q is None) != (meta is None or "input" not in meta) and meta is not None:
            raise ValueError("the input layer's parameters and its record (meta 'input') come together")
        _finite(arrays)
    return Parameters(p, *parts, meta=meta, input=None if q is None else np.asarray(q, dtype=np.float64))


def check_resolution(cells, degree, source: str) -> tuple[int, int]:
    """The mesh cells and DG degree a run recorded (theta.npz's meta, checkpoint.npz), checked:
    an integer cells >= 1 and degree 1 to 3; InputError naming ``source`` otherwise."""
    try:
        c, k = int(cells), int(degree)
        if c != cells or k != degree:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        c, k = 0, 0
    if not (c >= 1 and 1 <= k <= 3):
        raise InputError(f"a damaged resolution: cells {cells!r}, degree {degree!r} (expected cells >= 1, "
                         f"degree 1 to 3); was the file edited?", source)
    return c, k


def check_checkpoint(arrays: dict[str, np.ndarray], n_params: int, source: str) -> None:
    """The optimizer state of a checkpoint.npz fits a run of ``n_params`` parameters: p, the
    gradient (and Adam's moments) of that length, the L-BFGS pairs s, y as rows of it, the
    resolution sane. InputError naming ``source`` otherwise."""
    for name in ("p", "gradient", "m", "v"):
        if name in arrays and arrays[name].shape != (n_params,):
            raise InputError(f"{name} has the shape {arrays[name].shape}, this run has {n_params} parameters; "
                             f"was the file edited, or the config changed?", source)
    for name in ("s", "y"):
        if name in arrays and (arrays[name].ndim != 2 or arrays[name].shape[1:] != (n_params,)):
            raise InputError(f"the L-BFGS pairs {name} have the shape {arrays[name].shape}, expected (k, {n_params}); "
                             f"was the file edited?", source)
    if arrays.get("s") is not None and arrays.get("y") is not None and len(arrays["s"]) != len(arrays["y"]):
        raise InputError(f"{len(arrays['s'])} L-BFGS steps s but {len(arrays['y'])} gradient changes y", source)
    if "resolution" in arrays:
        resolution = np.ravel(arrays["resolution"])
        if resolution.size != 2:
            raise InputError(f"a damaged resolution of {resolution.size} values, expected 2 (cells, degree)", source)
        check_resolution(*resolution.tolist(), source)


# --- checkpoint.npz -------------------------------------------------------------------------


def write_checkpoint(path: str | Path, state: dict[str, np.ndarray], history: list[dict]) -> None:
    """checkpoint.npz: the optimizer's state arrays and the history (one row per iteration)."""
    if "history" in state:
        raise ValueError('"history" is not a name for an optimizer state array')
    with atomic_file(path) as f:
        np.savez(f, **state, history=_history_array(history))


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The optimizer's state arrays and the history of a checkpoint.npz."""
    path = Path(path)
    with _reading(path, "the checkpoint", "nothing to resume from: was the run started?"):
        arrays = _load_npz(path)
        history = _history_rows(arrays.pop("history"))
        _finite(arrays)
    return arrays, history


def _finite(arrays: dict[str, np.ndarray]) -> None:
    """ValueError naming the first numeric array that holds NaN or ±inf (call inside ``_reading``)."""
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            count = int(np.sum(~np.isfinite(array)))
            raise ValueError(f"{name} holds {count} non-finite value(s) (NaN or inf)")


def _history_array(history: list[dict]) -> np.ndarray:
    rows = [[row[c] for c in HISTORY_COLUMNS] for row in history]
    return np.array(rows, dtype=np.float64).reshape(-1, len(HISTORY_COLUMNS))


def _history_rows(array: np.ndarray) -> list[dict]:
    widths = (*(len(c) for c in EARLIER_HISTORY_COLUMNS), len(HISTORY_COLUMNS))
    if array.ndim != 2 or array.shape[1] not in widths:
        raise ValueError(f"history must have shape (n, {len(HISTORY_COLUMNS)}), got {array.shape}")
    return [_typed(dict(zip(HISTORY_COLUMNS, row))) for row in array.tolist()]


def _typed(row: dict) -> dict:
    """Counts as int, the rest as float; columns a row lacks as NaN."""
    row = {**dict.fromkeys(HISTORY_COLUMNS, float("nan")), **row}
    return {k: int(float(v)) if k in INTEGER_COLUMNS else float(v) for k, v in row.items()}


# --- history.csv ----------------------------------------------------------------------------


def write_history(path: str | Path, history: list[dict]) -> None:
    """history.csv: a header of ``HISTORY_COLUMNS``, one row per iteration."""
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join(_format(row[c]) for c in HISTORY_COLUMNS) for row in history]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_history(path: str | Path) -> list[dict]:
    """The rows of a history.csv (floats to the 10 digits it keeps)."""
    path = Path(path)
    with _reading(path, "the history", "is this a training run?"):
        with open(_nonempty(path), newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) not in (HISTORY_COLUMNS, *EARLIER_HISTORY_COLUMNS):
                raise ValueError(f"the header must be {','.join(HISTORY_COLUMNS)}")
            return [_typed(row) for row in reader]


def _format(value) -> str:
    return str(value) if isinstance(value, (int, np.integer)) else f"{value:.10g}"


# --- metrics.json, compare.json -------------------------------------------------------------


def write_json(path: str | Path, data: dict) -> None:
    """metrics.json or compare.json (numpy values as Python values, NaN and ±inf as null)."""
    write_json_atomic(path, data)


def read_json(path: str | Path) -> dict:
    """The object in metrics.json or compare.json."""
    path = Path(path)
    with _reading(path, "JSON", "was the run finished?"):
        data = json.loads(_nonempty(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    return data
