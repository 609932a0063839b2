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
import numpy as np
import scipy_openblas32
from numba import types
from numba.extending import overload

from .jit import HELPER_OPTIONS, helper

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
    """C = op(A) @ op(B) + beta * C, op(X) = X.T when trans_X; callable from kernels only.

    C, A, B are 2-D views of one float dtype whose rows may be strided (``hs[:, t]`` of a
    C-contiguous (N,T,H) array) but whose elements within a row are contiguous.
    """
    raise TypeError("fastseq.kernels.blas.gemm can only be called from a compiled kernel")


@helper
def _leading_dim(X):
    # BLAS's lda: the row stride in elements (a single row's stride is never read).
    return X.strides[0] // X.itemsize if X.shape[0] > 1 else max(X.shape[1], 1)


@overload(gemm, jit_options=HELPER_OPTIONS)
def _gemm(C, A, B, trans_a, trans_b, beta):
    cblas = _cblas_gemm[np.dtype(C.dtype.name)]
    scalar = np.float32 if C.dtype == types.float32 else np.float64

    def impl(C, A, B, trans_a, trans_b, beta):
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        if M == 0 or N == 0:
            return
        cblas(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
              M, N, K, scalar(1.0), A.ctypes.data, _leading_dim(A), B.ctypes.data,
              _leading_dim(B), scalar(beta), C.ctypes.data, _leading_dim(C))

    return impl


@helper
def column_sums(out, x, lo):
    """out (M,) = x[:, lo:lo+M] summed over rows; x (R,C) C-contiguous."""
    M = out.shape[0]
    out[:] = 0.0
    for r in range(x.shape[0]):
        row = x[r, lo:lo + M]
        for k in range(M):
            out[k] += row[k]
