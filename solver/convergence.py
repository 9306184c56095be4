"""Convergence orders from errors e_i measured at step sizes h_i, assuming e ≈ C h^p.

The one place every verification test, benchmark and report fits p. Step sizes, not counts:
a study over n cells, l substeps or depth D passes h = 1/n (or 1/l, 1/D), so that p > 0
means the error falls as the resolution grows, whatever the resolution is called.

numpy only, not collective.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fitted_order", "observed_orders"]


def observed_orders(h, errors) -> np.ndarray:
    """Orders between successive runs, log(e_i / e_{i+1}) / log(h_i / h_{i+1}), shape (n - 1,).

    NaN or inf where an error is 0 (no warning): the caller decides what an exact run means.
    """
    h, errors = np.asarray(h, float), np.asarray(errors, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(errors[:-1] / errors[1:]) / np.log(h[:-1] / h[1:])


def fitted_order(h, errors) -> float:
    """The least-squares slope p of log(e) against log(h) over all runs (at least two)."""
    h, errors = np.asarray(h, float), np.asarray(errors, float)
    return float(np.polyfit(np.log(h), np.log(errors), 1)[0])
