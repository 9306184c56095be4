"""The gradient's compiled loops against numpy on random data (any rank count: each rank checks
its own; the library is compiled once per machine, whichever rank comes first)."""

from mpi4py import MPI

import importlib.resources
import shlex
import sysconfig

import numpy as np
import pytest

from solver.fem import gradient_kernels
from solver.fem.gradient_kernels import add_pair_rows, add_pairs, combine, facet_terms, pairs_into_columns


def test_pair_products_equal_numpy():
    rng = np.random.default_rng(0)
    cells, nd, slots, P = 7, 4, 3, 5
    dofs = rng.permutation(cells * nd).reshape(cells, nd).astype(np.int64)  # not cell-contiguous
    neighbour = rng.integers(0, cells + 1, (cells, slots)).astype(np.int64)  # `cells`: none
    wide = rng.standard_normal((2, cells * nd, P + 3))
    etas, psis = wide[0, :, :P], wide[1, :, :P]  # rows P + 3 apart, as a batch in a longer buffer
    S, cross = rng.standard_normal((cells, nd, nd)), rng.standard_normal((cells, slots, nd, nd))
    S0, cross0 = S.copy(), cross.copy()
    add_pairs(etas, psis, dofs, neighbour, S, cross)
    E, Q = etas[dofs], psis[dofs]  # (cells, nd, P)
    assert np.allclose(S, S0 + E @ Q.transpose(0, 2, 1), rtol=1e-14, atol=1e-13)
    for k in range(cells):
        for s in range(slots):
            m = neighbour[k, s]
            expected = cross0[k, s] + (E[k] @ Q[m].T if m < cells else 0.0)
            assert np.allclose(cross[k, s], expected, rtol=1e-14, atol=1e-13), (k, s)


def test_pairs_into_columns_and_combine_equal_numpy():
    rng = np.random.default_rng(1)
    n, m = 11, 4
    rows = list(rng.standard_normal((m, n)))
    scales = [rng.standard_normal(n), None, rng.standard_normal(n), None]
    out = np.zeros((n, m + 2))
    pairs_into_columns(rows, scales, out[:, 1 : m + 1])
    expected = np.stack([r if s is None else r * s for r, s in zip(rows, scales)], axis=1)
    assert np.array_equal(out[:, 1 : m + 1], expected)
    assert not out[:, 0].any() and not out[:, -1].any()  # the columns beside are untouched

    x, y, z = rng.standard_normal((3, 2, n))
    for terms in ([(0.5, x), (-2.0, y)], [(1 / 3, x), (0.75, y), (1.0, z), (0.1, x)]):
        out = np.empty_like(x)
        combine(out, terms)
        assert np.allclose(out, sum(c * a for c, a in terms), rtol=1e-15, atol=1e-15)
    alias = x.copy()
    combine(alias, [(2.0, alias), (1.0, y)])  # out may be one of the terms
    assert np.allclose(alias, 2.0 * x + y, rtol=1e-15, atol=1e-15)


def test_pair_rows_equal_pair_columns():
    """The row-wise products equal the column-wise ones, on more cells than one chunk."""
    rng = np.random.default_rng(2)
    cells, nd, slots, P = 150, 3, 3, 7
    dofs = rng.permutation(cells * nd).reshape(cells, nd).astype(np.int64)
    neighbour = rng.integers(0, cells + 1, (cells, slots)).astype(np.int64)
    rows = rng.standard_normal((2, P, cells * nd))
    S, cross = rng.standard_normal((cells, nd, nd)), rng.standard_normal((cells, slots, nd, nd))
    S1, cross1 = S.copy(), cross.copy()
    add_pairs(np.ascontiguousarray(rows[0].T), np.ascontiguousarray(rows[1].T), dofs, neighbour, S, cross)
    add_pair_rows(list(rows[0]), list(rows[1]), dofs, neighbour, S1, cross1)
    assert np.array_equal(S, S1) and np.array_equal(cross, cross1)


def test_facet_terms_equal_numpy():
    rng = np.random.default_rng(3)
    cells, slots, nf, nq, nd = 6, 3, 9, 2, 3
    a, b = rng.standard_normal((2, nf, nq, nd))
    S, cross = rng.standard_normal((cells, nd, nd)), rng.standard_normal((cells * slots, nd, nd))
    c0, c1 = rng.integers(0, cells, (2, nf))
    plus, minus = rng.integers(0, cells * slots, (2, nf))
    s_plus, s_minus, w = rng.standard_normal((3, nf, nq))
    h = facet_terms(a, b, S, cross, c0, c1, plus, minus, s_plus, s_minus, w)

    def Y(left, X, right):  # Σ_ij left_i X_ij right_j at every facet and point
        return np.einsum("fqi,fij,fqj->fq", left, X, right)

    expected = w * (s_plus * (Y(a, cross[plus], b) - Y(b, S[c1], b)) + s_minus * (Y(a, S[c0], a) - Y(b, cross[minus], a)))
    assert np.allclose(h, expected, rtol=1e-13, atol=1e-13)


def test_the_source_is_package_data_and_compiles(tmp_path):
    """gradient_kernels.c is read as package data, and the compiler builds it as the module does."""
    source = importlib.resources.files("solver.fem").joinpath(gradient_kernels.SOURCE)
    assert "void facet_terms(" in source.read_text()
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    (tmp_path / "k.c").write_text(source.read_text())
    gradient_kernels.compile_kernels(compiler, tmp_path / "k.c", tmp_path / "k.so")
    assert (tmp_path / "k.so").stat().st_size > 0


def test_compiler_errors_are_surfaced(tmp_path):
    """A failing compilation raises with the command and the compiler's own message; so does a
    missing compiler."""
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    (tmp_path / "bad.c").write_text("int f(void) { return undeclared_name; }\n")
    with pytest.raises(gradient_kernels.KernelCompileError) as caught:
        gradient_kernels.compile_kernels(compiler, tmp_path / "bad.c", tmp_path / "bad.so")
    message = str(caught.value)
    assert "undeclared_name" in message and "bad.c" in message and "exit status" in message, message
    assert not (tmp_path / "bad.so").exists()
    with pytest.raises(gradient_kernels.KernelCompileError, match="cannot run the C compiler 'no-such-cc-here'"):
        gradient_kernels.compile_kernels(["no-such-cc-here"], tmp_path / "bad.c", tmp_path / "bad.so")
