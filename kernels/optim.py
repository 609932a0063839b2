"""Optimizer updates: one compiled call over all parameters, in place.

Parameters come as tuples of 1-D views (every array flattened), split across threads by
element ranges. The updates compile without fastmath (``exact``), so they give NumPy's results
bit for bit. Adam follows the book's update as NumPy 2 evaluates it: m and v in the parameter's
dtype, the step ``lr_t * m / (sqrt(v) + eps)`` in float64 (lr_t is a float64 scalar),
subtracted from the parameter and rounded back to its dtype.
"""

import math

import numpy as np
from numba import prange

from .jit import chunk, kernel


@kernel(parallel=True, exact=True)
def sgd_update(params, grads, lr, n_chunks):
    """p -= lr * g for every (p, g) in params, grads (tuples of 1-D arrays)."""
    for k in prange(n_chunks):
        for i in range(len(params)):
            p, g = params[i], grads[i]
            step = p.dtype.type(lr)
            lo, hi = chunk(k, n_chunks, p.shape[0])
            for j in range(lo, hi):
                p[j] -= step * g[j]


@kernel(parallel=True, exact=True)
def adam_update(params, grads, ms, vs, lr_t, beta1, beta2, eps, n_chunks):
    """The book's Adam step for every param, with its moments ms, vs (tuples of 1-D arrays)."""
    for k in prange(n_chunks):
        for i in range(len(params)):
            p, g, m, v = params[i], grads[i], ms[i], vs[i]
            one_m_b1 = m.dtype.type(1.0 - beta1)
            one_m_b2 = v.dtype.type(1.0 - beta2)
            e = v.dtype.type(eps)
            lo, hi = chunk(k, n_chunks, p.shape[0])
            for j in range(lo, hi):
                m[j] += one_m_b1 * (g[j] - m[j])
                v[j] += one_m_b2 * (g[j] * g[j] - v[j])
                denom = v.dtype.type(math.sqrt(v[j])) + e
                p[j] = p.dtype.type(p[j] - lr_t * float(m[j]) / float(denom))


@kernel(parallel=True, exact=True)
def sum_of_squares(arrays, n_chunks):
    """sum(a**2) over all arrays (a tuple of 1-D arrays), accumulated in float64."""
    partial = np.zeros(n_chunks)
    for k in prange(n_chunks):
        for i in range(len(arrays)):
            a = arrays[i]
            lo, hi = chunk(k, n_chunks, a.shape[0])
            for j in range(lo, hi):
                partial[k] += float(a[j]) * float(a[j])
    return partial.sum()


@kernel(parallel=True, exact=True)
def scale(arrays, rate, n_chunks):
    """a *= rate for every a in arrays (a tuple of 1-D arrays)."""
    for k in prange(n_chunks):
        for i in range(len(arrays)):
            a = arrays[i]
            r = a.dtype.type(rate)
            lo, hi = chunk(k, n_chunks, a.shape[0])
            for j in range(lo, hi):
                a[j] *= r
