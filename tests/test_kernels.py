"""The kernels' activation helpers, and ``views.assign``.

``fastseq.kernels.activations`` exp / sigmoid / tanh are callable only from compiled code, so
each test compiles a tiny wrapper that maps one of them over an array, with the kernels' own
fastmath flags. float32: polynomial and rational approximations, checked against float64 NumPy
at the same float32 inputs wherever the true value is a normal float32. float64: libm, equal to
NumPy to rounding.
"""

import math

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastseq.kernels import activations, jit, views

F32_MAX_REL_ERR = 1e-6  # a few float32 ulps (measured: 8.3e-8 .. 3.1e-7)
F64_RTOL = 1e-15

EDGES = [0.0, 1e-30, -1e-30, 1e-4, -1e-4, 0.625, -0.625, 88.0, -88.0, 100.0, -100.0, 1e30, -1e30]


def _mapper(fn):
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])

    return numba.njit(fastmath=jit.FASTMATH)(apply)


MAPPERS = {name: _mapper(getattr(activations, name)) for name in ("exp", "sigmoid", "tanh")}


def _true(name, x):
    """The float64 value at the float64 points x (no overflow warnings from exp)."""
    with np.errstate(over="ignore"):
        if name == "exp":
            return np.exp(x)
        if name == "sigmoid":
            return 1 / (1 + np.exp(-x))
        return np.tanh(x)


def _apply(name, x):
    out = np.empty_like(x)
    MAPPERS[name](x, out)
    return out


def _grid(lo, hi, n=400_001):
    return np.concatenate([np.linspace(lo, hi, n), EDGES]).astype(np.float32)


def _assert_float32_accuracy(name, x):
    got = _apply(name, x)
    assert got.dtype == np.float32
    want = _true(name, x.astype(np.float64))
    tiny, big = np.finfo(np.float32).tiny, np.finfo(np.float32).max
    normal = (np.abs(want) >= tiny) & (np.abs(want) <= big)
    rel = np.abs(got[normal].astype(np.float64) - want[normal]) / np.abs(want[normal])
    worst = int(np.argmax(rel))
    assert rel[worst] <= F32_MAX_REL_ERR, (
        f"{name}({x[normal][worst]!r}) = {got[normal][worst]!r}, want {want[normal][worst]!r} "
        f"(relative error {rel[worst]:.3g})")
    # below the normal range only the absolute error counts (exp clamps its argument, so
    # exp(-1e30) may be the smallest normal float32 rather than 0)
    below = np.abs(want) < tiny
    assert (np.abs(got[below].astype(np.float64) - want[below]) <= 2 * tiny).all(), name


@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh"])
def test_float32_accuracy_on_dense_grid(name):
    _assert_float32_accuracy(name, _grid(-20, 20))


@pytest.mark.parametrize("name,lo,hi", [
    ("exp", -87.33, 88.72),  # every argument whose exp is a normal float32
    ("sigmoid", -87.0, 100.0),
    ("tanh", -100.0, 100.0),
])
def test_float32_accuracy_over_the_whole_range(name, lo, hi):
    _assert_float32_accuracy(name, _grid(lo, hi))


def test_float32_exp_just_below_the_overflow_threshold():
    """exp(88.5) = 2.7e38 and exp(88.7) = 3.3e38 are finite float32 numbers."""
    x = np.array([88.3, 88.4, 88.5, 88.6, 88.7, 88.72], np.float32)
    got = _apply("exp", x)
    want = np.exp(x.astype(np.float64))
    assert np.isfinite(got).all(), dict(zip(x.tolist(), got.tolist()))
    assert_allclose(got, want, rtol=F32_MAX_REL_ERR)


def test_float32_saturation():
    x = np.array([100, -100, 1e30, -1e30, 88, 50, 20], np.float32)
    s = _apply("sigmoid", x)
    t = _apply("tanh", x)
    assert s[0] == 1 and s[1] == 0 and s[2] == 1 and s[3] == 0
    assert t[0] == 1 and t[1] == -1 and t[2] == 1 and t[3] == -1
    assert t[4] == 1 and t[5] == 1 and t[6] == 1  # tanh(20) rounds to 1 in float32
    assert (s >= 0).all() and (s <= 1).all() and (np.abs(t) <= 1).all()
    assert np.isfinite(s).all() and np.isfinite(t).all()


