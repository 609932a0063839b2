"""Dot-product attention of every decoder step over all encoder steps.

N batch, Ts encoder steps, Td decoder steps, H hidden width. For each row n:
    scores = hs_dec[n] @ hs_enc[n].T            (Td,Ts)
    weights = softmax(scores) over encoder steps
    contexts[n] = weights @ hs_enc[n]           (Td,H)
"""

from .activations import softmax_row
from .blas import gemm
from .jit import kernel


@kernel
def attention_forward(contexts, weights, hs_enc, hs_dec):
    """contexts (N,Td,H), weights (N,Td,Ts) written; hs_enc (N,Ts,H); hs_dec (N,Td,H)."""
    N, Td, Ts = weights.shape
    for n in range(N):
        w = weights[n]
        gemm(w, hs_dec[n], hs_enc[n], False, True, 0.0)
        for t in range(Td):
            softmax_row(w[t], w[t])
        gemm(contexts[n], w, hs_enc[n], False, False, 0.0)


@kernel
def attention_backward(dhs_enc, dhs_dec, dscores, dcontexts, weights, hs_enc, hs_dec):
    """dhs_enc (N,Ts,H), dhs_dec (N,Td,H) written; dscores (Td,Ts) scratch; dcontexts (N,Td,H);
    weights (N,Td,Ts) from forward; hs_enc (N,Ts,H); hs_dec (N,Td,H)."""
    N, Td, Ts = weights.shape
    for n in range(N):
        w, dctx = weights[n], dcontexts[n]
        # contexts = weights @ hs_enc
        gemm(dscores, dctx, hs_enc[n], False, True, 0.0)  # d weights
        gemm(dhs_enc[n], w, dctx, True, False, 0.0)
        # weights = softmax(scores):  d scores = w * (d weights - sum_s w * d weights)
        for t in range(Td):
            wt, dt = w[t], dscores[t]
            s = dt.dtype.type(0.0)
            for k in range(Ts):
                s += wt[k] * dt[k]
            for k in range(Ts):
                dt[k] = wt[k] * (dt[k] - s)
        # scores = hs_dec @ hs_enc.T
        gemm(dhs_enc[n], dscores, hs_dec[n], True, False, 1.0)
        gemm(dhs_dec[n], dscores, hs_enc[n], False, False, 0.0)
