"""Optimizers and gradient utilities with the book's call signatures, updating in place.

``update(params, grads)`` changes each ``params[i]`` in place (never rebinds it), so models,
layers and saved references all see the new weights. Each array is updated in one compiled
pass (``fastseq.kernels.optim``) instead of NumPy's chain of temporaries.
"""

import math

import numpy as np

from . import _checks as checks
from .kernels.optim import adam_update, scale, sgd_update, sum_of_squares
from .threads import chunks


def _flat(name, i, a, dtype):
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64) \
            or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"{name}[{i}] must be a writable C-contiguous float32/float64 array, "
                        f"got {getattr(a, 'dtype', type(a).__name__)}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name}[{i}] is {a.dtype} but {name}[0] is {dtype}; all must share one "
                        "dtype")
    return a.reshape(-1)


def _flats(name, arrays):
    """The arrays as a tuple of 1-D views (one compiled call then updates them all)."""
    dtype = arrays[0].dtype if len(arrays) and isinstance(arrays[0], np.ndarray) else None
    return tuple(_flat(name, i, a, dtype) for i, a in enumerate(arrays))


def _pairs(params, grads):
    if len(params) != len(grads):
        raise ValueError(f"params and grads must have the same length, got {len(params)} and "
                         f"{len(grads)}")
    flat_p, flat_g = _flats("params", params), _flats("grads", grads)
    for i, (p, g) in enumerate(zip(flat_p, flat_g)):
        if p.shape != g.shape or p.dtype != g.dtype:
            raise ValueError(f"grads[{i}] ({g.dtype}, {g.size} values) does not match "
                             f"params[{i}] ({p.dtype}, {p.size} values)")
    return flat_p, flat_g


class SGD:
    """p -= lr * g."""

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        if params:
            sgd_update(*_pairs(params, grads), self.lr, chunks())


class Adam:
    """Adam (Kingma & Ba), the book's form: step t uses lr_t = lr sqrt(1-beta2^t)/(1-beta1^t),
    m += (1-beta1)(g-m), v += (1-beta2)(g^2-v), p -= lr_t m / (sqrt(v) + 1e-7)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m = self.v = None

    def update(self, params, grads):
        if not params:
            return
        flat_p, flat_g = _pairs(params, grads)
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        if [m.shape for m in self.m] != [p.shape for p in params]:
            raise ValueError(f"this Adam holds state for params of shapes "
                             f"{[m.shape for m in self.m]}, got {[p.shape for p in params]}; "
                             "use one optimizer per model")
        self.iter += 1
        lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        adam_update(flat_p, flat_g, _flats("Adam.m", self.m), _flats("Adam.v", self.v), lr_t,
                    self.beta1, self.beta2, 1e-7, chunks())


def clip_grads(grads, max_norm):
    """Scale all grads in place by max_norm / (norm + 1e-6) when that is below 1, norm being
    the L2 norm of all of them together. Returns the norm."""
    checks.positive_number("max_norm", max_norm)
    if not grads:
        return 0.0
    flat = _flats("grads", grads)
    norm = math.sqrt(sum_of_squares(flat, chunks()))
    rate = max_norm / (norm + 1e-6)
    if rate < 1:
        scale(flat, rate, chunks())
    return norm


def remove_duplicate(params, grads):
    """Merge params that are the same array (or one the transpose of the other, as with tied
    embedding/affine weights), adding their grads; returns new lists, leaves the inputs alone."""
    params, grads = list(params), list(grads)
    merged = True
    while merged:
        merged = False
        for i in range(len(params)):
            for j in range(i + 1, len(params)):
                if params[i] is params[j]:
                    grads[i] += grads[j]
                elif (params[i].ndim == 2 and params[j].ndim == 2
                      and params[i].T.shape == params[j].shape
                      and np.shares_memory(params[i], params[j])):
                    grads[i] += grads[j].T
                else:
                    continue
                merged = True
                params.pop(j)
                grads.pop(j)
                break
            if merged:
                break
    return params, grads
