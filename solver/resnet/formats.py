"""The file formats of saved nets: the ``--format`` list.

``FORMATS`` are the names ``--format`` takes (``parse_formats`` reads the list); ONNX files
are written in one of ``ONNX_DTYPES`` (``solver.resnet.onnx_builder``).

numpy only.
"""

from __future__ import annotations

from solver.errors import InputError

FORMATS = ("onnx", "npz")
ONNX_DTYPES = ("float32", "float64")  # the element types of exported ONNX graphs


def parse_formats(text: str) -> list[str]:
    """``"onnx,npz"`` → ["onnx", "npz"] (case and spaces ignored, repeats dropped).

    Raises:
        InputError: For an empty list or a name not in ``FORMATS``.
    """
    formats = list(dict.fromkeys(f.strip().lower() for f in str(text).split(",") if f.strip()))
    if not formats or any(f not in FORMATS for f in formats):
        raise InputError(f"--format takes a comma-separated list of {list(FORMATS)}, got {text!r}")
    return formats
