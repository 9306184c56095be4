"""Objects that own PETSc objects (matrices, vectors, KSPs) release them with ``destroy()``.

PETSc's objects are collective: left to Python's garbage collector they would be freed on each
rank at a different time, and the collective destroy of one rank could wait for peers busy
elsewhere. So they are released explicitly, on every rank at the same point of the program:
``with TransportSolver(...) as solver: ...`` calls ``solver.destroy()`` when the block ends (also
on an exception).
"""

from __future__ import annotations


class Owned:
    """A mixin: ``__enter__`` returns the object, ``__exit__`` calls its ``destroy()`` (collective)."""

    def destroy(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.destroy()
