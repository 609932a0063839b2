"""Softmax with cross-entropy over the last axis, fused into one pass per row.

M rows (N*T), V classes. ``labels`` are int64 in [0, V) or ``ignore_label`` (checked by the
caller); ignored rows add nothing to the loss and get a zero gradient.
"""

import math

import numpy as np
from numba import prange

from .activations import softmax_row
from .jit import chunk, helper, kernel


@helper(any_order=True)
def _all_finite(x):
    nonfinite = x.dtype.type(0.0)  # x * 0 is 0, or NaN where x is NaN or inf
    for v in range(x.shape[0]):
        nonfinite += x[v] * x.dtype.type(0.0)
    return math.isfinite(nonfinite)


@kernel(parallel=True)
def softmax_cross_entropy_forward(probs, scores, labels, ignore_label, n_chunks):
    """probs (M,V) = softmax(scores (M,V)) row by row; labels (M,).
    Returns (sum over kept rows of -log softmax(scores)[label], number of kept rows, number of
    rows holding NaN or inf); the log-softmax is log-sum-exp(row) - row[label], finite for any
    finite scores."""
    M = scores.shape[0]
    loss = np.zeros(n_chunks)
    kept = np.zeros(n_chunks, np.int64)
    bad = np.zeros(n_chunks, np.int64)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, M)
        for r in range(lo, hi):
            x = scores[r]
            if not _all_finite(x):
                bad[k] += 1
                continue
            m, log_s = softmax_row(probs[r], x)
            if labels[r] != ignore_label:
                # -log softmax(x)[label] = log-sum-exp(x) - x[label], without adding m to log s
                # first (m may be so large that log s would be rounded away)
                loss[k] += (m - x[labels[r]]) + log_s
                kept[k] += 1
    return loss.sum(), kept.sum(), bad.sum()


@kernel(parallel=True)
def softmax_cross_entropy_backward(dscores, probs, labels, ignore_label, scale, n_chunks):
    """dscores (M,V) = scale * (probs - onehot(labels)), zero rows where ignored."""
    M = probs.shape[0]
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, M)
        for r in range(lo, hi):
            d, p = dscores[r], probs[r]
            if labels[r] == ignore_label:
                d[:] = 0.0
                continue
            for v in range(p.shape[0]):
                d[v] = scale * p[v]
            d[labels[r]] -= scale
