"""Embedding lookup and its gradient, a scatter-add.

N batch, T time steps, V vocabulary, D embedding width. ``ids`` are int64 in [0, V): the
caller checks the range, because these loops index W without bounds checks.
"""

from .jit import kernel
from .views import assign


@kernel
def embedding_forward(out, ids, W):
    """out (N,T,D) = W[ids]; ids (N,T); W (V,D)."""
    N, T = ids.shape
    for n in range(N):
        for t in range(T):
            assign(out[n, t], W[ids[n, t]])


@kernel
def embedding_backward(dW, dout, ids):
    """dW (V,D) = sum of dout[n, t] over the positions where ids[n, t] is each row; repeated ids
    accumulate. dout (N,T,D); ids (N,T)."""
    N, T = ids.shape
    D = dW.shape[1]
    dW[:] = 0.0
    for n in range(N):
        for t in range(T):
            row, d = dW[ids[n, t]], dout[n, t]
            for k in range(D):
                row[k] += d[k]
