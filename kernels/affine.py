"""Affine map over all rows at once: out = x @ W + b, as one GEMM.

M rows (N*T), D input width, O output width.
"""

from .blas import gemm
from .jit import kernel


@kernel
def affine_forward(out, x, W, b):
    """out (M,O) = x (M,D) @ W (D,O) + b (O,)."""
    gemm(out, x, W, False, False, 0.0)
    for r in range(out.shape[0]):
        row = out[r]
        for k in range(row.shape[0]):
            row[k] += b[k]


@kernel
def affine_backward(dx, dW, db, dout, x, W):
    """dx (M,D), dW (D,O), db (O,) written; dout (M,O); x (M,D); W (D,O)."""
    # out = x @ W + b
    gemm(dx, dout, W, False, True, 0.0)
    gemm(dW, x, dout, True, False, 0.0)
    db[:] = 0.0
    for r in range(dout.shape[0]):
        row = dout[r]
        for k in range(row.shape[0]):
            db[k] += row[k]
