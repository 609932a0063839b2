"""Softmax with cross-entropy over the last axis, fused into one pass per row.

M rows (N*T), V classes. ``labels`` are int64 in [0, V) or ``ignore_label`` (checked by the
caller); ignored rows add nothing to the loss and get a zero gradient.
"""

import math

from .activations import softmax_row
from .jit import kernel


@kernel
def softmax_cross_entropy_forward(probs, scores, labels, ignore_label):
    """probs (M,V) = softmax(scores (M,V)) row by row; labels (M,).
    Returns (sum over kept rows of -log softmax(scores)[label], number of kept rows, number of
    rows holding NaN or inf); the log-softmax is log-sum-exp(row) - row[label], finite for any
    finite scores."""
    loss = 0.0
    kept = 0
    bad = 0
    for r in range(scores.shape[0]):
        x = scores[r]
        total = x.dtype.type(0.0)  # NaN and inf survive a sum (exp clamps its argument)
        for k in range(x.shape[0]):
            total += x[k]
        if not math.isfinite(total):
            bad += 1
            continue
        lse = softmax_row(probs[r], x)
        if labels[r] != ignore_label:
            loss += lse - x[labels[r]]
            kept += 1
    return loss, kept, bad


@kernel
def softmax_cross_entropy_backward(dscores, probs, labels, ignore_label, scale):
    """dscores (M,V) = scale * (probs - onehot(labels)), zero rows where ignored."""
    for r in range(probs.shape[0]):
        d, p = dscores[r], probs[r]
        if labels[r] == ignore_label:
            d[:] = 0.0
            continue
        for k in range(p.shape[0]):
            d[k] = scale * p[k]
        d[labels[r]] -= scale
