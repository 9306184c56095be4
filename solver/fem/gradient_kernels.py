"""The gradient's innermost loops in C, compiled once and cached beside dolfinx's JIT forms: the
stage-pair products of a slab, the pairs' transposition, the facet terms of the slab
contraction, and the fused vector updates of the transposed RK3 steps.

``slab_derivative.SlabGradient`` needs, per cell K, S_K = Σ_p η_p|_K ψ_p|_Kᵀ and, per cell and
local facet, the cross product with the neighbour K' across it: Σ_p ψ ηᵀ sampled on the DG
operator's sparsity pattern (a sampled dense-dense product). No library here has one (PETSc,
scipy.sparse, dolfinx: none), and numpy's batched matmul of the tiny per-cell blocks (3×48×3 for
DG1 triangles) spends its time in one BLAS call per block and in the gather of the neighbours'
ψ. The loop here keeps a 2 × 4 tile of sums in registers while the pairs stream through (a
dof's pairs contiguous). Measured once on random pairs, one rank on the loaded shared machine,
per batch of 45–48 pairs: numpy's batched matmul 35, 118, 352 ms, this loop 11, 30, 264 ms
(48² DG1, 13³ DG1, 13³ DG2 boxes); the whole gradient: the README's gradient ratio table
(``scripts/bench_gradient.py --cases``).

The adjoint has its pairs as rows (stage states, λ's: one vector per pair). ``add_pair_rows``
(one rank) gathers a chunk of cells' values from the rows into small tables that stay in cache
and runs the same tile loop on them; writing every step's pairs as columns of a (dofs, P)
buffer first (``pairs_into_columns``, still the parallel path, whose ghost exchange wants that
layout) cost more than the products. Both read 8 rows at a time: the rows of a batch are often
a multiple of 4 KiB apart, so one dof of all 48 falls into one L1 set. On the 48² DG1 box,
1 rank, the loaded machine, ``python -m cProfile -s tottime scripts/bench_gradient.py --cases
box48 --repeats 3`` (4 gradients): pairs_into_columns + add_pairs 0.271 + 0.157 s before,
add_pair_rows 0.278 s (+ 0.038 s of ψ scaling in ``adjoint._step_back``) after.

``combine`` is out = Σ_j c_j x_j in one pass, for the transposed RK3 step (``fem/adjoint.py``),
where numpy needs a pass per operation.

The C source is the package file ``gradient_kernels.c`` beside this module. The library is
compiled with the C compiler Python was built with (the one dolfinx's JIT uses) into dolfinx's
JIT cache directory, named by a hash of the source and flags; every rank may compile it (the file
appears by an atomic rename), and later runs load it. There is no fallback: a compiler that is
missing or fails raises ``KernelCompileError`` with the command and the compiler's output.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import logging
import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger("solver")

SOURCE = "gradient_kernels.c"  # package data of solver.fem
_FLAGS = ["-O3", "-fopenmp-simd", "-fPIC", "-shared", "-g0"]  # portable: no -march=native
_MAX_COLUMNS = 128  # MAXC in gradient_kernels.c: (1 + facets) · dofs per cell (DG3 tetrahedra: 5 · 20)

_library = None


def _cache_dir() -> Path:
    """dolfinx's JIT cache directory (its options: a JSON file, see ``dolfinx.jit``)."""
    import dolfinx.jit

    return Path(dolfinx.jit.get_options()["cache_dir"])


class KernelCompileError(RuntimeError):
    """The C compiler is missing or failed on ``gradient_kernels.c``; the message has its output."""


