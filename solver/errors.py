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
