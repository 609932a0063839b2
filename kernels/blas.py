"""Matrix products called from inside kernels: OpenBLAS's ``cblas_?gemm``, bound by symbol name.

fastseq loads its own copy of OpenBLAS (the ``scipy-openblas32`` wheel) and runs it on one
thread: fastseq splits work across cores itself, and the BLAS that NumPy and SciPy use keeps
exactly the thread settings the user gave it.

The library's address is registered with LLVM under a fixed symbol name, and kernels call the
symbol, so cached machine code holds no run-time address and reloads in a new process.
"""

import ctypes
import os

import llvmlite.binding as llvm
import numba
import numpy as np
import scipy_openblas32
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload

from . import tiles
from .activations import fma
from .jit import JIT_OPTIONS, helper, kernel
from .tiles import packed_panels, tiled_product
from .views import row

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

_openblas = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(),
                                     scipy_openblas32.get_library(fullname=True)))
_openblas.scipy_openblas_set_num_threads(1)


def pin_single_thread():
    """Put fastseq's OpenBLAS back on one thread if something changed it (threadpoolctl's
    process-wide limits find this library by name too)."""
    if _openblas.scipy_openblas_get_num_threads() != 1:
        _openblas.scipy_openblas_set_num_threads(1)


def _bind(prefix, scalar):
    symbol = f"fastseq_cblas_{prefix}gemm"
    address = ctypes.cast(getattr(_openblas, f"scipy_cblas_{prefix}gemm"), ctypes.c_void_p).value
    llvm.add_symbol(symbol, address)
    i32, ptr = types.int32, types.uintp
    # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    return types.ExternalFunction(symbol, types.void(
        i32, i32, i32, i32, i32, i32, scalar, ptr, i32, ptr, i32, scalar, ptr, i32))


_cblas_gemm = {np.dtype(np.float32): _bind("s", types.float32),
               np.dtype(np.float64): _bind("d", types.float64)}


def gemm(C, A, B, trans_a, trans_b, beta):
    """C = op(A) @ op(B) + beta * C, op(X) = X.T when trans_X; callable from kernels only, with
    trans_a and trans_b written as the constants True or False.

    C, A, B are 2-D views of one float dtype whose rows may be strided (``hs[:, t]`` of a
    C-contiguous (N,T,H) array) but whose elements within a row are contiguous.
    """
    raise TypeError("fastseq.kernels.blas.gemm can only be called from a compiled kernel")


@helper
def _leading_dim(X):
    # BLAS's lda: the row stride in elements (a single row's stride is never read).
    return X.strides[0] // X.itemsize if X.shape[0] > 1 else max(X.shape[1], 1)


# Up to this many rows of C, a plain loop beats sgemm, which packs all of B on every call.
# Measured (float32, one thread): one row, K=128, N=512 (a decoder step of one question)
# 3.5 us against 20 us; two rows 7.8 against 19.5; at four rows they are even. With AVX-512
# the register tiles (tiles.FEW_ROWS_VECTORS) do whole panels of such rows, and the loop the
# columns left over and the products with B transposed.
_FEW_ROWS = 2


# Partial sums of dot: enough independent float64 lanes for LLVM to vectorise and to hide the
# latency of fused multiply-adds (measured, 200,000 float32 values: 33 us, as fast as a loop
# the compiler may reorder; one running sum 187 us).
DOT_LANES = 32


@helper
def dot(a, b, acc):
    """sum of a[k] * b[k] over k (1-D, elements contiguous) in float64; acc (DOT_LANES,) float64
    scratch. The products go into DOT_LANES interleaved partial sums, added up in a fixed order
    at the end: kernels compile without reassociation (see jit.FASTMATH), so this is the order
    computed, whatever the compiler."""
    n = a.shape[0]
    m = n - n % DOT_LANES
    acc[:] = 0.0
    for k0 in range(0, m, DOT_LANES):
        for lane in range(DOT_LANES):
            acc[lane] = fma(np.float64(a[k0 + lane]), np.float64(b[k0 + lane]), acc[lane])
    total = 0.0
    for k in range(m, n):
        total = fma(np.float64(a[k]), np.float64(b[k]), total)
    for lane in range(DOT_LANES):
        total += acc[lane]
    return total


@helper
def _few_rows_product(C, A, B, beta):
    """C = A @ B + beta * C for a C of a few rows: each row a sum of scaled rows of B, four
    rows of B per pass over the row of C."""
    K = A.shape[1]
    K4 = K - K % 4
    for i in range(C.shape[0]):
        c = row(C, i)
        if beta == 0.0:
            c[:] = 0.0
        elif beta != 1.0:
            c *= beta
        for k in range(0, K4, 4):
            a0, a1, a2, a3 = A[i, k], A[i, k + 1], A[i, k + 2], A[i, k + 3]
            b0, b1, b2, b3 = row(B, k), row(B, k + 1), row(B, k + 2), row(B, k + 3)
            for j in range(c.shape[0]):
                c[j] = fma(a3, b3[j], fma(a2, b2[j], fma(a1, b1[j], fma(a0, b0[j], c[j]))))
        for k in range(K4, K):
            a, b = A[i, k], row(B, k)
            for j in range(c.shape[0]):
                c[j] = fma(a, b[j], c[j])