def compile_kernels(compiler: list[str], source: Path, target: Path) -> None:
    """Compile ``source`` into the shared library ``target``, or raise KernelCompileError."""
    command = compiler + _FLAGS + [str(source), "-o", str(target)]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:  # no such compiler, or not executable
        raise KernelCompileError(
            f"cannot run the C compiler {compiler[0]!r} (Python's CC, sysconfig "
            f"{sysconfig.get_config_var('CC')!r}) to build the gradient kernels: {error}"
        ) from None
    if done.returncode != 0:
        raise KernelCompileError(
            f"compiling the gradient kernels failed (exit status {done.returncode}):\n"
            f"  {shlex.join(command)}\n{done.stderr.strip() or done.stdout.strip()}"
        )
    if done.stderr.strip():
        log.debug("the gradient kernels compiled with warnings:\n%s", done.stderr.strip())


def _load() -> ctypes.CDLL:
    """The compiled loops, compiled first if this machine has not yet (per process, once).

    Raises:
        KernelCompileError: If the C compiler is missing or fails (its output in the message).
    """
    global _library
    if _library is not None:
        return _library
    text = importlib.resources.files("solver.fem").joinpath(SOURCE).read_text()
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    key = hashlib.sha256((text + " ".join(compiler + _FLAGS)).encode()).hexdigest()[:16]
    directory = _cache_dir()
    path = directory / f"transport_slab_pairs_{key}.so"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            source, target = Path(tmp) / SOURCE, Path(tmp) / "slab_pairs.so"
            source.write_text(text)
            compile_kernels(compiler, source, target)
            os.replace(target, path)  # atomic: another rank may be doing the same
    library = ctypes.CDLL(str(path))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    library.slab_pairs.argtypes = [i64, i64, i64, i64, ptr, ptr, i64, ptr, ptr, ptr, ptr]
    library.slab_pairs.restype = None
    library.slab_pairs_rows.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr]
    library.slab_pairs_rows.restype = ctypes.c_int
    library.pairs_into_columns.argtypes = [i64, i64, ptr, ptr, ptr, i64]
    library.pairs_into_columns.restype = None
    library.facet_terms.argtypes = [i64, i64, i64] + [ptr] * 12
    library.facet_terms.restype = None
    library.combine.argtypes = [i64, ptr, i64, ptr, ptr]
    library.combine.restype = None
    _library = library
    return library


def add_pairs(etas: np.ndarray, psis: np.ndarray, dofs: np.ndarray, neighbour: np.ndarray,
              S: np.ndarray, cross: np.ndarray) -> None:
    """S[k] += Σ_p η_p|_k ψ_p|_kᵀ and cross[k, s] += Σ_p η_p|_k ψ_p|_mᵀ, m = neighbour[k, s].

    Args:
        etas, psis: the P pairs' local coefficients, shape=(local dofs, P), float64, the pairs
            of a dof contiguous (a row may be a slice of a longer one), both alike.
        dofs: the DG dofs of each local cell, shape=(cells, nd), int64.
        neighbour: the cell across each local facet, shape=(cells, slots), int64; ``cells`` for
            none.
        S: shape=(cells, nd, nd), C-contiguous, added to.
        cross: shape=(cells, slots, nd, nd), C-contiguous, added to.
    """
    cells, nd = dofs.shape
    slots = neighbour.shape[1]
    P = etas.shape[1]
    if (1 + slots) * nd > _MAX_COLUMNS:
        raise ValueError(f"{nd} dofs per cell and {slots} facets: at most {_MAX_COLUMNS} columns")
    for name, array in (("etas", etas), ("psis", psis)):
        if array.dtype != np.float64 or array.shape != etas.shape or array.strides != etas.strides or (
            P > 1 and array.strides[1] != 8
        ):
            raise ValueError(f"{name}: expected float64 rows of contiguous pairs, like etas")
    for name, array, shape in (("dofs", dofs, (cells, nd)), ("neighbour", neighbour, (cells, slots)),
                               ("S", S, (cells, nd, nd)), ("cross", cross, (cells, slots, nd, nd))):
        wanted = np.float64 if name in ("S", "cross") else np.int64
        if array.shape != shape or array.dtype != wanted or not array.flags.c_contiguous:
            raise ValueError(f"{name}: expected a C-contiguous {wanted.__name__} array of shape {shape}")
    if P == 0 or cells == 0:
        return
    _load().slab_pairs(P, cells, nd, slots, etas.ctypes.data, psis.ctypes.data, etas.strides[0] // 8,
                       dofs.ctypes.data, neighbour.ctypes.data, S.ctypes.data, cross.ctypes.data)


