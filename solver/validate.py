"""Checks of single input values, shared by the config loader and the library functions.

Each check takes the value's name as the user writes it (``mesh.cells``, ``data.margin``,
``terminal.seed``), returns the value in its canonical type and otherwise raises an
:class:`~solver.errors.InputError` ``"<name>: expected <what>, got <value>"``. The config loader
adds the file and line (``source``); the library functions raise them as they are.

numpy only (numpy integers and floats pass like Python's; bool never passes as a number).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from solver.errors import InputError


def fail(name: str, message: str) -> InputError:
    """``InputError("<name>: <message>")``."""
    return InputError(f"{name}: {message}")


def expected(name: str, what: str, value: Any) -> InputError:
    """``InputError("<name>: expected <what>, got <value!r>")``."""
    return fail(name, f"expected {what}, got {value!r}")


def is_integer(value: Any) -> bool:
    # bool is a subclass of int: `cells = true` must not pass as 1.
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
    """A finite real number (bool excluded)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(value)
    )


def describe_range(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    """`` in [low, high)``, `` >= low``, `` <= high`` … ("" for no bounds)."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _in_range(value, low, high, low_open, high_open) -> bool:
    return not (
        (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and (value > high or (high_open and value == high)))
    )


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer in [low, high]."""
    if not is_integer(value) or not _in_range(value, low, high, False, False):
        raise expected(name, "an integer" + describe_range(low, high), value)
    return int(value)


def number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number between low and high (each end closed unless ``*_open``)."""
    if not is_number(value) or not _in_range(value, low, high, low_open, high_open):
        raise expected(name, "a number" + describe_range(low, high, low_open, high_open), value)
    return float(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise expected(name, "true or false", value)
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise expected(name, f"one of {list(choices)}", value)
    return value


def vector(name: str, value: Any, lengths: Sequence[int]) -> list[float]:
    """A list of finite numbers, of one of the ``lengths``."""
    what = f"a list of {' or '.join(map(str, lengths))} numbers"
    if not isinstance(value, list | tuple) or len(value) not in lengths:
        raise expected(name, what, value)
    if not all(is_number(v) for v in value):
        raise expected(name, what, value)
    return [float(v) for v in value]


def integer_list(name: str, value: Any, low: int) -> list[int]:
    """A list of integers >= low."""
    if not isinstance(value, list | tuple) or not all(is_integer(v) and v >= low for v in value):
        raise expected(name, f"a list of integers >= {low}", value)
    return [int(v) for v in value]


def optional(check):
    """``check`` for a value that may be None (absent)."""

    def check_optional(name: str, value: Any, **bounds) -> Any:
        return None if value is None else check(name, value, **bounds)

    return check_optional
