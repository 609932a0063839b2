"""The kernels' matrix product ``fastseq.kernels.blas.gemm`` against NumPy, and their dot
product ``dot``.

gemm is callable only from compiled code, so the test compiles a wrapper. Cases: the register
tiles (``tiles.tiled_product``, on CPUs with AVX-512) for whole panels of columns, and for the
rest (or everything, without the tiles) the compiled loops for one or two rows of C (plain and
with B transposed) and OpenBLAS for more; every transpose combination the kernels use (flags
given as constants, as gemm requires); operands that are strided row blocks of bigger arrays
(``gates[:, t, lo:hi]``-style views); beta 0 (C's old contents, even NaN, ignored), 1 and 0.5.

The tiles are also tested on their own, on any CPU (LLVM splits their 512-bit vectors where
the CPU has narrower ones): against NumPy, and row by row against the whole product, bit for bit
(so splitting rows across threads cannot change a result). So is the product with weights
packed once for a time loop (``tiles.pack``, ``blas.packed_product``): against NumPy and, bit
for bit, against gemm on the weights where they lie, whether packed in one part or several.
"""

import re

import numba
import numpy as np
import pytest

from conftest import DTYPES, tolerances
from fastseq.kernels import jit
from fastseq.kernels.blas import DOT_LANES, dot, gemm, packed_product
from fastseq.kernels.tiles import (FEW_ROWS_VECTORS, PACK_GROUP_BYTES, PANEL_VECTORS, pack,
                                   panel_width, tiled_product)


@numba.njit(fastmath=jit.FASTMATH)
def _gemm(C, A, B, trans_a, trans_b, beta):
    # gemm's flags are constants at each call site, as in the kernels
    if trans_a:
        gemm(C, A, B, True, False, beta)
    elif trans_b:
        gemm(C, A, B, False, True, beta)
    else:
        gemm(C, A, B, False, False, beta)


def _view(rng, rows, cols, dtype, strided):
    """A (rows, cols) operand: C-contiguous, or a block of a wider, longer array (rows strided,
    starting at a column offset)."""
    if not strided:
        return rng.standard_normal((rows, cols)).astype(dtype)
    base = rng.standard_normal((2 * rows + 1, cols + 7)).astype(dtype)
    return base[1::2, 3:3 + cols]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 2, 3, 9, 13])
# 77: one or two panels of tiles, then OpenBLAS; 141: for one or two rows, one or two of their
# wider panels, then the loop
@pytest.mark.parametrize("N", [13, 77, 141])
@pytest.mark.parametrize("trans", [(False, False), (False, True), (True, False)],
                         ids=["NN", "NT", "TN"])
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_matches_numpy(dtype, M, N, trans, strided, beta):
    rng = np.random.default_rng(M)
    K = 37
    trans_a, trans_b = trans
    A = _view(rng, K, M, dtype, strided) if trans_a else _view(rng, M, K, dtype, strided)
    B = _view(rng, N, K, dtype, strided) if trans_b else _view(rng, K, N, dtype, strided)
    C = _view(rng, M, N, dtype, strided)
    before = C.copy()
    if beta == 0.0:
        C[...] = np.nan  # must not leak into the result
    want = (A.T if trans_a else A) @ (B.T if trans_b else B) + beta * before
    _gemm(C, A, B, trans_a, trans_b, beta)
    rtol, atol = tolerances(dtype)
    np.testing.assert_allclose(C, want, rtol=rtol, atol=atol)


@numba.njit
def _all_transposes(C, A, B):
    gemm(C, A, B, False, False, 0.0)
    gemm(C, A, B, False, True, 0.0)
    gemm(C, A, B, True, False, 0.0)


