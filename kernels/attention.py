"""Dot-product attention of every decoder step over all encoder steps.

N batch, Ts encoder steps, Td decoder steps, H hidden width. For each row n:
    scores = hs_dec[n] @ hs_enc[n].T            (Td,Ts)
    weights = softmax(scores) over encoder steps
    contexts[n] = weights @ hs_enc[n]           (Td,H)
Rows are independent; they are split into ``n_chunks`` blocks run in parallel.
"""

from numba import prange

from .activations import softmax_row
from .blas import gemm
from .jit import chunk, helper, kernel


@helper
def attention_row_forward(context, w, h_enc, h_dec):
    """One batch row: context (Td,H), w (Td,Ts) written; h_enc (Ts,H); h_dec (Td,H)."""
    gemm(w, h_dec, h_enc, False, True, 0.0)
    for t in range(w.shape[0]):
        softmax_row(w[t], w[t])
    gemm(context, w, h_enc, False, False, 0.0)


@kernel(parallel=True)
def attention_forward(contexts, weights, hs_enc, hs_dec, n_chunks):
    """contexts (N,Td,H), weights (N,Td,Ts) written; hs_enc (N,Ts,H); hs_dec (N,Td,H)."""
    N = weights.shape[0]
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        for n in range(lo, hi):
            attention_row_forward(contexts[n], weights[n], hs_enc[n], hs_dec[n])


@kernel(parallel=True)
def attention_backward(dhs_enc, dhs_dec, dscores, dcontexts, weights, hs_enc, hs_dec, n_chunks):
    """dhs_enc (N,Ts,H), dhs_dec (N,Td,H) written; dscores (n_chunks,Td,Ts) scratch;
    dcontexts (N,Td,H); weights (N,Td,Ts) from forward; hs_enc (N,Ts,H); hs_dec (N,Td,H)."""
    N, Td, Ts = weights.shape
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        ds = dscores[k]
        for n in range(lo, hi):
            w, dctx = weights[n], dcontexts[n]
            # contexts = weights @ hs_enc
            gemm(ds, dctx, hs_enc[n], False, True, 0.0)  # d weights
            gemm(dhs_enc[n], w, dctx, True, False, 0.0)
            # weights = softmax(scores):  d scores = w * (d weights - sum_s w * d weights)
            for t in range(Td):
                wt, dt = w[t], ds[t]
                s = dt.dtype.type(0.0)
                for j in range(Ts):
                    s += wt[j] * dt[j]
                for j in range(Ts):
                    dt[j] = wt[j] * (dt[j] - s)
            # scores = hs_dec @ hs_enc.T
            gemm(dhs_enc[n], ds, hs_dec[n], True, False, 1.0)
            gemm(dhs_dec[n], ds, hs_enc[n], False, False, 0.0)
