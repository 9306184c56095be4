"""The machine and the software the numbers were measured on, read at run time."""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time

# The project venv's packages whose versions the report states (module names).
PACKAGES = ("dolfinx", "petsc4py", "mpi4py", "numpy", "scipy", "sklearn", "onnxruntime", "matplotlib")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_bytes() -> int | None:
    """Total memory from /proc/meminfo, in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was (other jobs included)."""
    return [round(x, 2) for x in os.getloadavg()]


def package_version(module: str) -> str:
    """``module.__version__``, or "not installed"."""
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return "not installed"


def describe() -> dict:
    """Machine (CPU, cores, memory, OS), versions of Python and the project's stack, and the date."""
    from mpi4py import MPI

    return dict(
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        memory_bytes=memory_bytes(),
        os=platform.platform(),
        load_average_at_start=load_average(),
        versions=dict(python=sys.version.split()[0], **{name: package_version(name) for name in PACKAGES},
                      mpi=" ".join(MPI.Get_library_version().split()[:3])),
    )