@helper
def _few_rows_product_nt(C, A, B, beta):
    """C = A @ B.T + beta * C for a C of a few rows: each element the dot product of a row of A
    and a row of B."""
    acc = np.empty(DOT_LANES)
    for i in range(C.shape[0]):
        c, a = row(C, i), row(A, i)
        for j in range(c.shape[0]):
            total = c.dtype.type(dot(a, row(B, j), acc))
            c[j] = total if beta == 0.0 else total + beta * c[j]


def _constant_flag(flag):
    """The value of a True/False constant passed as gemm's trans_a or trans_b."""
    if not isinstance(flag, types.BooleanLiteral):
        raise TypingError("gemm's trans_a and trans_b must be the constants True or False at "
                          f"the call site, got {flag}")
    return flag.literal_value


@overload(gemm, jit_options=JIT_OPTIONS, prefer_literal=True)
def _gemm(C, A, B, trans_a, trans_b, beta):
    # The flags are constants, so each call compiles only the path it takes: a kernel's code
    # then holds one few-rows loop or none, not both, and LLVM optimises less in every kernel
    # that multiplies. Measured with an empty cache, alternating runs (first Peeky and
    # Attention steps, Peeky generate, TimeLSTM on floats): 104-114 s -> 84-94 s of compiling.
    cblas = _cblas_gemm[np.dtype(C.dtype.name)]
    scalar = np.float32 if C.dtype == types.float32 else np.float64
    ta, tb = _constant_flag(trans_a), _constant_flag(trans_b)
    op_a, op_b = (_TRANS if ta else _NO_TRANS), (_TRANS if tb else _NO_TRANS)

    def call_blas(C, A, B, beta):
        M, N = C.shape
        if M == 0 or N == 0:
            return
        K = A.shape[0] if ta else A.shape[1]
        cblas(_ROW_MAJOR, op_a, op_b, M, N, K, scalar(1.0), A.ctypes.data, _leading_dim(A),
              B.ctypes.data, _leading_dim(B), scalar(beta), C.ctypes.data, _leading_dim(C))

    # Numba names machine code after the function's qualified name, its argument types and a
    # per-process counter, and a process that loads cached kernels links every call to the
    # first code of that name it has seen. The closures of the three transposes share their
    # argument types, so without a name of their own a kernel compiled in one process could
    # call another process's product with other transposes: measured, after a day of mixed
    # runs, an AttentionSeq2seq loaded from the cache computed garbage embedding gradients.
    name = f"gemm_{'T' if ta else 'N'}{'T' if tb else 'N'}"
    call_blas.__qualname__ = name
    blas = numba.njit(**JIT_OPTIONS)(call_blas)
    if ta:
        return lambda C, A, B, trans_a, trans_b, beta: blas(C, A, B, beta)
    few_rows = _few_rows_product_nt if tb else _few_rows_product

    def by_rows(C, A, B, beta):
        if C.shape[0] <= _FEW_ROWS:  # also an empty C: the loops then write nothing
            few_rows(C, A, B, beta)
        else:
            blas(C, A, B, beta)

    by_rows.__qualname__ = name + "_by_rows"
    by_rows = numba.njit(**JIT_OPTIONS)(by_rows)
    if not tiles.AVAILABLE or tb:
        return lambda C, A, B, trans_a, trans_b, beta: by_rows(C, A, B, beta)

    def tiled(C, A, B, trans_a, trans_b, beta):
        n = tiled_product(C, A, B, beta)
        if n < C.shape[1]:  # the columns short of a whole tile
            by_rows(C[:, n:], A, B[:, n:], beta)

    return tiled


@helper
def packed_product(C, A, P, beta):
    """C = A @ B + beta * C (kernels only) for B (K,N) laid out in P by ``tiles.pack``: the
    whole panels on the register tiles, the columns left over by ``gemm``."""
    K, N = A.shape[1], C.shape[1]
    n = packed_panels(C, A, P, beta)
    if n < N:
        gemm(C[:, n:], A, P[K * n:K * N].reshape((K, N - n)), False, False, beta)


@kernel
def matmul(C, A, B):
    """C = A @ B on fastseq's one-thread OpenBLAS, for products outside the time loops (the
    folded embedding W_embed @ Wx). NumPy's matmul would wake NumPy's own BLAS threads, which
    then fight fastseq's spinning worker threads for the two cores: measured, encoding an
    AttentionSeq2seq question took 8.6 ms with NumPy's product, 2.8 ms of it in the encoder
    kernel."""
    gemm(C, A, B, False, False, 0.0)


@helper
def column_sums(out, x, lo):
    """out (M,) = x[:, lo:lo+M] summed over rows; x (R,C) C-contiguous."""
    M = out.shape[0]
    out[:] = 0.0
    for r in range(x.shape[0]):
        row = x[r, lo:lo + M]
        for k in range(M):
            out[k] += row[k]