def test_each_transpose_compiles_to_code_of_its_own_name():
    # A process that loads cached kernels links calls by name: products with other transposes
    # under one name (up to numba's per-process counter, "B<n>v<m>") could be mixed up.
    x = np.ones((4, 4), np.float32)
    _all_transposes(x, x, x)
    llvm_ir = _all_transposes.inspect_llvm(_all_transposes.signatures[0])
    blas_calls = re.findall(r"define [^@]*@\"?(_ZN\w*(?:gemm_[NT][NT]|call_blas)B\w*)", llvm_ir)
    assert len(blas_calls) == 3, blas_calls
    assert len({re.sub(r"B\d+v\d+", "", name) for name in blas_calls}) == 3, blas_calls


def test_gemm_flags_must_be_constants():
    @numba.njit
    def variable_flag(C, A, B, trans_b):
        gemm(C, A, B, False, trans_b, 0.0)

    x = np.zeros((2, 2))
    with pytest.raises(numba.core.errors.TypingError, match="constants True or False"):
        variable_flag(x, x, x, False)


@pytest.mark.parametrize("M", [0, 1])
def test_gemm_empty_inner_dimension_gives_beta_times_c(M):
    C = np.ones((M, 4), np.float32)
    _gemm(C, np.empty((M, 0), np.float32), np.empty((0, 4), np.float32), False, False, 0.5)
    np.testing.assert_array_equal(C, np.full((M, 4), 0.5, np.float32))


def _operands(rng, M, K, N, dtype, beta):
    """Strided A (M,K), B (K,N) and C (M,N) for C = A @ B + beta * C, and C's values before:
    with beta 0, C holds NaN, which the product must not read."""
    A = _view(rng, M, K, dtype, strided=True)
    B = _view(rng, K, N, dtype, strided=True)
    C = _view(rng, M, N, dtype, strided=True)
    before = C.copy()
    if beta == 0.0:
        C[...] = np.nan
    return A, B, C, before


@numba.njit(fastmath=jit.FASTMATH)
def _tiled_product(C, A, B, beta):
    return tiled_product(C, A, B, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 2, 5, 6, 7, 13])
@pytest.mark.parametrize("K", [0, 1, 37])
@pytest.mark.parametrize("panels", [0, 1, 3])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_tiled_product_matches_numpy_row_by_row_too(dtype, M, K, panels, beta):
    rng = np.random.default_rng(M * 100 + K)
    vectors = FEW_ROWS_VECTORS if M <= 2 else PANEL_VECTORS
    width = 64 // np.dtype(dtype).itemsize * vectors
    N = panels * width + 5  # 5 columns short of a panel: left to the caller
    A, B, C, before = _operands(rng, M, K, N, dtype, beta)
    tail = C[:, panels * width:].copy()
    assert _tiled_product(C, A, B, beta) == panels * width
    n = panels * width
    assert _panel_width(C) == width
    rtol, atol = tolerances(dtype)
    np.testing.assert_allclose(C[:, :n], A @ B[:, :n] + beta * before[:, :n], rtol=rtol,
                               atol=atol)
    np.testing.assert_array_equal(C[:, n:], tail)
    for i in range(M):  # one row is tiled wider: compare the columns both tiled
        one = before[i:i + 1].copy()
        both = min(n, _tiled_product(one, A[i:i + 1], B, beta))
        np.testing.assert_array_equal(one[:, :both], C[i:i + 1, :both])


@pytest.mark.parametrize("M, K, ldb, tiled", [
    (30, 300, 1000, True),
    (30, 300, 1024, False),  # a panel of 77 KB whose rows lie 4 KiB apart
    (200, 1024, 136, False),  # A (800 KB) and a panel (256 KB) too big to stay cached
    (6, 1024, 1024, True),  # one block of rows reads each panel once
])
def test_tiles_leave_to_openblas_the_products_it_does_faster(M, K, ldb, tiled):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, ldb)).astype(np.float32)[:, :128]
    C = np.full((M, 128), np.nan, np.float32)
    assert _tiled_product(C, A, B, 0.0) == (128 if tiled else 0)
    assert np.isnan(C).all() != tiled
    _gemm(C, A, B, False, False, 0.0)
    rtol, atol = tolerances(np.float32)
    np.testing.assert_allclose(C, A @ B, rtol=rtol, atol=atol * np.sqrt(K))