@numba.njit(fastmath=jit.FASTMATH)
def _worst_tanh_error(lo_bits, hi_bits):
    """Largest relative error of float32 tanh over the float32 numbers whose bit patterns are
    in [lo_bits, hi_bits) (positive: tanh is odd), against libm's float64 tanh, and where."""
    worst, where = 0.0, 0
    for bits in range(lo_bits, hi_bits):
        x = np.int32(bits).view(np.float32)
        want = math.tanh(np.float64(x))
        err = abs(np.float64(activations.tanh(x)) - want) / want
        if err > worst:
            worst, where = err, bits
    return worst, where


def test_float32_tanh_at_every_float_from_a_sixteenth_to_sixteen():
    """Every float32 in [1/16, 16) (67 million numbers): below, tanh x = x (1 - x^2/3 + ...)
    and the rational function's error shrinks with x; from 9 on the result is clamped to 1."""
    lo, hi = (int(np.float32(v).view(np.int32)) for v in (1 / 16, 16))
    worst, where = _worst_tanh_error(lo, hi)
    assert worst <= F32_MAX_REL_ERR, (np.int32(where).view(np.float32), worst)


def test_float32_small_arguments_keep_relative_accuracy():
    x = np.array([1e-30, -1e-30, 1e-20, -1e-20, 1e-10, 1e-4, -1e-4, 0.0], np.float32)
    t = _apply("tanh", x)
    assert_array_equal(t[:4], x[:4])  # tanh x = x to float32 precision
    assert t[-1] == 0
    assert_allclose(t, np.tanh(x.astype(np.float64)), rtol=F32_MAX_REL_ERR)
    assert_allclose(_apply("sigmoid", x), 0.5 + x.astype(np.float64) / 4, rtol=F32_MAX_REL_ERR)
    assert_allclose(_apply("exp", x), 1 + x.astype(np.float64), rtol=F32_MAX_REL_ERR)


@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh"])
def test_float64_matches_numpy(name):
    x = np.concatenate([np.linspace(-20, 20, 100_001), EDGES, [700.0, -700.0, 710.0, -745.0]])
    got = _apply(name, x)
    assert got.dtype == np.float64
    assert_allclose(got, _true(name, x), rtol=F64_RTOL, atol=0)


def test_activations_refuse_to_run_as_python():
    for name in ("exp", "sigmoid", "tanh"):
        with pytest.raises(TypeError, match="only be called from kernels"):
            getattr(activations, name)(np.float32(1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_rounds_once(dtype):
    fma = numba.njit(fastmath=jit.FASTMATH)(lambda a, b, c: activations.fma(a, b, c))
    k = (np.finfo(dtype).nmant + 3) // 2  # a * a = 1 + 2**(1-k) + 2**(-2k) has too many bits
    a, c = dtype(1 + 2.0 ** -k), -dtype(1 + 2.0 ** (1 - k))
    assert a * a + c == 0  # rounded after the product: the last term is lost
    assert fma(a, a, c) == 2.0 ** (-2 * k)
    assert fma.nopython_signatures[0].return_type == numba.from_dtype(dtype)


_assign = numba.njit(lambda dst, src: views.assign(dst, src))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_assign_copies_rows_and_blocks_of_views(dtype):
    x = np.arange(60, dtype=dtype).reshape(3, 4, 5)
    out = np.zeros((3, 4, 5), dtype)
    _assign(out[1, 2], x[2, 1])  # a row
    _assign(out[0, :, 1:3], x[2, ::-1, 3:])  # a 2-D block of strided views
    _assign(out[2, 0, ::2], x[0, 3, 2:])  # strided destination
    want = np.zeros((3, 4, 5), dtype)
    want[1, 2] = x[2, 1]
    want[0, :, 1:3] = x[2, ::-1, 3:]
    want[2, 0, ::2] = x[0, 3, 2:]
    assert_array_equal(out, want)


def test_assign_refuses_unequal_shapes_and_python_callers():
    x = np.zeros((4, 5))
    for dst, src in ((x[0], x[1, 1:]), (x[:2], x[1:]), (x[:, :2], x[:, :3])):
        with pytest.raises(ValueError, match="different shapes"):
            _assign(dst, src)
    with pytest.raises(TypeError, match="only be called from kernels"):
        views.assign(x[0], x[1])
