"""The exception types for bad user input."""


class InputError(ValueError):
    """Bad user input: a config value, a file, a point set or a time step.

    The message names the bad value and what was expected; ``source`` is the file (and key)
    it came from, if any. The command line prints it once on rank 0 and exits non-zero on
    every rank.
    """

    def __init__(self, message: str, source: str | None = None):
        self.message = message
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class UnstableSolve(InputError):
    """A transport solve whose time step breaks the CFL bound or whose solution blew up.

    Raised alike on every rank. An optimizer treats it as a failed trial point and backs off;
    everywhere else it is bad input (a Courant number or forced dt too large) like any other.
    """


# Warnings: each has a row in docs/warnings.md (when it fires, what to do); all are importable
# from ``solver`` so that ``warnings.filterwarnings("ignore", category=...)`` can name them.


class FacetWarning(UserWarning):
    """Data points lie on mesh facets, where u_h jumps (``fem.pointeval``): once per fit."""


class UncertifiedWarning(UserWarning):
    """fit ended with the PDE and the characteristics outside the tolerances (``certified_``)."""


class OutsideDomainWarning(UserWarning):
    """Points to predict fell outside Ω after the scaling fitted on the training points."""
