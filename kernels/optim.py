"""Optimizer updates, one fused in-place pass per parameter (flattened to 1-D views).

The updates compile without fastmath, so they give NumPy's results bit for bit. Adam follows
the book's update as NumPy 2 evaluates it: m and v in the parameter's dtype,
the step ``lr_t * m / (sqrt(v) + eps)`` in float64 (lr_t is a float64 scalar), subtracted
from the parameter and rounded back to its dtype.
"""

import math

from .jit import kernel


@kernel(exact=True)
def sgd_update(p, g, lr):
    """p (K,) -= lr * g (K,)."""
    step = p.dtype.type(lr)
    for k in range(p.shape[0]):
        p[k] -= step * g[k]


@kernel(exact=True)
def adam_update(p, g, m, v, lr_t, beta1, beta2, eps):
    """p, m, v (K,) updated in place from g (K,)."""
    one_m_b1 = m.dtype.type(1.0 - beta1)
    one_m_b2 = v.dtype.type(1.0 - beta2)
    e = v.dtype.type(eps)
    for k in range(p.shape[0]):
        m[k] += one_m_b1 * (g[k] - m[k])
        v[k] += one_m_b2 * (g[k] * g[k] - v[k])
        denom = v.dtype.type(math.sqrt(v[k])) + e
        p[k] = p.dtype.type(p[k] - lr_t * float(m[k]) / float(denom))


@kernel
def sum_of_squares(g):
    """sum(g**2) of g (K,), accumulated in float64."""
    total = 0.0
    for k in range(g.shape[0]):
        total += float(g[k]) * float(g[k])
    return total


@kernel(exact=True)
def scale(g, rate):
    """g (K,) *= rate."""
    r = g.dtype.type(rate)
    for k in range(g.shape[0]):
        g[k] *= r
