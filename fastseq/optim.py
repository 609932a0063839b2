"""Optimizers and gradient utilities with the book's call signatures, updating in place.

``update(params, grads)`` changes each ``params[i]`` in place (never rebinds it), so models,
layers and saved references all see the new weights. Each array is updated in one compiled
pass (``fastseq.kernels.optim``) instead of NumPy's chain of temporaries.
"""

import math

import numpy as np

from .kernels.optim import adam_update, scale, sgd_update, sum_of_squares


def _flat(name, arrays, i, a):
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64) \
            or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"{name}[{i}] must be a writable C-contiguous float32/float64 array, "
                        f"got {getattr(a, 'dtype', type(a).__name__)}")
    return a.reshape(-1)


def _pairs(params, grads):
    if len(params) != len(grads):
        raise ValueError(f"params and grads must have the same length, got {len(params)} and "
                         f"{len(grads)}")
    pairs = []
    for i, (p, g) in enumerate(zip(params, grads)):
        p, g = _flat("params", params, i, p), _flat("grads", grads, i, g)
        if p.shape != g.shape or p.dtype != g.dtype:
            raise ValueError(f"grads[{i}] ({g.dtype}, {g.size} values) does not match "
                             f"params[{i}] ({p.dtype}, {p.size} values)")
        pairs.append((p, g))
    return pairs


class SGD:
    """p -= lr * g."""

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for p, g in _pairs(params, grads):
            sgd_update(p, g, self.lr)


class Adam:
    """Adam (Kingma & Ba), the book's form: step t uses lr_t = lr sqrt(1-beta2^t)/(1-beta1^t),
    m += (1-beta1)(g-m), v += (1-beta2)(g^2-v), p -= lr_t m / (sqrt(v) + 1e-7)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m = self.v = None

    def update(self, params, grads):
        pairs = _pairs(params, grads)
        if self.m is None:
            self.m = [np.zeros_like(p) for p, _ in pairs]
            self.v = [np.zeros_like(p) for p, _ in pairs]
        if len(self.m) != len(pairs):
            raise ValueError(f"this Adam holds state for {len(self.m)} params but got "
                             f"{len(pairs)}; use one optimizer per model")
        self.iter += 1
        lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for (p, g), m, v in zip(pairs, self.m, self.v):
            adam_update(p, g, m, v, lr_t, self.beta1, self.beta2, 1e-7)


def clip_grads(grads, max_norm):
    """Scale all grads in place by max_norm / (norm + 1e-6) when that is below 1, norm being
    the L2 norm of all of them together. Returns the norm."""
    flat = [_flat("grads", grads, i, g) for i, g in enumerate(grads)]
    norm = math.sqrt(sum(sum_of_squares(g) for g in flat))
    rate = max_norm / (norm + 1e-6)
    if rate < 1:
        for g in flat:
            scale(g, rate)
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
