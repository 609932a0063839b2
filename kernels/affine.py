"""Affine map of every time step: out = concat(xs, axis=2) @ W + bias, one GEMM per input part.

N batch, T time steps, M output width. ``parts`` is a tuple of inputs (N,T,D_p) of one dtype
(a homogeneous tuple, indexable in a loop) whose widths
add up to W's rows: the affine over a concatenation, without building the concatenation (the
attention decoder's [context, hs]). ``bias`` is (1,M), the layer's b, or (N,M), one per batch
row, which adds an input that is constant over time (the peeky decoder's h).
"""

from numba import prange

from .blas import column_sums, gemm
from .jit import chunk, kernel
from .views import assign


@kernel(parallel=True)
def affine_forward(out, parts, W, bias, n_chunks):
    """out (N,T,M) = concat(parts) @ W (D,M) + bias (1|N, M)."""
    N, T, M = out.shape
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            rows = out[lo:hi].reshape((hi - lo) * T, M)
            beta, first = 0.0, 0
            for p in range(len(parts)):
                x = parts[p]
                D = x.shape[2]
                gemm(rows, x[lo:hi].reshape((hi - lo) * T, D), W[first:first + D], False, False, beta)
                beta, first = 1.0, first + D
            for n in range(lo, hi):
                b = bias[n if bias.shape[0] > 1 else 0]
                for t in range(T):
                    row = out[n, t]
                    for m in range(M):
                        row[m] += b[m]


@kernel(parallel=True)
def affine_backward(dparts, dW, db, dout, parts, W, n_chunks):
    """dparts (like parts), dW (D,M), db (M,) written; dout (N,T,M); parts, W as in forward.
    db sums dout over all rows (the gradient of a (1,M) bias)."""
    N, T, M = dout.shape
    dout_all = dout.reshape(N * T, M)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            first = 0
            for p in range(len(dparts)):
                dx = dparts[p]
                D = dx.shape[2]
                # out = x @ W[rows of x] + ...  =>  dx = dout @ W[rows of x].T
                gemm(dx[lo:hi].reshape((hi - lo) * T, D), dout[lo:hi].reshape((hi - lo) * T, M),
                     W[first:first + D], False, True, 0.0)
                first += D
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, M)
        if lo < hi:
            first = 0
            for p in range(len(parts)):
                x = parts[p]
                D = x.shape[2]
                gemm(dW[first:first + D, lo:hi], x.reshape(N * T, D), dout_all[:, lo:hi], True, False, 0.0)
                first += D
            column_sums(db[lo:hi], dout_all, lo)


@kernel(parallel=True)
def constant_input_forward(bias_rows, x_const, W_const, b, n_chunks):
    """An input that is the same at every time step enters as one bias per batch row:
    bias_rows (N,M) = x_const (N,Dc) @ W_const (Dc,M) + b (M,)."""
    N = bias_rows.shape[0]
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            gemm(bias_rows[lo:hi], x_const[lo:hi], W_const, False, False, 0.0)
            for n in range(lo, hi):
                row = bias_rows[n]
                for m in range(row.shape[0]):
                    row[m] += b[m]


@kernel(parallel=True)
def constant_input_backward(dW_const, dx_const, d_sum, d_all, x_const, W_const, n_chunks):
    """dW_const (Dc,M), dx_const (N,Dc) written; d_sum (N,M) scratch; d_all (N,T,M) the gradient
    of the layer's pre-activation at every step; x_const (N,Dc); W_const (Dc,M)."""
    # bias_rows[n] = x_const[n] @ W_const + b is added at every step t: sum its gradient over T
    N, T, M = d_all.shape
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            for n in range(lo, hi):
                row = d_sum[n]
                assign(row, d_all[n, 0])
                for t in range(1, T):
                    d = d_all[n, t]
                    for m in range(M):
                        row[m] += d[m]
            gemm(dx_const[lo:hi], d_sum[lo:hi], W_const, False, True, 0.0)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, M)
        if lo < hi:
            gemm(dW_const[:, lo:hi], x_const, d_sum[:, lo:hi], True, False, 0.0)
