"""exp, sigmoid and tanh for kernels: vectorisable in float32, libm-exact in float64.

Numba's pip wheels have no vector math library, so ``math.exp`` / ``math.tanh`` in a loop are
scalar libm calls (tanh about 28 ns). In float32 these functions are branch-free (multiply-adds
fused with ``fma``) and LLVM turns them into AVX2 code: exp a polynomial after Cephes-style
range reduction, 0.4 ns per value, max relative error 8.3e-8 wherever exp is a normal float32;
sigmoid 1 / (1 + exp(-x)), 0.5 ns, 1.5e-7; tanh a rational function, 0.35 ns, 3.1e-7 (checked
at every normal float32 below 16). In float64 they call libm, so the float64 path matches the
NumPy reference to 1e-15 (gradient checks and twin tests run there). Times: one thread.

exp returns inf above ln(largest float32) and 0 below ln(smallest normal float32). sigmoid uses
the exp of the clamped argument, which is always finite, and tanh clamps its argument and its
result, so both saturate exactly at 0 / +-1."""

import math

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from .jit import JIT_OPTIONS, helper

_f32 = np.float32


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (kernels only; three floats of one type). Kernels compile without
    FMA contraction (see jit.FASTMATH), so every fused multiply-add is one of these, and a kernel
    gives the same bits whether it was just compiled or loaded from the cache."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@helper
def _exp32_finite(x_in):
    """e**x for x clamped to [ln(smallest normal), ln(largest float32)]: finite everywhere,
    for sigmoid, which saturates without exp's overflow to inf and flush to 0 (two selects
    fewer: 0.79 -> 0.70 ns per value, one thread)."""
    # exp(x) = 2**n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
    x = min(max(x_in, _f32(-87.33654)), _f32(88.72283))
    n = np.floor(fma(x, _f32(1.44269504088896341), _f32(0.5)))
    r = fma(n, _f32(2.12194440e-4), fma(-n, _f32(0.693359375), x))  # ln 2 split in two
    p = _f32(1.9875691500e-4)
    p = fma(p, r, _f32(1.3981999507e-3))
    p = fma(p, r, _f32(8.3334519073e-3))
    p = fma(p, r, _f32(4.1665795894e-2))
    p = fma(p, r, _f32(1.6666665459e-1))
    p = fma(p, r, _f32(5.0000001201e-1))
    p = fma(p, r * r, r) + _f32(1.0)
    # p * 2**n by adding n to p's exponent bits (p is in [0.7, 1.42]): exact for every n the
    # clamp allows, where a float 2**n would overflow at n = 128
    return np.int32(np.float32(p).view(np.int32) + (np.int32(n) << np.int32(23))).view(np.float32)


@helper
def _exp32(x_in):
    e = _exp32_finite(x_in)
    # beyond the clamp: overflow to inf and flush to 0, as NumPy's float32 exp (up to denormals)
    e = e if x_in <= _f32(88.72283) else _f32(np.inf)
    return e if x_in >= _f32(-87.33654) else _f32(0.0)


@helper
def _sigmoid32(x):
    # below -ln(largest float32) the true value is under 3e-39: exactly 0, as with exp -> inf
    s = _f32(1.0) / (_f32(1.0) + _exp32_finite(-x))
    return s if x >= _f32(-88.72283) else _f32(0.0)


# tanh x = x P(x^2) / Q(x^2) on [-9, 9]; beyond, tanh rounds to +-1 in float32. Coefficients:
# iteratively reweighted least squares of the relative error on 200,001 points of (0, 9]
# (float64, Lawson's reweighting towards the minimax fit): 2.1e-8 before rounding them to
# float32. One division and no exp, where 1 - 2 / (e^2x + 1) needed an exp and, for relative
# accuracy near 0, a second polynomial selected by |x|: LSTM forward cell (3 sigmoids, 2 tanh
# per unit, one thread) 3.6 -> 2.5 ns per unit.
_TANH_P = (_f32(1.0), _f32(0.13381244), _f32(0.0034958466), _f32(2.0613306e-05),
           _f32(1.3360446e-08))
_TANH_Q = (_f32(1.0), _f32(0.4671456), _f32(0.025877967), _f32(0.00032860562),
           _f32(7.7789406e-07))


@helper
def _tanh32(x_in):
    x = min(max(x_in, _f32(-9.0)), _f32(9.0))
    s = x * x
    p0, p1, p2, p3, p4 = _TANH_P
    q0, q1, q2, q3, q4 = _TANH_Q
    p = fma(fma(fma(fma(p4, s, p3), s, p2), s, p1), s, p0)
    q = fma(fma(fma(fma(q4, s, q3), s, q2), s, q1), s, q0)
    # the rounded quotient may pass 1 by an ulp near the clamp
    return min(max(x * p / q, _f32(-1.0)), _f32(1.0))


def exp(x):
    """e**x (kernels only)."""
    raise TypeError("fastseq.kernels.activations functions can only be called from kernels")


def sigmoid(x):
    """1 / (1 + e**-x) (kernels only)."""
    raise TypeError("fastseq.kernels.activations functions can only be called from kernels")


def tanh(x):
    """tanh x (kernels only)."""
    raise TypeError("fastseq.kernels.activations functions can only be called from kernels")


@overload(exp, jit_options=JIT_OPTIONS)
def _exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: math.exp(x)


@overload(sigmoid, jit_options=JIT_OPTIONS)
def _sigmoid(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@overload(tanh, jit_options=JIT_OPTIONS)
def _tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


@helper
def softmax_row(out, x):
    """out (V,) = softmax(x (V,)), computed as exp(x - m) / s with m = max x; returns
    (m, log s), so log-sum-exp(x) = m + log s. out may be x itself."""
    m = x[0]
    for k in range(1, x.shape[0]):
        m = max(m, x[k])
    for k in range(x.shape[0]):  # apart from the sum, so that exp vectorises
        out[k] = exp(x[k] - m)
    s = x.dtype.type(0.0)
    for k in range(x.shape[0]):
        s += out[k]
    inv = x.dtype.type(1.0) / s
    for k in range(x.shape[0]):
        out[k] *= inv
    return m, math.log(s)
