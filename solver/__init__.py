"""Finite-element solver for the transport inverse problem (Li & Shi, "A Flow Model of Neural Networks").

A ResNet is the Euler discretization of the characteristics x' = v(t, x) of the transport
equation ∂t u + v·∇u = 0 with terminal value u(T, ·) = f; the prediction is u(0, ·).
"""

# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI  # noqa: F401

from solver.errors import FacetWarning, OutsideDomainWarning, UncertifiedWarning  # noqa: F401 (light)

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``from solver import FlowClassifier`` imports scikit-learn and the model only when asked
    # (PEP 562), so that ``import solver`` stays light; dolfinx only when it fits.
    if name == "FlowClassifier":
        from solver.estimator import FlowClassifier

        return FlowClassifier
    raise AttributeError(f"module 'solver' has no attribute {name!r}")
