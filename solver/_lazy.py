"""Re-exports imported on first use (PEP 562), for the packages' ``__init__`` files.

A package lists its public names and the module of each; ``from solver.fem import create_mesh``
then imports ``solver.fem.mesh`` only when asked. Importing a package stays as light as before
(``import solver.model`` loads no dolfinx, ``import solver`` no scikit-learn) and the packages'
modules can import one another without cycles through their ``__init__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, table: dict[str, str]) -> tuple[list[str], Callable, Callable]:
    """``__all__``, ``__getattr__`` and ``__dir__`` of ``package`` for ``table`` (name -> module,
    relative to ``package``)."""

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(table))

    return sorted(table), __getattr__, __dir__