def add_pair_rows(etas: list[np.ndarray], psis: list[np.ndarray], dofs: np.ndarray, neighbour: np.ndarray,
                  S: np.ndarray, cross: np.ndarray) -> None:
    """``add_pairs`` of P pairs given as rows: η_p = etas[p], ψ_p = psis[p], each the values of
    all local dofs (C-contiguous float64, shape=(dofs,)): no (dofs, P) copy of them is made (on
    one rank, writing it cost more than the products; measured, see the module docstring)."""
    cells, nd = dofs.shape
    slots = neighbour.shape[1]
    P = len(etas)
    if (1 + slots) * nd > _MAX_COLUMNS:
        raise ValueError(f"{nd} dofs per cell and {slots} facets: at most {_MAX_COLUMNS} columns")
    if len(psis) != P:
        raise ValueError(f"{P} etas but {len(psis)} psis")
    if P == 0 or cells == 0:
        return
    n = etas[0].shape[0]
    for a in etas + psis:
        if a.dtype != np.float64 or a.shape != (n,) or not a.flags.c_contiguous:
            raise ValueError(f"add_pair_rows: rows of {n} contiguous float64 values expected")
    if dofs.max() >= n:
        raise ValueError(f"add_pair_rows: a dof index {dofs.max()} beyond the rows' {n} values")
    for name, array, shape in (("dofs", dofs, (cells, nd)), ("neighbour", neighbour, (cells, slots)),
                               ("S", S, (cells, nd, nd)), ("cross", cross, (cells, slots, nd, nd))):
        wanted = np.float64 if name in ("S", "cross") else np.int64
        if array.shape != shape or array.dtype != wanted or not array.flags.c_contiguous:
            raise ValueError(f"{name}: expected a C-contiguous {wanted.__name__} array of shape {shape}")
    E = (ctypes.c_void_p * P)(*[a.ctypes.data for a in etas])
    Q = (ctypes.c_void_p * P)(*[a.ctypes.data for a in psis])
    if _load().slab_pairs_rows(P, cells, n, nd, slots, E, Q, dofs.ctypes.data, neighbour.ctypes.data,
                               S.ctypes.data, cross.ctypes.data):
        raise MemoryError("add_pair_rows: scratch tables")


