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

The library is compiled with the C compiler Python was built with (the one dolfinx's JIT uses)
into dolfinx's JIT cache directory, named by a hash of the source and flags; every rank may
compile it (the file appears by an atomic rename), and later runs load it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#define CHUNK 64  /* cells per chunk in slab_pairs_rows */
#define GROUP 8   /* rows read together (L1 sets: see slab_pairs_rows) */
#define MAXC 128   /* columns of one cell: (1 + slots) * nd <= 5 * 20 */

/* acc[i][j] = sum_p r_i[p] c_j[p] for a 2 x 4 tile (register blocking: 6 loads per 8 FMAs). */
static inline void tile24(int64_t P, const double* r0, const double* r1,
                          const double* c0, const double* c1, const double* c2, const double* c3,
                          double* out0, double* out1)
{
    double a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
    #pragma omp simd reduction(+:a00,a01,a02,a03,a10,a11,a12,a13)
    for (int64_t p = 0; p < P; ++p) {
        const double x0 = r0[p], x1 = r1[p];
        a00 += x0 * c0[p]; a01 += x0 * c1[p]; a02 += x0 * c2[p]; a03 += x0 * c3[p];
        a10 += x1 * c0[p]; a11 += x1 * c1[p]; a12 += x1 * c2[p]; a13 += x1 * c3[p];
    }
    out0[0] = a00; out0[1] = a01; out0[2] = a02; out0[3] = a03;
    out1[0] = a10; out1[1] = a11; out1[2] = a12; out1[3] = a13;
}

/* the same for one row (the last of an odd number): 5 loads per 4 FMAs */
static inline void tile14(int64_t P, const double* r0,
                          const double* c0, const double* c1, const double* c2, const double* c3,
                          double* out0)
{
    double a00 = 0, a01 = 0, a02 = 0, a03 = 0;
    #pragma omp simd reduction(+:a00,a01,a02,a03)
    for (int64_t p = 0; p < P; ++p) {
        const double x0 = r0[p];
        a00 += x0 * c0[p]; a01 += x0 * c1[p]; a02 += x0 * c2[p]; a03 += x0 * c3[p];
    }
    out0[0] = a00; out0[1] = a01; out0[2] = a02; out0[3] = a03;
}

/* The facet terms of the contraction: per interior facet f (cells k = c0[f] on the '+' side,
   m = c1[f] on the '-' side) and quadrature point q, with a = phi_plus[f, q], b = phi_minus[f, q]
   (nd values each), X+- = cross[slot_plus[f]], X-+ = cross[slot_minus[f]]:
   h[f, q] = w[f, q] (s_plus[f, q] (a X+- b - b S[m] b) + s_minus[f, q] (a S[k] a - b X-+ a)). */
/* One cell's blocks: dst[c][a * nd] += sum_p rows[a][p] col[c][p] for its nd rows and nc columns
   (ncp: nc rounded up to 4, the padding columns discarded), two rows at a time (tile24), the odd
   last one alone (tile14). */
static inline void cell_products(int64_t P, int64_t nd, const double* const* rows, int64_t nc, int64_t ncp,
                                 const double* const* col, double* const* dst)
{
    double out[2][MAXC + 4];
    for (int64_t a = 0; a < nd; a += 2) {
        if (a + 1 < nd)
            for (int64_t c = 0; c < ncp; c += 4)
                tile24(P, rows[a], rows[a + 1], col[c], col[c + 1], col[c + 2], col[c + 3], out[0] + c,
                       out[1] + c);
        else
            for (int64_t c = 0; c < ncp; c += 4)
                tile14(P, rows[a], col[c], col[c + 1], col[c + 2], col[c + 3], out[0] + c);
        for (int64_t c = 0; c < nc; ++c) dst[c][a * nd] += out[0][c];
        if (a + 1 < nd)
            for (int64_t c = 0; c < nc; ++c) dst[c][(a + 1) * nd] += out[1][c];
    }
}

void facet_terms(int64_t nf, int64_t nq, int64_t nd, const double* phi_plus, const double* phi_minus,
                 const double* S, const double* cross, const int64_t* c0, const int64_t* c1,
                 const int64_t* slot_plus, const int64_t* slot_minus, const double* s_plus,
                 const double* s_minus, const double* w, double* h)
{
    const int64_t nn = nd * nd;
    for (int64_t f = 0; f < nf; ++f) {
        const double *Sk = S + c0[f] * nn, *Sm = S + c1[f] * nn;
        const double *Xpm = cross + slot_plus[f] * nn, *Xmp = cross + slot_minus[f] * nn;
        for (int64_t q = 0; q < nq; ++q) {
            const int64_t fq = f * nq + q;
            const double *a = phi_plus + fq * nd, *b = phi_minus + fq * nd;
            double y1 = 0.0, y2 = 0.0;
            for (int64_t i = 0; i < nd; ++i) {
                double xb = 0.0, sb = 0.0, sa = 0.0, xa = 0.0;
                for (int64_t j = 0; j < nd; ++j) {
                    xb += Xpm[i * nd + j] * b[j];
                    sb += Sm[i * nd + j] * b[j];
                    sa += Sk[i * nd + j] * a[j];
                    xa += Xmp[i * nd + j] * a[j];
                }
                y1 += a[i] * xb - b[i] * sb;
                y2 += a[i] * sa - b[i] * xa;
            }
            h[fq] = w[fq] * (s_plus[fq] * y1 + s_minus[fq] * y2);
        }
    }
}

/* out[i] = sum_j c[j] x[j][i] (out may be one of the x) */
void combine(int64_t n, double* out, int64_t m, const double* c, const double* const* x)
{
    if (m == 2) {
        const double c0 = c[0], c1 = c[1];
        const double *x0 = x[0], *x1 = x[1];
        for (int64_t i = 0; i < n; ++i)
            out[i] = c0 * x0[i] + c1 * x1[i];
    } else {
        for (int64_t i = 0; i < n; ++i) {
            double s = 0.0;
            for (int64_t j = 0; j < m; ++j)
                s += c[j] * x[j][i];
            out[i] = s;
        }
    }
}

/* dst[d, j] = src[j][d] (* scale[j][d] where scale[j] is not NULL) for d < n, j < m: m rows
   written as m columns of rows ld apart, each dof's m values at once. */
void pairs_into_columns(int64_t n, int64_t m, const double* const* src, const double* const* scale,
                        double* dst, int64_t ld)
{
    /* GROUP rows at a time (see slab_pairs_rows), in blocks of 512 dofs (their rows of dst
       stay in cache from one group to the next) */
    for (int64_t d0 = 0; d0 < n; d0 += 512) {
        const int64_t d1 = d0 + 512 < n ? d0 + 512 : n;
        for (int64_t j0 = 0; j0 < m; j0 += GROUP) {
            const int64_t j1 = j0 + GROUP < m ? j0 + GROUP : m;
            for (int64_t d = d0; d < d1; ++d) {
                double* row = dst + d * ld;
                for (int64_t j = j0; j < j1; ++j)
                    row[j] = scale[j] ? src[j][d] * scale[j][d] : src[j][d];
            }
        }
    }
}

/* For every cell k, its blocks X = S[k] (m = k) and X = cross[k, s] (m = neighbour[k, s]; none
   if m == ncells): X[a, b] += sum_p E[dofs[k, a], p] Q[dofs[m, b], p], rows ld apart. */
void slab_pairs(int64_t P, int64_t ncells, int64_t nd, int64_t nslots,
                const double* E, const double* Q, int64_t ld,
                const int64_t* dofs, const int64_t* neighbour,
                double* S, double* cross)
{
    const int64_t nn = nd * nd;
    const double* col[MAXC + 4];
    double* dst[MAXC + 4];
    for (int64_t k = 0; k < ncells; ++k) {
        const int64_t* dk = dofs + k * nd;
        int64_t nc = 0;
        for (int64_t s = -1; s < nslots; ++s) {
            const int64_t m = s < 0 ? k : neighbour[k * nslots + s];
            if (m >= ncells) continue;
            double* X = s < 0 ? S + k * nn : cross + (k * nslots + s) * nn;
            for (int64_t b = 0; b < nd; ++b) {
                col[nc] = Q + dofs[m * nd + b] * ld;
                dst[nc++] = X + b;   /* + a * nd for row a */
            }
        }
        const int64_t ncp = (nc + 3) & ~(int64_t)3;
        for (int64_t c = nc; c < ncp; ++c) col[c] = col[0];  /* padding columns, discarded */
        const double* rows[MAXC];
        for (int64_t a = 0; a < nd; ++a) rows[a] = E + dk[a] * ld;
        cell_products(P, nd, rows, nc, ncp, col, dst);
    }
}

/* slab_pairs with the pairs as rows: E[p], Q[p] point at pair p's values of all local dofs (the
   stage states and λ's as the adjoint has them), so no (dofs, P) copy of them is made. Cells go
   in chunks of CHUNK; a chunk's η values (its own dofs) and ψ values (its and its neighbours'
   dofs) are gathered into small scratch tables of P contiguous values per dof, which stay in
   cache while slab_pairs' tile loop reads them. Returns 0, or -1 if out of memory. */
int slab_pairs_rows(int64_t P, int64_t ncells, int64_t ndofs, int64_t nd, int64_t nslots,
                    const double* const* E, const double* const* Q,
                    const int64_t* dofs, const int64_t* neighbour, double* S, double* cross)
{
    const int64_t most = CHUNK * (1 + nslots) * nd;
    int64_t* slot = malloc(ndofs * sizeof(int64_t));
    int64_t* listed = malloc(most * sizeof(int64_t));
    double* Es = malloc(CHUNK * nd * P * sizeof(double));
    double* Qs = malloc(most * P * sizeof(double));
    if (!slot || !listed || !Es || !Qs) { free(slot); free(listed); free(Es); free(Qs); return -1; }
    for (int64_t d = 0; d < ndofs; ++d) slot[d] = -1;
    int64_t* local = malloc(CHUNK * (1 + nslots) * nd * sizeof(int64_t));  /* dofs -> Qs rows */
    if (!local) { free(slot); free(listed); free(Es); free(Qs); return -1; }
    for (int64_t k0 = 0; k0 < ncells; k0 += CHUNK) {
        const int64_t k1 = k0 + CHUNK < ncells ? k0 + CHUNK : ncells;
        int64_t nu = 0;
        for (int64_t k = k0; k < k1; ++k)
            for (int64_t s = -1; s < nslots; ++s) {
                const int64_t m = s < 0 ? k : neighbour[k * nslots + s];
                if (m >= ncells) continue;
                for (int64_t b = 0; b < nd; ++b) {
                    const int64_t d = dofs[m * nd + b];
                    if (slot[d] < 0) { slot[d] = nu; listed[nu++] = d; }
                }
            }
        /* GROUP rows at a time: the rows of a batch are often a multiple of 4 KiB apart, and
           the same dof of all of them falls into one L1 set (more lines than its ways) */
        for (int64_t p0 = 0; p0 < P; p0 += GROUP) {
            const int64_t p1 = p0 + GROUP < P ? p0 + GROUP : P;
            for (int64_t u = 0; u < nu; ++u) {
                double* row = Qs + u * P;
                const int64_t d = listed[u];
                for (int64_t p = p0; p < p1; ++p) row[p] = Q[p][d];
            }
            for (int64_t r = 0; r < (k1 - k0) * nd; ++r) {
                double* row = Es + r * P;
                const int64_t d = dofs[k0 * nd + r];
                for (int64_t p = p0; p < p1; ++p) row[p] = E[p][d];
            }
        }
        /* the chunk's cells renumbered 0 ... k1 - k0 - 1 with their own dofs' rows of Es, and
           every dof (theirs and the neighbours') its row of Qs */
        for (int64_t k = k0; k < k1; ++k) {
            int64_t* lk = local + (k - k0) * (1 + nslots) * nd;
            for (int64_t s = -1; s < nslots; ++s) {
                const int64_t m = s < 0 ? k : neighbour[k * nslots + s];
                for (int64_t b = 0; b < nd; ++b)
                    lk[(s + 1) * nd + b] = m >= ncells ? -1 : slot[dofs[m * nd + b]];
            }
        }
        for (int64_t k = k0; k < k1; ++k) {
            const int64_t* lk = local + (k - k0) * (1 + nslots) * nd;
            const double* col[MAXC + 4];
            double* dst[MAXC + 4];
            int64_t nc = 0;
            for (int64_t s = -1; s < nslots; ++s) {
                if (lk[(s + 1) * nd] < 0) continue;
                double* X = s < 0 ? S + k * nd * nd : cross + (k * nslots + s) * nd * nd;
                for (int64_t b = 0; b < nd; ++b) {
                    col[nc] = Qs + lk[(s + 1) * nd + b] * P;
                    dst[nc++] = X + b;
                }
            }
            const int64_t ncp = (nc + 3) & ~(int64_t)3;
            for (int64_t c = nc; c < ncp; ++c) col[c] = col[0];
            const double* rows[MAXC];
            for (int64_t a = 0; a < nd; ++a) rows[a] = Es + ((k - k0) * nd + a) * P;
            cell_products(P, nd, rows, nc, ncp, col, dst);
        }
        for (int64_t u = 0; u < nu; ++u) slot[listed[u]] = -1;
    }
    free(slot); free(listed); free(Es); free(Qs); free(local);
    return 0;
}
"""
_FLAGS = ["-O3", "-fopenmp-simd", "-fPIC", "-shared", "-g0"]  # portable: no -march=native
_MAX_COLUMNS = 128  # MAXC above: (1 + facets) · dofs per cell (DG3 tetrahedra: 5 · 20)

_library = None


def _cache_dir() -> Path:
    """dolfinx's JIT cache directory (its options: a JSON file, see ``dolfinx.jit``)."""
    import dolfinx.jit

    return Path(dolfinx.jit.get_options()["cache_dir"])


def _load() -> ctypes.CDLL:
    """The compiled loop, compiled first if this machine has not yet (per process, once)."""
    global _library
    if _library is not None:
        return _library
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    key = hashlib.sha256((_SOURCE + " ".join(compiler + _FLAGS)).encode()).hexdigest()[:16]
    directory = _cache_dir()
    path = directory / f"transport_slab_pairs_{key}.so"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            source, target = Path(tmp) / "slab_pairs.c", Path(tmp) / "slab_pairs.so"
            source.write_text(_SOURCE)
            subprocess.run(compiler + _FLAGS + [str(source), "-o", str(target)], check=True,
                           capture_output=True)
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
