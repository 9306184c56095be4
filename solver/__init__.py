"""Finite-element solver for the transport inverse problem (Li & Shi, "A Flow Model of Neural Networks").

A ResNet is the Euler discretization of the characteristics x' = v(t, x) of the transport
equation ∂t u + v·∇u = 0 with terminal value u(T, ·) = f; the prediction is u(0, ·).
"""

# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI  # noqa: F401

from importlib.metadata import PackageNotFoundError, version

try:  # the one version number is pyproject.toml's, read from the installed metadata
    __version__ = version("transport-inverse")
except PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"


from solver._lazy import exports

# What a user needs, each imported from its module on first use: ``import solver`` stays light
# (scikit-learn and the model come with FlowClassifier, dolfinx only when it fits).
__all__, __getattr__, __dir__ = exports(__name__, {
    "FlowClassifier": "estimator", "FlowRegressor": "estimator", "Run": "check.predict",
    "fit": "fitting", "FitOutcome": "fitting",
    "FacetWarning": "errors", "OutsideDomainWarning": "errors", "UncertifiedWarning": "errors",
    "InputError": "errors", "UnstableSolve": "errors",
    "KernelCompileError": "fem.gradient_kernels",
})