def pairs_into_columns(rows: list[np.ndarray], scales: list[np.ndarray | None], out: np.ndarray) -> None:
    """``out[:, j] = rows[j] * scales[j]`` (or ``rows[j]`` where the scale is None): m rows of n
    values as the m columns of ``out`` (shape=(n, m), a dof's m values contiguous: a column
    slice of a pair buffer), in one pass; the adjoint's pairs, straight into the layout the
    products read (a transposing numpy copy took as long as the products)."""
    m = len(rows)
    n = out.shape[0]
    if out.shape[1] != m or len(scales) != m or out.dtype != np.float64 or (m > 1 and out.strides[1] != 8):
        raise ValueError(f"pairs_into_columns: {m} rows into shape {out.shape}")
    for a in rows + [x for x in scales if x is not None]:
        if a.dtype != np.float64 or a.shape != (n,) or not a.flags.c_contiguous:
            raise ValueError(f"pairs_into_columns: rows of {n} contiguous float64 values expected")
    if m == 0 or n == 0:
        return
    sources = (ctypes.c_void_p * m)(*[a.ctypes.data for a in rows])
    factors = (ctypes.c_void_p * m)(*[None if x is None else x.ctypes.data for x in scales])
    _load().pairs_into_columns(n, m, sources, factors, out.ctypes.data, out.strides[0] // 8)


def combine(out: np.ndarray, terms: list[tuple[float, np.ndarray]]) -> None:
    """out = Σ_j c_j x_j in one pass over C-contiguous float64 arrays of one shape (``out`` may
    be one of the x_j)."""
    arrays = [out] + [x for _, x in terms]
    if any(a.dtype != np.float64 or a.shape != out.shape or not a.flags.c_contiguous for a in arrays):
        raise ValueError("combine: C-contiguous float64 arrays of one shape expected")
    m = len(terms)
    coefficients = (ctypes.c_double * m)(*[float(c) for c, _ in terms])
    pointers = (ctypes.c_void_p * m)(*[x.ctypes.data for _, x in terms])
    _load().combine(out.size, out.ctypes.data, m, coefficients, pointers)


def facet_terms(phi_plus: np.ndarray, phi_minus: np.ndarray, S: np.ndarray, cross: np.ndarray,
                c0: np.ndarray, c1: np.ndarray, slot_plus: np.ndarray, slot_minus: np.ndarray,
                s_plus: np.ndarray, s_minus: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The slab contraction's facet integrand at the quadrature points, shape=(facets, points):
    w (s⁺ (φ⁺ᵀ X⁺⁻ φ⁻ − φ⁻ᵀ S_{c1} φ⁻) + s⁻ (φ⁺ᵀ S_{c0} φ⁺ − φ⁻ᵀ X⁻⁺ φ⁺)), X⁺⁻ = cross[slot_plus],
    X⁻⁺ = cross[slot_minus] (``slab_derivative.SlabGradient.contract``), in one pass: numpy's
    gathers and stacked products of the tiny blocks took half the contraction.

    Args:
        phi_plus, phi_minus: the DG basis at the points from either side, shape=(facets, points, nd).
        S: shape=(cells, nd, nd); cross: shape=(slots, nd, nd) (the (cell, facet) slots flat).
        c0, c1, slot_plus, slot_minus: int64 indices, shape=(facets,).
        s_plus, s_minus, weights: shape=(facets, points).
    """
    nf, nq, nd = phi_plus.shape
    arrays = dict(phi_minus=(phi_minus, np.float64, (nf, nq, nd)), S=(S, np.float64, (len(S), nd, nd)),
                  cross=(cross, np.float64, (len(cross), nd, nd)), c0=(c0, np.int64, (nf,)), c1=(c1, np.int64, (nf,)),
                  slot_plus=(slot_plus, np.int64, (nf,)), slot_minus=(slot_minus, np.int64, (nf,)),
                  s_plus=(s_plus, np.float64, (nf, nq)), s_minus=(s_minus, np.float64, (nf, nq)),
                  weights=(weights, np.float64, (nf, nq)), phi_plus=(phi_plus, np.float64, (nf, nq, nd)))
    for name, (array, dtype, shape) in arrays.items():
        if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
            raise ValueError(f"facet_terms: {name} must be a C-contiguous {dtype.__name__} array of shape {shape}")
    for name, index, bound in (("c0", c0, len(S)), ("c1", c1, len(S)), ("slot_plus", slot_plus, len(cross)),
                               ("slot_minus", slot_minus, len(cross))):
        if nf and (index.min() < 0 or index.max() >= bound):
            raise ValueError(f"facet_terms: {name} out of range")
    h = np.empty((nf, nq))
    if nf:
        _load().facet_terms(nf, nq, nd, phi_plus.ctypes.data, phi_minus.ctypes.data, S.ctypes.data, cross.ctypes.data,
                            c0.ctypes.data, c1.ctypes.data, slot_plus.ctypes.data, slot_minus.ctypes.data,
                            s_plus.ctypes.data, s_minus.ctypes.data, weights.ctypes.data, h.ctypes.data)
    return h
