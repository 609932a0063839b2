"""Optimizer updates: one compiled call over all parameters, in place.

Parameters come as tuples of 1-D views (every array flattened), split across threads by
element ranges. The updates compile without fastmath (``exact``), so they give NumPy's results
bit for bit. Adam follows the book's update as NumPy 2 evaluates it: m and v in the parameter's
dtype, the step ``lr_t * m / (sqrt(v) + eps)`` in float64 (lr_t is a float64 scalar),
subtracted from the parameter and rounded back to its dtype. The gradient norm's sum of squares
is accumulated in float64 (``blas.dot``).
"""

import math

import numpy as np
from numba import prange

from .blas import DOT_LANES, dot
from .jit import chunk, helper, kernel


# Each kernel hands its chunk of each array, sliced, to a helper that loops over all of it:
# only then does the loop vectorise (looping over [lo, hi) of the whole array, even in a
# helper, stayed scalar). Measured, Adam over PeekySeq2seq's 217,773 params on two threads:
# 657-757 us before, 116 us after.


@helper(exact=True)
def _sgd_chunk(p, g, step):
    for j in range(p.shape[0]):
        p[j] -= step * g[j]


@kernel(parallel=True, exact=True)
def sgd_update(params, grads, lr, n_chunks):
    """p -= lr * g for every (p, g) in params, grads (tuples of 1-D arrays)."""
    for k in prange(n_chunks):
        for i in range(len(params)):
            p = params[i]
            lo, hi = chunk(k, n_chunks, p.shape[0])
            _sgd_chunk(p[lo:hi], grads[i][lo:hi], p.dtype.type(lr))


@helper(exact=True)
def _adam_chunk(p, g, m, v, lr_t, one_m_b1, one_m_b2, eps):
    for j in range(p.shape[0]):
        gj = g[j]
        mj = m[j] + one_m_b1 * (gj - m[j])
        vj = v[j] + one_m_b2 * (gj * gj - v[j])
        m[j] = mj
        v[j] = vj
        denom = v.dtype.type(math.sqrt(vj)) + eps
        p[j] = p.dtype.type(p[j] - lr_t * float(mj) / float(denom))


@kernel(parallel=True, exact=True)
def adam_update(params, grads, ms, vs, lr_t, beta1, beta2, eps, n_chunks):
    """The book's Adam step for every param, with its moments ms, vs (tuples of 1-D arrays)."""
    for k in prange(n_chunks):
        for i in range(len(params)):
            p, m, v = params[i], ms[i], vs[i]
            lo, hi = chunk(k, n_chunks, p.shape[0])
            _adam_chunk(p[lo:hi], grads[i][lo:hi], m[lo:hi], v[lo:hi], lr_t,
                        m.dtype.type(1.0 - beta1), v.dtype.type(1.0 - beta2), v.dtype.type(eps))


@kernel(parallel=True)
def sum_of_squares(arrays, n_chunks):
    """sum(a**2) over all arrays (a tuple of 1-D arrays), accumulated in float64."""
    partial = np.zeros(n_chunks)
    for k in prange(n_chunks):
        acc = np.empty(DOT_LANES)
        for i in range(len(arrays)):
            a = arrays[i]
            lo, hi = chunk(k, n_chunks, a.shape[0])
            partial[k] += dot(a[lo:hi], a[lo:hi], acc)
    return partial.sum()


@helper(exact=True)
def _scale_chunk(a, rate):
    for j in range(a.shape[0]):
        a[j] *= rate


@kernel(parallel=True, exact=True)
def scale(arrays, rate, n_chunks):
    """a *= rate for every a in arrays (a tuple of 1-D arrays)."""
    for k in prange(n_chunks):
        for i in range(len(arrays)):
            a = arrays[i]
            lo, hi = chunk(k, n_chunks, a.shape[0])
            _scale_chunk(a[lo:hi], a.dtype.type(rate))