@numba.njit(fastmath=jit.FASTMATH)
def _packed_product(C, A, B, beta, parts, transposed):
    P = np.full(B.size, np.nan, B.dtype)
    for part in range(parts):  # as threads would, each its part
        if transposed:  # B given as its transpose: pack reads B.T, a view
            pack(P, B.T, part, parts)
        else:
            pack(P, B, part, parts)
    packed_product(C, A, P, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 8, 64])  # tiles of 1, 6 + 2, 10 x 6 + 4 rows
@pytest.mark.parametrize("K, N", [(1, 1), (37, 5), (37, 64), (130, 141), (650, 300)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("parts, transposed", [(1, False), (3, True)])
def test_packed_product_matches_numpy_and_gemm_on_the_weights_where_they_lie(
        dtype, M, K, N, beta, parts, transposed):
    rng = np.random.default_rng(M * 1000 + K + N)
    A, B, C, before = _operands(rng, M, K, N, dtype, beta)
    _packed_product(C, A, np.ascontiguousarray(B.T) if transposed else B, beta, parts,
                    transposed)
    rtol, atol = tolerances(dtype)
    np.testing.assert_allclose(C, A @ B + beta * before, rtol=rtol, atol=atol * np.sqrt(K))
    where_they_lie = before.copy()
    _gemm(where_they_lie, A, B, False, False, beta)
    np.testing.assert_array_equal(C, where_they_lie)


@numba.njit
def _pack(P, B, parts):
    for part in range(parts):
        pack(P, B, part, parts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K, N", [(16, 64), (37, 141), (650, 300)])
def test_pack_transposes_a_view_with_strided_rows_as_it_copies_contiguous_rows(dtype, K, N):
    # B.T given: pack transposes square blocks in registers, then copies the edges one by one
    rng = np.random.default_rng(K + N)
    BT = rng.standard_normal((N, K + 7)).astype(dtype)[:, 3:K + 3]  # rows K + 7 apart
    got = np.full(K * N, np.nan, dtype)
    _pack(got, BT.T, 3)
    want = np.full(K * N, np.nan, dtype)
    _pack(want, np.ascontiguousarray(BT.T), 1)
    np.testing.assert_array_equal(got, want)


def test_packed_product_goes_through_the_panels_in_groups_of_rows():
    rng = np.random.default_rng(0)
    K = 1000
    M = 3 * PACK_GROUP_BYTES // (4 * K)  # three groups of rows, the last one short
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, 200)).astype(np.float32)
    C = np.empty((M, 200), np.float32)
    _packed_product(C, A, B, 0.0, 2, False)
    rtol, atol = tolerances(np.float32)
    np.testing.assert_allclose(C, A @ B, rtol=rtol, atol=atol * np.sqrt(K))


@numba.njit
def _panel_width(C):
    return panel_width(C)


@numba.njit(fastmath=jit.FASTMATH)
def _dot(a, b):
    return dot(a, b, np.empty(DOT_LANES))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 100, 259])
def test_dot_adds_interleaved_partial_sums_in_a_fixed_order(dtype, n):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((2, n)).astype(dtype)
    # float32 products are exact in float64, so each fused multiply-add rounds once, as here
    m = n - n % DOT_LANES
    lanes = [sum((float(a[k]) * float(b[k]) for k in range(lane, m, DOT_LANES)), 0.0)
             for lane in range(DOT_LANES)]
    tail = sum((float(a[k]) * float(b[k]) for k in range(m, n)), 0.0)
    got = _dot(a, b)
    if dtype == np.float32:
        assert got == sum(lanes, tail)
    assert got == pytest.approx(float(np.dot(a.astype(np.float64), b.astype(np.float64))),
                                rel=1e-12, abs=1e-12)
