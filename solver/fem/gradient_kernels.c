/* The gradient's innermost loops (see gradient_kernels.py, which compiles this file with the C
   compiler Python was built with and loads it with ctypes; its argtypes mirror the signatures). */
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
