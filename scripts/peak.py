"""Run a command and write its peak resident memory (bytes) to a file: a small launcher.

    python -m scripts.peak RESULT COMMAND [ARGS...]

Why a launcher: on Linux a process's ru_maxrss starts at the resident size of the process that
forked it (exec records the old memory map's high-water mark), so every process started
directly by the benchmark driver, which holds dolfinx, scikit-learn and data, would report at
least the driver's size. Started from this small process instead, the command's ru_maxrss is
its own; for ``mpirun`` it is the largest of the ranks it waited for. Exits with the command's
exit status. Imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    result, command = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)  # exec failed
    _, status, usage = os.wait4(pid, 0)
    with open(result, "w") as f:
        f.write(str(usage.ru_maxrss * 1024))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
